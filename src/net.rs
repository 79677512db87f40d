//! The network side of the browser peer: one task owns the libp2p swarm (WebRTC-direct and
//! WebSocket transports; Bitswap, ping, answers to identify); the rest of the program holds a
//! [`NetHandle`] and sends it commands over a bounded channel with oneshot replies.
//!
//! Every block this side hands out has been hashed and matched to the CID that was asked for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use antiphon_core::bitswap::{self, Blockstore, MemoryBlockstore, RequestId, Source};
use antiphon_core::identify;
use antiphon_core::liveness::{self, Liveness};
use antiphon_core::provide::{self, ProvideRequest, ProvideResponse};
use antiphon_core::transport::connection_addr;
use antiphon_core::{Block, Cid};
use futures::channel::{mpsc, oneshot};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::transport::ListenerId;
use libp2p::core::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::dial_opts::PeerCondition;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, connection_limits, noise, ping, relay, yamux};

use crate::error::Error;

/// What this peer calls itself in identify answers.
const AGENT_VERSION: &str = concat!("antiphon-browser/", env!("CARGO_PKG_VERSION"));
/// The protocols this peer accepts streams for, as its identify answers list them (Helia sends
/// Bitswap wants only to peers that list Bitswap).
const PROTOCOLS: [libp2p::StreamProtocol; 6] = [
    bitswap::PROTOCOL,
    bitswap::PROTOCOL_1_1_0,
    identify::PROTOCOL,
    ping::PROTOCOL_NAME,
    relay::STOP_PROTOCOL_NAME,
    crate::webrtc::SIGNALING,
];
/// Commands queued for the swarm task at most.
const COMMAND_QUEUE: usize = 64;
/// Bytes of verified blocks the peer keeps in memory to serve to others.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// A block fetched and verified, with who sent it.
#[derive(Debug)]
pub struct Fetched {
    /// The verified block.
    pub block: Block,
    /// The peer that delivered it.
    pub peer: PeerId,
    /// Time from the want to the block.
    pub latency: Duration,
}

enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    Get {
        cid: Cid,
        peer: PeerId,
        reply: oneshot::Sender<Result<Fetched, Error>>,
    },
    /// Reserve a slot on the relay at `relay` (a connected creator node's address ending in
    /// `/p2p/<id>`) and accept browser-to-browser connections through it.
    Listen {
        relay: Multiaddr,
        reply: oneshot::Sender<Result<Reservation, String>>,
    },
    /// Connect to a browser at `<relayed>/p2p-circuit/webrtc/p2p/<id>`.
    DialBrowser {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, String>>,
    },
    /// Tell creator node `node` what this peer holds and where other browsers reach it.
    Announce {
        node: PeerId,
        request: ProvideRequest,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    /// Stop the task: the swarm is dropped, closing every connection and data channel.
    Close,
}

/// A relay reservation granted by a creator node.
pub struct Reservation {
    /// Where other browsers reach this one: `<relay>/p2p-circuit/webrtc/p2p/<this peer>`.
    pub addr: Multiaddr,
    /// Resolves with the reason once the reservation has ended (the relay's connection closed).
    pub ended: oneshot::Receiver<String>,
}

/// The error of [`NetHandle::announce`] when the node is not connected: announcing never dials.
pub const NOT_CONNECTED: &str = "not connected to that node";

/// How long one announcement may take.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);

/// One `/antiphon/provide/1.0.0` exchange: the request, a half-close, the bounded answer.
async fn announce(mut control: libp2p_stream::Control, node: PeerId, request: ProvideRequest) -> Result<u32, String> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let body = serde_ipld_dagcbor::to_vec(&request).map_err(|e| e.to_string())?;
        let mut stream = control.open_stream(node, provide::PROTOCOL).await.map_err(|e| e.to_string())?;
        stream.write_all(&body).await.map_err(|e| e.to_string())?;
        stream.close().await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        (&mut stream).take(provide::MAX_RESPONSE_BYTES).read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        let response: ProvideResponse =
            serde_ipld_dagcbor::from_slice(&answer).map_err(|e| format!("undecodable answer: {e}"))?;
        match response.error {
            Some(error) => Err(error),
            None => Ok(response.accepted),
        }
    };
    let timeout = futures_timer::Delay::new(ANNOUNCE_TIMEOUT);
    futures::pin_mut!(exchange);
    match futures::future::select(exchange, timeout).await {
        futures::future::Either::Left((result, _)) => result,
        futures::future::Either::Right(_) => Err(format!("no answer within {ANNOUNCE_TIMEOUT:?}")),
    }
}

