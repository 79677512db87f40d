//! Replication between creator nodes: a track lives in at least three places.
//!
//! After a track is stored, the node asks each replica in its configuration, over the small
//! request/response protocol [`PROTOCOL`], to pull it. The replica connects back to the
//! addresses in the request, fetches the manifest's whole DAG by Bitswap (TCP or WebSocket),
//! verifies every block, stores it in one transaction and answers; the origin records the
//! confirmation. Unconfirmed (track, replica) pairs are retried every `retry_secs`, so a
//! replica that was down catches up when it returns.

use std::time::{Duration, Instant};

use antiphon_core::Cid;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

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

/// On a replica: fetches `request.track` from the first address that answers and stores it,
/// all or nothing. Returns the response to send.
pub async fn pull(store: Store, request: ReplicateRequest) -> ReplicateResponse {
    let started = Instant::now();
    let failed = |error: String| ReplicateResponse { stored: false, blocks: 0, bytes: 0, error: Some(error) };
    let Ok(track) = Cid::try_from(request.track.as_slice()) else {
        return failed("the track is not a CID".into());
    };
    match store.has_track(&track) {
        Ok(true) => return ReplicateResponse { stored: true, blocks: 0, bytes: 0, error: None },
        Ok(false) => {}
        Err(e) => return failed(format!("store: {e}")),
    }
    let mut last_error = String::from("no address to fetch from");
    for addr in request.from.iter().take(MAX_FROM_ADDRS) {
        let Ok(addr) = addr.parse::<Multiaddr>() else { continue };
        let (client, peer) = match crate::fetch::connect(addr.clone()).await {
            Ok(c) => c,
            Err(e) => {
                last_error = format!("cannot connect to {addr}: {e:#}");
                continue;
            }
        };
        // The store's write transaction lives on a blocking thread for the whole fetch.
        let store = store.clone();
        let handle = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            let mut batch = store.batch()?;
            let fetched = handle.block_on(crate::fetch::fetch(
                &client,
                peer,
                track,
                &mut std::io::sink(),
                Some(&mut batch),
                &mut |_, _| {},
            ))?;
            if fetched.manifest.is_none() {
                anyhow::bail!("{track} is not a track manifest");
            }
            batch.add_track(&track, crate::unix_now())?;
            batch.commit()?;
            Ok(fetched)
        })
        .await;
        match result {
            Ok(Ok(fetched)) => {
                tracing::info!(%track, from = %addr, blocks = fetched.blocks, bytes = fetched.bytes,
                    ms = started.elapsed().as_millis() as u64, "replicated a track");
                return ReplicateResponse { stored: true, blocks: fetched.blocks, bytes: fetched.bytes, error: None };
            }
            Ok(Err(e)) => last_error = format!("fetching from {addr} failed: {e:#}"),
            Err(e) => last_error = format!("the fetch task failed: {e}"),
        }
    }
    tracing::warn!(%track, error = %last_error, "could not replicate a track");
    failed(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

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
