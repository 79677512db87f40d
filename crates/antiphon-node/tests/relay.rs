//! The node's circuit relay v2 server: a client makes a reservation through it (browsers will
//! use it to exchange WebRTC signalling).

mod common;

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, identify, noise, relay, tcp, yamux};

#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
}

async fn reserve(relay_addr: Multiaddr) -> Result<(), String> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|key, relay| Client {
            relay,
            identify: identify::Behaviour::new(identify::Config::new("/ipfs/id/1.0.0".into(), key.public())),
        })
        .map_err(|e| e.to_string())?
        .build();
    swarm.listen_on(relay_addr.with(Protocol::P2pCircuit)).map_err(|e| e.to_string())?;
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(ClientEvent::Relay(relay::client::Event::ReservationReqAccepted { .. })) => {
                return Ok(());
            }
            SwarmEvent::ListenerClosed { reason, .. } => return Err(format!("listener closed: {reason:?}")),
            SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_client_gets_a_reservation_and_a_disabled_relay_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::serve(&dir.path().join("relay"), &[]);
    let addr: Multiaddr = node.tcp().parse().unwrap();
    tokio::time::timeout(Duration::from_secs(20), reserve(addr))
        .await
        .expect("a reservation within 20 s")
        .expect("the relay accepts the reservation");

    let config = dir.path().join("norelay.toml");
    std::fs::write(&config, "[relay]\nenabled = false\n").unwrap();
    let off = common::serve(&dir.path().join("off"), &["--config", config.to_str().unwrap()]);
    let refused = tokio::time::timeout(Duration::from_secs(20), reserve(off.tcp().parse().unwrap())).await;
    assert!(matches!(refused, Ok(Err(_))), "a node with the relay off refuses reservations: {refused:?}");
}
