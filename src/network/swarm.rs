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
    crate::network::webrtc::SIGNALING,
];
/// Commands queued for the swarm task at most.
const COMMAND_QUEUE: usize = 64;
/// Bytes of verified blocks the peer keeps in memory to serve to others.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Why a command to the swarm task failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetError {
    /// The task has stopped (`peer.close()`, or every handle dropped).
    #[error("peer stopped")]
    Stopped,
    /// Announcing needs a connection to the node, and announcing never dials.
    #[error("not connected to that node")]
    NotConnected,
    /// The dial, listen or exchange failed; why, in words.
    #[error("{0}")]
    Failed(String),
}

/// A block fetched and verified, with who sent it.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The verified block.
    pub(crate) block: Block,
    /// The peer that delivered it.
    pub(crate) peer: PeerId,
}

enum Command {
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
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
        reply: oneshot::Sender<Result<Reservation, NetError>>,
    },
    /// Connect to a browser at `<relayed>/p2p-circuit/webrtc/p2p/<id>`.
    DialBrowser {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    /// Tell creator node `node` what this peer holds and where other browsers reach it.
    Announce {
        node: PeerId,
        request: ProvideRequest,
        reply: oneshot::Sender<Result<u32, NetError>>,
    },
    /// Ask `peer` to say HAVE for `cids` ([`NetHandle::watch`]).
    Watch {
        peer: PeerId,
        cids: Vec<Cid>,
    },
    /// `cid` was put in the store from outside the task (a gateway's block).
    Added(Cid),
    /// Stop the task: the swarm is dropped, closing every connection and data channel.
    Close,
}

/// A relay reservation granted by a creator node.
pub(crate) struct Reservation {
    /// Where other browsers reach this one: `<relay>/p2p-circuit/webrtc/p2p/<this peer>`.
    pub(crate) addr: Multiaddr,
    /// Resolves with the reason once the reservation has ended (the relay's connection closed).
    pub(crate) ended: oneshot::Receiver<String>,
}

/// How long one announcement may take.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(10);

/// One `/antiphon/provide/1.0.0` exchange: the request, a half-close, the bounded answer.
async fn announce(mut control: libp2p_stream::Control, node: PeerId, request: ProvideRequest) -> Result<u32, NetError> {
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
        futures::future::Either::Left((result, _)) => result.map_err(NetError::Failed),
        futures::future::Either::Right(_) => Err(NetError::Failed(format!("no answer within {ANNOUNCE_TIMEOUT:?}"))),
    }
}

/// A browser-to-browser dial in progress.
enum BrowserDial {
    /// Waiting for the relayed connection; `addr` is the `/webrtc` address to dial next.
    Relayed { addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, NetError>> },
    /// Waiting for the direct connection; `relayed` is closed once it is up.
    Direct { relayed: ConnectionId, reply: oneshot::Sender<Result<PeerId, NetError>> },
}

pub(crate) use behaviour::{BrowserBehaviour, BrowserBehaviourEvent};

mod behaviour {
    // The derive generates `BrowserBehaviourEvent`, whose variants cannot carry doc comments.
    #![allow(missing_docs)]
    use super::*;

