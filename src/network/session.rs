//! What a peer shares with its players: the network task's handle, the creator nodes dialled
//! and connected, the browsers connected directly, and serving: the relay reservation and the
//! announcements of what this peer holds. `api::peer` makes it; `api::player` reads it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;

use futures::StreamExt;
use futures::channel::mpsc;

use crate::error::{Error, NodeFailure};
use crate::network::dial::{DialPlan, NodeLink, dial_node, resolve};
use crate::network::receipts::{Receipts, spawn_flush};
use crate::network::swarm::NetHandle;

/// How a peer serves other browsers (`Peer.start`'s `serve`, `receipts` and `upload`).
pub(crate) struct Serving {
    /// Serve verified blocks to other browsers.
    pub(crate) on: bool,
    /// Sign receipts for blocks other browsers sent.
    pub(crate) receipts: bool,
    /// What this peer uploads at most.
    pub(crate) upload: antiphon_core::bitswap::UploadBudget,
}

/// Where one configured creator node stands.
pub(crate) enum NodeState {
    Dialling,
    Connected(NodeLink),
    Failed(Error),
    /// The peer was closed.
    Closed,
}

/// What a peer shares with its players: the network task, the creator nodes connected so far
/// (in the order they connected; more may join while a track plays) and the gateways.
pub(crate) struct Network {
    pub(crate) net: NetHandle,
    pub(crate) connected: RefCell<Vec<NodeLink>>,
    pub(crate) gateways: Vec<String>,
    /// By configured index.
    pub(crate) states: RefCell<Vec<(String, NodeState)>>,
    /// Other browsers connected directly, in the order they connected; an entry whose
    /// connection closed is dropped at the next look (`prune_browsers`).
    pub(crate) browsers: RefCell<Vec<BrowserLink>>,
    /// Where other browsers reach this one, once a creator node holds a reservation for it.
    pub(crate) addresses: RefCell<Vec<String>>,
    /// Why serving is off or failed, if it is.
    pub(crate) serving_error: RefCell<Option<String>>,
    /// What this peer holds and announces, oldest first.
    pub(crate) held: RefCell<crate::network::announce::Held>,
    /// Until when a player is starting playback (see [`Network::starting`]).
    pub(crate) starting_until: std::cell::Cell<Option<web_time::Instant>>,
    /// Lookups of browsers that hold a track, begun and not finished
    /// ([`Network::discover_once_started`]).
    discoveries: std::cell::Cell<u32>,
    /// When browsers were last looked up again after every one had left.
    looked_up_again: std::cell::Cell<Option<web_time::Instant>>,
    /// Each dial reports here when it settles, until `first_connected` takes it.
    dials_settled: RefCell<Option<mpsc::Receiver<()>>>,
    /// Receipts for blocks other browsers sent, waiting to be posted to a creator node.
    pub(crate) receipts: Rc<RefCell<Receipts>>,
}

/// How often the announcer looks for something new to announce.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// The relay reservation waits this long after the first node connects, and then while a
/// player is starting: made at the same time as a load, it cost a warm start 50-100 ms
/// (BENCHMARKS.md).
const RESERVE_AFTER: Duration = Duration::from_secs(1);
/// How long a load counts as starting when no audio comes out.
const START_GRACE: Duration = Duration::from_secs(3);
/// The reservation waits for starting players at most this long after the first connection.
const RESERVE_AT_MOST_AFTER: Duration = Duration::from_secs(10);
/// Lookups made because every browser left are at least this far apart.
const LOOK_UP_AGAIN_AFTER: Duration = Duration::from_secs(10);
/// Browsers found through routing that one lookup connects to at most.
const DISCOVER_AT_MOST: usize = 3;
/// How often work waiting for a starting player looks again.
const STARTING_POLL: Duration = Duration::from_millis(50);