/// A browser-to-browser dial in progress.
enum BrowserDial {
    /// Waiting for the relayed connection; `addr` is the `/webrtc` address to dial next.
    Relayed { addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, String>> },
    /// Waiting for the direct connection; `relayed` is closed once it is up.
    Direct { relayed: ConnectionId, reply: oneshot::Sender<Result<PeerId, String>> },
}

pub use behaviour::{BrowserBehaviour, BrowserBehaviourEvent};

mod behaviour {
    // The derive generates `BrowserBehaviourEvent`, whose variants cannot carry doc comments.
    #![allow(missing_docs)]
    use super::*;

    /// The browser peer's behaviours.
    #[derive(NetworkBehaviour)]
    pub struct BrowserBehaviour {
        /// Connection limits, checked before any other behaviour sees a connection: a page's
        /// peer is reachable by anyone through its relayed address.
        pub limits: connection_limits::Behaviour,
        /// Bitswap over an in-memory, bounded cache of verified blocks.
        pub bitswap: bitswap::Behaviour<MemoryBlockstore>,
        /// Ping.
        pub ping: ping::Behaviour,
        /// Circuit relay v2 client: reservations on creator nodes, relayed dials to browsers.
        pub relay: relay::client::Behaviour,
        /// Plain streams: `/webrtc-signaling` for the browser-to-browser transport.
        pub streams: libp2p_stream::Behaviour,
    }
}

/// A cheap, cloneable handle to the swarm task. The task stops when every handle is dropped.
#[derive(Clone)]
pub struct NetHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    /// Open connections by peer, kept by the swarm task.
    connections: Rc<RefCell<HashMap<PeerId, u32>>>,
    /// The verified blocks this peer serves (shared with its Bitswap behaviour).
    store: MemoryBlockstore,
}

impl NetHandle {
    /// Builds the swarm and starts its task on the page's event loop.
    pub fn spawn() -> Result<Self, Error> {
        let store = MemoryBlockstore::new(CACHE_BYTES);
        let key = libp2p::identity::Keypair::generate_ed25519();
        let public_key = key.public().encode_protobuf();
        let swarm = build_swarm(key, store.clone())?;
        let local_peer_id = *swarm.local_peer_id();
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let connections = Rc::new(RefCell::new(HashMap::new()));
        let listen_addrs = Rc::new(RefCell::new(Vec::new()));
        let incoming = swarm.behaviour().streams.new_control().accept(identify::PROTOCOL).map_err(setup_failed)?;
        let addrs = listen_addrs.clone();
        wasm_bindgen_futures::spawn_local(identify::serve(incoming, move || identify::Info {
            public_key: public_key.clone(),
            agent_version: AGENT_VERSION.into(),
            protocols: PROTOCOLS.to_vec(),
            listen_addrs: addrs.borrow().clone(),
        }));
        wasm_bindgen_futures::spawn_local(run(swarm, rx, connections.clone(), listen_addrs));
        Ok(Self { commands, local_peer_id, connections, store })
    }

    /// Keeps a block verified elsewhere (from a gateway) so that it is served to others too.
    pub fn keep(&self, block: &antiphon_core::Block) {
        // The in-memory store does not fail; a block too large for it is simply not kept.
        let _ = self.store.put(block);
    }

