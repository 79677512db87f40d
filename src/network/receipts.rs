//! Receipts this listener signs for blocks other browsers sent it (`docs/receipts.md`): each
//! verified block a browser peer delivered becomes a [`Receipt`] signed with this peer's libp2p
//! key, queued, and posted to a connected creator node's `POST /receipts` in batches.
//!
//! Bounded: at most [`MAX_PENDING`] receipts wait (the oldest are dropped and counted past
//! that), a batch holds at most [`MAX_RECEIPTS_PER_BATCH`], and a batch the node cannot be
//! reached for (or answers with a 5xx) is posted at most [`ATTEMPTS`] times, [`RETRY_AFTER`]
//! apart; one the node refuses is not posted again.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use antiphon_core::Cid;
use antiphon_core::receipt::{MAX_RECEIPTS_PER_BATCH, Receipt, ReceiptBatch};
use libp2p::PeerId;
use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::js::describe;

/// Most signed receipts waiting to be posted.
pub(crate) const MAX_PENDING: usize = 4096;
/// How long a receipt waits for others to share its batch.
const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Times a batch is posted before it is dropped.
const ATTEMPTS: u32 = 3;
/// Most bytes of the node's answer to a batch read: its count and one entry (index, kind,
/// reason) per refused receipt, at most [`antiphon_core::receipt::MAX_RECEIPTS_PER_BATCH`].
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// The pause before posting a batch again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What became of this peer's receipts (`stats().receipts`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReceiptCounts {
    /// Signed.
    pub(crate) signed: u64,
    /// Taken by a node.
    pub(crate) accepted: u64,
    /// Refused by a node.
    pub(crate) refused: u64,
    /// Dropped unsent: the queue was full, or no node took the batch.
    pub(crate) dropped: u64,
    /// Waiting to be posted.
    pub(crate) pending: u64,
    /// Time spent signing, in milliseconds.
    pub(crate) sign_ms: f64,
}

/// The listener's receipts: key, session, counter, queue.
pub(crate) struct Receipts {
    key: libp2p::identity::Keypair,
    listener: Vec<u8>,
    session: u64,
    seq: u64,
    pending: VecDeque<Vec<u8>>,
    counts: ReceiptCounts,
    /// A flush loop is running.
    flushing: bool,
    /// Receipts are off (`Peer.start({ receipts: false })`).
    off: bool,
}

impl Receipts {
    /// Receipts signed with `key`; none when `on` is false.
    pub(crate) fn new(key: libp2p::identity::Keypair, on: bool) -> Self {
        // Two draws of 52 random bits: the session only has to differ from this key's others.
        let session = ((js_sys::Math::random() * f64::from(u32::MAX)) as u64) << 32
            | (js_sys::Math::random() * f64::from(u32::MAX)) as u64;
        Self {
            listener: key.public().to_peer_id().to_bytes(),
            key,
            session,
            seq: 0,
            pending: VecDeque::new(),
            counts: ReceiptCounts::default(),
            flushing: false,
            off: !on,
        }
    }

    /// What became of the receipts so far.
    pub(crate) fn counts(&self) -> ReceiptCounts {
        ReceiptCounts { pending: self.pending.len() as u64, ..self.counts }
    }

    /// Signs a receipt for `bytes` of `block` (of `track`) that `server` sent and this peer
    /// verified, and queues it; `true` when a flush loop should be started.
    pub(crate) fn sign(&mut self, block: Cid, bytes: usize, server: PeerId, track: Cid) -> bool {
        if self.off {
            return false;
        }
        self.seq += 1;
        let receipt = Receipt {
            block,
            bytes: bytes as u64,
            server: server.to_bytes(),
            listener: self.listener.clone(),
            track,
            at: js_sys::Date::now() as u64,
            session: self.session,
            seq: self.seq,
        };
        let started = web_time::Instant::now();
        match receipt.sign(&self.key) {
            Ok(envelope) => {
                self.counts.sign_ms += started.elapsed().as_secs_f64() * 1000.0;
                self.counts.signed += 1;
                if self.pending.len() >= MAX_PENDING {
                    self.pending.pop_front();
                    self.counts.dropped += 1;
                }
                self.pending.push_back(envelope);
            }
            Err(e) => tracing::warn!(error = %e, "could not sign a receipt"),
        }
        let start = !self.flushing;
        self.flushing = true;
        start
    }

    /// The next batch to post, oldest first.
    fn next_batch(&mut self) -> Vec<Vec<u8>> {
        let n = self.pending.len().min(MAX_RECEIPTS_PER_BATCH);
        self.pending.drain(..n).collect()
    }
}

/// A node's answer to `POST /receipts`: only what is counted.
#[derive(Deserialize)]
struct Answer {
    accepted: u64,
    refused: Vec<serde::de::IgnoredAny>,
}

/// Posts the queued receipts of `receipts` to the node at `node_url()` every [`FLUSH_EVERY`]
/// until the queue is empty; holds them weakly, so a dropped peer stops it.
pub(crate) async fn flush_loop(receipts: Weak<RefCell<Receipts>>, node_url: impl Fn() -> Option<String>) {
    loop {
        futures_timer::Delay::new(FLUSH_EVERY).await;
        if !flush_once(&receipts, &node_url).await {
            return;
        }
    }
}

