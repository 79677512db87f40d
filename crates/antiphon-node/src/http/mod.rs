//! The node's HTTP API (axum), documented in `docs/http-api.md`:
//!
//! - [`gateway`]: the trustless gateway, `GET`/`HEAD /ipfs/{cid}[/path]`;
//! - [`tracks`]: `GET /tracks`, `GET /tracks/{cid}`, `GET /tracks/{cid}/playlist.m3u8`,
//!   `POST /tracks`;
//! - [`routing`]: delegated routing v1, `GET /routing/v1/providers/{cid}`;
//! - [`receipts`]: listeners' signed receipts, `POST /receipts`, `GET /receipts[/{peer}]`;
//! - [`www`]: the demo page's static files (`serve --www`), as the fallback;
//! - `GET /peer` and `GET /metrics` here.

pub mod gateway;
pub mod receipts;
pub mod routing;
pub mod tracks;
pub mod traversal;
pub mod www;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use antiphon_core::Cid;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tower_http::cors::{Any, CorsLayer};

use crate::config;
use crate::metrics::{Metrics, StoreGauges};
use crate::store::Store;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The node's peer ID.
    pub peer_id: PeerId,
    /// Its current listen addresses.
    pub addrs: watch::Receiver<Vec<Multiaddr>>,
    /// The HTTP API's own address, for provider records.
    pub http_addr: SocketAddr,
    /// The store.
    pub store: Store,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Uploaded tracks go here to be replicated.
    pub new_tracks: mpsc::Sender<Cid>,
    /// The configured replicas (multiaddrs ending in `/p2p/<peer id>`).
    pub replicas: Arc<Vec<Multiaddr>>,
    /// Upload settings.
    pub ingest: config::Ingest,
    /// Who may upload.
    pub uploads: UploadAccess,
    /// One permit per upload being ingested ([`config::Ingest::max_concurrent`]).
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    /// Where uploads are spooled before ingest.
    pub upload_dir: PathBuf,
    /// Browsers serving through this node (listed by the routing endpoint).
    pub browsers: Arc<crate::browsers::BrowserProviders>,
    /// The tracks held, decoded once.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// Listeners' signed receipts, credited per serving peer.
    pub ledger: crate::receipts::Ledger,
}

/// Who may `POST /tracks`. Whatever the mode, a request a browser marks as coming from another
/// site's page (`Origin`, `Sec-Fetch-Site`) is refused.
#[derive(Clone)]
pub enum UploadAccess {
    /// Whoever sends `Authorization: Bearer <token>`.
    Token(Arc<str>),
    /// No token is set and the API listens on loopback: requests addressed to a loopback host
    /// name (so a DNS-rebound name is refused) from no page or a page of that same origin.
    Loopback,
    /// No token is set and the API listens on another address: uploads are off.
    Off,
}

impl UploadAccess {
    /// The mode for a node whose API binds `addr` with `token` configured.
    pub fn new(token: Option<&str>, addr: SocketAddr) -> Self {
        match token {
            Some(t) if !t.is_empty() => Self::Token(t.into()),
            _ if addr.ip().is_loopback() => Self::Loopback,
            _ => Self::Off,
        }
    }
}

#[derive(Serialize)]
struct PeerInfo {
    peer_id: String,
    multiaddrs: Vec<String>,
}

async fn peer(State(state): State<AppState>) -> Json<PeerInfo> {
    let multiaddrs = state.addrs.borrow().iter().map(ToString::to_string).collect();
    Json(PeerInfo { peer_id: state.peer_id.to_string(), multiaddrs })
}

async fn metrics(State(state): State<AppState>) -> Response {
    let store = state.store.clone();
    let blocks = tokio::task::spawn_blocking(move || store.block_count()).await;
    let ledger = state.ledger.clone();
    let top = tokio::task::spawn_blocking(move || ledger.servers(crate::metrics::TOP_SERVERS)).await;
    let gauges = blocks.map(|b| {
        b.map(|blocks| StoreGauges {
            blocks,
            tracks: state.catalog.len() as u64,
            tracks_fully_replicated: state.catalog.fully_replicated(state.replicas.len()),
        })
    });
    match gauges {
        Ok(Ok(g)) => {
            let mut text = state.metrics.render(g);
            if let Ok(Ok(top)) = top {
                crate::metrics::render_top_servers(&mut text, &top);
            }
            let mut r = text.into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            r
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "store read failed").into_response(),
    }
}

/// The router: the API, and the static files of `www` (the built demo page) when given.
pub fn router(state: AppState, www: Option<PathBuf>) -> Router {
    let upload_limit = usize::try_from(state.ingest.max_upload_bytes).unwrap_or(usize::MAX);
    // Any page may read (the player fetches blocks, manifests and routing answers from other
    // origins); no page may write, but for receipts: other POSTs get no CORS grant, and
    // `tracks::upload` refuses requests browsers mark as cross-site.
    let read_only = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers(Any)
        .expose_headers(Any);
    let api = Router::new()
        .route("/peer", get(peer))
        .route("/metrics", get(metrics))
        .route("/tracks", get(tracks::list).post(tracks::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/tracks/{cid}", get(tracks::one))
        .route("/tracks/{cid}/playlist.m3u8", get(tracks::playlist))
        .route("/ipfs/{cid}", get(gateway::root))
        .route("/ipfs/{cid}/{*path}", get(gateway::with_path))
        .route("/routing/v1/providers/{cid}", get(routing::providers))
        .route("/receipts/{peer}", get(receipts::one))
        .with_state(state.clone())
        .layer(read_only.clone());
    // Receipts carry their own signatures: any page may post them.
    let receipts = Router::new()
        .route(
            "/receipts",
            get(receipts::list)
                .post(receipts::post)
                .layer(DefaultBodyLimit::max(antiphon_core::receipt::MAX_BATCH_BYTES)),
        )
        .with_state(state)
        .layer(read_only.clone().allow_methods([Method::GET, Method::HEAD, Method::POST]));
    let app = api.merge(receipts);
    match www {
        // A `.br` or `.gz` file beside a static file is sent instead to clients that accept
        // that encoding (`make www` writes them): the demo's wasm module is 1.4 MB, 0.5 MB in
        // brotli.
        Some(dir) => app.merge(www::router(dir).layer(read_only)),
        None => app,
    }
}