    /// Whether the block cache still holds `cid` (it forgets its oldest blocks first).
    pub fn holds(&self, cid: &antiphon_core::Cid) -> bool {
        self.store.has(cid).unwrap_or(false)
    }

    /// Whether at least one connection to `peer` is open.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.connections.borrow().contains_key(peer)
    }

    /// Whether the swarm task has stopped.
    pub fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// This peer's ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Dials `addr`; resolves with the remote's peer ID once the connection is up.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Dial { addr, reply }).await.map_err(|_| "peer stopped".to_owned())?;
        rx.await.map_err(|_| "peer stopped".to_owned())?
    }

    /// Reserves a slot on the creator node at `relay` (`.../p2p/<node-id>`) and resolves with
    /// the address other browsers dial to reach this one directly, and the reservation's end.
    pub async fn listen(&self, relay: Multiaddr) -> Result<Reservation, String> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Listen { relay, reply }).await.map_err(|_| "peer stopped".to_owned())?;
        rx.await.map_err(|_| "peer stopped".to_owned())?
    }

    /// Connects directly to the browser at `addr` (`<relayed>/p2p-circuit/webrtc/p2p/<id>`),
    /// signalling through the relay; the relayed connection is closed once the direct one is up.
    pub async fn dial_browser(&self, addr: Multiaddr) -> Result<PeerId, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .clone()
            .send(Command::DialBrowser { addr, reply })
            .await
            .map_err(|_| "peer stopped".to_owned())?;
        rx.await.map_err(|_| "peer stopped".to_owned())?
    }

    /// Tells the creator node `node` what this peer holds (`/antiphon/provide/1.0.0`); resolves
    /// with the number of CIDs it recorded. Fails with [`NOT_CONNECTED`] rather than dialling.
    pub async fn announce(&self, node: PeerId, request: ProvideRequest) -> Result<u32, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .clone()
            .send(Command::Announce { node, request, reply })
            .await
            .map_err(|_| "peer stopped".to_owned())?;
        rx.await.map_err(|_| "peer stopped".to_owned())?
    }

    /// Stops the swarm task, closing every connection; later calls fail with `Stopped`.
    pub async fn close(&self) {
        let _ = self.commands.clone().send(Command::Close).await;
    }

    /// Fetches `cid` from `peer` by Bitswap; the block is verified before it is returned.
    pub async fn get(&self, cid: Cid, peer: PeerId) -> Result<Fetched, Error> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Get { cid, peer, reply }).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

/// Why a dial failed, said once: a transport's error is wrapped by each layer above it (the
/// upgrade, the boxed transport, the swarm), each repeating the one below, so only the
/// innermost is kept.
fn dial_error_reason(error: &libp2p::swarm::DialError) -> String {
    use libp2p::TransportError;
    let libp2p::swarm::DialError::Transport(attempts) = error else { return error.to_string() };
    let reasons: Vec<String> = attempts
        .iter()
        .map(|(_, e)| match e {
            TransportError::MultiaddrNotSupported(addr) => format!("no transport for {addr}"),
            TransportError::Other(e) => {
                let mut innermost: &dyn std::error::Error = e;
                while let Some(source) = innermost.source() {
                    innermost = source;
                }
                innermost.to_string()
            }
        })
        .collect();
    reasons.join("; ")
}

/// Yamux with every stream's receive window capped at 1 MiB, so that js-libp2p peers (Helia)
/// never send a frame rust-yamux refuses (see `antiphon_core::limits::YAMUX_MAX_STREAMS`).
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(antiphon_core::limits::YAMUX_MAX_STREAMS);
    config
}

type BoxedTransport = Boxed<(PeerId, StreamMuxerBox)>;

