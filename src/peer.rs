//! `Peer`: the JS entry point. Dials the creator nodes it is given, knows the HTTP gateways it
//! may use, and hands out players that fetch from all of them.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use antiphon_core::transport::transport_name;
use futures::StreamExt;
use futures::channel::mpsc;
use serde::Deserialize;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::HtmlMediaElement;

use crate::args;
use crate::dial::{DialPlan, NodeLink, dial_node, resolve};
use crate::error::{Error, NodeFailure};
use crate::net::NetHandle;
use crate::player::{Player, PlayerOptions};
use crate::util::object;

const DEFAULT_DIAL_TIMEOUT_MS: u32 = 10_000;
/// Head start of each address over the next one when dialling.
const DEFAULT_STAGGER_MS: u32 = 1_500;
/// Most creator nodes, and most gateways, one peer takes.
const MAX_ENDPOINTS: usize = 16;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartOptions {
    /// Creator nodes: HTTP base URLs (their `/peer` lists their addresses) or multiaddrs.
    creator_nodes: Option<Vec<String>>,
    /// Base URLs of HTTP trustless gateways, verified like Bitswap blocks.
    gateways: Option<Vec<String>>,
    /// "webrtc-direct" or "websocket" to use only that transport.
    transport: Option<String>,
    dial_timeout_ms: Option<u32>,
    /// Head start, in ms, of each address over the next (default 1500).
    stagger_ms: Option<u32>,
    /// Serve verified blocks to other browsers (default true).
    serve: Option<bool>,
    /// What the module writes to the console (see `setLogLevel`); it applies to the whole
    /// module, not only to this peer.
    log_level: Option<String>,
}

