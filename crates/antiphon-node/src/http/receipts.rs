//! Listeners' signed receipts (`docs/receipts.md`):
//!
//! - `POST /receipts`: a dag-cbor [`ReceiptBatch`]; the answer says which receipts were taken
//!   and why each other one was refused;
//! - `GET /receipts`: the servers credited, most bytes first (`?limit=`, default 100);
//! - `GET /receipts/{peer}`: one server's totals.
//!
//! Receipts carry their own authority (the listener's signature), so any page may post them.

use antiphon_core::receipt::{MAX_RECEIPTS_PER_BATCH, ReceiptBatch, ReceiptError};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::AppState;

/// Most servers one `GET /receipts` lists.
const MAX_LIMIT: usize = 1000;

/// One refused receipt of a batch.
#[derive(Serialize)]
struct Refused {
    /// Its place in the batch.
    index: usize,
    /// [`crate::receipts::Refusal::kind`].
    kind: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct Answer {
    accepted: usize,
    refused: Vec<Refused>,
}

/// `POST /receipts`.
pub async fn post(State(state): State<AppState>, body: Bytes) -> Response {
    let batch = match ReceiptBatch::decode(&body) {
        Ok(b) => b,
        Err(e @ (ReceiptError::BatchTooLarge { .. } | ReceiptError::TooManyReceipts { .. })) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    debug_assert!(batch.receipts.len() <= MAX_RECEIPTS_PER_BATCH);
    let ledger = state.ledger.clone();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let recorded = tokio::task::spawn_blocking(move || {
        let envelopes: Vec<&[u8]> = batch.receipts.iter().map(|e| e.as_slice()).collect();
        ledger.record(&envelopes, now_ms)
    })
    .await;
    let results = match recorded {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "receipts not recorded");
            return (StatusCode::INTERNAL_SERVER_ERROR, "store write failed").into_response();
        }
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "receipts task failed").into_response(),
    };
    let mut answer = Answer { accepted: 0, refused: Vec::new() };
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(r) => {
                state.metrics.receipt_accepted(r.receipt.bytes);
                answer.accepted += 1;
            }
            Err(refusal) => {
                state.metrics.receipt_refused(refusal.kind());
                answer.refused.push(Refused { index, kind: refusal.kind(), reason: refusal.to_string() });
            }
        }
    }
    if !answer.refused.is_empty() {
        tracing::info!(accepted = answer.accepted, refused = answer.refused.len(), first = %answer.refused[0].reason, "receipts refused");
    }
    Json(answer).into_response()
}

/// `GET /receipts`'s query: `limit`, the most servers listed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
}

#[derive(Serialize)]
struct Servers {
    servers: Vec<crate::receipts::ServerTotal>,
}

/// `GET /receipts`.
pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).min(MAX_LIMIT);
    let ledger = state.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.servers(limit)).await {
        Ok(Ok(servers)) => Json(Servers { servers }).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "store read failed").into_response(),
    }
}

/// `GET /receipts/{peer}`.
pub async fn one(State(state): State<AppState>, Path(peer): Path<String>) -> Response {
    let Ok(peer) = peer.parse::<PeerId>() else {
        return (StatusCode::BAD_REQUEST, format!("{peer:?} is not a peer ID")).into_response();
    };
    let ledger = state.ledger.clone();
    match tokio::task::spawn_blocking(move || ledger.server(&peer)).await {
        Ok(Ok(Some(total))) => Json(total).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, format!("no receipt credits {peer}")).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "store read failed").into_response(),
    }
}