    /// The browser peer's behaviours.
    #[derive(NetworkBehaviour)]
    pub(crate) struct BrowserBehaviour {
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
pub(crate) struct NetHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    /// Open connections by peer, kept by the swarm task.
    connections: Rc<RefCell<HashMap<PeerId, u32>>>,
    /// The verified blocks this peer serves (shared with its Bitswap behaviour).
    store: MemoryBlockstore,
    /// This peer's identity, which also signs its receipts.
    key: libp2p::identity::Keypair,
    /// What connected peers were asked to say HAVE for, and what they said HAVE for.
    watches: Watches,
}

/// Per peer, the CIDs it is watched for ([`NetHandle::watch`]) and those it said HAVE for.
type Watches = Rc<RefCell<HashMap<PeerId, Watch>>>;

/// One peer's watch.
#[derive(Default)]
struct Watch {
    watched: std::collections::HashSet<Cid>,
    said_have: std::collections::HashSet<Cid>,
}

/// Most CIDs one peer is watched for (a track's segments: `limits::MAX_WANTLIST_ENTRIES`).
const MAX_WATCHED: usize = antiphon_core::limits::MAX_WANTLIST_ENTRIES;

impl NetHandle {
    /// Builds the swarm and starts its task on the page's event loop.
    pub(crate) fn spawn(upload: bitswap::UploadBudget) -> Result<Self, Error> {
        let store = MemoryBlockstore::new(CACHE_BYTES);
        let key = libp2p::identity::Keypair::generate_ed25519();
        let public_key = key.public().encode_protobuf();
        let swarm = build_swarm(key.clone(), store.clone(), upload)?;
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
        let watches = Watches::default();
        wasm_bindgen_futures::spawn_local(
            NetTask::new(swarm, connections.clone(), listen_addrs, watches.clone()).run(rx),
        );
        Ok(Self { commands, local_peer_id, connections, store, key, watches })
    }

    /// Asks `peer` to say HAVE for each of `cids` it holds or gets later (Bitswap want-have
    /// without send_dont_have); [`NetHandle::said_have`] reads the answers. At most
    /// [`MAX_WATCHED`] per peer; forgotten when the peer disconnects.
    pub(crate) fn watch(&self, peer: PeerId, cids: &[Cid]) {
        let new: Vec<Cid> = {
            let mut watches = self.watches.borrow_mut();
            let w = watches.entry(peer).or_default();
            cids.iter().filter(|c| w.watched.len() < MAX_WATCHED && w.watched.insert(**c)).copied().collect()
        };
        if new.is_empty() {
            return;
        }
        if let Err(e) = self.commands.clone().try_send(Command::Watch { peer, cids: new }) {
            // Not sent (the task is busy or gone): not watched, so that the next call asks again.
            if let Command::Watch { cids, .. } = e.into_inner()
                && let Some(w) = self.watches.borrow_mut().get_mut(&peer)
            {
                for cid in &cids {
                    w.watched.remove(cid);
                }
            }
        }
    }

    /// Whether `peer` said HAVE for `cid` since it was watched for it.
    pub(crate) fn said_have(&self, peer: &PeerId, cid: &Cid) -> bool {
        self.watches.borrow().get(peer).is_some_and(|w| w.said_have.contains(cid))
    }

    /// This peer's identity key.
    pub(crate) fn key(&self) -> &libp2p::identity::Keypair {
        &self.key
    }

    /// Keeps a block verified elsewhere (from a gateway) so that it is served to others too.
    pub(crate) fn keep(&self, block: &antiphon_core::Block) {
        // The in-memory store does not fail; a block too large for it is simply not kept.
        let _ = self.store.put(block);
        // Peers waiting to hear of it are told HAVE.
        let _ = self.commands.clone().try_send(Command::Added(*block.cid()));
    }

    /// Whether the block cache still holds `cid` (it forgets its oldest blocks first).
    pub(crate) fn holds(&self, cid: &antiphon_core::Cid) -> bool {
        self.store.has(cid).unwrap_or(false)
    }

    /// Whether at least one connection to `peer` is open.
    pub(crate) fn is_connected(&self, peer: &PeerId) -> bool {
        self.connections.borrow().contains_key(peer)
    }

    /// Whether the swarm task has stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.commands.is_closed()
    }

