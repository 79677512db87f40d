//! The node's libp2p swarm: TCP, WebSocket and WebRTC-direct listeners; Bitswap serving from
//! the store; identify (which advertises Bitswap, as Helia requires) and ping.
//!
//! The swarm is owned by one task; the rest of the node sees its listen addresses through a
//! watch channel.

use std::time::Duration;

use antiphon_core::bitswap::{self, Blockstore};
use antiphon_core::limits::YAMUX_MAX_STREAMS;
use antiphon_core::transport::transport_name;
use anyhow::Context;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, Transport, identify, noise, ping, tcp, yamux};
use libp2p_webrtc::tokio::Certificate;
use tokio::sync::watch;

use crate::store::Store;

/// Protocol version string sent in identify.
pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

pub use behaviour::{NodeBehaviour, NodeBehaviourEvent};

mod behaviour {
    // The derive generates `NodeBehaviourEvent`, whose variants cannot carry doc comments.
    #![allow(missing_docs)]
    use super::*;

    /// The node's behaviours, over the store Bitswap serves from (redb when serving, memory
    /// for a one-off fetch).
    #[derive(NetworkBehaviour)]
    pub struct NodeBehaviour<S: Blockstore + Send> {
        /// Bitswap, serving from the store.
        pub bitswap: bitswap::Behaviour<S>,
        /// Identify: tells peers (Helia among them) which protocols the node speaks.
        pub identify: identify::Behaviour,
        /// Ping: keeps connections measured and alive.
        pub ping: ping::Behaviour,
    }
}

/// Yamux with every stream's receive window capped at 1 MiB, so that js-libp2p peers (Helia)
/// never send a frame rust-yamux refuses (see [`YAMUX_MAX_STREAMS`]).
fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(YAMUX_MAX_STREAMS);
    config
}

/// Builds the swarm with every transport the node listens on.
pub async fn build_swarm<S: Blockstore + Send>(
    key: Keypair,
    cert: Certificate,
    store: S,
) -> anyhow::Result<Swarm<NodeBehaviour<S>>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux_config)?
        .with_other_transport(|key| {
            libp2p_webrtc::tokio::Transport::new(key.clone(), cert)
                .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
        })?
        .with_dns()?
        .with_websocket(noise::Config::new, yamux_config)
        .await?
        .with_behaviour(|key| NodeBehaviour {
            bitswap: bitswap::Behaviour::new(store, bitswap::Config::default()),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                    .with_agent_version(format!("antiphon-node/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

/// Starts listening on `addrs` and runs the swarm until `shutdown` flips to true. Listen
/// addresses (with `/p2p/<peer id>`) are published on `addrs_tx` as they come and go.
pub async fn run(
    mut swarm: Swarm<NodeBehaviour<Store>>,
    listen: &[Multiaddr],
    addrs_tx: watch::Sender<Vec<Multiaddr>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    for addr in listen {
        swarm.listen_on(addr.clone()).with_context(|| format!("cannot listen on {addr}"))?;
    }
    let local: PeerId = *swarm.local_peer_id();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    let full = address.with(Protocol::P2p(local));
                    tracing::info!(%full, "listening");
                    addrs_tx.send_modify(|a| a.push(full));
                }
                SwarmEvent::ExpiredListenAddr { address, .. } => {
                    let full = address.with(Protocol::P2p(local));
                    addrs_tx.send_modify(|a| a.retain(|x| *x != full));
                }
                SwarmEvent::ListenerError { error, .. } => tracing::warn!(%error, "listener error"),
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. } => {
                    // A listener's own address names the transport reliably; a dialer's target does.
                    let transport = match &endpoint {
                        ConnectedPoint::Listener { local_addr, .. } => transport_name(local_addr),
                        ConnectedPoint::Dialer { address, .. } => transport_name(address),
                    };
                    tracing::info!(%peer_id, transport, addr = %endpoint.get_remote_address(), "connected");
                }
                SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                    tracing::info!(%peer_id, cause = ?cause.map(|c| c.to_string()), "disconnected");
                }
                SwarmEvent::Behaviour(NodeBehaviourEvent::Bitswap(event)) => log_bitswap(event),
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

fn log_bitswap(event: bitswap::Event) {
    match event {
        bitswap::Event::CorruptBlock { peer, bytes } => tracing::warn!(%peer, bytes, "peer sent a corrupt block"),
        bitswap::Event::ProtocolViolation { peer, error } => {
            tracing::warn!(%peer, %error, "bitswap protocol violation; stream reset")
        }
        other => tracing::debug!(?other, "bitswap"),
    }
}