/// Posts everything queued now, batch by batch; `false` when nothing is left to post (the loop
/// then ends, and the next receipt starts another).
pub(crate) async fn flush_once(receipts: &Weak<RefCell<Receipts>>, node_url: &impl Fn() -> Option<String>) -> bool {
    loop {
        let Some(rc) = receipts.upgrade() else { return false };
        let batch = rc.borrow_mut().next_batch();
        if batch.is_empty() {
            rc.borrow_mut().flushing = false;
            return false;
        }
        drop(rc);
        let Some(url) = node_url() else {
            // No creator node over HTTP now: keep them for later.
            return requeue(receipts, batch);
        };
        let mut outcome = post(&url, &batch).await;
        for _ in 1..ATTEMPTS {
            match &outcome {
                Err(e) if e.is_transient() => {
                    futures_timer::Delay::new(RETRY_AFTER).await;
                    outcome = post(&url, &batch).await;
                }
                _ => break,
            }
        }
        let Some(rc) = receipts.upgrade() else { return false };
        let mut r = rc.borrow_mut();
        match outcome {
            Ok(answer) => {
                // The node's word, kept within what was sent.
                let sent = batch.len() as u64;
                let accepted = answer.accepted.min(sent);
                let refused = (answer.refused.len() as u64).min(sent - accepted);
                r.counts.accepted += accepted;
                r.counts.refused += refused;
                if refused > 0 {
                    tracing::info!(refused, %url, "the node refused receipts");
                }
            }
            Err(e) => {
                tracing::info!(%url, error = %e, receipts = batch.len(), "receipts not delivered; dropped");
                r.counts.dropped += batch.len() as u64;
            }
        }
    }
}

/// Puts an unsent batch back at the front of the queue; `true`: try again later.
fn requeue(receipts: &Weak<RefCell<Receipts>>, batch: Vec<Vec<u8>>) -> bool {
    let Some(rc) = receipts.upgrade() else { return false };
    let mut r = rc.borrow_mut();
    for envelope in batch.into_iter().rev() {
        if r.pending.len() >= MAX_PENDING {
            r.counts.dropped += 1;
        } else {
            r.pending.push_front(envelope);
        }
    }
    true
}

/// Why a batch was not delivered.
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// The batch could not be encoded.
    #[error("could not encode the batch: {0}")]
    Encode(#[from] antiphon_core::receipt::ReceiptError),
    /// The request did not reach the node or its answer did not come back whole.
    #[error("request failed: {0}")]
    Network(String),
    /// The node answered with an error status.
    #[error("status {0}")]
    Status(u16),
    /// The node's answer is not the expected JSON.
    #[error("unexpected answer: {0}")]
    Answer(String),
}

impl PostError {
    /// Whether posting the same batch again may go better: not after the node refused it
    /// (a 4xx) or answered nonsense, since it would again.
    fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) => true,
            Self::Status(status) => *status >= 500,
            Self::Encode(_) | Self::Answer(_) => false,
        }
    }
}

/// `POST {url}/receipts` with one batch.
async fn post(url: &str, batch: &[Vec<u8>]) -> Result<Answer, PostError> {
    let network = |e: JsValue| PostError::Network(describe(&e));
    let body = ReceiptBatch::new(batch.to_vec()).encode()?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new().map_err(network)?;
    headers.set("Content-Type", "application/vnd.ipld.dag-cbor").map_err(network)?;
    init.set_headers(&headers);
    let bytes = js_sys::Uint8Array::from(body.as_slice());
    init.set_body(&bytes);
    let window: web_sys::Window =
        js_sys::global().dyn_into().map_err(|_| PostError::Network("no window object".into()))?;
    let response =
        JsFuture::from(window.fetch_with_str_and_init(&format!("{url}/receipts"), &init)).await.map_err(network)?;
    let response: web_sys::Response = response.dyn_into().map_err(network)?;
    if !response.ok() {
        return Err(PostError::Status(response.status()));
    }
    crate::js::json_body(&response, MAX_ANSWER_BYTES).await.map_err(|e| PostError::Answer(e.to_string()))
}

/// Starts the flush loop of `receipts` for `network`'s first creator node reached over HTTP.
pub(crate) fn spawn_flush(receipts: &Rc<RefCell<Receipts>>, network: Weak<crate::network::session::Network>) {
    let weak = Rc::downgrade(receipts);
    wasm_bindgen_futures::spawn_local(flush_loop(weak, move || network.upgrade().and_then(|n| n.receipts_url())));
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::PostError;

    #[test]
    fn only_a_batch_that_may_fare_better_is_posted_again() {
        assert!(PostError::Network("connection refused".into()).is_transient());
        assert!(PostError::Status(503).is_transient());
        for refused in [PostError::Status(400), PostError::Status(413), PostError::Answer("not JSON".into())] {
            assert!(!refused.is_transient(), "{refused}");
        }
    }
}
