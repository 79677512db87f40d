//! Browsers that serve: listeners' peers that hold a relay reservation on this node tell it,
//! over `/antiphon/provide/1.0.0`, which CIDs they hold and the address other browsers reach
//! them at (`<this node>/p2p-circuit/webrtc/p2p/<browser>`). The delegated-routing endpoint
//! then lists them as providers, so a later listener can connect to them directly.
//!
//! The table lives in memory and is bounded every way: browsers, CIDs per browser, providers
//! per answer; an entry ends when its browser disconnects or stops re-announcing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use antiphon_core::Cid;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

pub use antiphon_core::provide::{
    MAX_CIDS as MAX_CIDS_PER_BROWSER, MAX_REQUEST_BYTES, PROTOCOL, ProvideRequest, ProvideResponse,
};

/// Browsers the table holds; the one announced longest ago gives way to a new one.
const MAX_BROWSERS: usize = 1024;
/// Longest refusal reason sent back, in characters (at most 800 bytes): answers must fit the
/// browser's 1 KiB read bound.
pub const MAX_ERROR_CHARS: usize = 200;
/// Browsers listed for one CID at most, most recently announced first.
pub const MAX_PER_CID: usize = 16;
/// An announcement counts for this long; browsers re-announce well within it.
pub const TTL: Duration = Duration::from_secs(600);

struct Entry {
    addr: Multiaddr,
    cids: HashSet<Cid>,
    at: Instant,
}

/// The browsers serving through this node and what each holds.
#[derive(Default)]
pub struct BrowserProviders {
    entries: Mutex<HashMap<PeerId, Entry>>,
}

/// Checks that `addr` is `from`'s browser-to-browser address relayed by `node`.
fn check_addr(addr: &str, from: PeerId, node: PeerId) -> Result<Multiaddr, String> {
    let parsed: Multiaddr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    let protocols: Vec<Protocol<'_>> = parsed.iter().collect();
    match protocols.as_slice() {
        [.., Protocol::P2p(relay), Protocol::P2pCircuit, Protocol::WebRTC, Protocol::P2p(browser)]
            if *relay == node && *browser == from =>
        {
            Ok(parsed)
        }
        _ => Err(format!("address {addr:?} is not {from}'s browser address through this node")),
    }
}

