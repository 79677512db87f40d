//! The serving loop: the task that owns the node's swarm ([`crate::swarm`] builds it) and runs
//! it until shutdown: listeners, metrics, liveness, relay reservations, browsers' announcements,
//! replication asked of replicas and answered for origins.
//!
//! The rest of the node sees its listen addresses through a watch channel and tells it about
//! new tracks through a channel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use antiphon_core::Cid;
use antiphon_core::bitswap;
use antiphon_core::transport::{connection_addr, transport_name};
use anyhow::Context;
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, ping, relay};
use tokio::sync::{mpsc, watch};

use crate::browsers::{self, BrowserProviders, ProvideResponse};
use crate::catalog::Catalog;
use crate::metrics::Metrics;
use crate::replication::{self, PullPolicy, ReplicateRequest, ReplicateResponse};
use crate::store::Store;
use crate::swarm::{NodeBehaviour, NodeBehaviourEvent};
use antiphon_core::liveness::{self, Liveness};

/// Replication pulls a replica serves at once; more requests wait for a later retry.
const MAX_CONCURRENT_PULLS: usize = 4;
/// Replication requests in flight to one replica at once.
const MAX_REQUESTS_PER_REPLICA: usize = 4;

/// What the serving swarm task needs besides the swarm.
pub struct RunContext {
    /// The store (confirmations are written to it, off this task).
    pub store: Store,
    /// The tracks held (what to replicate, what browsers may claim).
    pub catalog: Arc<Catalog>,
    /// What this node accepts when asked to replicate.
    pub pull_policy: PullPolicy,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Replica creator nodes (multiaddrs ending in `/p2p/<peer id>`).
    pub replicas: Vec<Multiaddr>,
    /// Seconds between replication retries.
    pub retry: Duration,
    /// Tracks added while serving (uploads), to replicate at once.
    pub new_tracks: mpsc::Receiver<Cid>,
    /// Listen addresses (with `/p2p/<peer id>`) are published here.
    pub addrs_tx: watch::Sender<Vec<Multiaddr>>,
    /// Flips to true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Browsers serving through this node, shared with the routing endpoint.
    pub browsers: Arc<BrowserProviders>,
}

/// Which (track, replica) pairs still need a confirmation, and which are being asked.
struct Replicator {
    replicas: Vec<(PeerId, Multiaddr)>,
    in_flight: HashMap<OutboundRequestId, (Cid, PeerId)>,
    asked: HashSet<(Cid, PeerId)>,
}

impl Replicator {
    /// Sends a request for every unconfirmed pair not already being asked, a few per replica.
    /// Reads only the in-memory catalog: nothing here waits on the disk.
    fn kick(&mut self, swarm: &mut Swarm<NodeBehaviour<Store>>, catalog: &Catalog, addrs: &[Multiaddr]) {
        if self.replicas.is_empty() {
            return;
        }
        let from = replication::fetchable(addrs);
        if from.is_empty() {
            return;
        }
        for (peer, addr) in &self.replicas {
            // Failed dials make libp2p forget an address; a replica that was down must be
            // dialled again at its configured address.
            swarm.add_peer_address(*peer, addr.clone());
            let asked_now = self.asked.iter().filter(|(_, p)| p == peer).count();
            let room = MAX_REQUESTS_PER_REPLICA.saturating_sub(asked_now);
            for track in catalog.unconfirmed(peer, room, |t| self.asked.contains(&(*t, *peer))) {
                let request = ReplicateRequest { track: track.to_bytes(), from: from.clone() };
                let id = swarm.behaviour_mut().replicate.send_request(peer, request);
                tracing::debug!(%track, %peer, "asking a replica to pull a track");
                self.in_flight.insert(id, (track, *peer));
                self.asked.insert((track, *peer));
            }
        }
    }

    /// Forgets a request; returns what it asked.
    fn done(&mut self, id: &OutboundRequestId) -> Option<(Cid, PeerId)> {
        let pair = self.in_flight.remove(id)?;
        self.asked.remove(&pair);
        Some(pair)
    }
}

