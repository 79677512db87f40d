//! Delegated routing v1 (read side): `GET /routing/v1/providers/{cid}` names the creator nodes
//! that hold a CID: this node when it has the block, and the replicas that confirmed a track
//! the CID belongs to (the track itself, a segment root or its cover), and the browsers that
//! announced it (`crate::browsers`), at their relayed `/webrtc` addresses.

use antiphon_core::Cid;
use antiphon_core::bitswap::Blockstore;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
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

/// `GET /routing/v1/providers/{cid}`: JSON (or NDJSON when asked) provider records, 404 when
/// none is known.
pub async fn providers(State(state): State<AppState>, Path(cid): Path<String>, headers: HeaderMap) -> Response {
    let Ok(cid) = cid.parse::<Cid>() else {
        return (StatusCode::BAD_REQUEST, format!("{cid:?} is not a valid CID")).into_response();
    };
    let own_addrs: Vec<Multiaddr> = state.addrs.borrow().clone();
    // A track's files are known from the catalog; any other block (`antiphon-node add`) needs
    // a look in the store, off this worker.
    let stored = state.catalog.holds(&cid) || {
        let store = state.store.clone();
        match tokio::task::spawn_blocking(move || store.has(&cid)).await {
            Ok(Ok(has)) => has,
            _ => return (StatusCode::INTERNAL_SERVER_ERROR, "store read failed").into_response(),
        }
    };
    let mut records = Vec::new();
    if stored {
        let mut addrs: Vec<String> = own_addrs.iter().map(without_p2p).collect();
        let http = state.http_addr;
        let ip = match http.ip() {
            std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
            std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
        };
        addrs.push(format!("{ip}/tcp/{}/http", http.port()));
        records.push(PeerRecord {
            schema: "peer",
            id: state.peer_id.to_string(),
            addrs,
            protocols: vec!["transport-bitswap", "transport-ipfs-gateway-http"],
        });
    }
    // Replicas that confirmed a track this CID belongs to.
    for peer in state.catalog.holders(&cid).into_iter().take(MAX_PROVIDERS) {
        let addrs = state.replicas.iter().filter(|a| peer_of(a) == Some(peer)).map(without_p2p).collect::<Vec<_>>();
        records.push(PeerRecord { schema: "peer", id: peer.to_string(), addrs, protocols: vec!["transport-bitswap"] });
    }
    for (peer, addrs) in state.browsers.providers(&cid, &own_addrs, std::time::Instant::now()) {
        records.push(PeerRecord {
            schema: "peer",
            id: peer.to_string(),
            addrs: addrs.iter().map(ToString::to_string).collect(),
            protocols: vec!["transport-bitswap"],
        });
    }
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