impl BrowserProviders {
    /// Records what `from` announced, replacing its previous announcement.
    pub fn announce(
        &self,
        from: PeerId,
        node: PeerId,
        request: &ProvideRequest,
        now: Instant,
    ) -> Result<usize, String> {
        let addr = check_addr(&request.addr, from, node)?;
        if request.cids.len() > MAX_CIDS_PER_BROWSER {
            return Err(format!("{} CIDs announced, at most {MAX_CIDS_PER_BROWSER}", request.cids.len()));
        }
        let cids = request
            .cids
            .iter()
            .map(|c| c.parse::<Cid>().map_err(|e| format!("CID {c:?}: {e}")))
            .collect::<Result<HashSet<_>, _>>()?;
        let count = cids.len();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| now.duration_since(e.at) < TTL);
        if !entries.contains_key(&from)
            && entries.len() >= MAX_BROWSERS
            && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.at).map(|(p, _)| *p)
        {
            entries.remove(&oldest);
        }
        entries.insert(from, Entry { addr, cids, at: now });
        Ok(count)
    }

    /// Forgets `peer` (it disconnected).
    pub fn remove(&self, peer: &PeerId) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(peer);
    }

    /// Browsers that announced `cid` within [`TTL`], most recent first, at most
    /// [`MAX_PER_CID`]: (peer, address without its trailing `/p2p/<peer>`).
    pub fn providers(&self, cid: &Cid, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut found: Vec<(&PeerId, &Entry)> =
            entries.iter().filter(|(_, e)| now.duration_since(e.at) < TTL && e.cids.contains(cid)).collect();
        found.sort_by_key(|(_, e)| std::cmp::Reverse(e.at));
        found
            .into_iter()
            .take(MAX_PER_CID)
            .map(|(peer, e)| {
                let mut addr = e.addr.clone();
                addr.pop();
                (*peer, addr)
            })
            .collect()
    }

    /// Browsers in the table.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the table is empty.
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

    fn request(node: PeerId, browser: PeerId, cids: &[Cid]) -> ProvideRequest {
        ProvideRequest {
            addr: format!("/ip4/10.200.0.1/tcp/4002/ws/p2p/{node}/p2p-circuit/webrtc/p2p/{browser}"),
            cids: cids.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn announced_cids_are_listed_most_recent_first_and_expire() {
        let (node, a, b) = (PeerId::random(), PeerId::random(), PeerId::random());
        let table = BrowserProviders::default();
        let t0 = Instant::now();
        assert_eq!(table.announce(a, node, &request(node, a, &[cid(1), cid(2)]), t0), Ok(2));
        assert_eq!(table.announce(b, node, &request(node, b, &[cid(2)]), t0 + Duration::from_secs(1)), Ok(1));
        let two = table.providers(&cid(2), t0 + Duration::from_secs(2));
        assert_eq!(two.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![b, a]);
        // The address keeps the relay's /p2p and drops the browser's own.
        assert_eq!(two[0].1.to_string(), format!("/ip4/10.200.0.1/tcp/4002/ws/p2p/{node}/p2p-circuit/webrtc"));
        assert!(table.providers(&cid(3), t0).is_empty());
        // A new announcement replaces the old one.
        table.announce(a, node, &request(node, a, &[cid(3)]), t0 + Duration::from_secs(3)).unwrap();
        assert!(table.providers(&cid(1), t0 + Duration::from_secs(3)).is_empty());
        // Past the TTL nothing is listed; a disconnect forgets at once.
        assert!(table.providers(&cid(3), t0 + TTL + Duration::from_secs(4)).is_empty());
        table.remove(&a);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn bad_announcements_are_refused() {
        let (node, a, other) = (PeerId::random(), PeerId::random(), PeerId::random());
        let table = BrowserProviders::default();
        let now = Instant::now();
        // Someone else's address, another node's relay, not a browser address, junk.
        assert!(table.announce(a, node, &request(node, other, &[cid(1)]), now).is_err());
        assert!(table.announce(a, node, &request(other, a, &[cid(1)]), now).is_err());
        let plain = ProvideRequest { addr: format!("/ip4/10.200.0.1/tcp/4002/ws/p2p/{a}"), cids: vec![] };
        assert!(table.announce(a, node, &plain, now).is_err());
        let junk = ProvideRequest { addr: "not an address".into(), cids: vec![] };
        assert!(table.announce(a, node, &junk, now).is_err());
        // A bad CID, or too many.
        let mut bad = request(node, a, &[cid(1)]);
        bad.cids.push("bafy-not-a-cid".into());
        assert!(table.announce(a, node, &bad, now).unwrap_err().contains("bafy-not-a-cid"));
        let many: Vec<Cid> =
            (0..=MAX_CIDS_PER_BROWSER).map(|i| antiphon_core::block::cid_v1(0x55, &i.to_le_bytes())).collect();
        assert!(table.announce(a, node, &request(node, a, &many), now).is_err());
        assert!(table.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let node = PeerId::random();
        let table = BrowserProviders::default();
        let t0 = Instant::now();
        let first = PeerId::random();
        table.announce(first, node, &request(node, first, &[cid(1)]), t0).unwrap();
        for i in 0..MAX_BROWSERS {
            let p = PeerId::random();
            table.announce(p, node, &request(node, p, &[cid(1)]), t0 + Duration::from_millis(1 + i as u64)).unwrap();
        }
        assert_eq!(table.len(), MAX_BROWSERS);
        let listed = table.providers(&cid(1), t0 + Duration::from_secs(5));
        assert_eq!(listed.len(), MAX_PER_CID);
        assert!(!listed.iter().any(|(p, _)| *p == first), "the oldest gave way");
    }
}
