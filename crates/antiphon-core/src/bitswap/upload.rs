//! A serving peer's upload budget: how fast one peer may be sent blocks, and how many peers are
//! served at once. A listener's browser serves others from its own upload, which its user pays
//! for and its playback shares; the node has no budget.
//!
//! Each peer has a token bucket of one second's bytes. A block is sent whole, and it may leave
//! the bucket in debt, which is paid off before the peer is served again: over any stretch
//! longer than a second, a peer gets at most its rate. A peer counts as served while it has
//! been sent something in the last [`ACTIVE_FOR`]. A new peer that finds [`UploadBudget::max_peers`]
//! peers already served is told DONT_HAVE for the blocks it wants (Bitswap 1.2 has no "busy"),
//! so it asks elsewhere at once instead of waiting; its want-haves, which cost no upload, are
//! answered as usual.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use web_time::Instant;

/// A peer sent nothing for this long no longer counts as served.
pub const ACTIVE_FOR: Duration = Duration::from_secs(5);

/// The limits a serving peer puts on its upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadBudget {
    /// Bytes per second one peer may be sent, on average over a second or more.
    pub bytes_per_sec_per_peer: u64,
    /// Peers served at once.
    pub max_peers: usize,
}

impl Default for UploadBudget {
    /// 256 KiB/s per peer (2 Mbit/s, six times a 320 kb/s stream) to at most 4 peers: at most
    /// 8 Mbit/s of upload.
    fn default() -> Self {
        Self { bytes_per_sec_per_peer: 256 * 1024, max_peers: 4 }
    }
}

/// Whether a peer may be served now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it.
    Serve,
    /// Its bucket is in debt: serve it after this long.
    Wait(Duration),
    /// As many other peers are being served as the budget allows.
    Busy,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes it may be sent now; negative while in debt.
    tokens: f64,
    refilled: Instant,
    last_sent: Option<Instant>,
}

/// The budget's state: one bucket per peer served recently.
#[derive(Debug)]
pub(crate) struct Uploads {
    budget: UploadBudget,
    buckets: HashMap<PeerId, Bucket>,
}

impl Uploads {
    pub(crate) fn new(budget: UploadBudget) -> Self {
        Self { budget, buckets: HashMap::new() }
    }

    fn rate(&self) -> f64 {
        self.budget.bytes_per_sec_per_peer.max(1) as f64
    }

    fn is_active(bucket: &Bucket, now: Instant) -> bool {
        bucket.tokens < 0.0 || bucket.last_sent.is_some_and(|t| now.saturating_duration_since(t) < ACTIVE_FOR)
    }

    /// Whether `peer` may be served at `now`.
    pub(crate) fn admit(&mut self, peer: PeerId, now: Instant) -> Admission {
        let rate = self.rate();
        if !self.buckets.get(&peer).is_some_and(|b| Self::is_active(b, now)) {
            // Forget the peers no longer served, then see whether there is room for this one.
            self.buckets.retain(|_, b| Self::is_active(b, now));
            if self.buckets.len() >= self.budget.max_peers {
                return Admission::Busy;
            }
        }
        let bucket = self.buckets.entry(peer).or_insert(Bucket { tokens: rate, refilled: now, last_sent: None });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens > 0.0 {
            Admission::Serve
        } else {
            Admission::Wait(Duration::from_secs_f64((-bucket.tokens + 1.0) / rate))
        }
    }

    /// `peer` is about to be sent blocks: it holds its place from `now`, while they are read.
    pub(crate) fn reserve(&mut self, peer: PeerId, now: Instant) {
        if let Some(bucket) = self.buckets.get_mut(&peer) {
            bucket.last_sent = Some(now);
        }
    }

    /// Counts `bytes` sent to `peer` at `now`.
    pub(crate) fn sent(&mut self, peer: PeerId, bytes: usize, now: Instant) {
        let rate = self.rate();
        let bucket = self.buckets.entry(peer).or_insert(Bucket { tokens: rate, refilled: now, last_sent: None });
        bucket.tokens -= bytes as f64;
        bucket.last_sent = Some(now);
    }

    /// `peer` disconnected: it no longer takes a place.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn peer(i: u8) -> PeerId {
        PeerId::from_multihash(libp2p::multihash::Multihash::wrap(0, &[i; 8]).unwrap()).unwrap()
    }

    #[test]
    fn a_peer_gets_at_most_its_rate_over_time() {
        let budget = UploadBudget { bytes_per_sec_per_peer: 100_000, max_peers: 4 };
        let mut up = Uploads::new(budget);
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent = 0u64;
        // Ask every 10 ms for 10 s, sending a 40 kB block whenever allowed.
        for _ in 0..1000 {
            if up.admit(peer(1), now) == Admission::Serve {
                up.sent(peer(1), 40_000, now);
                sent += 40_000;
            }
            now += Duration::from_millis(10);
        }
        let secs = (now - t0).as_secs_f64();
        // The first second's burst, then the rate.
        assert!(sent as f64 <= 100_000.0 * (secs + 1.0) + 40_000.0, "{sent} bytes in {secs} s");
        assert!(sent as f64 >= 100_000.0 * (secs - 1.0), "{sent} bytes in {secs} s: the budget is used");
    }

    #[test]
    fn a_peer_in_debt_is_told_how_long_to_wait() {
        let mut up = Uploads::new(UploadBudget { bytes_per_sec_per_peer: 100_000, max_peers: 4 });
        let now = Instant::now();
        assert_eq!(up.admit(peer(1), now), Admission::Serve);
        up.sent(peer(1), 300_000, now);
        match up.admit(peer(1), now) {
            Admission::Wait(d) => assert!((1.9..2.1).contains(&d.as_secs_f64()), "{d:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(up.admit(peer(1), now + Duration::from_millis(2100)), Admission::Serve);
    }

    #[test]
    fn peers_beyond_the_cap_are_busy_until_one_goes_quiet() {
        let mut up = Uploads::new(UploadBudget { bytes_per_sec_per_peer: 1_000_000, max_peers: 2 });
        let now = Instant::now();
        for i in 1..=2 {
            assert_eq!(up.admit(peer(i), now), Admission::Serve);
            up.sent(peer(i), 1000, now);
        }
        assert_eq!(up.admit(peer(3), now), Admission::Busy);
        // A peer already served is still served.
        assert_eq!(up.admit(peer(1), now), Admission::Serve);
        // Peer 2 leaves: room for peer 3.
        up.forget(&peer(2));
        assert_eq!(up.admit(peer(3), now), Admission::Serve);
        up.sent(peer(3), 1000, now);
        // Everyone quiet for ACTIVE_FOR: room for new peers again.
        let later = now + ACTIVE_FOR + Duration::from_millis(1);
        assert_eq!(up.admit(peer(4), later), Admission::Serve);
        assert_eq!(up.admit(peer(5), later), Admission::Serve);
    }
}
