//! Delegated routing v1 (read side): `GET /routing/v1/providers/{cid}` names the creator nodes
//! that hold a CID: this node when it has the block, and the replicas that confirmed a track
//! the CID belongs to (the track itself, a segment root or its cover), and the browsers that
//! announced it (`crate::browsers`), at their relayed `/webrtc` addresses.

use antiphon_core::{Cid, TrackManifest};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use super::AppState;
use crate::replication::peer_of;

/// Most provider records in one answer.
const MAX_PROVIDERS: usize = 32;

/// A provider record of the `peer` schema.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct PeerRecord {
    #[serde(rename = "Schema")]
    schema: &'static str,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Addrs")]
    addrs: Vec<String>,
    #[serde(rename = "Protocols")]
    protocols: Vec<&'static str>,
}

/// An address without its trailing `/p2p/<id>`, as records carry them.
fn without_p2p(addr: &Multiaddr) -> String {
    addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect::<Multiaddr>().to_string()
}

/// Whether `cid` is `track` or one of the files it links.
fn belongs_to(cid: &Cid, track: &Cid, manifest: &TrackManifest) -> bool {
    cid == track
        || manifest.segments.iter().any(|s| s.cid == *cid)
        || manifest.cover.as_ref().is_some_and(|c| c.cid == *cid)
}

/// `GET /routing/v1/providers/{cid}`: JSON (or NDJSON when asked) provider records, 404 when
/// none is known.
pub async fn providers(State(state): State<AppState>, Path(cid): Path<String>, headers: HeaderMap) -> Response {
    let Ok(cid) = cid.parse::<Cid>() else {
        return (StatusCode::BAD_REQUEST, format!("{cid:?} is not a valid CID")).into_response();
    };
    let store = state.store.clone();
    let replicas = state.replicas.clone();
    let own_addrs: Vec<Multiaddr> = state.addrs.borrow().clone();
    let own = state.peer_id;
    let http = state.http_addr;
    let browsers = state.browsers.providers(&cid, std::time::Instant::now());
    let found = tokio::task::spawn_blocking(move || -> Result<Vec<PeerRecord>, crate::store::StoreError> {
        let mut records = Vec::new();
        if store.block(&cid)?.is_some() {
            let mut addrs: Vec<String> = own_addrs.iter().map(without_p2p).collect();
            let ip = match http.ip() {
                std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
                std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
            };
            addrs.push(format!("{ip}/tcp/{}/http", http.port()));
            records.push(PeerRecord {
                schema: "peer",
                id: own.to_string(),
                addrs,
                protocols: vec!["transport-bitswap", "transport-ipfs-gateway-http"],
            });
        }
        // Replicas that confirmed a track this CID belongs to.
        let mut holders: Vec<PeerId> = Vec::new();
        for (track, _) in store.tracks()? {
            let confirmed = store.replicas_of(&track)?;
            if confirmed.is_empty() {
                continue;
            }
            let Some(bytes) = store.block(&track)? else { continue };
            let Ok(manifest) = TrackManifest::decode(&bytes) else { continue };
            if !belongs_to(&cid, &track, &manifest) {
                continue;
            }
            for (peer, _) in confirmed {
                if let Ok(peer) = PeerId::from_bytes(&peer)
                    && !holders.contains(&peer)
                {
                    holders.push(peer);
                }
            }
        }
        for peer in holders.into_iter().take(MAX_PROVIDERS) {
            let addrs = replicas.iter().filter(|a| peer_of(a) == Some(peer)).map(without_p2p).collect::<Vec<_>>();
            records.push(PeerRecord {
                schema: "peer",
                id: peer.to_string(),
                addrs,
                protocols: vec!["transport-bitswap"],
            });
        }
        for (peer, addr) in browsers {
            records.push(PeerRecord {
                schema: "peer",
                id: peer.to_string(),
                addrs: vec![addr.to_string()],
                protocols: vec!["transport-bitswap"],
            });
        }
        Ok(records)
    })
    .await;
    let records = match found {
        Ok(Ok(r)) => r,
        _ => return (StatusCode::INTERNAL_SERVER_ERROR, "store read failed").into_response(),
    };
    if records.is_empty() {
        return (StatusCode::NOT_FOUND, "no provider known for this CID").into_response();
    }
    let ndjson =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("application/x-ndjson"));
    let (body, content_type) = if ndjson {
        let lines: Vec<String> = records.iter().filter_map(|r| serde_json::to_string(r).ok()).collect();
        (lines.join("\n") + "\n", "application/x-ndjson")
    } else {
        (serde_json::json!({ "Providers": records }).to_string(), "application/json")
    };
    let mut r = body.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=15"));
    r
}