/// Every transport, in the order a dial tries them: browser-to-browser WebRTC and relayed
/// addresses first (WebSocket would otherwise take a relayed `/ws/.../p2p-circuit` address as
/// its own), then WebRTC-direct and WebSocket to creator nodes.
fn transports(
    key: &libp2p::identity::Keypair,
    relay: relay::client::Transport,
    signaling: libp2p_stream::Control,
) -> Result<BoxedTransport, noise::Error> {
    let relayed = relay.upgrade(Version::V1Lazy).authenticate(noise::Config::new(key)?).multiplex(yamux_config());
    let websocket = crate::websocket::Transport
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux_config());
    let direct = crate::webrtc::DirectTransport::new(key.clone());
    Ok(crate::webrtc::Transport::new(signaling)
        .or_transport(relayed.map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))))
        .map(|either, _| either.into_inner())
        .or_transport(direct)
        .map(|either, _| either.into_inner())
        .or_transport(websocket.map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))))
        .map(|either, _| either.into_inner())
        .boxed())
}

/// The peer could not be set up (a libp2p builder or registration refused).
fn setup_failed(e: impl std::fmt::Display) -> Error {
    Error::DialFailed { target: "(setup)".into(), reason: e.to_string() }
}

/// Connections a browser peer keeps: creator nodes and a few browsers it fetches from, and the
/// browsers it serves. Inbound ones arrive through a relay (handshakes are cheap to start and
/// costly to finish: few at once), and no peer needs more than a few (relayed, direct, one per
/// transport).
fn limits() -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(MAX_CONNECTIONS))
        .with_max_established_incoming(Some(MAX_INBOUND_CONNECTIONS))
        .with_max_pending_incoming(Some(MAX_PENDING_INBOUND))
        .with_max_established_per_peer(Some(4))
}

/// Connections in all.
const MAX_CONNECTIONS: u32 = 64;
/// Connections other peers opened (browsers this one serves).
const MAX_INBOUND_CONNECTIONS: u32 = 32;
/// Inbound connections still handshaking.
const MAX_PENDING_INBOUND: u32 = 8;