impl Network {
    /// Starts the network task and dials every node in `nodes` at once, each on its own task;
    /// the first to connect gets the relay reservation when `serve` is on.
    pub(crate) fn start(
        nodes: &[String],
        plan: DialPlan,
        gateways: Vec<String>,
        serving: Serving,
    ) -> Result<Rc<Self>, Error> {
        let Serving { on: serve, receipts, upload } = serving;
        // Each node's `/peer` request travels while the network is built (~20 ms on a cold page).
        let lookups: Vec<_> = nodes.iter().map(|target| resolve(target)).collect();
        let net = NetHandle::spawn(upload)?;
        let receipts = Rc::new(RefCell::new(Receipts::new(net.key().clone(), receipts)));
        let network = Rc::new(Network {
            net,
            connected: RefCell::new(Vec::new()),
            gateways,
            states: RefCell::new(nodes.iter().map(|t| (t.clone(), NodeState::Dialling)).collect()),
            browsers: RefCell::new(Vec::new()),
            addresses: RefCell::new(Vec::new()),
            serving_error: RefCell::new(None),
            held: RefCell::new(crate::network::announce::Held::default()),
            starting_until: std::cell::Cell::new(None),
            discoveries: std::cell::Cell::new(0),
            looked_up_again: std::cell::Cell::new(None),
            dials_settled: RefCell::new(None),
            receipts,
        });
        if !serve {
            *network.serving_error.borrow_mut() = Some("serving is off (serve: false)".into());
        }
        // Each dial reports here when it settles; the channel holds one slot per node.
        let (done_tx, done) = mpsc::channel::<()>(nodes.len().max(1));
        *network.dials_settled.borrow_mut() = Some(done);
        for ((i, target), lookup) in nodes.iter().enumerate().zip(lookups) {
            let (network, plan, target, mut done_tx) = (network.clone(), plan.clone(), target.clone(), done_tx.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = dial_node(&network.net, &target, lookup, &plan).await;
                let state = network.dialled(&target, outcome, serve);
                network.states.borrow_mut()[i].1 = state;
                let _ = done_tx.try_send(());
            });
        }
        Ok(network)
    }

    /// Where one node stands once its dial settled.
    fn dialled(self: &Rc<Self>, target: &str, outcome: Result<NodeLink, Error>, serve: bool) -> NodeState {
        match outcome {
            // Closed while this dial was on its way.
            _ if self.net.is_stopped() => NodeState::Closed,
            Ok(link) => {
                if serve && self.connected.borrow().is_empty() {
                    wasm_bindgen_futures::spawn_local(reserve(self.clone(), link.clone()));
                }
                self.connected.borrow_mut().push(link.clone());
                NodeState::Connected(link)
            }
            Err(e) => {
                tracing::warn!(%target, error = %e, "creator node unreachable");
                NodeState::Failed(e)
            }
        }
    }

    /// Waits until the first of `count` dials connects, or all have settled; with none
    /// connected and no gateway, closes the network and fails with every node's reason.
    pub(crate) async fn first_connected(&self, count: usize) -> Result<(), Error> {
        let done = self.dials_settled.borrow_mut().take();
        if let Some(mut done) = done {
            let mut settled = 0;
            while settled < count && self.connected.borrow().is_empty() {
                if done.next().await.is_none() {
                    break;
                }
                settled += 1;
            }
        }
        if !self.connected.borrow().is_empty() || !self.gateways.is_empty() {
            return Ok(());
        }
        let failures = self.failures();
        self.close().await;
        Err(Error::AllNodesFailed { failures })
    }

    /// Each configured node's failure, said once.
    fn failures(&self) -> Vec<NodeFailure> {
        self.states
            .borrow()
            .iter()
            .map(|(target, s)| {
                let (code, reason) = match s {
                    // A node's own dial error names the node already: keep only why.
                    NodeState::Failed(Error::DialFailed { reason, .. }) => ("DIAL_FAILED", reason.clone()),
                    NodeState::Failed(e) => (e.code().as_str(), e.to_string()),
                    _ => ("DIAL_FAILED", "not connected".into()),
                };
                NodeFailure { target: target.clone(), code, reason }
            })
            .collect()
    }

    /// Stops the network task and forgets every connection, so that nothing reads as
    /// connected afterwards.
    pub(crate) async fn close(&self) {
        self.net.close().await;
        self.connected.borrow_mut().clear();
        self.browsers.borrow_mut().clear();
        self.addresses.borrow_mut().clear();
        *self.serving_error.borrow_mut() = Some("the peer is closed".into());
        for (_, state) in self.states.borrow_mut().iter_mut() {
            if !matches!(state, NodeState::Failed(_)) {
                *state = NodeState::Closed;
            }
        }
    }

    /// Signs a receipt for `bytes` of `block` (of `track`) that the browser `server` sent and
    /// this peer verified; it is posted to a creator node with others within a few seconds.
    pub(crate) fn receipt(
        self: &Rc<Self>,
        block: antiphon_core::Cid,
        bytes: usize,
        server: libp2p::PeerId,
        track: antiphon_core::Cid,
    ) {
        if self.receipts.borrow_mut().sign(block, bytes, server, track) {
            spawn_flush(&self.receipts, Rc::downgrade(self));
        }
    }

    /// The first connected creator node given as an HTTP URL: where receipts are posted.
    pub(crate) fn receipts_url(&self) -> Option<String> {
        self.states
            .borrow()
            .iter()
            .find(|(t, s)| t.starts_with("http") && matches!(s, NodeState::Connected(_)))
            .map(|(t, _)| t.trim_end_matches('/').to_owned())
    }

    /// Records that this peer holds `cid` (verified), so that it is announced.
    pub(crate) fn hold(&self, cid: antiphon_core::Cid) {
        self.held.borrow_mut().hold(cid);
    }

    /// A player began loading (`true`) or played its first audio (`false`). Work that can
    /// wait, the relay reservation and the lookup of browsers, stays off the connection and the
    /// main thread meanwhile.
    pub(crate) fn starting(&self, yes: bool) {
        self.starting_until.set(yes.then(|| web_time::Instant::now() + START_GRACE));
    }

    /// Whether a player is starting playback now.
    fn is_starting(&self) -> bool {
        self.starting_until.get().is_some_and(|until| until > web_time::Instant::now())
    }

    /// Looks up browsers that hold `cid` (see [`Network::discover`]) once no player is starting,
    /// if none is connected by then: the lookup's answer and the dials it leads to would
    /// otherwise share the page's main thread with the first segment.
    pub(crate) fn discover_once_started(self: &Rc<Self>, cid: antiphon_core::Cid) {
        self.spawn_lookup(cid, true);
    }

    /// Every browser a player fetched from has left: looks up others that hold `cid`, unless
    /// a lookup is under way or one was made less than [`LOOK_UP_AGAIN_AFTER`] ago.
    pub(crate) fn look_up_again(self: &Rc<Self>, cid: antiphon_core::Cid) {
        let recent = self.looked_up_again.get().is_some_and(|at| at.elapsed() < LOOK_UP_AGAIN_AFTER);
        if self.discovering() || recent {
            return;
        }
        self.looked_up_again.set(Some(web_time::Instant::now()));
        self.spawn_lookup(cid, false);
    }

    /// Looks up browsers that hold `cid` (with `after_start`, once no player is starting) if
    /// none is connected by then; counted as under way ([`Network::discovering`]) from now
    /// until it ends.
    fn spawn_lookup(self: &Rc<Self>, cid: antiphon_core::Cid, after_start: bool) {
        let weak = Rc::downgrade(self);
        self.discoveries.set(self.discoveries.get() + 1);
        wasm_bindgen_futures::spawn_local(async move {
            if after_start && !while_starting(&weak, web_time::Instant::now() + START_GRACE).await {
                return;
            }
            let Some(network) = weak.upgrade() else { return };
            network.prune_browsers();
            if network.browsers.borrow().is_empty() {
                network.clone().discover(cid).await;
            }
            network.discoveries.set(network.discoveries.get().saturating_sub(1));
        });
    }

    /// Whether a lookup of browsers is under way: players then leave what can wait for the
    /// browsers it may find (`Scheduler::await_peers`).
    pub(crate) fn discovering(&self) -> bool {
        self.discoveries.get() > 0
    }

    /// Forgets the browsers whose connection has closed.
    pub(crate) fn prune_browsers(&self) {
        self.browsers.borrow_mut().retain(|b| self.net.is_connected(&b.peer));
    }

    /// Connects directly to the browser at `addr` unless already connected to it.
    pub(crate) async fn connect_browser(&self, addr: String) -> Result<libp2p::PeerId, Error> {
        self.prune_browsers();
        let parsed: libp2p::Multiaddr = addr.parse().map_err(|e: libp2p::multiaddr::Error| Error::InvalidAddress {
            input: addr.clone(),
            reason: e.to_string(),
        })?;
        let Some((_, peer)) = crate::network::webrtc::split_address(&parsed) else {
            return Err(Error::InvalidAddress {
                input: addr,
                reason: "not a browser address (.../p2p-circuit/webrtc/p2p/<id>)".into(),
            });
        };
        if self.browsers.borrow().iter().any(|b| b.peer == peer) {
            return Ok(peer);
        }
        if self.browsers.borrow().len() >= MAX_BROWSERS {
            return Err(Error::InvalidArgument {
                what: "addr".into(),
                reason: format!("already connected to {MAX_BROWSERS} browsers"),
            });
        }
        let peer = self.net.dial_browser(parsed).await.map_err(|e| match e {
            crate::network::swarm::NetError::Stopped => Error::Stopped,
            e => Error::DialFailed { target: addr.clone(), reason: e.to_string() },
        })?;
        if !self.browsers.borrow().iter().any(|b| b.peer == peer) {
            self.browsers.borrow_mut().push(BrowserLink { peer, addr });
        }
        Ok(peer)
    }

    /// Asks the creator nodes' delegated routing which browsers hold `cid`, and connects to a
    /// few of them; they become sources of every player as they connect.
    pub(crate) async fn discover(self: Rc<Self>, cid: antiphon_core::Cid) {
        self.prune_browsers();
        let me = self.net.local_peer_id().to_string();
        let urls: Vec<String> = self
            .states
            .borrow()
            .iter()
            .filter(|(t, s)| t.starts_with("http") && matches!(s, NodeState::Connected(_)))
            .map(|(t, _)| t.trim_end_matches('/').to_owned())
            .collect();
        let mut tried = 0;
        for url in urls {
            let found: Result<Providers, Error> =
                crate::js::fetch_json_fresh(&format!("{url}/routing/v1/providers/{cid}")).await;
            let found = match found {
                Ok(found) => found,
                Err(e) => {
                    tracing::info!(%url, %cid, error = %e, "no providers from this node");
                    continue;
                }
            };
            tracing::info!(%url, %cid, records = found.providers.len(), "providers");
            // In random order: the node's order is not the listener's to trust, and listeners
            // spread over the browsers that serve.
            let mut providers = found.providers;
            for i in (1..providers.len()).rev() {
                let j = ((js_sys::Math::random() * (i + 1) as f64) as usize).min(i);
                providers.swap(i, j);
            }
            for record in providers {
                if record.id == me || self.browsers.borrow().iter().any(|b| b.peer.to_string() == record.id) {
                    continue;
                }
                let Some(addr) = record.addrs.iter().find(|a| a.ends_with("/p2p-circuit/webrtc")) else { continue };
                if tried >= DISCOVER_AT_MOST {
                    return;
                }
                tried += 1;
                let full = format!("{addr}/p2p/{}", record.id);
                match self.connect_browser(full.clone()).await {
                    Ok(peer) => tracing::info!(%peer, %cid, "connected to a browser that holds the track"),
                    Err(e) => {
                        tracing::info!(addr = %full, error = %e, "could not connect to a browser the node listed")
                    }
                }
            }
        }
    }
}