/// Where one configured creator node stands.
enum NodeState {
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
    states: RefCell<Vec<(String, NodeState)>>,
    /// Other browsers connected directly, in the order they connected; an entry whose
    /// connection closed is dropped at the next look (`prune_browsers`).
    pub(crate) browsers: RefCell<Vec<BrowserLink>>,
    /// Where other browsers reach this one, once a creator node holds a reservation for it.
    addresses: RefCell<Vec<String>>,
    /// Why serving is off or failed, if it is.
    serving_error: RefCell<Option<String>>,
    /// What this peer holds and announces, oldest first.
    held: RefCell<crate::held::Held>,
    /// Until when a player is starting playback (see [`Network::starting`]).
    starting_until: std::cell::Cell<Option<web_time::Instant>>,
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
/// Browsers found through routing that one lookup connects to at most.
const DISCOVER_AT_MOST: usize = 3;
/// How often work waiting for a starting player looks again.
const STARTING_POLL: Duration = Duration::from_millis(50);

impl Network {
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
        let weak = Rc::downgrade(self);
        wasm_bindgen_futures::spawn_local(async move {
            if !while_starting(&weak, web_time::Instant::now() + START_GRACE).await {
                return;
            }
            let Some(network) = weak.upgrade() else { return };
            network.prune_browsers();
            if network.browsers.borrow().is_empty() {
                network.discover(cid).await;
            }
        });
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
        let Some((_, peer)) = crate::webrtc::split_address(&parsed) else {
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
        let peer =
            self.net.dial_browser(parsed).await.map_err(|reason| Error::DialFailed { target: addr.clone(), reason })?;
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
                crate::util::fetch_json_fresh(&format!("{url}/routing/v1/providers/{cid}")).await;
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

/// An IPFS peer in the page, connected to creator nodes.
#[wasm_bindgen]
pub struct Peer {
    network: Rc<Network>,
}

#[wasm_bindgen]
impl Peer {
    /// Starts a peer. `options`: `{ creatorNodes?: string[], gateways?: string[], transport?:
    /// "webrtc-direct" | "websocket", dialTimeoutMs?: number, staggerMs?: number }`.
    ///
    /// Every creator node (an HTTP base URL, whose `/peer` lists its addresses, or one
    /// multiaddr) is dialled at once, WebRTC-direct first and WebSocket when that fails or is
    /// slow (`staggerMs`, default 1500). The promise resolves when the first node is
    /// connected; the others join as they connect, and players already playing start using
    /// them. It rejects with `DIAL_FAILED` only when every node failed and no gateway was
    /// given. Gateways (HTTP trustless gateways, base URLs) are fetched from with every block
    /// verified; one that sends bytes that do not verify is banned.
    // Typed in `types.rs` (its options argument may be left out).
    #[wasm_bindgen(skip_typescript)]
    pub async fn start(options: Option<JsValue>) -> Result<Peer, Error> {
        let options: StartOptions = parse_options(options, START_KEYS)?;
        let nodes = options.creator_nodes.clone().unwrap_or_default();
        Self::start_with(nodes, options).await
    }

    /// Connects to one creator node: `Peer.start({ creatorNodes: [target], ...options })`,
    /// except that it rejects when that node cannot be reached, even with gateways.
    #[wasm_bindgen(skip_typescript)]
    pub async fn connect(target: JsValue, options: Option<JsValue>) -> Result<Peer, Error> {
        let target = args::string(&target, "target", args::MAX_ADDRESS_CHARS)?;
        let options: StartOptions = parse_options(options, START_KEYS)?;
        if options.creator_nodes.is_some() {
            return Err(Error::InvalidArgument {
                what: "creatorNodes".into(),
                reason: "give it to Peer.start; Peer.connect takes one target".into(),
            });
        }
        let peer = Self::start_with(vec![target], options).await?;
        let failed = match &peer.network.states.borrow()[0].1 {
            NodeState::Failed(e) => {
                Some(Error::DialFailed { target: peer.network.states.borrow()[0].0.clone(), reason: e.to_string() })
            }
            _ => None,
        };
        match failed {
            Some(e) => {
                peer.network.net.close().await;
                Err(e)
            }
            None => Ok(peer),
        }
    }

    async fn start_with(nodes: Vec<String>, options: StartOptions) -> Result<Peer, Error> {
        if let Some(level) = &options.log_level {
            crate::log::set_level(level)?;
        }
        let gateways = check_gateways(options.gateways.unwrap_or_default())?;
        if nodes.is_empty() && gateways.is_empty() {
            return Err(Error::InvalidArgument {
                what: "creatorNodes".into(),
                reason: "give at least one creator node or gateway".into(),
            });
        }
        if nodes.len() > MAX_ENDPOINTS {
            return Err(Error::InvalidArgument {
                what: "creatorNodes".into(),
                reason: format!("{} given, at most {MAX_ENDPOINTS}", nodes.len()),
            });
        }
        if let Some(t) = &options.transport
            && !matches!(t.as_str(), "webrtc-direct" | "websocket")
        {
            return Err(Error::InvalidArgument {
                what: "transport".into(),
                reason: format!("{t:?}: expected \"webrtc-direct\" or \"websocket\""),
            });
        }
        let plan = DialPlan {
            transport: options.transport,
            timeout: Duration::from_millis(u64::from(options.dial_timeout_ms.unwrap_or(DEFAULT_DIAL_TIMEOUT_MS))),
            stagger: Duration::from_millis(u64::from(options.stagger_ms.unwrap_or(DEFAULT_STAGGER_MS))),
        };
        // Each node's `/peer` request travels while the network is built (~20 ms on a cold page).
        let lookups: Vec<_> = nodes.iter().map(|target| resolve(target)).collect();
        let network = Rc::new(Network {
            net: NetHandle::spawn()?,
            connected: RefCell::new(Vec::new()),
            gateways,
            states: RefCell::new(nodes.iter().map(|t| (t.clone(), NodeState::Dialling)).collect()),
            browsers: RefCell::new(Vec::new()),
            addresses: RefCell::new(Vec::new()),
            serving_error: RefCell::new(None),
            held: RefCell::new(crate::held::Held::default()),
            starting_until: std::cell::Cell::new(None),
        });
        let serve = options.serve.unwrap_or(true);
        if !serve {
            *network.serving_error.borrow_mut() = Some("serving is off (serve: false)".into());
        }
        // Each dial reports here when it settles; the channel holds one slot per node.
        let (done_tx, mut done) = mpsc::channel::<()>(nodes.len().max(1));
        for ((i, target), lookup) in nodes.iter().enumerate().zip(lookups) {
            let (network, plan, target, mut done_tx) = (network.clone(), plan.clone(), target.clone(), done_tx.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = dial_node(&network.net, &target, lookup, &plan).await;
                network.states.borrow_mut()[i].1 = match outcome {
                    // Closed while this dial was on its way.
                    _ if network.net.is_stopped() => NodeState::Closed,
                    Ok(link) => {
                        if serve && network.connected.borrow().is_empty() {
                            wasm_bindgen_futures::spawn_local(reserve(network.clone(), link.clone()));
                        }
                        network.connected.borrow_mut().push(link.clone());
                        NodeState::Connected(link)
                    }
                    Err(e) => {
                        tracing::warn!(%target, error = %e, "creator node unreachable");
                        NodeState::Failed(e)
                    }
                };
                let _ = done_tx.try_send(());
            });
        }
        drop(done_tx);
        let mut settled = 0;
        while settled < nodes.len() && network.connected.borrow().is_empty() {
            if done.next().await.is_none() {
                break;
            }
            settled += 1;
        }
        if network.connected.borrow().is_empty() && network.gateways.is_empty() {
            let failures: Vec<NodeFailure> = network
                .states
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
                .collect();
            network.close().await;
            return Err(Error::AllNodesFailed { failures });
        }
        Ok(Peer { network })
    }

    /// The transport of the first creator node connection: `"webrtc-direct"` or
    /// `"websocket"`; `undefined` with none.
    #[wasm_bindgen(getter, unchecked_return_type = "\"webrtc-direct\" | \"websocket\" | undefined")]
    pub fn transport(&self) -> Option<String> {
        self.first().map(|n| transport_name(&n.addr).to_owned())
    }

    /// The first connected creator node's peer ID.
    #[wasm_bindgen(getter, js_name = remotePeerId)]
    pub fn remote_peer_id(&self) -> Option<String> {
        self.first().map(|n| n.peer.to_string())
    }

    /// This peer's ID.
    #[wasm_bindgen(getter, js_name = localPeerId)]
    pub fn local_peer_id(&self) -> String {
        self.network.net.local_peer_id().to_string()
    }

    /// The multiaddr of the first creator node connection.
    #[wasm_bindgen(getter, js_name = remoteAddr)]
    pub fn remote_addr(&self) -> Option<String> {
        self.first().map(|n| n.addr.to_string())
    }

    /// Milliseconds the first creator node's dial took.
    #[wasm_bindgen(getter, js_name = dialMs)]
    pub fn dial_ms(&self) -> Option<f64> {
        self.first().map(|n| n.dial_ms)
    }

    /// Every dial made to the first connected creator node, in order: `{ transport, addr, ms,
    /// error? }`. Shows, for instance, a WebRTC-direct attempt that failed before WebSocket
    /// succeeded.
    #[wasm_bindgen(getter, js_name = dialAttempts, unchecked_return_type = "DialAttempt[]")]
    pub fn dial_attempts(&self) -> js_sys::Array {
        self.first()
            .map(|n| {
                n.attempts
                    .iter()
                    .map(|a| {
                        object(&[
                            ("transport", transport_name(&a.addr).into()),
                            ("addr", a.addr.to_string().into()),
                            ("ms", a.ms.into()),
                            ("error", a.error.clone().into()),
                        ])
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Each configured creator node: `{ target, state: "dialling" | "connected" | "failed" |
    /// "closed", peerId?, transport?, addr?, dialMs?, code?, error? }`. After `close()` every
    /// node that was not `failed` is `closed`.
    #[wasm_bindgen(getter, js_name = creatorNodes, unchecked_return_type = "CreatorNode[]")]
    pub fn creator_nodes(&self) -> js_sys::Array {
        self.network
            .states
            .borrow()
            .iter()
            .map(|(target, state)| match state {
                NodeState::Dialling => object(&[("target", target.into()), ("state", "dialling".into())]),
                NodeState::Connected(n) => object(&[
                    ("target", target.into()),
                    ("state", "connected".into()),
                    ("peerId", n.peer.to_string().into()),
                    ("transport", transport_name(&n.addr).into()),
                    ("addr", n.addr.to_string().into()),
                    ("dialMs", n.dial_ms.into()),
                ]),
                NodeState::Failed(e) => object(&[
                    ("target", target.into()),
                    ("state", "failed".into()),
                    ("code", e.code().as_str().into()),
                    ("error", e.to_string().into()),
                ]),
                NodeState::Closed => object(&[("target", target.into()), ("state", "closed".into())]),
            })
            .collect()
    }

    /// Where other browsers can connect to this one directly (WebRTC signalled through a
    /// creator node's relay): `<node>/p2p/<node-id>/p2p-circuit/webrtc/p2p/<this-id>`. Empty
    /// until the first creator node has granted a reservation, or when `serve` is false.
    #[wasm_bindgen(getter)]
    pub fn addresses(&self) -> Vec<String> {
        self.network.addresses.borrow().clone()
    }

    /// Why this peer is not reachable by other browsers, if it is not; `undefined` otherwise.
    #[wasm_bindgen(getter, js_name = servingError)]
    pub fn serving_error(&self) -> Option<String> {
        self.network.serving_error.borrow().clone()
    }

    /// Other browsers connected directly: `{ peerId, addr }` each. Players fetch from them as
    /// sources of kind `"peer"`.
    #[wasm_bindgen(getter, unchecked_return_type = "BrowserLink[]")]
    pub fn browsers(&self) -> js_sys::Array {
        self.network.prune_browsers();
        self.network
            .browsers
            .borrow()
            .iter()
            .map(|b| object(&[("peerId", b.peer.to_string().into()), ("addr", b.addr.clone().into())]))
            .collect()
    }

    /// Connects directly to another browser at `addr` (one of its `peer.addresses`) and
    /// resolves with its peer ID. Players then fetch from it too. Rejects with
    /// `INVALID_ADDRESS` for an address that is not a browser's, and `DIAL_FAILED` when the
    /// relay or WebRTC fails (within 15 s).
    #[wasm_bindgen(js_name = connectBrowser)]
    pub async fn connect_browser(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] addr: JsValue,
    ) -> Result<String, Error> {
        self.check_live()?;
        let addr = args::string(&addr, "addr", args::MAX_ADDRESS_CHARS)?;
        self.network.connect_browser(addr).await.map(|p| p.to_string())
    }

    /// The gateways players fetch from.
    #[wasm_bindgen(getter)]
    pub fn gateways(&self) -> Vec<String> {
        self.network.gateways.clone()
    }

    /// Closes every connection and data channel of this peer and stops its network task.
    /// Players attached to it stop too; destroy them first to release their media sources.
    /// Afterwards `transport`, `remotePeerId`, `remoteAddr` and `dialMs` are `undefined`,
    /// `addresses` and `browsers` are empty, and methods reject with `STOPPED`.
    pub async fn close(&self) {
        self.network.close().await;
    }

    /// A player that plays tracks from this peer's sources into `element`. `options`:
    /// `{ windowSecs?: number }`, how far ahead of the playhead segments are fetched
    /// (default 30, at least one segment).
    #[wasm_bindgen(skip_typescript)]
    pub fn attach(&self, element: JsValue, options: Option<JsValue>) -> Result<Player, Error> {
        self.check_live()?;
        let element: HtmlMediaElement = args::instance(&element, "element", "an <audio> or <video> element")?;
        let options: PlayerOptions = parse_options(options, ATTACH_KEYS)?;
        Player::new(self.network.clone(), element, options)
    }

    /// Fetches a UnixFS file (or a single raw block) by CID from the first connected creator
    /// node over Bitswap, verifying every block, and resolves with its bytes. `options`:
    /// `{ maxBytes?: number }` (default 64 MiB): a larger file is refused rather than buffered.
    #[wasm_bindgen(skip_typescript)]
    pub async fn cat(&self, cid: JsValue, options: Option<JsValue>) -> Result<js_sys::Uint8Array, Error> {
        self.check_live()?;
        let cid = args::string(&cid, "cid", args::MAX_CID_CHARS)?;
        let options: CatOptions = parse_options(options, CAT_KEYS)?;
        let max = match options.max_bytes {
            None => DEFAULT_CAT_MAX_BYTES,
            Some(n) if n.is_finite() && n >= 0.0 => n as u64,
            Some(n) => {
                return Err(Error::InvalidArgument {
                    what: "maxBytes".into(),
                    reason: format!("{n} is not a byte count"),
                });
            }
        };
        let cid: antiphon_core::Cid = cid.parse().map_err(|source| Error::InvalidCid { input: cid.clone(), source })?;
        let source = match self.first() {
            Some(n) => crate::source::Source::Bitswap { net: self.network.net.clone(), peer: n.peer },
            None => match self.network.gateways.first() {
                Some(g) => crate::source::Source::Gateway { base: g.clone(), net: self.network.net.clone() },
                None => return Err(Error::Stopped),
            },
        };
        crate::fetch::fetch_bytes(&source, cid, max).await
    }
}

impl Peer {
    fn first(&self) -> Option<NodeLink> {
        self.network.connected.borrow().first().cloned()
    }

    /// `STOPPED` once the peer is closed.
    fn check_live(&self) -> Result<(), Error> {
        if self.network.net.is_stopped() { Err(Error::Stopped) } else { Ok(()) }
    }
}

/// `peer.cat`'s options.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CatOptions {
    max_bytes: Option<f64>,
}

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
async fn reserve(network: Rc<Network>, node: NodeLink) {
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
            *network.serving_error.borrow_mut() = Some(e.clone());
            return e;
        }
    };
    tracing::info!(%addr, "reachable by other browsers");
    *network.addresses.borrow_mut() = vec![addr.to_string()];
    *network.serving_error.borrow_mut() = None;
    drop(network);
    let mut ended = ended.fuse();
    // Announce what is held whenever it changes, and now and then anyway.
    let mut since = crate::held::REANNOUNCE_EVERY;
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
            Err(e) if e == "peer stopped" => return e,
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

/// Default bound of [`Peer::cat`].
const DEFAULT_CAT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Keys of `Peer.start`'s and `Peer.connect`'s options.
const START_KEYS: &[&str] =
    &["creatorNodes", "gateways", "transport", "dialTimeoutMs", "staggerMs", "serve", "logLevel"];
/// Keys of `peer.attach`'s options.
const ATTACH_KEYS: &[&str] = &["windowSecs"];
/// Keys of `peer.cat`'s options.
const CAT_KEYS: &[&str] = &["maxBytes"];

/// Reads an options object; `undefined` and `null` give the defaults, keys not in `known` are
/// refused (a misspelt option must not be silently ignored).
fn parse_options<T: serde::de::DeserializeOwned + Default>(
    options: Option<JsValue>,
    known: &[&str],
) -> Result<T, Error> {
    let Some(options) = options.filter(|o| !o.is_undefined() && !o.is_null()) else {
        return Ok(T::default());
    };
    // Anything but a plain object is refused before serde sees (and copies) it.
    if !options.is_object() || js_sys::Array::is_array(&options) || options.is_function() {
        return Err(Error::InvalidArgument {
            what: "options".into(),
            reason: format!("expected an options object, got {}", args::kind_of(&options)),
        });
    }
    if let Some(object) = options.dyn_ref::<js_sys::Object>() {
        for key in js_sys::Object::keys(object).iter().filter_map(|k| k.as_string()) {
            if !known.contains(&key.as_str()) {
                let key: String = key.chars().take(64).collect();
                return Err(Error::InvalidArgument {
                    what: "options".into(),
                    reason: format!("unknown option {key:?}; known: {}", known.join(", ")),
                });
            }
        }
    }
    serde_wasm_bindgen::from_value(options)
        .map_err(|e| Error::InvalidArgument { what: "options".into(), reason: e.to_string() })
}

/// Checks gateway base URLs (http or https) and drops trailing slashes.
fn check_gateways(given: Vec<String>) -> Result<Vec<String>, Error> {
    if given.len() > MAX_ENDPOINTS {
        return Err(Error::InvalidArgument {
            what: "gateways".into(),
            reason: format!("{} given, at most {MAX_ENDPOINTS}", given.len()),
        });
    }
    given
        .into_iter()
        .map(|g| {
            let url = web_sys::Url::new(&g).map_err(|_| Error::InvalidArgument {
                what: "gateways".into(),
                reason: format!("{g:?} is not a URL"),
            })?;
            if url.protocol() != "http:" && url.protocol() != "https:" {
                return Err(Error::InvalidArgument {
                    what: "gateways".into(),
                    reason: format!("{g:?} is not http(s)"),
                });
            }
            Ok(g.trim_end_matches('/').to_string())
        })
        .collect()
}
