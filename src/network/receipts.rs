//! Receipts this listener signs for blocks other browsers sent it (`docs/receipts.md`): each
//! verified block a browser peer delivered becomes a [`Receipt`] signed with this peer's libp2p
//! key, queued, and posted to a connected creator node's `POST /receipts` in batches.
//!
//! Bounded: at most [`MAX_PENDING`] receipts wait (the oldest are dropped and counted past
//! that), a batch holds at most [`MAX_RECEIPTS_PER_BATCH`], and a batch the node cannot be
//! reached for is retried at most [`ATTEMPTS`] times.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use antiphon_core::Cid;
use antiphon_core::receipt::{MAX_RECEIPTS_PER_BATCH, Receipt, ReceiptBatch};
use libp2p::PeerId;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::js::describe;

/// Most signed receipts waiting to be posted.
pub(crate) const MAX_PENDING: usize = 4096;
/// How long a receipt waits for others to share its batch.
const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Times a batch is posted before it is dropped.
const ATTEMPTS: u32 = 3;

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
        let mut outcome = Err(String::new());
        for _ in 0..ATTEMPTS {
            outcome = post(&url, &batch).await;
            if outcome.is_ok() {
                break;
            }
        }
        let Some(rc) = receipts.upgrade() else { return false };
        let mut r = rc.borrow_mut();
        match outcome {
            Ok(answer) => {
                r.counts.accepted += answer.accepted;
                r.counts.refused += answer.refused.len() as u64;
                if !answer.refused.is_empty() {
                    tracing::info!(refused = answer.refused.len(), %url, "the node refused receipts");
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

/// `POST {url}/receipts` with one batch.
async fn post(url: &str, batch: &[Vec<u8>]) -> Result<Answer, String> {
    let body = ReceiptBatch::new(batch.to_vec()).encode().map_err(|e| e.to_string())?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    let headers = web_sys::Headers::new().map_err(|e| describe(&e))?;
    headers.set("Content-Type", "application/vnd.ipld.dag-cbor").map_err(|e| describe(&e))?;
    init.set_headers(&headers);
    let bytes = js_sys::Uint8Array::from(body.as_slice());
    init.set_body(&bytes);
    let window: web_sys::Window = js_sys::global().dyn_into().map_err(|_| "no window object".to_string())?;
    let response = JsFuture::from(window.fetch_with_str_and_init(&format!("{url}/receipts"), &init))
        .await
        .map_err(|e| describe(&e))?;
    let response: web_sys::Response = response.dyn_into().map_err(|e| describe(&e))?;
    if !response.ok() {
        return Err(format!("status {}", response.status()));
    }
    let json = JsFuture::from(response.json().map_err(|e| describe(&e))?).await.map_err(|e| describe(&e))?;
    serde_wasm_bindgen::from_value(json).map_err(|e| format!("unexpected answer: {e}"))
}

/// Starts the flush loop of `receipts` for `network`'s first creator node reached over HTTP.
pub(crate) fn spawn_flush(receipts: &Rc<RefCell<Receipts>>, network: Weak<crate::network::session::Network>) {
    let weak = Rc::downgrade(receipts);
    wasm_bindgen_futures::spawn_local(flush_loop(weak, move || network.upgrade().and_then(|n| n.receipts_url())));
}