/// A delegated-routing answer: only what discovery reads.
#[derive(Deserialize)]
struct Providers {
    #[serde(rename = "Providers", default)]
    providers: Vec<ProviderRecord>,
}

#[derive(Deserialize)]
struct ProviderRecord {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Addrs", default)]
    addrs: Vec<String>,
}

/// Another browser connected directly over WebRTC.
#[derive(Clone)]
pub(crate) struct BrowserLink {
    pub(crate) peer: libp2p::PeerId,
    pub(crate) addr: String,
}

/// Most browsers one peer connects to directly.
const MAX_BROWSERS: usize = 16;

/// Waits while a player of `network` is starting (see [`Network::starting`]), until `deadline`
/// at the latest; `false` when the network has gone meanwhile.
async fn while_starting(network: &std::rc::Weak<Network>, deadline: web_time::Instant) -> bool {
    loop {
        let Some(n) = network.upgrade() else { return false };
        if !n.is_starting() || web_time::Instant::now() >= deadline {
            return true;
        }
        drop(n);
        futures_timer::Delay::new(STARTING_POLL).await;
    }
}

/// Keeps this peer reachable by other browsers: reserves a relay slot on `node`, announces
/// what it holds there, and when that node goes away moves to the next connected node that
/// grants one (each node is tried once). Holds the network weakly, so a peer dropped without
/// `close()` still stops it.
pub(crate) async fn reserve(network: Rc<Network>, node: NodeLink) {
    let weak = Rc::downgrade(&network);
    drop(network);
    let give_up_waiting = web_time::Instant::now() + RESERVE_AT_MOST_AFTER;
    futures_timer::Delay::new(RESERVE_AFTER).await;
    if !while_starting(&weak, give_up_waiting).await {
        return;
    }
    let mut tried = vec![node.peer];
    let mut next = Some(node);
    while let Some(node) = next.take() {
        // A node that went away while the reservation waited is not dialled again for it.
        let connected = weak.upgrade().is_some_and(|n| n.net.is_connected(&node.peer));
        let ended = if connected { serve_through(&weak, &node).await } else { "not connected".into() };
        let Some(network) = weak.upgrade() else { return };
        if network.net.is_stopped() {
            return;
        }
        tracing::info!(node = %node.peer, reason = %ended, "relay reservation ended");
        network.addresses.borrow_mut().clear();
        next = network
            .connected
            .borrow()
            .iter()
            .find(|l| !tried.contains(&l.peer) && network.net.is_connected(&l.peer))
            .cloned();
        match &next {
            Some(link) => {
                tried.push(link.peer);
                network.held.borrow_mut().resend();
            }
            None => {
                *network.serving_error.borrow_mut() = Some(format!(
                    "the relay reservation on {} ended ({ended}) and no other node grants one",
                    node.peer
                ));
            }
        }
    }
}

