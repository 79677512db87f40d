//! Per-connection pacing of what a WebRTC-direct connection sends.
//!
//! str0m's SCTP sends as much as its congestion window allows at once, and on a fast path that
//! window grows past what a browser's UDP socket buffers between two reads: the burst's tail is
//! lost and the stream waits out a retransmission timeout (the old listener's 1-4 s warm-start
//! stalls). So each connection's datagrams leave through a token bucket: a burst of at most
//! [`BURST`] bytes, then [`RATE`] bytes a second. Datagrams beyond wait in the connection's
//! queue (bounded: SCTP puts no more than its window in flight, and past [`MAX_QUEUED`] the
//! newest are dropped and counted, for SCTP to resend).
//!
//! Why these numbers: a burst of 64 KiB is a quarter of the smallest socket buffer a receiver
//! has by default (Linux's 208 KiB `rmem_default`), and 32 MB/s is twice the fastest a browser
//! peer has taken from the node (15.8 MB/s, BENCHMARKS.md) and 100 times a 320 kb/s stream, so
//! pacing never limits a listener, only how fast its bytes arrive back to back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bytes a connection may send back to back.
pub(crate) const BURST: f64 = 64.0 * 1024.0;
/// Bytes a second a connection may send after its burst.
pub(crate) const RATE: f64 = 32.0 * 1024.0 * 1024.0;
/// Bytes waiting to be sent past which new datagrams are dropped.
const MAX_QUEUED: usize = 4 * 1024 * 1024;

/// One connection's bucket and queue.
#[derive(Debug)]
pub(crate) struct Pacer {
    tokens: f64,
    last: Instant,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
    queued_bytes: usize,
}

/// What the pacer decided about one datagram.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Send it now.
    Now,
    /// It waits in the queue.
    Queued,
    /// The queue is full: it is dropped.
    Dropped,
}

impl Pacer {
    pub(crate) fn new(now: Instant) -> Self {
        Self { tokens: BURST, last: now, queue: VecDeque::new(), queued_bytes: 0 }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE).min(BURST);
        self.last = now;
    }

    /// Whether a datagram of `len` bytes to `to` goes now; if it does not, it is queued (or
    /// dropped) here.
    pub(crate) fn offer(&mut self, to: SocketAddr, datagram: &[u8], now: Instant) -> Pace {
        self.refill(now);
        let len = datagram.len() as f64;
        if self.queue.is_empty() && self.tokens >= len {
            self.tokens -= len;
            return Pace::Now;
        }
        if self.queued_bytes + datagram.len() > MAX_QUEUED {
            return Pace::Dropped;
        }
        self.queued_bytes += datagram.len();
        self.queue.push_back((to, datagram.to_vec()));
        Pace::Queued
    }

    /// The queued datagrams whose time has come, in order.
    pub(crate) fn release(&mut self, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        self.refill(now);
        let mut out = Vec::new();
        while let Some((_, front)) = self.queue.front() {
            let len = front.len() as f64;
            if self.tokens < len {
                break;
            }
            self.tokens -= len;
            let (to, datagram) = self.queue.pop_front().expect("a front");
            self.queued_bytes -= datagram.len();
            out.push((to, datagram));
        }
        out
    }

    /// When the next queued datagram may go, if one waits.
    pub(crate) fn next_release(&self) -> Option<Instant> {
        let (_, front) = self.queue.front()?;
        let missing = (front.len() as f64 - self.tokens).max(0.0);
        Some(self.last + Duration::from_secs_f64(missing / RATE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn a_burst_goes_at_once_and_the_rest_waits_for_its_tokens() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let datagram = vec![0u8; 1200];
        let at_once = (0..100).take_while(|_| pacer.offer(addr(), &datagram, t0) == Pace::Now).count();
        assert_eq!(at_once, (BURST / 1200.0) as usize, "the burst, no more");
        for _ in 0..10 {
            assert_eq!(pacer.offer(addr(), &datagram, t0), Pace::Queued, "behind the queue, even with tokens");
        }
        let next = pacer.next_release().unwrap();
        assert!(next > t0);
        assert!(pacer.release(t0).is_empty(), "nothing before its time");
        // After 1 ms, RATE/1000 bytes more have accrued: that many datagrams, in order.
        let later = t0 + Duration::from_millis(1);
        let released = pacer.release(later);
        let expected = ((RATE / 1000.0 + BURST - (at_once as f64 * 1200.0)) / 1200.0) as usize;
        assert_eq!(released.len(), expected.min(11));
    }

    #[test]
    fn the_queue_is_bounded() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0);
        let datagram = vec![0u8; 1200];
        let outcomes: Vec<Pace> = (0..5000).map(|_| pacer.offer(addr(), &datagram, t0)).collect();
        let dropped = outcomes.iter().filter(|o| **o == Pace::Dropped).count();
        assert!(dropped > 0);
        assert!(pacer.queued_bytes <= MAX_QUEUED);
    }
}
