//! The node's libp2p swarm, built apart from the loop that runs it ([`crate::network`]):
//! TCP, WebSocket and WebRTC-direct transports; Bitswap serving from the store; identify
//! (which advertises Bitswap, as Helia requires), ping, connection limits per IP and in total,
//! a small circuit relay v2 server, the replication protocol and browsers' announcements.
//! [`build`] gives the same transports to any behaviour: the one-off fetch client
//! ([`crate::client`]) uses it with a behaviour that serves nothing.

use std::time::Duration;

use crate::webrtc::Certificate;
use antiphon_core::bitswap::{self, Blockstore};
use antiphon_core::limits::YAMUX_MAX_STREAMS;
use antiphon_core::liveness;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{Swarm, Transport, connection_limits, identify, noise, ping, relay, tcp, yamux};

use crate::browsers::{self, ProvideRequest, ProvideResponse};
use crate::config;
use crate::replication::{self, ReplicateRequest, ReplicateResponse};

/// Protocol version string sent in identify.
pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

pub use behaviour::{NodeBehaviour, NodeBehaviourEvent};

mod behaviour {
    // The derive generates `NodeBehaviourEvent`, whose variants cannot carry doc comments.
    #![allow(missing_docs)]
    use super::*;

    /// The serving node's behaviours, over the store Bitswap serves from.
    #[derive(NetworkBehaviour)]
    pub struct NodeBehaviour<S: Blockstore + Send> {
        /// Connections per IP address: checked first, so that one address cannot take the
        /// handshake slots the limits below share.
        pub ip_limits: crate::ip_limits::Behaviour,
        /// Connection limits: in total and per peer.
        pub limits: connection_limits::Behaviour,
        /// Bitswap, serving from the store.
        pub bitswap: bitswap::Behaviour<S>,
        /// Identify: tells peers (Helia among them) which protocols the node speaks.
        pub identify: identify::Behaviour,
        /// Ping: keeps connections measured and alive.
        pub ping: ping::Behaviour,
        /// Circuit relay v2 server (`[relay] enabled`).
        pub relay: Toggle<relay::Behaviour>,
        /// Replication requests between creator nodes.
        pub replicate: request_response::cbor::Behaviour<ReplicateRequest, ReplicateResponse>,
        /// Browsers announcing what they serve (`browsers::PROTOCOL`, inbound only).
        pub provide: request_response::cbor::Behaviour<ProvideRequest, ProvideResponse>,
    }
}

/// What shapes the swarm besides its keys and store.
#[derive(Debug, Clone, Default)]
pub struct SwarmOptions {
    /// Connection limits.
    pub limits: config::Limits,
    /// Relay server settings; `None` runs no relay.
    pub relay: Option<config::Relay>,
    /// What the WebRTC-direct sockets count (for `/metrics`).
    pub webrtc: std::sync::Arc<crate::webrtc::Counters>,
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
    options: &SwarmOptions,
) -> anyhow::Result<Swarm<NodeBehaviour<S>>> {
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(options.limits.max_connections))
        .with_max_established_per_peer(Some(options.limits.max_connections_per_peer))
        .with_max_pending_incoming(Some(options.limits.max_pending_incoming));
    let relay_config = options.relay.clone();
    let webrtc = WebrtcOptions {
        counters: options.webrtc.clone(),
        limits: crate::webrtc::Limits {
            max_connections: options.limits.max_connections as usize,
            max_handshaking: options.limits.max_pending_incoming as usize,
            max_handshaking_per_ip: options.limits.max_pending_incoming_per_ip as usize,
        },
    };
    build(key, cert, webrtc, |key| NodeBehaviour {
        ip_limits: crate::ip_limits::Behaviour::new(options.limits.max_connections_per_ip as usize),
        limits: connection_limits::Behaviour::new(limits),
        bitswap: bitswap::Behaviour::new(store, bitswap::Config::default()),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                .with_agent_version(format!("antiphon-node/{}", env!("CARGO_PKG_VERSION"))),
        ),
        ping: ping::Behaviour::new(
            ping::Config::new().with_interval(liveness::PING_INTERVAL).with_timeout(liveness::PING_TIMEOUT),
        ),
        relay: relay_config
            .map(|r| {
                let max_circuit_duration = Duration::from_secs(r.max_circuit_secs);
                let mut config = relay::Config {
                    max_reservations: r.max_reservations,
                    max_circuits: r.max_circuits,
                    max_circuit_bytes: r.max_circuit_bytes,
                    max_circuit_duration,
                    max_circuits_per_peer: r.max_circuits_per_peer,
                    ..Default::default()
                };
                // Last, so that it counts only requests the relay's own limiters let through.
                config.circuit_src_rate_limiters.push(Box::new(crate::ip_limits::CircuitStartsPerIp::new(
                    r.max_circuits_per_ip,
                    max_circuit_duration,
                )));
                relay::Behaviour::new(key.public().to_peer_id(), config)
            })
            .into(),
        replicate: request_response::cbor::Behaviour::new(
            [(replication::PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(replication::PULL_TIMEOUT)
                .with_max_concurrent_streams(64),
        ),
        provide: request_response::cbor::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(browsers::MAX_REQUEST_BYTES)
                .set_response_size_maximum(1024),
            [(browsers::PROTOCOL, ProtocolSupport::Inbound)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(10))
                .with_max_concurrent_streams(64),
        ),
    })
    .await
}

/// How the WebRTC-direct transport is set up.
#[derive(Default)]
pub struct WebrtcOptions {
    /// Shared with `/metrics`.
    pub counters: std::sync::Arc<crate::webrtc::Counters>,
    /// What strangers may make a listener hold.
    pub limits: crate::webrtc::Limits,
}

/// WebRTC-direct on our str0m transport (`crate::webrtc`).
#[cfg(not(feature = "libp2p-webrtc"))]
fn webrtc_direct(
    key: &Keypair,
    cert: Certificate,
    options: WebrtcOptions,
) -> libp2p::core::transport::Boxed<(libp2p::PeerId, StreamMuxerBox)> {
    crate::webrtc::Transport::new(key.clone(), cert).with_limits(options.limits).with_counters(options.counters).boxed()
}

/// WebRTC-direct on the old `libp2p-webrtc` listener (webrtc-rs), for side-by-side benchmarks.
#[cfg(feature = "libp2p-webrtc")]
fn webrtc_direct(
    key: &Keypair,
    cert: Certificate,
    _: WebrtcOptions,
) -> libp2p::core::transport::Boxed<(libp2p::PeerId, StreamMuxerBox)> {
    let cert = libp2p_webrtc::tokio::Certificate::from_pem(&cert.to_pem()).expect("our PEM is the old listener's");
    libp2p_webrtc::tokio::Transport::new(key.clone(), cert)
        .map(|(peer, conn), _| (peer, StreamMuxerBox::new(conn)))
        .boxed()
}

/// A swarm with every transport the node speaks (TCP, WebRTC-direct, DNS, WebSocket; Noise and
/// yamux) running the behaviour `behaviour` makes from the identity key.
pub async fn build<B: NetworkBehaviour>(
    key: Keypair,
    cert: Certificate,
    webrtc: WebrtcOptions,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> anyhow::Result<Swarm<B>> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux_config)?
        .with_other_transport(|key| webrtc_direct(key, cert, webrtc))?
        .with_dns()?
        .with_websocket(noise::Config::new, yamux_config)
        .await?
        .with_behaviour(behaviour)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build())
}