/// Builds the swarm of the peer whose identity is `key`.
fn build_swarm(key: libp2p::identity::Keypair, store: MemoryBlockstore) -> Result<Swarm<BrowserBehaviour>, Error> {
    let (relay_transport, relay_client) = relay::client::new(key.public().to_peer_id());
    let streams = libp2p_stream::Behaviour::new();
    let signaling = streams.new_control();
    let transport = transports(&key, relay_transport, signaling).map_err(setup_failed)?;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_wasm_bindgen()
        .with_other_transport(|_| transport)
        .map_err(setup_failed)?
        .with_behaviour(|_| BrowserBehaviour {
            limits: connection_limits::Behaviour::new(limits()),
            // sha2-256 is hashed by WebCrypto: several times faster than sha2 in wasm.
            bitswap: bitswap::Behaviour::new(store.clone(), bitswap::Config::default().with_external_sha2_256(true)),
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(liveness::PING_INTERVAL).with_timeout(liveness::PING_TIMEOUT),
            ),
            relay: relay_client,
            streams,
        })
        .map_err(setup_failed)?
        // The peer's own streams (Bitswap, ping, relay, signalling) carry their first message
        // with the protocol's name instead of a round trip later. The peers it opens them to
        // (creator nodes, browsers, Helia) speak these protocols; a refusal shows on the first
        // read instead of at opening, and ping's counts as unsupported (`ping_unsupported`).
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(300))
                .with_substream_upgrade_protocol_override(Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

/// Sets what identify answers list as this peer's addresses from the swarm's listen addresses
/// (called whenever a listener gains, loses or closes addresses).
fn publish_listen_addrs(swarm: &Swarm<BrowserBehaviour>, listen_addrs: &RefCell<Vec<Multiaddr>>) {
    *listen_addrs.borrow_mut() = swarm.listeners().take(identify::MAX_LISTEN_ADDRS).cloned().collect();
}

/// Whether a ping failed because the remote does not speak ping. Streams open without waiting
/// for the remote's answer (see `build_swarm`), so a refusal mostly arrives as an I/O error.
fn ping_unsupported(failure: &ping::Failure) -> bool {
    match failure {
        ping::Failure::Unsupported => true,
        ping::Failure::Other { error } => liveness::ping_refused(&**error),
        ping::Failure::Timeout => false,
    }
}

async fn run(
    mut swarm: Swarm<BrowserBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    connections: Rc<RefCell<HashMap<PeerId, u32>>>,
    listen_addrs: Rc<RefCell<Vec<Multiaddr>>>,
) {
    let mut dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>> = HashMap::new();
    let mut gets: HashMap<RequestId, oneshot::Sender<Result<Fetched, Error>>> = HashMap::new();
    let mut webrtc_listener: Option<ListenerId> = None;
    let mut reservations: HashMap<ListenerId, (Multiaddr, oneshot::Sender<Result<Reservation, String>>)> =
        HashMap::new();
    // Granted reservations: told why when their listener closes.
    let mut granted: HashMap<ListenerId, oneshot::Sender<String>> = HashMap::new();
    let mut browser_dials: HashMap<ConnectionId, BrowserDial> = HashMap::new();
    let streams = swarm.behaviour().streams.new_control();
    // Blocks being hashed by WebCrypto. Each is a block already received, so the Bitswap
    // behaviour's per-request bounds bound this too.
    let mut hashing = FuturesUnordered::new();
    // Connections that stop answering pings are closed: nothing else reports a WebRTC
    // connection whose other end has gone (see `antiphon_core::liveness`).
    let mut liveness = Liveness::default();
    let mut housekeeping = futures_timer::Delay::new(liveness::PING_INTERVAL).fuse();
    loop {
        futures::select! {
            () = housekeeping => {
                for connection in liveness.dead(web_time::Instant::now()) {
                    tracing::info!(?connection, "connection answered no ping for {:?}; closing it", liveness::DEAD_AFTER);
                    swarm.close_connection(connection);
                }
                // Requests nobody waits for any more (a hedge that lost, a manifest asked for
                // twice, a load that moved on) are withdrawn: the peer gets a cancel instead of
                // sending the block anyway, and the request's slot is freed before its timeout.
                gets.retain(|request, reply| {
                    let waited_for = !reply.is_canceled();
                    if !waited_for {
                        swarm.behaviour_mut().bitswap.cancel(*request);
                    }
                    waited_for
                });
                housekeeping = futures_timer::Delay::new(liveness::PING_INTERVAL).fuse();
            }
            (peer, block, digest) = hashing.select_next_some() => {
                swarm.behaviour_mut().bitswap.deliver_hashed(peer, block, digest);
            }
            command = commands.next() => match command {
                None | Some(Command::Close) => break,
                Some(Command::Dial { addr, reply }) => {
                    let opts = DialOpts::unknown_peer_id().address(addr).build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => { dials.insert(id, reply); }
                        Err(e) => { let _ = reply.send(Err(e.to_string())); }
                    }
                }
                Some(Command::Listen { relay, reply }) => {
                    if webrtc_listener.is_none() {
                        match swarm.listen_on(Multiaddr::empty().with(Protocol::WebRTC)) {
                            Ok(id) => webrtc_listener = Some(id),
                            Err(e) => { let _ = reply.send(Err(format!("cannot listen on /webrtc: {e}"))); continue; }
                        }
                    }
                    match swarm.listen_on(relay.clone().with(Protocol::P2pCircuit)) {
                        Ok(id) => { reservations.insert(id, (relay, reply)); }
                        Err(e) => { let _ = reply.send(Err(format!("cannot reserve on {relay}: {e}"))); }
                    }
                }
                Some(Command::DialBrowser { addr, reply }) => {
                    let Some((relayed, peer)) = crate::webrtc::split_address(&addr) else {
                        let _ = reply.send(Err(format!("{addr} is not a browser address (.../p2p-circuit/webrtc/p2p/<id>)")));
                        continue;
                    };
                    if peer == *swarm.local_peer_id() {
                        let _ = reply.send(Err("that address is this peer's own".into()));
                        continue;
                    }
                    let opts = DialOpts::peer_id(peer).addresses(vec![relayed]).condition(PeerCondition::Always).build();
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => { browser_dials.insert(id, BrowserDial::Relayed { addr, reply }); }
                        Err(e) => { let _ = reply.send(Err(e.to_string())); }
                    }
                }
                Some(Command::Announce { node, request, reply }) => {
                    if !swarm.is_connected(&node) {
                        let _ = reply.send(Err(NOT_CONNECTED.into()));
                        continue;
                    }
                    let control = streams.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let _ = reply.send(announce(control, node, request).await);
                    });
                }
                Some(Command::Get { cid, peer, reply }) => {
                    let id = swarm.behaviour_mut().bitswap.get(cid, Source::Peers(vec![peer]));
                    gets.insert(id, reply);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                    tracing::info!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                    if liveness::needs_watching(connection_addr(&endpoint)) {
                        liveness.watch(connection_id, web_time::Instant::now());
                    }
                    *connections.borrow_mut().entry(peer_id).or_default() += 1;
                    if let Some(reply) = dials.remove(&connection_id) {
                        let _ = reply.send(Ok(peer_id));
                    }
                    match browser_dials.remove(&connection_id) {
                        // Relayed: now signal through it for the direct connection.
                        Some(BrowserDial::Relayed { addr, reply }) => {
                            let opts = DialOpts::peer_id(peer_id).addresses(vec![addr]).condition(PeerCondition::Always).build();
                            let id = opts.connection_id();
                            match swarm.dial(opts) {
                                Ok(()) => { browser_dials.insert(id, BrowserDial::Direct { relayed: connection_id, reply }); }
                                Err(e) => {
                                    swarm.close_connection(connection_id);
                                    let _ = reply.send(Err(e.to_string()));
                                }
                            }
                        }
                        // Direct: the relayed connection has done its job.
                        Some(BrowserDial::Direct { relayed, reply }) => {
                            swarm.close_connection(relayed);
                            let _ = reply.send(Ok(peer_id));
                        }
                        None => {}
                    }
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(reply) = dials.remove(&connection_id) {
                        let _ = reply.send(Err(dial_error_reason(&error)));
                    }
                    match browser_dials.remove(&connection_id) {
                        Some(BrowserDial::Relayed { reply, .. }) => {
                            let _ = reply.send(Err(format!("through the relay: {error}")));
                        }
                        Some(BrowserDial::Direct { relayed, reply }) => {
                            swarm.close_connection(relayed);
                            let _ = reply.send(Err(format!("WebRTC: {error}")));
                        }
                        None => {}
                    }
                }
                SwarmEvent::NewListenAddr { listener_id, address } => {
                    tracing::info!(%address, "listening");
                    publish_listen_addrs(&swarm, &listen_addrs);
                    if let Some((relay, reply)) = reservations.remove(&listener_id) {
                        let local = *swarm.local_peer_id();
                        let addr = relay.with(Protocol::P2pCircuit).with(Protocol::WebRTC).with(Protocol::P2p(local));
                        let (end, ended) = oneshot::channel();
                        if reply.send(Ok(Reservation { addr, ended })).is_ok() {
                            granted.insert(listener_id, end);
                        } else {
                            swarm.remove_listener(listener_id);
                        }
                    }
                }
                SwarmEvent::ExpiredListenAddr { .. } => publish_listen_addrs(&swarm, &listen_addrs),
                SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                    publish_listen_addrs(&swarm, &listen_addrs);
                    let why = reason.err().map_or_else(|| "closed".to_owned(), |e| e.to_string());
                    if let Some((relay, reply)) = reservations.remove(&listener_id) {
                        let _ = reply.send(Err(format!("no reservation on {relay}: {why}")));
                    }
                    if let Some(end) = granted.remove(&listener_id) {
                        let _ = end.send(why);
                    }
                    if webrtc_listener == Some(listener_id) {
                        webrtc_listener = None;
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some((relay, reply)) = reservations.remove(&listener_id) {
                        let _ = reply.send(Err(format!("no reservation on {relay}: {error}")));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, connection_id, cause, num_established, .. } => {
                    liveness.forget(connection_id);
                    if num_established == 0 {
                        connections.borrow_mut().remove(&peer_id);
                    }
                    tracing::info!(%peer_id, cause = ?cause.map(|c| c.to_string()), "disconnected");
                }
                SwarmEvent::Behaviour(BrowserBehaviourEvent::Ping(ping::Event { peer, connection, result })) => match result {
                    Ok(_) => liveness.alive(connection, web_time::Instant::now()),
                    Err(failure) if ping_unsupported(&failure) => {
                        if liveness.unsupported(connection) {
                            tracing::info!(%peer, "ping stopped working on a connection; closing it");
                            swarm.close_connection(connection);
                        }
                    }
                    Err(error) => {
                        tracing::info!(%peer, %error, "ping failed; closing the connection");
                        swarm.close_connection(connection);
                    }
                },
                SwarmEvent::Behaviour(BrowserBehaviourEvent::Bitswap(event)) => match event {
                    bitswap::Event::Block { request, block, peer, latency } => {
                        // Keep what was verified, to serve it to others later.
                        let _ = swarm.behaviour().bitswap.store().put(&block);
                        if let Some(reply) = gets.remove(&request) {
                            let _ = reply.send(Ok(Fetched { block, peer, latency }));
                        }
                    }
                    bitswap::Event::Failed { request, cid, error } => {
                        if let Some(reply) = gets.remove(&request) {
                            let _ = reply.send(Err(Error::from_request(cid, error)));
                        }
                    }
                    bitswap::Event::HashNeeded { peer, block } => {
                        hashing.push(async move {
                            let digest = crate::verify::subtle_sha256(&block.data).await;
                            (peer, block, digest)
                        });
                    }
                    bitswap::Event::CorruptBlock { peer, bytes } => {
                        tracing::warn!(%peer, bytes, "peer sent a block that does not match its CID; dropped");
                    }
                    other => tracing::debug!(?other, "bitswap"),
                },
                _ => {}
            },
        }
    }
    connections.borrow_mut().clear();
    tracing::info!("network task stopped");
}

