//! Fetching one segment: a single raw block, or a multi-block UnixFS file whose blocks are
//! fetched a few at a time, each verified as it arrives, and reassembled in order. Also one
//! block from whichever of several sources answers first (a track's manifest).

use std::time::Duration;

use antiphon_core::unixfs::{FetchError, fetch_file};
use antiphon_core::{Cid, SegmentRef};
use bytes::{Bytes, BytesMut};

use crate::error::Error;
use crate::fetching::first_answer::first_answer;
use crate::fetching::source::{Delivered, Source};

/// Blocks of one segment requested at once.
const BLOCKS_IN_FLIGHT: usize = 4;

/// Blocks of a whole file ([`fetch_bytes`]) requested at once: 4 MiB of 256 KiB leaves. 48
/// measured no faster over WebSocket on loopback (BENCHMARKS.md).
const CAT_BLOCKS_IN_FLIGHT: usize = 16;

/// A reassembled, verified segment.
pub(crate) struct FetchedSegment {
    /// The segment's bytes.
    pub(crate) data: Bytes,
    /// Blocks it was made of.
    pub(crate) blocks: usize,
    /// Who delivered its root block (a peer ID or a gateway URL).
    pub(crate) from: String,
    /// Every block of the segment, in order, with its size.
    pub(crate) block_list: Vec<(antiphon_core::Cid, usize)>,
    /// Time from the first want to the last block.
    pub(crate) latency: Duration,
}

/// Fetches the segment `seg` from `source`, verifying every block and checking that the bytes
/// add up to what the manifest declares.
pub(crate) async fn fetch_segment(source: &Source, seg: &SegmentRef) -> Result<FetchedSegment, Error> {
    let started = web_time::Instant::now();
    // The manifest bounds `bytes` (MAX_SEGMENT_BYTES), so this allocation is bounded too.
    let too_big = || Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: None };
    let fetched = fetch_up_to(source, seg.cid, seg.bytes, seg.bytes as usize, BLOCKS_IN_FLIGHT, too_big).await?;
    if fetched.data.len() as u64 != seg.bytes {
        return Err(Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: Some(fetched.data.len() as u64) });
    }
    Ok(FetchedSegment {
        data: fetched.data.freeze(),
        blocks: fetched.blocks,
        from: fetched.root_from.unwrap_or_else(|| source.label()),
        block_list: fetched.block_list,
        latency: started.elapsed(),
    })
}

/// Fetches the whole UnixFS file `cid` from `peer` into JS memory, refusing files over `max`
/// bytes as soon as the bytes pass it.
pub(crate) async fn fetch_bytes(
    source: &Source,
    cid: antiphon_core::Cid,
    max: u64,
) -> Result<js_sys::Uint8Array, Error> {
    let too_big =
        || Error::InvalidArgument { what: "maxBytes".into(), reason: format!("{cid} is larger than {max} bytes") };
    let fetched = fetch_up_to(source, cid, max, 0, CAT_BLOCKS_IN_FLIGHT, too_big).await?;
    Ok(js_sys::Uint8Array::from(&fetched.data[..]))
}

/// What [`fetch_up_to`] gathered.
struct Gathered {
    data: BytesMut,
    blocks: usize,
    root_from: Option<String>,
    block_list: Vec<(antiphon_core::Cid, usize)>,
}

/// Fetches the UnixFS file `root` from `source` with `window` blocks in flight into a buffer of
/// `capacity` bytes to start with, failing with `too_big()` as soon as it holds more than
/// `max` bytes.
async fn fetch_up_to(
    source: &Source,
    root: antiphon_core::Cid,
    max: u64,
    capacity: usize,
    window: usize,
    too_big: impl Fn() -> Error,
) -> Result<Gathered, Error> {
    let mut data = BytesMut::with_capacity(capacity);
    let mut blocks = 0;
    let root_from = std::cell::RefCell::new(None);
    let get = |cid| {
        let root_from = &root_from;
        async move {
            let delivered = source.get(cid).await?;
            if cid == root {
                *root_from.borrow_mut() = Some(delivered.from);
            }
            Ok(delivered.block)
        }
    };
    let mut block_list = Vec::new();
    let result = fetch_file(root, .., window, get, |block: &antiphon_core::Block, bytes| {
        blocks += 1;
        block_list.push((*block.cid(), block.data().len()));
        if (data.len() + bytes.len()) as u64 > max {
            return Err(too_big());
        }
        data.extend_from_slice(&bytes);
        Ok(())
    })
    .await;
    match result {
        Ok(_) => Ok(Gathered { data, blocks, root_from: root_from.into_inner(), block_list }),
        Err(FetchError::Get { source, .. } | FetchError::Sink(source)) => Err(source),
        Err(FetchError::Export(source)) => Err(Error::Segment { cid: root, source }),
        Err(e @ (FetchError::Stalled(_) | FetchError::Size { .. })) => {
            // `Size` only comes from `fetch_file_of_size`, which is not used here.
            tracing::error!(%e, "fetch stalled");
            Err(Error::Stopped)
        }
    }
}

/// A request for one block that has gone unanswered this long is sent again, to the next
/// source (or to the same one, when it is the only one left), while the first keeps running.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(2);

/// Most requests [`fetch_block_from_any`] sends for one block.
const MAX_ASKS: usize = 4;

/// Fetches the single block `cid` from whichever of `sources` answers first (see
/// [`first_answer`]; at most [`MAX_ASKS`] requests): a want or its answer can be lost on a
/// stream that broke without a word, and a load must not wait out the 30 s request timeout.
pub(crate) async fn fetch_block_from_any(sources: &[Source], cid: Cid) -> Result<Delivered, Error> {
    let ask = |i: usize| {
        let source = sources[i].clone();
        async move { source.get(cid).await }
    };
    let failed = |i: usize, e: &Error| {
        tracing::info!(source = %sources[i].label(), %cid, error = %e, "block not fetched from this source");
    };
    let ask_again = || futures_timer::Delay::new(ASK_AGAIN_AFTER);
    first_answer(sources.len(), ask, failed, ask_again, MAX_ASKS)
        .await
        .map_err(|e| e.unwrap_or(Error::NoSource { cid }))
}
