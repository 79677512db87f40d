//! The node's circuit relay v2 server: a client makes a reservation through it (browsers will
//! use it to exchange WebRTC signalling).

mod common;

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, noise, relay, tcp, yamux};

#[derive(NetworkBehaviour)]
struct Client {
    relay: relay::client::Behaviour,
    identify: identify::Behaviour,
}

/// A relay client with a new identity, whose connections stay up for a minute when idle.
fn client() -> Result<libp2p::Swarm<Client>, String> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
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
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

async fn reserve(relay_addr: Multiaddr) -> Result<(), String> {
    let mut swarm = client()?;
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

/// Keeps `swarm` (its reservation or circuits) running on a task for the rest of the test,
/// a minute at most.
fn keep_running(mut swarm: libp2p::Swarm<Client>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    });
}

/// Asks for a reservation on the relay at `relay_addr` from a new identity; its peer ID when
/// the relay accepts it and keeps it. The swarm keeps running on a task, holding its
/// reservation and accepting circuits, for the rest of the test.
async fn hold_reservation(relay_addr: Multiaddr) -> Result<PeerId, String> {
    let mut swarm = client()?;
    let id = *swarm.local_peer_id();
    swarm.listen_on(relay_addr.with(Protocol::P2pCircuit)).map_err(|e| e.to_string())?;
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientEvent::Relay(relay::client::Event::ReservationReqAccepted { .. })) => {
                    // Accepted, and still held a moment later (a node over its per-address
                    // cap disconnects right after accepting).
                    let closed = tokio::time::timeout(Duration::from_millis(500), async {
                        loop {
                            if let SwarmEvent::ConnectionClosed { num_established: 0, .. } =
                                swarm.select_next_some().await
                            {
                                return;
                            }
                        }
                    })
                    .await;
                    return if closed.is_err() { Ok(id) } else { Err("disconnected after the reservation".into()) };
                }
                SwarmEvent::ListenerClosed { reason, .. } => return Err(format!("listener closed: {reason:?}")),
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 10 s".into()));
    keep_running(swarm);
    result
}

/// One address (127.0.0.1) asks for twenty reservations on a relay that holds sixteen; a
/// listener from another address (::1) still gets one.
#[tokio::test]
async fn one_address_cannot_take_every_relay_slot() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "[relay]\nmax_reservations = 16\n").unwrap();
    let node = common::serve(
        &dir.path().join("relay"),
        &["--config", config.to_str().unwrap(), "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip6/::1/tcp/0"],
    );
    let on = |prefix: &str| -> Multiaddr {
        node.addrs.iter().find(|a| a.starts_with(prefix)).expect("the node listens there").parse().unwrap()
    };
    let mut taken = 0;
    for _ in 0..20 {
        if hold_reservation(on("/ip4/")).await.is_ok() {
            taken += 1;
        }
    }
    assert!(taken <= 8, "one address holds {taken} of the relay's 16 reservations");
    hold_reservation(on("/ip6/")).await.expect("a listener from another address gets a reservation");
}

/// Dials `target` through a circuit on the relay at `relay_addr` from a new identity; `Ok` once
/// the relayed connection is up. The swarm keeps it open on a task for the rest of the test.
async fn open_circuit(relay_addr: &Multiaddr, target: PeerId) -> Result<(), String> {
    let mut swarm = client()?;
    let addr = relay_addr.clone().with(Protocol::P2pCircuit).with(Protocol::P2p(target));
    swarm.dial(addr).map_err(|e| e.to_string())?;
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == target => return Ok(()),
                SwarmEvent::OutgoingConnectionError { peer_id: Some(p), error, .. } if p == target => {
                    return Err(error.to_string());
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no circuit within 10 s".into()));
    keep_running(swarm);
    result
}

/// A listener holds a reservation (as a browser peer does, to be reached for WebRTC
/// signalling); twenty identities from one address (127.0.0.1) open circuits to it through a
/// relay that carries sixteen. They get at most the per-address share, and a peer from another
/// address (::1) still reaches the listener.
#[tokio::test]
async fn one_address_cannot_flood_a_listener_with_circuits() {
    let dir = tempfile::tempdir().unwrap();
    let node =
        common::serve(&dir.path().join("relay"), &["--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip6/::1/tcp/0"]);
    let on = |prefix: &str| -> Multiaddr {
        node.addrs.iter().find(|a| a.starts_with(prefix)).expect("the node listens there").parse().unwrap()
    };
    let listener = hold_reservation(on("/ip6/")).await.expect("the listener gets a reservation");
    let mut opened = 0;
    for _ in 0..20 {
        if open_circuit(&on("/ip4/"), listener).await.is_ok() {
            opened += 1;
        }
    }
    assert!(opened <= 4, "one address opened {opened} of the relay's 16 circuits to one listener");
    open_circuit(&on("/ip6/"), listener).await.expect("a peer from another address reaches the listener");
}
