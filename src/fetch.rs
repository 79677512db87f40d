//! Fetching one segment: a single raw block, or a multi-block UnixFS file whose blocks are
//! fetched a few at a time, each verified as it arrives, and reassembled in order.

use std::time::Duration;

use antiphon_core::SegmentRef;
use antiphon_core::unixfs::{FetchError, fetch_file};
use bytes::{Bytes, BytesMut};
use libp2p::PeerId;

use crate::error::Error;
use crate::net::NetHandle;

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
    /// The peer that delivered its root block.
    pub(crate) peer: PeerId,
    /// Time from the first want to the last block.
    pub(crate) latency: Duration,
}

/// Fetches the segment `seg` from `peer`, verifying every block and checking that the bytes
/// add up to what the manifest declares.
pub(crate) async fn fetch_segment(net: &NetHandle, peer: PeerId, seg: &SegmentRef) -> Result<FetchedSegment, Error> {
    let started = web_time::Instant::now();
    // The manifest bounds `bytes` (MAX_SEGMENT_BYTES), so this allocation is bounded too.
    let too_big = || Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: None };
    let fetched = fetch_up_to(net, peer, seg.cid, seg.bytes, seg.bytes as usize, BLOCKS_IN_FLIGHT, too_big).await?;
    if fetched.data.len() as u64 != seg.bytes {
        return Err(Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: Some(fetched.data.len() as u64) });
    }
    Ok(FetchedSegment {
        data: fetched.data.freeze(),
        blocks: fetched.blocks,
        peer: fetched.root_peer.unwrap_or(peer),
        latency: started.elapsed(),
    })
}

/// Fetches the whole UnixFS file `cid` from `peer` into JS memory, refusing files over `max`
/// bytes as soon as the bytes pass it.
pub(crate) async fn fetch_bytes(
    net: &NetHandle,
    peer: PeerId,
    cid: antiphon_core::Cid,
    max: u64,
) -> Result<js_sys::Uint8Array, Error> {
    let too_big =
        || Error::InvalidArgument { what: "maxBytes".into(), reason: format!("{cid} is larger than {max} bytes") };
    let fetched = fetch_up_to(net, peer, cid, max, 0, CAT_BLOCKS_IN_FLIGHT, too_big).await?;
    Ok(js_sys::Uint8Array::from(&fetched.data[..]))
}

/// What [`fetch_up_to`] gathered.
struct Gathered {
    data: BytesMut,
    blocks: usize,
    root_peer: Option<PeerId>,
}

/// Fetches the UnixFS file `root` from `peer` with `window` blocks in flight into a buffer of
/// `capacity` bytes to start with, failing with `too_big()` as soon as it holds more than
/// `max` bytes.
async fn fetch_up_to(
    net: &NetHandle,
    peer: PeerId,
    root: antiphon_core::Cid,
    max: u64,
    capacity: usize,
    window: usize,
    too_big: impl Fn() -> Error,
) -> Result<Gathered, Error> {
    let mut data = BytesMut::with_capacity(capacity);
    let mut blocks = 0;
    let root_peer = std::cell::Cell::new(None);
    let get = |cid| {
        let net = net.clone();
        let root_peer = &root_peer;
        async move {
            let fetched = net.get(cid, peer).await?;
            if cid == root {
                root_peer.set(Some(fetched.peer));
            }
            Ok(fetched.block)
        }
    };
    let result = fetch_file(root, .., window, get, |_, bytes| {
        blocks += 1;
        if (data.len() + bytes.len()) as u64 > max {
            return Err(too_big());
        }
        data.extend_from_slice(&bytes);
        Ok(())
    })
    .await;
    match result {
        Ok(_) => Ok(Gathered { data, blocks, root_peer: root_peer.get() }),
        Err(FetchError::Get { source, .. } | FetchError::Sink(source)) => Err(source),
        Err(FetchError::Export(source)) => Err(Error::Segment { cid: root, source }),
        Err(e @ FetchError::Stalled(_)) => {
            tracing::error!(%e, "fetch stalled");
            Err(Error::Stopped)
        }
    }
}
