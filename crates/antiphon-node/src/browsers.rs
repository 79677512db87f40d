//! Browsers that serve: listeners' peers that hold a relay reservation on this node tell it,
//! over `/antiphon/provide/1.0.0`, which CIDs they hold. The delegated-routing endpoint then
//! lists them as providers at addresses this node builds itself from its own listen addresses
//! (`<this node>/p2p-circuit/webrtc`), so a later listener can connect to them directly.
//!
//! Nothing a browser says about where it is reached is taken: the address is always this
//! node's relay. A browser is listed only while its reservation lives, only for CIDs of tracks
//! this node holds, and reservations are capped per IP address. Answers favour browsers that
//! have been serving longest (half the slots), then draw at random among the rest, so fresh
//! identities cannot crowd out the browsers that serve. Bounded every way: reservations,
//! browsers, CIDs per browser, providers per answer; an entry ends when its browser
//! disconnects, its reservation ends, or it stops re-announcing.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use antiphon_core::Cid;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use rand::seq::SliceRandom;

pub use antiphon_core::provide::{
    MAX_CIDS as MAX_CIDS_PER_BROWSER, MAX_REQUEST_BYTES, PROTOCOL, ProvideRequest, ProvideResponse,
};

/// Browsers the table holds; once full, newcomers wait until an entry ends.
const MAX_BROWSERS: usize = 1024;
/// Longest refusal reason sent back, in characters (at most 800 bytes): answers must fit the
/// browser's 1 KiB read bound.
pub const MAX_ERROR_CHARS: usize = 200;
/// Browsers listed for one CID at most.
pub const MAX_PER_CID: usize = 16;
/// An announcement counts for this long; browsers re-announce well within it.
pub const TTL: Duration = Duration::from_secs(600);

struct Entry {
    cids: HashSet<Cid>,
    /// When the browser first announced during its reservation: how long it has served.
    since: Instant,
    /// Its latest announcement.
    at: Instant,
}

#[derive(Default)]
struct Table {
    /// Peers holding a reservation on this node's relay, with the address they connect from.
    reserved: HashMap<PeerId, Option<IpAddr>>,
    entries: HashMap<PeerId, Entry>,
}

/// The browsers serving through this node and what each holds.
pub struct BrowserProviders {
    max_reservations_per_ip: usize,
    table: Mutex<Table>,
}

impl Default for BrowserProviders {
    fn default() -> Self {
        Self::new(crate::config::Relay::default().max_reservations_per_ip)
    }
}

/// The addresses at which browsers reach a browser relayed by this node: each of the node's
/// own addresses a browser can dial (WebRTC-direct, WebSocket), then `/p2p-circuit/webrtc`.
pub fn relayed_addrs(own: &[Multiaddr]) -> Vec<Multiaddr> {
    let dialable =
        |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::WebRTCDirect | Protocol::Ws(_) | Protocol::Wss(_)));
    let mut out: Vec<Multiaddr> = own.iter().filter(|a| dialable(a)).cloned().collect();
    // WebRTC-direct first: the transport browsers try first.
    out.sort_by_key(|a| !a.iter().any(|p| matches!(p, Protocol::WebRTCDirect)));
    out.into_iter().map(|a| a.with(Protocol::P2pCircuit).with(Protocol::WebRTC)).collect()
}