#[cfg(test)]
mod tests {
    use libp2p::core::ConnectedPoint;
    use libp2p::swarm::behaviour::ConnectionEstablished;
    use libp2p::swarm::{ConnectionId, FromSwarm, NetworkBehaviour};
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Peers flooding this browser with connections over its relayed address: at most a few
    /// handshakes at once, and a cap on the connections they hold once established.
    #[test]
    fn a_flood_of_inbound_connections_is_capped() {
        let mut limits = connection_limits::Behaviour::new(limits());
        let local: Multiaddr = "/p2p-circuit".parse().unwrap();
        let remote: Multiaddr = "/ip4/10.0.0.9/tcp/4002/ws".parse().unwrap();
        let mut next = 0;
        let mut id = || {
            next += 1;
            ConnectionId::new_unchecked(next)
        };
        let mut pending = Vec::new();
        for _ in 0..MAX_PENDING_INBOUND {
            let c = id();
            assert!(limits.handle_pending_inbound_connection(c, &local, &remote).is_ok());
            pending.push(c);
        }
        assert!(limits.handle_pending_inbound_connection(id(), &local, &remote).is_err(), "a ninth handshake");

        let endpoint = ConnectedPoint::Listener { local_addr: local.clone(), send_back_addr: remote.clone() };
        let mut refused = 0;
        for i in 0..2 * MAX_INBOUND_CONNECTIONS {
            let (c, peer) = (pending.pop().unwrap_or_else(&mut id), PeerId::random());
            if limits.handle_established_inbound_connection(c, peer, &local, &remote).is_err() {
                refused += 1;
                continue;
            }
            limits.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id: c,
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
            assert!(i < MAX_INBOUND_CONNECTIONS, "connection {i} admitted");
        }
        assert_eq!(refused, MAX_INBOUND_CONNECTIONS, "the connections past the cap are refused");
    }
}
