//! Fetching one segment: a single raw block, or a multi-block UnixFS file whose blocks are
//! fetched a few at a time, each verified as it arrives, and reassembled in order.

use std::collections::HashMap;
use std::time::Duration;

use antiphon_core::unixfs::FileReader;
use antiphon_core::{Block, Cid, SegmentRef};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;

use crate::error::Error;
use crate::net::{Fetched, NetHandle};

/// Blocks of one segment requested at once.
const BLOCKS_IN_FLIGHT: usize = 4;

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
    let mut reader = FileReader::new(seg.cid, ..);
    // The manifest bounds `bytes` (MAX_SEGMENT_BYTES), so this allocation is bounded too.
    let mut data = BytesMut::with_capacity(seg.bytes as usize);
    let mut ready: HashMap<Cid, Block> = HashMap::new();
    let mut inflight = FuturesUnordered::new();
    let mut requested: Vec<Cid> = Vec::new();
    let mut root_peer = None;
    let mut blocks = 0;
    while let Some(&next) = reader.next_cid() {
        if let Some(block) = ready.remove(&next) {
            let bytes = reader.push_block(&block).map_err(|source| Error::Segment { cid: seg.cid, source })?;
            if data.len() + bytes.len() > seg.bytes as usize {
                return Err(Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: None });
            }
            data.extend_from_slice(&bytes);
            blocks += 1;
            continue;
        }
        // Ask for the next few blocks the reader will need, without asking twice.
        let wanted: Vec<Cid> = reader
            .upcoming()
            .filter(|c| !ready.contains_key(c) && !requested.contains(c))
            .take(BLOCKS_IN_FLIGHT.saturating_sub(inflight.len()))
            .copied()
            .collect();
        for cid in wanted {
            requested.push(cid);
            let net = net.clone();
            inflight.push(async move { (cid, net.get(cid, peer).await) });
        }
        let Some((cid, result)) = inflight.next().await else {
            return Err(Error::Stopped);
        };
        requested.retain(|c| *c != cid);
        let Fetched { block, peer: from, .. } = result?;
        root_peer.get_or_insert(from);
        ready.insert(cid, block);
    }
    if data.len() as u64 != seg.bytes {
        return Err(Error::SegmentSize { cid: seg.cid, declared: seg.bytes, actual: Some(data.len() as u64) });
    }
    Ok(FetchedSegment { data: data.freeze(), blocks, peer: root_peer.unwrap_or(peer), latency: started.elapsed() })
}