impl BrowserProviders {
    /// A table allowing `max_reservations_per_ip` reservations from one IP address.
    pub fn new(max_reservations_per_ip: usize) -> Self {
        Self { max_reservations_per_ip, table: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every change leaves the maps consistent before it could panic.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `peer`, connected from `ip`, holds a reservation. `false` when `ip` already
    /// holds as many as allowed: the caller then closes the peer's connections.
    pub fn reserved(&self, peer: PeerId, ip: Option<IpAddr>) -> bool {
        let mut table = self.lock();
        if let Some(ip) = ip
            && !table.reserved.contains_key(&peer)
            && table.reserved.values().filter(|i| **i == Some(ip)).count() >= self.max_reservations_per_ip
        {
            return false;
        }
        table.reserved.insert(peer, ip);
        true
    }

    /// Forgets `peer` (its reservation ended or it disconnected).
    pub fn remove(&self, peer: &PeerId) {
        let mut table = self.lock();
        table.reserved.remove(peer);
        table.entries.remove(peer);
    }

    /// Records what `from` announced, replacing its previous announcement; only CIDs `holds`
    /// accepts are kept. Returns how many were.
    pub fn announce(
        &self,
        from: PeerId,
        request: &ProvideRequest,
        holds: impl Fn(&Cid) -> bool,
        now: Instant,
    ) -> Result<usize, String> {
        if request.cids.len() > MAX_CIDS_PER_BROWSER {
            return Err(format!("{} CIDs announced, at most {MAX_CIDS_PER_BROWSER}", request.cids.len()));
        }
        let cids = request
            .cids
            .iter()
            .map(|c| c.parse::<Cid>().map_err(|e| format!("CID {c:?}: {e}")))
            .collect::<Result<HashSet<_>, _>>()?;
        let cids: HashSet<Cid> = cids.into_iter().filter(|c| holds(c)).collect();
        let count = cids.len();
        let mut table = self.lock();
        if !table.reserved.contains_key(&from) {
            return Err("no relay reservation on this node: reserve first, then announce".into());
        }
        table.entries.retain(|_, e| now.duration_since(e.at) < TTL);
        let since = match table.entries.get(&from) {
            Some(e) => e.since,
            None if table.entries.len() >= MAX_BROWSERS => {
                return Err("this node lists as many browsers as it can; try again later".into());
            }
            None => now,
        };
        if cids.is_empty() {
            table.entries.remove(&from);
        } else {
            table.entries.insert(from, Entry { cids, since, at: now });
        }
        Ok(count)
    }

    /// At most [`MAX_PER_CID`] browsers that hold `cid` now, with the addresses to reach them
    /// through this node (`own`: its listen addresses with `/p2p/<id>`): the half that have
    /// served longest, the rest drawn at random, in random order.
    pub fn providers(&self, cid: &Cid, own: &[Multiaddr], now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let addrs = relayed_addrs(own);
        if addrs.is_empty() {
            return Vec::new();
        }
        let table = self.lock();
        let mut live: Vec<(PeerId, Instant)> = table
            .entries
            .iter()
            .filter(|(p, e)| table.reserved.contains_key(*p) && now.duration_since(e.at) < TTL && e.cids.contains(cid))
            .map(|(p, e)| (*p, e.since))
            .collect();
        drop(table);
        let mut rng = rand::rng();
        live.sort_by_key(|(p, since)| (*since, p.to_bytes()));
        let veterans = live.len().min(MAX_PER_CID / 2);
        let mut rest = live.split_off(veterans);
        rest.shuffle(&mut rng);
        live.extend(rest.into_iter().take(MAX_PER_CID - veterans));
        live.shuffle(&mut rng);
        live.into_iter().map(|(peer, _)| (peer, addrs.clone())).collect()
    }

    /// Browsers listed.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no browser is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        antiphon_core::block::cid_v1(0x55, &[n])
    }

    fn request(cids: &[Cid]) -> ProvideRequest {
        // Whatever address a browser claims is ignored.
        ProvideRequest {
            addr: "/dns4/evil.example/tcp/443/wss".into(),
            cids: cids.iter().map(ToString::to_string).collect(),
        }
    }

    fn node_addrs(node: PeerId) -> Vec<Multiaddr> {
        [
            "/ip4/10.200.0.1/tcp/4001",
            "/ip4/10.200.0.1/tcp/4002/ws",
            "/ip4/10.200.0.1/udp/4003/webrtc-direct/certhash/uEiDDq4_xNyDorZBH3TlGazyJdOWSwvo4PUo5YHFMrvDE8g",
        ]
        .iter()
        .map(|a| a.parse::<Multiaddr>().unwrap().with(Protocol::P2p(node)))
        .collect()
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    fn any(_: &Cid) -> bool {
        true
    }

    #[test]
    fn the_node_names_its_own_relay_whatever_the_browser_claims() {
        let (node, a) = (PeerId::random(), PeerId::random());
        let table = BrowserProviders::new(8);
        let t0 = Instant::now();
        assert!(table.reserved(a, ip(1)));
        assert_eq!(table.announce(a, &request(&[cid(1), cid(2)]), any, t0), Ok(2));
        let listed = table.providers(&cid(2), &node_addrs(node), t0);
        assert_eq!(listed.len(), 1);
        let addrs: Vec<String> = listed[0].1.iter().map(ToString::to_string).collect();
        assert_eq!(addrs.len(), 2, "WebRTC-direct and WebSocket, not TCP: {addrs:?}");
        assert!(addrs[0].contains("/webrtc-direct/") && addrs[1].contains("/ws/"), "{addrs:?}");
        assert!(
            addrs
                .iter()
                .all(|a| a.starts_with("/ip4/10.200.0.1/") && a.ends_with(&format!("/p2p/{node}/p2p-circuit/webrtc")))
        );
        assert!(!addrs.iter().any(|a| a.contains("evil")));
        // Past the TTL nothing is listed; a new announcement replaces the old one.
        assert!(table.providers(&cid(2), &node_addrs(node), t0 + TTL).is_empty());
        table.announce(a, &request(&[cid(3)]), any, t0 + Duration::from_secs(1)).unwrap();
        assert!(table.providers(&cid(1), &node_addrs(node), t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn claims_need_a_live_reservation_and_a_track_held_here() {
        let (node, a) = (PeerId::random(), PeerId::random());
        let table = BrowserProviders::new(8);
        let now = Instant::now();
        assert!(table.announce(a, &request(&[cid(1)]), any, now).unwrap_err().contains("reservation"));
        assert!(table.reserved(a, ip(1)));
        // Only CIDs of tracks this node holds are kept.
        let held = |c: &Cid| *c == cid(1);
        assert_eq!(table.announce(a, &request(&[cid(1), cid(9)]), held, now), Ok(1));
        assert!(table.providers(&cid(9), &node_addrs(node), now).is_empty());
        assert_eq!(table.providers(&cid(1), &node_addrs(node), now).len(), 1);
        // The reservation ends: the browser is no longer listed, and may not announce again.
        table.remove(&a);
        assert!(table.providers(&cid(1), &node_addrs(node), now).is_empty());
        assert!(table.announce(a, &request(&[cid(1)]), any, now).is_err());
    }

    #[test]
    fn bad_announcements_are_refused() {
        let a = PeerId::random();
        let table = BrowserProviders::new(8);
        let now = Instant::now();
        table.reserved(a, ip(1));
        let mut bad = request(&[cid(1)]);
        bad.cids.push("bafy-not-a-cid".into());
        assert!(table.announce(a, &bad, any, now).unwrap_err().contains("bafy-not-a-cid"));
        let many: Vec<Cid> =
            (0..=MAX_CIDS_PER_BROWSER).map(|i| antiphon_core::block::cid_v1(0x55, &i.to_le_bytes())).collect();
        assert!(table.announce(a, &request(&many), any, now).is_err());
        assert!(table.is_empty());
    }

    #[test]
    fn one_address_holds_a_bounded_number_of_reservations() {
        let table = BrowserProviders::new(3);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        assert!(peers[..3].iter().all(|p| table.reserved(*p, ip(9))));
        assert!(!table.reserved(peers[3], ip(9)), "a fourth from the same address");
        assert!(table.reserved(peers[0], ip(9)), "a renewal is not a new reservation");
        assert!(table.reserved(peers[4], ip(8)), "another address is not affected");
        table.remove(&peers[1]);
        assert!(table.reserved(peers[3], ip(9)), "a slot freed is a slot taken");
    }

    /// 50 sybil identities against one browser that has served for a while: the honest one is
    /// in every answer, whether the sybils come from one address or from fifty.
    #[test]
    fn fresh_identities_cannot_crowd_out_a_browser_that_serves() {
        let node = PeerId::random();
        for sybil_ips in [1u8, 50] {
            let table = BrowserProviders::new(8);
            let t0 = Instant::now();
            let honest = PeerId::random();
            assert!(table.reserved(honest, ip(200)));
            table.announce(honest, &request(&[cid(1)]), any, t0).unwrap();
            let mut sybils = 0;
            for i in 0..50u8 {
                let sybil = PeerId::random();
                if table.reserved(sybil, ip(1 + i % sybil_ips)) {
                    sybils += 1;
                    // Re-announcing often changes nothing of who served longest.
                    for k in 0..3 {
                        table.announce(sybil, &request(&[cid(1)]), any, t0 + Duration::from_secs(60 + k)).unwrap();
                    }
                }
            }
            assert_eq!(sybils, if sybil_ips == 1 { 8 } else { 50 });
            for _ in 0..100 {
                let listed = table.providers(&cid(1), &node_addrs(node), t0 + Duration::from_secs(70));
                assert!(listed.len() <= MAX_PER_CID);
                assert!(listed.iter().any(|(p, _)| *p == honest), "the honest browser is listed");
            }
        }
    }

    #[test]
    fn the_table_is_bounded_and_full_means_newcomers_wait() {
        let node = PeerId::random();
        let table = BrowserProviders::new(usize::MAX);
        let t0 = Instant::now();
        let first = PeerId::random();
        table.reserved(first, None);
        table.announce(first, &request(&[cid(1)]), any, t0).unwrap();
        for i in 1..MAX_BROWSERS {
            let p = PeerId::random();
            table.reserved(p, None);
            table.announce(p, &request(&[cid(1)]), any, t0 + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(table.len(), MAX_BROWSERS);
        let late = PeerId::random();
        table.reserved(late, None);
        assert!(table.announce(late, &request(&[cid(1)]), any, t0 + Duration::from_secs(2)).is_err());
        let listed = table.providers(&cid(1), &node_addrs(node), t0 + Duration::from_secs(5));
        assert_eq!(listed.len(), MAX_PER_CID);
        assert!(listed.iter().any(|(p, _)| *p == first), "the longest-serving browser stays listed");
    }
}