    /// This peer's ID.
    pub(crate) fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Dials `addr`; resolves with the remote's peer ID once the connection is up.
    pub(crate) async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Dial { addr, reply }).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Reserves a slot on the creator node at `relay` (`.../p2p/<node-id>`) and resolves with
    /// the address other browsers dial to reach this one directly, and the reservation's end.
    pub(crate) async fn listen(&self, relay: Multiaddr) -> Result<Reservation, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Listen { relay, reply }).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Connects directly to the browser at `addr` (`<relayed>/p2p-circuit/webrtc/p2p/<id>`),
    /// signalling through the relay; the relayed connection is closed once the direct one is up.
    pub(crate) async fn dial_browser(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::DialBrowser { addr, reply }).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Tells the creator node `node` what this peer holds (`/antiphon/provide/1.0.0`); resolves
    /// with the number of CIDs it recorded. Fails with [`NetError::NotConnected`] rather than
    /// dialling.
    pub(crate) async fn announce(&self, node: PeerId, request: ProvideRequest) -> Result<u32, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands.clone().send(Command::Announce { node, request, reply }).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    /// Stops the swarm task, closing every connection; later calls fail with `Stopped`.
    pub(crate) async fn close(&self) {
        let _ = self.commands.clone().send(Command::Close).await;
    }

    /// Fetches `cid` from `peer` by Bitswap; the block is verified before it is returned.
    pub(crate) async fn get(&self, cid: Cid, peer: PeerId) -> Result<Fetched, Error> {
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

/// Every transport, in the order a dial tries them: browser-to-browser WebRTC, relayed
/// addresses, WebSocket, then WebRTC-direct (the last three take disjoint addresses).
fn transports(
    key: &libp2p::identity::Keypair,
    relay: relay::client::Transport,
    signaling: libp2p_stream::Control,
) -> Result<BoxedTransport, noise::Error> {
    // Relayed circuits and WebSockets share one upgrade: noise, yamux and multistream-select
    // are generic over the connection, and an upgrade per transport built each of them twice
    // into the module. The relay comes first, or WebSocket would take a relayed
    // `/ws/.../p2p-circuit` address as its own.
    let upgraded = relay
        .or_transport(crate::network::websocket::Transport)
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux_config());
    let direct = crate::network::webrtc::DirectTransport::new(key.clone());
    Ok(crate::network::webrtc::Transport::new(signaling)
        .or_transport(upgraded.map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))))
        .map(|either, _| either.into_inner())
        .or_transport(direct)
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
fn build_swarm(
    key: libp2p::identity::Keypair,
    store: MemoryBlockstore,
    upload: bitswap::UploadBudget,
) -> Result<Swarm<BrowserBehaviour>, Error> {
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
            bitswap: bitswap::Behaviour::new(
                store.clone(),
                bitswap::Config::default().with_external_sha2_256(true).with_upload_budget(Some(upload)),
            ),
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

/// What woke the swarm task.
enum Wake {
    Housekeeping,
    Hashed((PeerId, bitswap::message::ReceivedBlock, Option<[u8; 32]>)),
    Command(Option<Command>),
    Swarm(SwarmEvent<BrowserBehaviourEvent>),
}

type Hashing = FuturesUnordered<
    futures::future::LocalBoxFuture<'static, (PeerId, bitswap::message::ReceivedBlock, Option<[u8; 32]>)>,
>;

/// The swarm task: owns the swarm and every request in flight, and handles one command or
/// one swarm event at a time.
struct NetTask {
    swarm: Swarm<BrowserBehaviour>,
    /// Open connections by peer, read by [`NetHandle`].
    connections: Rc<RefCell<HashMap<PeerId, u32>>>,
    /// This peer's listen addresses, read by identify answers.
    listen_addrs: Rc<RefCell<Vec<Multiaddr>>>,
    dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, NetError>>>,
    gets: HashMap<RequestId, oneshot::Sender<Result<Fetched, Error>>>,
    webrtc_listener: Option<ListenerId>,
    reservations: HashMap<ListenerId, (Multiaddr, oneshot::Sender<Result<Reservation, NetError>>)>,
    /// Granted reservations: told why when their listener closes.
    granted: HashMap<ListenerId, oneshot::Sender<String>>,
    browser_dials: HashMap<ConnectionId, BrowserDial>,
    streams: libp2p_stream::Control,
    /// Blocks being hashed by WebCrypto. Each is a block already received, so the Bitswap
    /// behaviour's per-request bounds bound this too.
    hashing: Hashing,
    /// Connections that stop answering pings are closed: nothing else reports a WebRTC
    /// connection whose other end has gone (see `antiphon_core::liveness`).
    liveness: Liveness,
    /// Shared with [`NetHandle`]: filled from HAVE answers.
    watches: Watches,
}

impl NetTask {
    fn new(
        swarm: Swarm<BrowserBehaviour>,
        connections: Rc<RefCell<HashMap<PeerId, u32>>>,
        listen_addrs: Rc<RefCell<Vec<Multiaddr>>>,
        watches: Watches,
    ) -> Self {
        let streams = swarm.behaviour().streams.new_control();
        Self {
            watches,
            swarm,
            connections,
            listen_addrs,
            dials: HashMap::new(),
            gets: HashMap::new(),
            webrtc_listener: None,
            reservations: HashMap::new(),
            granted: HashMap::new(),
            browser_dials: HashMap::new(),
            streams,
            hashing: FuturesUnordered::new(),
            liveness: Liveness::default(),
        }
    }

    /// Runs until `Close` or until every handle is dropped.
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut housekeeping = futures_timer::Delay::new(liveness::PING_INTERVAL).fuse();
        loop {
            let wake = futures::select! {
                () = housekeeping => Wake::Housekeeping,
                hashed = self.hashing.select_next_some() => Wake::Hashed(hashed),
                command = commands.next() => Wake::Command(command),
                event = self.swarm.select_next_some() => Wake::Swarm(event),
            };
            match wake {
                Wake::Housekeeping => {
                    self.housekeeping();
                    housekeeping = futures_timer::Delay::new(liveness::PING_INTERVAL).fuse();
                }
                Wake::Hashed((peer, block, digest)) => {
                    self.swarm.behaviour_mut().bitswap.deliver_hashed(peer, block, digest)
                }
                Wake::Command(None | Some(Command::Close)) => break,
                Wake::Command(Some(command)) => self.on_command(command),
                Wake::Swarm(event) => self.on_swarm_event(event),
            }
        }
        self.connections.borrow_mut().clear();
        tracing::info!("network task stopped");
    }

    /// Closes connections that stopped answering pings, and withdraws requests nobody waits
    /// for any more (a hedge that lost, a manifest asked for twice, a load that moved on): the
    /// peer gets a cancel instead of sending the block anyway, and the request's slot is freed
    /// before its timeout.
    fn housekeeping(&mut self) {
        for connection in self.liveness.dead(web_time::Instant::now()) {
            tracing::info!(?connection, "connection answered no ping for {:?}; closing it", liveness::DEAD_AFTER);
            self.swarm.close_connection(connection);
        }
        let bitswap = &mut self.swarm.behaviour_mut().bitswap;
        self.gets.retain(|request, reply| {
            let waited_for = !reply.is_canceled();
            if !waited_for {
                bitswap.cancel(*request);
            }
            waited_for
        });
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Close => {}
            Command::Dial { addr, reply } => {
                let opts = DialOpts::unknown_peer_id().address(addr).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Failed(e.to_string())));
                    }
                }
            }
            Command::Listen { relay, reply } => self.listen(relay, reply),
            Command::DialBrowser { addr, reply } => self.dial_browser(addr, reply),
            Command::Announce { node, request, reply } => {
                if !self.swarm.is_connected(&node) {
                    let _ = reply.send(Err(NetError::NotConnected));
                    return;
                }
                let control = self.streams.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = reply.send(announce(control, node, request).await);
                });
            }
            Command::Get { cid, peer, reply } => {
                let id = self.swarm.behaviour_mut().bitswap.get(cid, Source::Peers(vec![peer]));
                self.gets.insert(id, reply);
            }
            Command::Watch { peer, cids } => self.swarm.behaviour_mut().bitswap.watch(peer, &cids),
            Command::Added(cid) => self.swarm.behaviour_mut().bitswap.block_added(&cid),
        }
    }

    /// Listens on `/webrtc` (once) and asks the relay at `relay` for a reservation.
    fn listen(&mut self, relay: Multiaddr, reply: oneshot::Sender<Result<Reservation, NetError>>) {
        if self.webrtc_listener.is_none() {
            match self.swarm.listen_on(Multiaddr::empty().with(Protocol::WebRTC)) {
                Ok(id) => self.webrtc_listener = Some(id),
                Err(e) => {
                    let _ = reply.send(Err(NetError::Failed(format!("cannot listen on /webrtc: {e}"))));
                    return;
                }
            }
        }
        match self.swarm.listen_on(relay.clone().with(Protocol::P2pCircuit)) {
            Ok(id) => {
                self.reservations.insert(id, (relay, reply));
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Failed(format!("cannot reserve on {relay}: {e}"))));
            }
        }
    }

    /// Dials a browser's relayed address; the direct connection follows once it is up.
    fn dial_browser(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, NetError>>) {
        let Some((relayed, peer)) = crate::network::webrtc::split_address(&addr) else {
            let reason = format!("{addr} is not a browser address (.../p2p-circuit/webrtc/p2p/<id>)");
            let _ = reply.send(Err(NetError::Failed(reason)));
            return;
        };
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(Err(NetError::Failed("that address is this peer's own".into())));
            return;
        }
        let opts = DialOpts::peer_id(peer).addresses(vec![relayed]).condition(PeerCondition::Always).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.browser_dials.insert(id, BrowserDial::Relayed { addr, reply });
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Failed(e.to_string())));
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BrowserBehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                tracing::info!(%peer_id, addr = %endpoint.get_remote_address(), "connected");
                if liveness::needs_watching(connection_addr(&endpoint)) {
                    self.liveness.watch(connection_id, web_time::Instant::now());
                }
                *self.connections.borrow_mut().entry(peer_id).or_default() += 1;
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.on_browser_connection(peer_id, connection_id);
            }
            SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                if let Some(reply) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NetError::Failed(dial_error_reason(&error))));
                }
                match self.browser_dials.remove(&connection_id) {
                    Some(BrowserDial::Relayed { reply, .. }) => {
                        let _ = reply.send(Err(NetError::Failed(format!("through the relay: {error}"))));
                    }
                    Some(BrowserDial::Direct { relayed, reply }) => {
                        self.swarm.close_connection(relayed);
                        let _ = reply.send(Err(NetError::Failed(format!("WebRTC: {error}"))));
                    }
                    None => {}
                }
            }
            SwarmEvent::NewListenAddr { listener_id, address } => {
                tracing::info!(%address, "listening");
                publish_listen_addrs(&self.swarm, &self.listen_addrs);
                if let Some((relay, reply)) = self.reservations.remove(&listener_id) {
                    let local = *self.swarm.local_peer_id();
                    let addr = relay.with(Protocol::P2pCircuit).with(Protocol::WebRTC).with(Protocol::P2p(local));
                    let (end, ended) = oneshot::channel();
                    if reply.send(Ok(Reservation { addr, ended })).is_ok() {
                        self.granted.insert(listener_id, end);
                    } else {
                        self.swarm.remove_listener(listener_id);
                    }
                }
            }
            SwarmEvent::ExpiredListenAddr { .. } => publish_listen_addrs(&self.swarm, &self.listen_addrs),
            SwarmEvent::ListenerClosed { listener_id, reason, .. } => {
                publish_listen_addrs(&self.swarm, &self.listen_addrs);
                let why = reason.err().map_or_else(|| "closed".to_owned(), |e| e.to_string());
                if let Some((relay, reply)) = self.reservations.remove(&listener_id) {
                    let _ = reply.send(Err(NetError::Failed(format!("no reservation on {relay}: {why}"))));
                }
                if let Some(end) = self.granted.remove(&listener_id) {
                    let _ = end.send(why);
                }
                if self.webrtc_listener == Some(listener_id) {
                    self.webrtc_listener = None;
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some((relay, reply)) = self.reservations.remove(&listener_id) {
                    let _ = reply.send(Err(NetError::Failed(format!("no reservation on {relay}: {error}"))));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, cause, num_established, .. } => {
                self.liveness.forget(connection_id);
                if num_established == 0 {
                    self.connections.borrow_mut().remove(&peer_id);
                    self.watches.borrow_mut().remove(&peer_id);
                }
                tracing::info!(%peer_id, cause = ?cause.map(|c| c.to_string()), "disconnected");
            }
            SwarmEvent::Behaviour(BrowserBehaviourEvent::Ping(event)) => self.on_ping(event),
            SwarmEvent::Behaviour(BrowserBehaviourEvent::Bitswap(event)) => self.on_bitswap(event),
            _ => {}
        }
    }

    /// A browser connection being made: the relayed one is up, so signal through it for the
    /// direct one; or the direct one is up, so the relayed one has done its job.
    fn on_browser_connection(&mut self, peer_id: PeerId, connection_id: ConnectionId) {
        match self.browser_dials.remove(&connection_id) {
            Some(BrowserDial::Relayed { addr, reply }) => {
                let opts = DialOpts::peer_id(peer_id).addresses(vec![addr]).condition(PeerCondition::Always).build();
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.browser_dials.insert(id, BrowserDial::Direct { relayed: connection_id, reply });
                    }
                    Err(e) => {
                        self.swarm.close_connection(connection_id);
                        let _ = reply.send(Err(NetError::Failed(e.to_string())));
                    }
                }
            }
            Some(BrowserDial::Direct { relayed, reply }) => {
                self.swarm.close_connection(relayed);
                let _ = reply.send(Ok(peer_id));
            }
            None => {}
        }
    }

    fn on_ping(&mut self, ping::Event { peer, connection, result }: ping::Event) {
        match result {
            Ok(_) => self.liveness.alive(connection, web_time::Instant::now()),
            Err(failure) if ping_unsupported(&failure) => {
                if self.liveness.unsupported(connection) {
                    tracing::info!(%peer, "ping stopped working on a connection; closing it");
                    self.swarm.close_connection(connection);
                }
            }
            Err(error) => {
                tracing::info!(%peer, %error, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
        }
    }

    fn on_bitswap(&mut self, event: bitswap::Event) {
        match event {
            bitswap::Event::Block { request, block, peer, .. } => {
                // Keep what was verified, to serve it to others later, and tell the peers
                // waiting to hear of it.
                let _ = self.swarm.behaviour().bitswap.store().put(&block);
                self.swarm.behaviour_mut().bitswap.block_added(block.cid());
                if let Some(reply) = self.gets.remove(&request) {
                    let _ = reply.send(Ok(Fetched { block, peer }));
                }
            }
            bitswap::Event::Failed { request, cid, error } => {
                if let Some(reply) = self.gets.remove(&request) {
                    let _ = reply.send(Err(Error::from_request(cid, error)));
                }
            }
            bitswap::Event::HashNeeded { peer, block } => {
                self.hashing.push(Box::pin(async move {
                    let digest = crate::api::verify::subtle_sha256(&block.data).await;
                    (peer, block, digest)
                }));
            }
            bitswap::Event::Have { peer, cid } => {
                if let Some(w) = self.watches.borrow_mut().get_mut(&peer)
                    && w.watched.contains(&cid)
                {
                    w.said_have.insert(cid);
                }
            }
            bitswap::Event::CorruptBlock { peer, bytes } => {
                tracing::warn!(%peer, bytes, "peer sent a block that does not match its CID; dropped");
            }
            other => tracing::debug!(?other, "bitswap"),
        }
    }
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
