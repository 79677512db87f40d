//! The node's HTTP API (axum): `GET /peer`, `GET /tracks`, `GET /tracks/{cid}`, and the demo
//! page.

use std::path::PathBuf;

use antiphon_core::Cid;
use antiphon_core::TrackManifest;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::watch;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;

use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The node's peer ID.
    pub peer_id: PeerId,
    /// Its current listen addresses.
    pub addrs: watch::Receiver<Vec<Multiaddr>>,
    /// The store.
    pub store: Store,
}

#[derive(Serialize)]
struct PeerInfo {
    peer_id: String,
    multiaddrs: Vec<String>,
}

#[derive(Serialize)]
struct TrackInfo {
    cid: String,
    title: Option<String>,
    artist: Option<String>,
    codec: String,
    duration_secs: f64,
    segments: usize,
    added_unix: u64,
}

async fn peer(State(state): State<AppState>) -> Json<PeerInfo> {
    let multiaddrs = state.addrs.borrow().iter().map(ToString::to_string).collect();
    Json(PeerInfo { peer_id: state.peer_id.to_string(), multiaddrs })
}

async fn tracks(State(state): State<AppState>) -> Response {
    let list = || -> anyhow::Result<Vec<TrackInfo>> {
        let mut out = Vec::new();
        for (cid, added_unix) in state.store.tracks()? {
            let Some(bytes) = state.store.block(&cid)? else { continue };
            let m = TrackManifest::decode(&bytes)?;
            out.push(TrackInfo {
                cid: cid.to_string(),
                duration_secs: m.duration_secs(),
                segments: m.segments.len(),
                title: m.title,
                artist: m.artist,
                codec: m.codec,
                added_unix,
            });
        }
        Ok(out)
    };
    match list() {
        Ok(list) => Json(list).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "listing tracks failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "listing tracks failed").into_response()
        }
    }
}

#[derive(Serialize)]
struct SegmentInfo {
    cid: String,
    bytes: u64,
    samples: u64,
}

#[derive(Serialize)]
struct ManifestInfo {
    cid: String,
    version: u64,
    codec: String,
    sample_rate: u32,
    channels: u32,
    total_samples: u64,
    duration_secs: f64,
    title: Option<String>,
    artist: Option<String>,
    segments: Vec<SegmentInfo>,
}

async fn track(State(state): State<AppState>, Path(cid): Path<String>) -> Response {
    let Ok(cid) = cid.parse::<Cid>() else {
        return (StatusCode::BAD_REQUEST, "not a CID").into_response();
    };
    let bytes = match state.store.block(&cid) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such track").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading a manifest failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "store read failed").into_response();
        }
    };
    match TrackManifest::decode(&bytes) {
        Ok(m) => Json(ManifestInfo {
            cid: cid.to_string(),
            version: m.version,
            duration_secs: m.duration_secs(),
            codec: m.codec,
            sample_rate: m.sample_rate,
            channels: m.channels,
            total_samples: m.total_samples,
            title: m.title,
            artist: m.artist,
            segments: m
                .segments
                .into_iter()
                .map(|s| SegmentInfo { cid: s.cid.to_string(), bytes: s.bytes, samples: s.samples })
                .collect(),
        })
        .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "that CID is not a track manifest").into_response(),
    }
}

/// The router: the API, and the static files of `www` (the built demo page) when given.
pub fn router(state: AppState, www: Option<PathBuf>) -> Router {
    let api = Router::new()
        .route("/peer", get(peer))
        .route("/tracks", get(tracks))
        .route("/tracks/{cid}", get(track))
        .with_state(state);
    let app = match www {
        Some(dir) => api.fallback_service(ServeDir::new(dir)),
        None => api,
    };
    app.layer(CorsLayer::permissive())
}
