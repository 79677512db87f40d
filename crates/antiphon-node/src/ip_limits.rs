//! Connections per IP address: a `NetworkBehaviour` that refuses an incoming connection when
//! its remote IP already holds as many (handshaking or established) as allowed.
//!
//! rust-libp2p's connection limits count in total and per peer ID; peer IDs cost nothing to
//! make, so one address could otherwise take every handshake slot and every connection. The
//! count starts when a connection is accepted, before any handshake, and ends when the
//! connection closes or fails.
//!
//! [`CircuitStartsPerIp`] does the same for relay circuits, which the relay counts in total and
//! per peer ID only.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already holds {max} connections, the most one address may")]
pub struct TooManyFromIp {
    /// The address.
    pub ip: IpAddr,
    /// The limit.
    pub max: usize,
}

/// The behaviour; see the module documentation.
pub struct Behaviour {
    max_per_ip: usize,
    by_connection: HashMap<ConnectionId, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The IP address a multiaddr starts with, if any.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

impl Behaviour {
    /// Allows at most `max_per_ip` connections from one address.
    pub fn new(max_per_ip: usize) -> Self {
        Self { max_per_ip, by_connection: HashMap::new(), per_ip: HashMap::new() }
    }

    /// Connections held from `ip` now.
    pub fn count(&self, ip: &IpAddr) -> usize {
        self.per_ip.get(ip).copied().unwrap_or(0)
    }

    fn release(&mut self, connection: ConnectionId) {
        let Some(ip) = self.by_connection.remove(&connection) else { return };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote_addr) else { return Ok(()) };
        let held = self.per_ip.entry(ip).or_insert(0);
        if *held >= self.max_per_ip {
            return Err(ConnectionDenied::new(TooManyFromIp { ip, max: self.max_per_ip }));
        }
        *held += 1;
        self.by_connection.insert(connection_id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(e) => self.release(e.connection_id),
            FromSwarm::ListenFailure(e) => self.release(e.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

/// Relay circuits per IP address: a source address may start at most `max` circuits within
/// any window as long as a circuit may last, so it never holds more than `max` at once.
///
/// Plugged into the relay as a circuit rate limiter, it needs no word of circuits closing (the
/// relay tells its limiters nothing of that): a circuit outlives its window never. The price is
/// that an address whose circuits end early waits for the window before starting more.
pub struct CircuitStartsPerIp {
    max: usize,
    window: Duration,
    starts: HashMap<IpAddr, VecDeque<Instant>>,
    calls: u32,
}

impl CircuitStartsPerIp {
    /// At most `max` circuit starts per address within `window` (the longest a circuit lasts).
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max, window, starts: HashMap::new(), calls: 0 }
    }

    /// Whether `ip` may start a circuit at `now`; if so, the start is counted.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let window = self.window;
        let live = |start: &Instant| now.saturating_duration_since(*start) < window;
        // Forget addresses whose starts have all aged out, now and then (each holds at most
        // `max` instants, and every call is one circuit request from a connected peer).
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(256) {
            self.starts.retain(|_, s| s.back().is_some_and(live));
        }
        let starts = self.starts.entry(ip).or_default();
        while starts.front().is_some_and(|s| !live(s)) {
            starts.pop_front();
        }
        if starts.len() >= self.max {
            return false;
        }
        starts.push_back(now);
        true
    }
}

impl libp2p::relay::RateLimiter for CircuitStartsPerIp {
    fn try_next(&mut self, _peer: PeerId, addr: &Multiaddr, now: Instant) -> bool {
        // A source with no IP in its address (a relayed or memory connection) is not counted.
        ip_of(addr).is_none_or(|ip| self.allow(ip, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_starts_are_capped_per_address_within_the_window() {
        let window = Duration::from_secs(120);
        let mut limits = CircuitStartsPerIp::new(2, window);
        let (attacker, honest) = ("10.0.0.9".parse().unwrap(), "10.0.0.7".parse().unwrap());
        let t0 = Instant::now();
        assert!(limits.allow(attacker, t0));
        assert!(limits.allow(attacker, t0 + Duration::from_secs(1)));
        assert!(!limits.allow(attacker, t0 + Duration::from_secs(2)), "a third circuit inside the window");
        assert!(limits.allow(honest, t0 + Duration::from_secs(2)), "another address is not affected");
        // The first start ages out: one more, not two.
        assert!(limits.allow(attacker, t0 + window));
        assert!(!limits.allow(attacker, t0 + window));
        // Addresses with nothing in the window are forgotten.
        for _ in 0..256 {
            limits.allow(honest, t0 + 3 * window);
        }
        assert_eq!(limits.starts.len(), 1, "only the address still in its window is kept");
    }

    #[test]
    fn one_address_is_capped_and_others_are_not_affected() {
        let mut limits = Behaviour::new(2);
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let attacker: Multiaddr = "/ip4/10.0.0.9/tcp/5000".parse().unwrap();
        let honest: Multiaddr = "/ip4/10.0.0.7/udp/5000/webrtc-direct".parse().unwrap();
        let (a, b, c) =
            (ConnectionId::new_unchecked(1), ConnectionId::new_unchecked(2), ConnectionId::new_unchecked(3));
        assert!(limits.handle_pending_inbound_connection(a, &local, &attacker).is_ok());
        assert!(limits.handle_pending_inbound_connection(b, &local, &attacker).is_ok());
        assert!(limits.handle_pending_inbound_connection(c, &local, &attacker).is_err());
        assert!(limits.handle_pending_inbound_connection(c, &local, &honest).is_ok());
        // A handshake that fails gives its slot back.
        limits.release(a);
        assert_eq!(limits.count(&ip_of(&attacker).unwrap()), 1);
        let d = ConnectionId::new_unchecked(4);
        assert!(limits.handle_pending_inbound_connection(d, &local, &attacker).is_ok());
        limits.release(b);
        limits.release(d);
        limits.release(c);
        assert!(limits.per_ip.is_empty() && limits.by_connection.is_empty());
    }
}
