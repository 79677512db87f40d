//! `antiphon-node fetch`: a UnixFS file, or a whole track, by Bitswap from one peer.

use std::io::Write;
use std::time::{Duration, Instant};

use antiphon_core::block::DAG_CBOR;
use antiphon_core::unixfs::{FetchError, fetch_file, fetch_file_of_size};
use antiphon_core::{Block, Cid, TrackManifest};
use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};

use crate::client::{Client, GetError};
use crate::store::StoreError;

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
    /// The track's manifest declares more bytes than the fetch may bring in.
    #[error("{cid} declares {declared} bytes; at most {limit} may be fetched")]
    TooLarge {
        /// The track.
        cid: Cid,
        /// What its manifest declares (segments and cover).
        declared: u64,
        /// The bound.
        limit: u64,
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
    /// Spooling the blocks to disk failed.
    #[error("cannot spool the blocks")]
    Spool(#[source] antiphon_core::car::CarError),
    /// A file (not a track) grew past the bytes the fetch may bring in.
    #[error("the file is larger than the {limit} bytes that may be fetched")]
    TooLarge {
        /// The bound.
        limit: u64,
    },
}

/// Connects to `addr`; when it ends in `/p2p/<id>`, the peer that answers must be that one.
pub async fn connect(addr: Multiaddr) -> anyhow::Result<(Client, PeerId)> {
    Client::connect(addr, Duration::from_secs(20)).await
}

/// Where a fetch puts what it gets, besides the file bytes written out.
pub struct Sinks<K, P> {
    /// Every verified block, in the order fetched (the store, a spool file, or nothing).
    pub keep: K,
    /// Bytes fetched so far and blocks, now and then.
    pub progress: P,
    /// Most file bytes the fetch may bring in: a track whose manifest declares more is refused
    /// before any segment is asked for; a file is cut off when it grows past it.
    pub max_bytes: u64,
}

/// Fetches `cid` from `peer`: a track manifest and all its segments (written in order, which
/// gives the original audio stream), or a UnixFS file. Every block is verified. A track's
/// files are checked against the sizes its manifest declares as soon as each root arrives, and
/// nothing past those sizes is asked for.
pub async fn fetch<W, K, P>(
    client: &Client,
    peer: PeerId,
    cid: Cid,
    out: &mut W,
    sinks: Sinks<K, P>,
) -> Result<Fetched, FetchCommandError>
where
    W: Write + ?Sized,
    K: FnMut(&Block) -> Result<(), SinkError>,
    P: FnMut(u64, u64),
{
    let Sinks { mut keep, mut progress, max_bytes } = sinks;
    let started = Instant::now();
    let (mut bytes, mut blocks) = (0u64, 0u64);
    let manifest = if cid.codec() == DAG_CBOR {
        let root = client.get(cid, peer).await.map_err(|source| FetchCommandError::Root { cid, source })?;
        blocks += 1;
        // A dag-cbor root that is not a track is not a file either: say so now rather than
        // fetch it again only for the UnixFS reader to refuse it.
        let manifest =
            TrackManifest::from_block(&root).map_err(|source| FetchCommandError::NotATrack { cid, source })?;
        let declared = manifest
            .segments
            .iter()
            .map(|s| s.bytes)
            .chain(manifest.cover.as_ref().map(|c| c.bytes))
            .fold(0u64, u64::saturating_add);
        if declared > max_bytes {
            return Err(FetchCommandError::TooLarge { cid, declared, limit: max_bytes });
        }
        keep(&root).map_err(|e| FetchCommandError::Fetch(FetchError::Sink(e)))?;
        Some(manifest)
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
    for (file, declared, write) in files {
        let mut written = 0u64;
        let get = |c| {
            let client = client.clone();
            async move { client.get(c, peer).await }
        };
        let sink = |block: &Block, data: Bytes| {
            blocks += 1;
            written += data.len() as u64;
            if bytes.saturating_add(written) > max_bytes {
                return Err(SinkError::TooLarge { limit: max_bytes });
            }
            keep(block)?;
            if write {
                out.write_all(&data).map_err(SinkError::Write)?;
            }
            progress(bytes + written, blocks);
            Ok(())
        };
        // A declared size is checked at the file's root (FetchError::Size), and nothing past it
        // is read: what arrives is exactly that size.
        match declared {
            Some(size) => fetch_file_of_size(file, size, WINDOW, get, sink).await?,
            None => fetch_file(file, .., WINDOW, get, sink).await?,
        };
        bytes += written;
    }
    out.flush().map_err(FetchCommandError::Write)?;
    Ok(Fetched { manifest, bytes, blocks, elapsed: started.elapsed() })
}