/// Serves through one node's relay until the reservation ends; returns why it ended.
async fn serve_through(weak: &std::rc::Weak<Network>, node: &NodeLink) -> String {
    use futures::FutureExt;
    use libp2p::multiaddr::Protocol;
    let relay = match node.addr.iter().last() {
        Some(Protocol::P2p(_)) => node.addr.clone(),
        _ => node.addr.clone().with(Protocol::P2p(node.peer)),
    };
    let Some(net) = weak.upgrade().map(|n| n.net.clone()) else { return "peer dropped".into() };
    let reservation = net.listen(relay).await;
    drop(net);
    let Some(network) = weak.upgrade() else { return "peer dropped".into() };
    let (addr, ended) = match reservation {
        Ok(r) => (r.addr, r.ended),
        Err(e) => {
            tracing::warn!(error = %e, "no relay reservation: other browsers cannot connect to this one");
            *network.serving_error.borrow_mut() = Some(e.to_string());
            return e.to_string();
        }
    };
    tracing::info!(%addr, "reachable by other browsers");
    *network.addresses.borrow_mut() = vec![addr.to_string()];
    *network.serving_error.borrow_mut() = None;
    drop(network);
    let mut ended = ended.fuse();
    // Announce what is held whenever it changes, and now and then anyway.
    let mut since = crate::network::announce::REANNOUNCE_EVERY;
    loop {
        let mut tick = futures_timer::Delay::new(ANNOUNCE_EVERY).fuse();
        futures::select! {
            why = ended => return why.unwrap_or_else(|_| "peer stopped".into()),
            () = tick => {}
        }
        since += ANNOUNCE_EVERY;
        let Some(network) = weak.upgrade() else { return "peer dropped".into() };
        let due = network.held.borrow_mut().due(since, |cid| network.net.holds(cid));
        let Some(cids) = due else { continue };
        let request = antiphon_core::provide::ProvideRequest {
            addr: addr.to_string(),
            cids: cids.iter().map(ToString::to_string).collect(),
        };
        since = Duration::ZERO;
        let net = network.net.clone();
        drop(network);
        let outcome = net.announce(node.peer, request).await;
        drop(net);
        match outcome {
            Ok(n) => tracing::debug!(cids = n, "announced what this peer serves"),
            Err(e @ crate::network::swarm::NetError::Stopped) => return e.to_string(),
            Err(e) => {
                // Not connected: the reservation's end is about to be reported.
                tracing::info!(error = %e, "announcement failed; will retry");
                if let Some(network) = weak.upgrade() {
                    network.held.borrow_mut().resend();
                }
            }
        }
    }
}
