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
    let mut data = BytesMut::with_capacity(seg.bytes as usize);
    let mut blocks = 0;
    let root_peer = std::cell::Cell::new(None);
    let get = |cid| {
        let net = net.clone();
        let root_peer = &root_peer;
        async move {
            let fetched = net.get(cid, peer).await?;
            if cid == seg.cid {
                root_peer.set(Some(fetched.peer));
            }
            Ok(fetched.block)
        }
    };
    let result = fetch_file(seg.cid, .., BLOCKS_IN_FLIGHT, get, |_, bytes| {
        blocks += 1;
        if data.len() + bytes.len() > seg.bytes as usize {
            return Err(Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: None });
        }
        data.extend_from_slice(&bytes);
        Ok(())
    })
    .await;
    match result {
        Ok(_) => {}
        Err(FetchError::Get { source, .. } | FetchError::Sink(source)) => return Err(source),
        Err(FetchError::Export(source)) => return Err(Error::Segment { cid: seg.cid, source }),
        Err(e @ FetchError::Stalled(_)) => {
            tracing::error!(%e, "segment fetch stalled");
            return Err(Error::Stopped);
        }
    }
    if data.len() as u64 != seg.bytes {
        return Err(Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: Some(data.len() as u64) });
    }
    Ok(FetchedSegment {
        data: data.freeze(),
        blocks,
        peer: root_peer.get().unwrap_or(peer),
        latency: started.elapsed(),
    })
}

/// Fetches the whole UnixFS file `cid` from `peer` into JS memory, refusing files over `max`
/// bytes as soon as the root says so (or the bytes pass it).
pub(crate) async fn fetch_bytes(
    net: &NetHandle,
    peer: PeerId,
    cid: antiphon_core::Cid,
    max: u64,
) -> Result<js_sys::Uint8Array, Error> {
    let mut data = Vec::new();
    let get = |c| {
        let net = net.clone();
        async move { net.get(c, peer).await.map(|f| f.block) }
    };
    let result = fetch_file(cid, .., CAT_BLOCKS_IN_FLIGHT, get, |_, bytes| {
        if data.len() as u64 + bytes.len() as u64 > max {
            return Err(Error::InvalidArgument {
                what: "maxBytes".into(),
                reason: format!("{cid} is larger than {max} bytes"),
            });
        }
        data.extend_from_slice(&bytes);
        Ok(())
    })
    .await;
    match result {
        Ok(_) => Ok(js_sys::Uint8Array::from(&data[..])),
        Err(FetchError::Get { source, .. } | FetchError::Sink(source)) => Err(source),
        Err(FetchError::Export(source)) => Err(Error::Segment { cid, source }),
        Err(e @ FetchError::Stalled(_)) => {
            tracing::error!(%e, "file fetch stalled");
            Err(Error::Stopped)
        }
    }
}
