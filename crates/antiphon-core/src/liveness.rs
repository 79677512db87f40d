//! Closing WebRTC connections whose other end has gone.
//!
//! Neither libp2p-webrtc (the node's side) nor libp2p-webrtc-websys (the browser's) reports a
//! peer connection that was closed or lost: the connection, its dead data channels and its
//! slot under the connection limits would stay, and a browser would never learn that its
//! creator node went away. Each WebRTC connection must therefore answer a ping now and then;
//! one that has not for [`DEAD_AFTER`] is closed. Every libp2p peer here (creator nodes,
//! Antiphon's and Helia's browser peers) answers ping. A failed ping negotiation is how a closed
//! connection often shows: when pings had succeeded on the connection it is closed at once,
//! otherwise it stays watched (a peer that closed before its first pong must not be exempted).

use std::collections::HashMap;
use std::time::Duration;

use web_time::Instant;

use libp2p::Multiaddr;
use libp2p::core::upgrade::NegotiationError;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;

/// How often each connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// How long one ping may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A watched connection without a successful ping for this long is dead: three pings missed.
pub const DEAD_AFTER: Duration = Duration::from_secs(15);

/// Whether a connection must be watched, given its address (`transport::connection_addr`): a
/// WebRTC connection, WebRTC-direct to a node or `/webrtc` between browsers, whose end nothing
/// else reports. WebSocket and TCP
/// connections report their own close, and a relayed connection ends with its relay's, so a
/// peer that does not answer ping is not dropped over them.
pub fn needs_watching(addr: &Multiaddr) -> bool {
    let mut relayed = false;
    for protocol in addr.iter() {
        match protocol {
            Protocol::WebRTC => return true,
            Protocol::P2pCircuit => relayed = true,
            _ => {}
        }
    }
    !relayed && addr.iter().any(|p| matches!(p, Protocol::WebRTCDirect))
}

/// Whether a ping failure is the remote refusing the ping protocol, seen late. A peer that
/// opens its streams without waiting for multistream-select's answer (`Version::V1Lazy`) learns
/// that the remote does not speak ping only when it reads the answer: libp2p-ping then reports
/// an I/O error wrapping [`NegotiationError::Failed`] instead of `Failure::Unsupported`.
pub fn ping_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .and_then(|e| e.get_ref())
        .and_then(|inner| inner.downcast_ref::<NegotiationError>())
        .is_some_and(|e| matches!(e, NegotiationError::Failed))
}

/// The watched connections and when each last proved alive.
#[derive(Default)]
pub struct Liveness {
    /// When each connection last proved alive, and whether a ping ever succeeded on it.
    last_alive: HashMap<ConnectionId, (Instant, bool)>,
}

impl Liveness {
    /// Starts watching a connection (its establishment counts as proof of life).
    pub fn watch(&mut self, connection: ConnectionId, now: Instant) {
        self.last_alive.insert(connection, (now, false));
    }

    /// A ping on `connection` succeeded.
    pub fn alive(&mut self, connection: ConnectionId, now: Instant) {
        if let Some(entry) = self.last_alive.get_mut(&connection) {
            *entry = (now, true);
        }
    }

    /// Ping could not be negotiated on `connection`. Returns whether to close it now: yes when
    /// pings succeeded on it before (the connection broke); otherwise it stays watched and is
    /// dead [`DEAD_AFTER`] after it was opened.
    pub fn unsupported(&mut self, connection: ConnectionId) -> bool {
        match self.last_alive.get(&connection) {
            Some((_, true)) => {
                self.last_alive.remove(&connection);
                true
            }
            _ => false,
        }
    }

    /// Stops watching `connection`: it closed.
    pub fn forget(&mut self, connection: ConnectionId) {
        self.last_alive.remove(&connection);
    }

    /// Connections silent for [`DEAD_AFTER`]; they are forgotten as they are returned.
    pub fn dead(&mut self, now: Instant) -> Vec<ConnectionId> {
        let dead: Vec<ConnectionId> = self
            .last_alive
            .iter()
            .filter(|(_, (t, _))| now.saturating_duration_since(*t) >= DEAD_AFTER)
            .map(|(c, _)| *c)
            .collect();
        for c in &dead {
            self.last_alive.remove(c);
        }
        dead
    }

    /// How many connections are watched.
    pub fn watched(&self) -> usize {
        self.last_alive.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webrtc_connections_are_watched() {
        let watched = |s: &str| needs_watching(&s.parse().unwrap());
        let node = "/ip4/10.0.0.1/udp/4003/webrtc-direct/certhash/uEiDm3cr12rOhOoixpZwJ1tMmKZejq2lK1xFUuts8MSpYGQ/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let browser = "12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8";
        assert!(watched(node), "WebRTC-direct to a node");
        assert!(watched(&format!("{node}/p2p-circuit/webrtc/p2p/{browser}")), "a browser dialled over /webrtc");
        assert!(watched(&format!("/webrtc/p2p/{browser}")), "a browser that dialled this one");
        assert!(watched("/webrtc"), "the /webrtc listener's own address");
        assert!(!watched("/ip4/10.0.0.1/tcp/4002/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"));
        assert!(!watched("/ip4/10.0.0.1/tcp/4001"));
        assert!(!watched(&format!("{node}/p2p-circuit/p2p/{browser}")), "relayed through a WebRTC-direct node");
    }

    #[test]
    fn a_refusal_seen_late_is_told_from_other_ping_errors() {
        let refused = std::io::Error::other(NegotiationError::Failed);
        assert!(ping_refused(&refused));
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(!ping_refused(&reset));
        let other = std::io::Error::other("something else");
        assert!(!ping_refused(&other));
        let malformed = std::io::Error::other(NegotiationError::ProtocolError(
            libp2p::core::upgrade::ProtocolError::InvalidMessage,
        ));
        assert!(!ping_refused(&malformed));
    }

    #[test]
    fn a_connection_is_dead_only_after_missing_pings_for_the_whole_period() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let (a, b) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        l.watch(a, t0);
        l.watch(b, t0);
        l.alive(a, t0 + PING_INTERVAL);
        assert!(l.dead(t0 + DEAD_AFTER - Duration::from_millis(1)).is_empty());
        // b never answered; a answered 5 s in, so it has 5 s left.
        assert_eq!(l.dead(t0 + DEAD_AFTER), vec![b]);
        assert_eq!(l.watched(), 1, "a dead connection is reported once");
        assert_eq!(l.dead(t0 + PING_INTERVAL + DEAD_AFTER), vec![a]);
        assert_eq!(l.watched(), 0);
    }

    #[test]
    fn failed_negotiation_closes_at_once_only_if_ping_worked_before() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let (browser, no_ping) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        l.watch(browser, t0);
        l.watch(no_ping, t0);
        l.alive(browser, t0);
        assert!(l.unsupported(browser), "ping worked, then failed: broken");
        assert!(!l.unsupported(no_ping), "no pong yet: not closed at once");
        assert_eq!(l.watched(), 1);
        assert_eq!(l.dead(t0 + DEAD_AFTER), vec![no_ping], "but never exempted");
    }

    #[test]
    fn forgotten_and_unknown_connections_are_never_reported() {
        let mut l = Liveness::default();
        let t0 = Instant::now();
        let (a, b) = (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2));
        l.watch(a, t0);
        l.forget(a);
        l.alive(b, t0);
        assert!(l.dead(t0 + DEAD_AFTER * 10).is_empty());
    }
}