/// Starts listening on `listen` and runs the swarm until shutdown: serves Bitswap, keeps the
/// metrics, answers replication requests and asks replicas to pull tracks.
pub async fn run(
    mut swarm: Swarm<NodeBehaviour<Store>>,
    listen: &[Multiaddr],
    mut ctx: RunContext,
) -> anyhow::Result<()> {
    for addr in listen {
        swarm.listen_on(addr.clone()).with_context(|| format!("cannot listen on {addr}"))?;
    }
    let local: PeerId = *swarm.local_peer_id();
    let mut replicator = Replicator {
        replicas: ctx.replicas.iter().filter_map(|a| Some((replication::peer_of(a)?, a.clone()))).collect(),
        in_flight: HashMap::new(),
        asked: HashSet::new(),
    };
    for (peer, addr) in &replicator.replicas {
        swarm.add_peer_address(*peer, addr.clone());
    }
    let mut transports: HashMap<ConnectionId, &'static str> = HashMap::new();
    let mut peer_transport: HashMap<PeerId, &'static str> = HashMap::new();
    // The address each connected peer came from, for per-IP bounds on reservations.
    let mut peer_ip: HashMap<PeerId, std::net::IpAddr> = HashMap::new();
    // Replication pulls this node serves as a replica: their answers come back here.
    let (pulled_tx, mut pulled_rx) = mpsc::channel::<(ResponseChannel<ReplicateResponse>, ReplicateResponse)>(16);
    let mut pulls = 0usize;
    let mut retry = tokio::time::interval(ctx.retry);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut gauges = tokio::time::interval(Duration::from_secs(1));
    let mut liveness = Liveness::default();
    loop {
        tokio::select! {
            _ = ctx.shutdown.changed() => break,
            _ = retry.tick() => {
                let addrs = ctx.addrs_tx.borrow().clone();
                replicator.kick(&mut swarm, &ctx.catalog, &addrs);
            }
            _ = gauges.tick() => {
                let b = &swarm.behaviour().bitswap;
                ctx.metrics.set_bitswap(b.peer_wants(), b.requests_in_flight());
                for connection in liveness.dead(Instant::now()) {
                    tracing::info!(?connection, "WebRTC connection answered no ping for {:?}; closing it", liveness::DEAD_AFTER);
                    swarm.close_connection(connection);
                }
            }
            Some(track) = ctx.new_tracks.recv() => {
                tracing::debug!(%track, "new track; asking replicas");
                let addrs = ctx.addrs_tx.borrow().clone();
                replicator.kick(&mut swarm, &ctx.catalog, &addrs);
            }
            Some((channel, response)) = pulled_rx.recv() => {
                pulls = pulls.saturating_sub(1);
                ctx.metrics.replication(response.stored);
                if swarm.behaviour_mut().replicate.send_response(channel, response).is_err() {
                    tracing::debug!("the origin went away before the replication answer");
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    // A creator node is a server: what it listens on is where peers reach it,
                    // and the relay server only takes reservations once it has such an address.
                    swarm.add_external_address(address.clone());
                    let full = address.with(Protocol::P2p(local));
                    tracing::info!(%full, "listening");
                    ctx.addrs_tx.send_modify(|a| a.push(full));
                }
                SwarmEvent::ExpiredListenAddr { address, .. } => {
                    swarm.remove_external_address(&address);
                    let full = address.with(Protocol::P2p(local));
                    ctx.addrs_tx.send_modify(|a| a.retain(|x| *x != full));
                }
                SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, connection_id, .. } => {
                    let transport = transport_name(connection_addr(&endpoint));
                    transports.insert(connection_id, transport);
                    if liveness::needs_watching(connection_addr(&endpoint)) {
                        liveness.watch(connection_id, Instant::now());
                    }
                    peer_transport.insert(peer_id, transport);
                    if let Some(ip) = crate::ip_limits::ip_of(endpoint.get_remote_address()) {
                        peer_ip.entry(peer_id).or_insert(ip);
                    }
                    ctx.metrics.connection_opened(transport);
                    // Per connection: debug, so that a busy node's log is not one line per listener.
                    tracing::debug!(%peer_id, transport, addr = %endpoint.get_remote_address(), "connected");
                    if replicator.replicas.iter().any(|(p, _)| *p == peer_id) {
                        let addrs = ctx.addrs_tx.borrow().clone();
                        replicator.kick(&mut swarm, &ctx.catalog, &addrs);
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, connection_id, num_established, .. } => {
                    if let Some(transport) = transports.remove(&connection_id) {
                        ctx.metrics.connection_closed(transport);
                    }
                    liveness.forget(connection_id);
                    if num_established == 0 {
                        peer_transport.remove(&peer_id);
                        peer_ip.remove(&peer_id);
                        ctx.browsers.remove(&peer_id);
                    }
                    tracing::debug!(%peer_id, cause = ?cause.map(|c| c.to_string()), "disconnected");
                }
                SwarmEvent::Behaviour(NodeBehaviourEvent::Bitswap(event)) => {
                    if let bitswap::Event::Served { peer, bytes, .. } = &event {
                        let transport = peer_transport.get(peer).copied().unwrap_or("other");
                        ctx.metrics.served(transport, "bitswap", *bytes);
                    }
                    log_bitswap(event);
                }
                SwarmEvent::Behaviour(NodeBehaviourEvent::Replicate(event)) => match event {
                    request_response::Event::Message { peer, message, .. } => match message {
                        request_response::Message::Request { request, channel, .. } => {
                            // Strangers are answered at once and take no pull slot.
                            if !ctx.pull_policy.origins.contains(&peer) {
                                tracing::info!(%peer, "refused a replication request: the peer is not one of this node's origins");
                                let _ = swarm.behaviour_mut().replicate.send_response(channel, replication::not_stored());
                                continue;
                            }
                            if pulls >= MAX_CONCURRENT_PULLS {
                                let busy = ReplicateResponse { stored: false, blocks: 0, bytes: 0,
                                    error: Some("busy; ask again later".into()) };
                                let _ = swarm.behaviour_mut().replicate.send_response(channel, busy);
                                continue;
                            }
                            pulls += 1;
                            tracing::info!(%peer, "asked to replicate a track");
                            let (store, catalog, policy) = (ctx.store.clone(), ctx.catalog.clone(), ctx.pull_policy.clone());
                            let tx = pulled_tx.clone();
                            tokio::spawn(async move {
                                let response = replication::pull(store, catalog, policy, peer, request).await;
                                let _ = tx.send((channel, response)).await;
                            });
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some((track, replica)) = replicator.done(&request_id) {
                                if response.stored {
                                    tracing::info!(%track, %replica, blocks = response.blocks, "replica confirmed a track");
                                    confirm(&ctx.store, &ctx.catalog, track, replica);
                                } else {
                                    tracing::warn!(%track, %replica, error = ?response.error, "replica could not pull a track; will retry");
                                }
                            }
                        }
                    },
                    request_response::Event::OutboundFailure { request_id, peer, error, .. } => {
                        if let Some((track, _)) = replicator.done(&request_id) {
                            tracing::info!(%track, %peer, %error, "replica unreachable; will retry");
                        }
                    }
                    request_response::Event::InboundFailure { peer, error, .. } => {
                        tracing::debug!(%peer, %error, "inbound replication request failed");
                    }
                    request_response::Event::ResponseSent { .. } => {}
                },
                SwarmEvent::Behaviour(NodeBehaviourEvent::Provide(event)) => match event {
                    request_response::Event::Message { peer, message: request_response::Message::Request { request, channel, .. }, .. } => {
                        let holds = |cid: &Cid| ctx.catalog.holds(cid);
                        let response = match ctx.browsers.announce(peer, &request, holds, Instant::now()) {
                            Ok(n) => {
                                tracing::debug!(%peer, cids = n, "a browser announced what it serves");
                                ProvideResponse { accepted: n as u32, error: None }
                            }
                            Err(error) => {
                                // The reason may quote the request: keep the answer within the browser's bound.
                                let error: String = error.chars().take(browsers::MAX_ERROR_CHARS).collect();
                                tracing::info!(%peer, %error, "refused a browser's announcement");
                                ProvideResponse { accepted: 0, error: Some(error) }
                            }
                        };
                        let _ = swarm.behaviour_mut().provide.send_response(channel, response);
                    }
                    request_response::Event::InboundFailure { peer, error, .. } => {
                        tracing::debug!(%peer, %error, "inbound announcement failed");
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(NodeBehaviourEvent::Relay(event)) => match event {
                    relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                        if !ctx.browsers.reserved(src_peer_id, peer_ip.get(&src_peer_id).copied()) {
                            tracing::info!(peer = %src_peer_id, "too many relay reservations from one address; disconnecting");
                            let _ = swarm.disconnect_peer_id(src_peer_id);
                        }
                    }
                    relay::Event::ReservationClosed { src_peer_id } | relay::Event::ReservationTimedOut { src_peer_id } => {
                        ctx.browsers.remove(&src_peer_id);
                    }
                    other => tracing::debug!(event = ?other, "relay"),
                },
                SwarmEvent::Behaviour(NodeBehaviourEvent::Ping(ping::Event { peer, connection, result })) => match result {
                    Ok(_) => liveness.alive(connection, Instant::now()),
                    Err(ping::Failure::Unsupported) => {
                        if liveness.unsupported(connection) {
                            tracing::info!(%peer, "ping stopped working on a WebRTC connection; closing it");
                            swarm.close_connection(connection);
                        }
                    }
                    Err(error) => {
                        tracing::info!(%peer, %error, "ping failed; closing the connection");
                        swarm.close_connection(connection);
                    }
                },
                SwarmEvent::IncomingConnectionError { error, send_back_addr, .. } => {
                    tracing::debug!(%error, %send_back_addr, "incoming connection failed");
                }
                _ => {}
            }
        }
    }
    tracing::info!("network stopped");
    Ok(())
}

/// Records a replica's confirmation: in the catalog at once, in the store on a blocking
/// thread (a write transaction may have to wait for another; the swarm task must not).
fn confirm(store: &Store, catalog: &Catalog, track: Cid, replica: PeerId) {
    let now = crate::unix_now();
    catalog.confirm(&track, replica, now);
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.confirm_replica(&track, &replica.to_bytes(), now) {
            tracing::warn!(error = %e, %track, %replica, "cannot record a replica's confirmation");
        }
    });
}

fn log_bitswap(event: bitswap::Event) {
    match event {
        bitswap::Event::CorruptBlock { peer, bytes } => tracing::warn!(%peer, bytes, "peer sent a corrupt block"),
        bitswap::Event::ProtocolViolation { peer, error } => {
            tracing::warn!(%peer, %error, "bitswap protocol violation; stream reset")
        }
        other => tracing::debug!(?other, "bitswap"),
    }
}
