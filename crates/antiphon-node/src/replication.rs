//! Replication between creator nodes: a track lives in at least three places.
//!
//! After a track is stored, the node asks each replica in its configuration, over the small
//! request/response protocol [`PROTOCOL`], to pull it. A replica takes such a request only
//! from a peer it lists among its origins: it connects back to that peer alone (addresses must
//! end in the asker's `/p2p/` ID), fetches the manifest's DAG by Bitswap (TCP or WebSocket)
//! within the bounds of its [`PullPolicy`] (every file's size checked against the manifest
//! before anything under it is asked for, a largest track, a store quota, a deadline),
//! verifies every block, spools it to disk, stores it in one transaction and answers; the
//! origin records the confirmation. Unconfirmed (track, replica) pairs are retried every
//! `retry_secs`, so a replica that was down catches up when it returns.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use antiphon_core::block::DAG_CBOR;
use antiphon_core::car::CarWriter;
use antiphon_core::{Block, Cid};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::config;
use crate::fetch::{Fetched, SinkError, Sinks};
use crate::store::Store;

/// The replication protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/antiphon/replicate/1.0.0");

/// How long a replica has to pull a track before the origin gives up on that attempt.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// Most addresses a request may carry.
pub const MAX_FROM_ADDRS: usize = 16;

/// "Please keep a copy of this track; fetch it from me at these addresses."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateRequest {
    /// The track's manifest CID, as bytes.
    pub track: Vec<u8>,
    /// The origin's TCP and WebSocket addresses.
    pub from: Vec<String>,
}

/// The replica's answer, sent once the track is stored (or could not be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateResponse {
    /// Whether every block is now stored at the replica.
    pub stored: bool,
    /// Blocks fetched.
    pub blocks: u64,
    /// Bytes of segment and cover files fetched.
    pub bytes: u64,
    /// Why not, when `stored` is false.
    pub error: Option<String>,
}

/// The peer ID a replica's multiaddr ends with.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

/// Addresses a replica can fetch from: TCP and WebSocket listen addresses, not WebRTC-direct.
pub fn fetchable(addrs: &[Multiaddr]) -> Vec<String> {
    addrs
        .iter()
        .filter(|a| !a.iter().any(|p| matches!(p, Protocol::WebRTCDirect | Protocol::Udp(_))))
        .take(MAX_FROM_ADDRS)
        .map(ToString::to_string)
        .collect()
}

/// What a replica accepts from the nodes that ask it to keep their tracks.
#[derive(Debug, Clone)]
pub struct PullPolicy {
    /// The only peers whose requests are taken.
    pub origins: Arc<HashSet<PeerId>>,
    /// Largest track (segments and cover, as declared) pulled.
    pub max_track_bytes: u64,
    /// Replication stops growing the store past this many bytes.
    pub quota_bytes: u64,
    /// Longest one pull may take.
    pub timeout: Duration,
    /// Where pulled blocks wait (as a CAR) until they are stored in one transaction.
    pub spool_dir: PathBuf,
}

impl PullPolicy {
    /// The policy `[replication]` describes; pulls spool under `data_dir`.
    pub fn new(settings: &config::Replication, data_dir: &Path) -> Self {
        Self {
            origins: Arc::new(settings.origins.iter().copied().collect()),
            max_track_bytes: settings.max_track_bytes,
            quota_bytes: settings.quota_bytes,
            timeout: Duration::from_secs(settings.pull_timeout_secs),
            spool_dir: data_dir.join(SPOOL_DIR),
        }
    }
}

/// Where pulls spool, inside the data directory; emptied when the node starts.
pub const SPOOL_DIR: &str = "spool/replication";

/// The answer a refused or failed request gets: the same words whatever went wrong, so that
/// the asker learns nothing about this node's network or store (the log here has the reason).
pub fn not_stored() -> ReplicateResponse {
    ReplicateResponse { stored: false, blocks: 0, bytes: 0, error: Some("not stored".into()) }
}

/// `addr` if it is a TCP or WebSocket address of `origin` itself: an IP or DNS host, a TCP
/// port, at most a root `/ws`, and `/p2p/<origin>` at the end (so the handshake proves who
/// answers).
fn origin_addr(addr: &str, origin: PeerId) -> Option<Multiaddr> {
    let parsed: Multiaddr = addr.parse().ok()?;
    let protocols: Vec<Protocol<'_>> = parsed.iter().collect();
    let host = |p: &Protocol<'_>| {
        matches!(p, Protocol::Ip4(_) | Protocol::Ip6(_) | Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_))
    };
    let ok = match protocols.as_slice() {
        [h, Protocol::Tcp(_), Protocol::P2p(p)] => host(h) && *p == origin,
        [h, Protocol::Tcp(_), Protocol::Ws(path), Protocol::P2p(p)] => host(h) && path == "/" && *p == origin,
        _ => false,
    };
    ok.then_some(parsed)
}

