//! `antiphon-node fetch`: a UnixFS file, or a whole track, by Bitswap from one peer.

use std::io::Write;
use std::time::{Duration, Instant};

use antiphon_core::block::DAG_CBOR;
use antiphon_core::unixfs::{FetchError, fetch_file};
use antiphon_core::{Block, Cid, TrackManifest};
use libp2p::{Multiaddr, PeerId};

use crate::client::{Client, GetError};
use crate::store::{Batch, StoreError};

/// Blocks requested at once.
const WINDOW: usize = 16;

/// What was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// For a track, its manifest.
    pub manifest: Option<TrackManifest>,
    /// File bytes written (for a track, all segments in order).
    pub bytes: u64,
    /// Blocks fetched and verified.
    pub blocks: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchCommandError {
    /// A block could not be fetched, the DAG is malformed, or the output failed.
    #[error(transparent)]
    Fetch(#[from] FetchError<GetError, SinkError>),
    /// The root could not be fetched.
    #[error("could not fetch {cid}")]
    Root {
        /// The root.
        cid: Cid,
        /// Why.
        #[source]
        source: GetError,
    },
    /// A dag-cbor root that is not a track manifest.
    #[error("{cid} is dag-cbor but not a track manifest")]
    NotATrack {
        /// The root.
        cid: Cid,
        /// Why it is not a manifest.
        #[source]
        source: antiphon_core::ManifestError,
    },
    /// The output could not be written.
    #[error("cannot write the output")]
    Write(#[source] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A segment's size differs from the manifest's.
    #[error("segment {index} ({cid}) holds {actual} bytes; the manifest says {declared}")]
    SegmentSize {
        /// Segment index.
        index: usize,
        /// Its CID.
        cid: Cid,
        /// What the manifest declares.
        declared: u64,
        /// What the blocks hold.
        actual: u64,
    },
}

/// Why the output of a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing the bytes out failed.
    #[error("cannot write the output")]
    Write(#[source] std::io::Error),
    /// Keeping the blocks failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Connects to `addr`.
pub async fn connect(addr: Multiaddr) -> anyhow::Result<(Client, PeerId)> {
    Client::connect(addr, Duration::from_secs(20)).await
}

/// Fetches `cid` from `peer`: a track manifest and all its segments (written in order, which
/// gives the original audio stream), or a UnixFS file. Every block is verified; blocks are
/// added to `batch` when one is given.
pub async fn fetch(
    client: &Client,
    peer: PeerId,
    cid: Cid,
    out: &mut dyn Write,
    mut batch: Option<&mut Batch>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Fetched, FetchCommandError> {
    let started = Instant::now();
    let (mut bytes, mut blocks) = (0u64, 0u64);
    let manifest = if cid.codec() == DAG_CBOR {
        let root = client.get(cid, peer).await.map_err(|source| FetchCommandError::Root { cid, source })?;
        blocks += 1;
        if let Some(batch) = batch.as_deref_mut() {
            batch.put(&root)?;
        }
        // A dag-cbor root that is not a track is not a file either: say so now rather than
        // fetch it again only for the UnixFS reader to refuse it.
        Some(TrackManifest::from_block(&root).map_err(|source| FetchCommandError::NotATrack { cid, source })?)
    } else {
        None
    };
    // Segments are written out in order; a track's cover is fetched (and stored) but not written.
    let files: Vec<(Cid, Option<u64>, bool)> = match &manifest {
        Some(m) => m
            .segments
            .iter()
            .map(|s| (s.cid, Some(s.bytes), true))
            .chain(m.cover.as_ref().map(|c| (c.cid, Some(c.bytes), false)))
            .collect(),
        None => vec![(cid, None, true)],
    };
    for (index, (file, declared, write)) in files.into_iter().enumerate() {
        let mut written = 0u64;
        let get = |c| {
            let client = client.clone();
            async move { client.get(c, peer).await }
        };
        fetch_file(file, .., WINDOW, get, |block: &Block, data| {
            blocks += 1;
            if let Some(batch) = batch.as_deref_mut() {
                batch.put(block).map_err(SinkError::Store)?;
            }
            if write {
                out.write_all(&data).map_err(SinkError::Write)?;
            }
            written += data.len() as u64;
            progress(bytes + written, blocks);
            Ok(())
        })
        .await?;
        if let Some(declared) = declared
            && declared != written
        {
            return Err(FetchCommandError::SegmentSize { index, cid: file, declared, actual: written });
        }
        bytes += written;
    }
    out.flush().map_err(FetchCommandError::Write)?;
    Ok(Fetched { manifest, bytes, blocks, elapsed: started.elapsed() })
}