/// Removes a spool file when dropped: a pull that fails, times out or is stored leaves none.
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// On a replica: when `asker` is one of the policy's origins, fetches `request.track` from it
/// (only from it, only at its own addresses) within the policy's bounds, and stores it all or
/// nothing. Returns the response to send.
pub async fn pull(
    store: Store,
    catalog: Arc<Catalog>,
    policy: PullPolicy,
    asker: PeerId,
    request: ReplicateRequest,
) -> ReplicateResponse {
    if !policy.origins.contains(&asker) {
        tracing::info!(%asker, "refused a replication request: the peer is not one of this node's origins");
        return not_stored();
    }
    let track = match Cid::try_from(request.track.as_slice()) {
        Ok(cid) if cid.codec() == DAG_CBOR => cid,
        _ => {
            tracing::info!(%asker, "refused a replication request: the track is not a dag-cbor CID");
            return not_stored();
        }
    };
    if catalog.has_track(&track) {
        return ReplicateResponse { stored: true, blocks: 0, bytes: 0, error: None };
    }
    let addrs: Vec<Multiaddr> =
        request.from.iter().take(MAX_FROM_ADDRS).filter_map(|a| origin_addr(a, asker)).collect();
    let started = Instant::now();
    match tokio::time::timeout(policy.timeout, pull_from(&store, &catalog, &policy, track, &addrs)).await {
        Ok(Ok(fetched)) => {
            tracing::info!(%track, %asker, blocks = fetched.blocks, bytes = fetched.bytes,
                ms = started.elapsed().as_millis() as u64, "replicated a track");
            ReplicateResponse { stored: true, blocks: fetched.blocks, bytes: fetched.bytes, error: None }
        }
        Ok(Err(e)) => {
            tracing::warn!(%track, %asker, error = format!("{e:#}"), "could not replicate a track");
            not_stored()
        }
        Err(_) => {
            tracing::warn!(%track, %asker, timeout = ?policy.timeout, "replicating a track took too long; gave up");
            not_stored()
        }
    }
}

/// Fetches `track` from the first of `addrs` that answers into a spool file, then stores the
/// spool in one transaction on a blocking thread: no write transaction is open while the
/// network is waited on.
async fn pull_from(
    store: &Store,
    catalog: &Arc<Catalog>,
    policy: &PullPolicy,
    track: Cid,
    addrs: &[Multiaddr],
) -> anyhow::Result<Fetched> {
    let mut last = anyhow::anyhow!("the request named no address of the origin");
    for addr in addrs {
        let (client, peer) = match crate::fetch::connect(addr.clone()).await {
            Ok(c) => c,
            Err(e) => {
                last = e.context(format!("cannot connect to {addr}"));
                continue;
            }
        };
        let room = policy.quota_bytes.saturating_sub(store.file_bytes());
        let max_bytes = policy.max_track_bytes.min(room);
        std::fs::create_dir_all(&policy.spool_dir)?;
        let spool = SpoolFile(policy.spool_dir.join(format!("{}.car", rand::random::<u64>())));
        let mut writer = CarWriter::new(BufWriter::new(File::create(&spool.0)?), &[track])?;
        let keep = |block: &Block| writer.write_block(block).map_err(SinkError::Spool);
        let sinks = Sinks { keep, progress: |_, _| {}, max_bytes };
        let fetched = match crate::fetch::fetch(&client, peer, track, &mut std::io::sink(), sinks).await {
            Ok(f) => f,
            Err(e) => {
                last = anyhow::Error::new(e).context(format!("fetching from {addr} failed"));
                continue;
            }
        };
        writer.finish()?.flush()?;
        let Some(manifest) = fetched.manifest.clone() else {
            anyhow::bail!("{track} is not a track manifest");
        };
        let store = store.clone();
        let path = spool.0.clone();
        let now = crate::unix_now();
        // The catalog learns of the track on the same thread that stores it: a pull that
        // times out while the transaction commits still leaves the two in agreement.
        let catalog = catalog.clone();
        tokio::task::spawn_blocking(move || {
            crate::content::import_car(&store, &path, now)?;
            catalog.add(track, manifest, now);
            Ok::<_, crate::content::ContentError>(())
        })
        .await??;
        drop(spool);
        return Ok(fetched);
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_origins_own_tcp_and_websocket_addresses_are_dialled() {
        let (origin, other) = (PeerId::random(), PeerId::random());
        let ok = |a: &str| origin_addr(&format!("{a}/p2p/{origin}"), origin).is_some();
        assert!(ok("/ip4/10.0.0.2/tcp/4001"));
        assert!(ok("/dns4/node-a.example.org/tcp/4002/ws"));
        assert!(ok("/ip6/::1/tcp/4001"));
        // Another peer's address, no peer ID, a WebSocket path, a relayed or UDP address.
        assert!(origin_addr(&format!("/ip4/10.0.0.2/tcp/4001/p2p/{other}"), origin).is_none());
        assert!(origin_addr("/ip4/10.0.0.2/tcp/4001", origin).is_none());
        assert!(!ok("/ip4/10.0.0.2/tcp/80/x-parity-ws/%2Fadmin"));
        assert!(!ok(&format!("/ip4/10.0.0.3/tcp/4001/p2p/{other}/p2p-circuit")));
        assert!(!ok("/ip4/10.0.0.2/udp/4003/quic-v1"));
        assert!(origin_addr("not an address", origin).is_none());
    }

    #[test]
    fn only_tcp_and_websocket_addresses_are_offered() {
        let addrs: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/127.0.0.1/tcp/4002/ws",
            "/ip4/127.0.0.1/udp/4003/webrtc-direct/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert_eq!(fetchable(&addrs), vec!["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/tcp/4002/ws"]);
    }
}
