//! The identify responder against rust-libp2p's own identify behaviour, which asks it over a
//! real (in-memory, noise, yamux) connection and must accept the answer.
#![cfg(not(target_arch = "wasm32"))]

use std::time::Duration;

use antiphon_core::identify::{self as answering, Info};
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, identify};

mod common;
use common::memory_swarm;

#[tokio::test]
async fn rust_libp2p_identify_accepts_the_answer() {
    let mut public_key = None;
    let mut answerer = memory_swarm(|key| {
        public_key = Some(key.public());
        libp2p_stream::Behaviour::new()
    });
    let public_key = public_key.unwrap();
    let incoming = answerer.behaviour().new_control().accept(answering::PROTOCOL).unwrap();
    let relayed: Multiaddr =
        "/ip4/10.0.0.1/tcp/4001/ws/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
            .parse()
            .unwrap();
    let info = Info {
        public_key: public_key.encode_protobuf(),
        agent_version: "antiphon-test/1".into(),
        protocols: vec![antiphon_core::bitswap::PROTOCOL, answering::PROTOCOL],
        listen_addrs: vec![relayed.clone()],
    };
    let served = info.clone();
    tokio::spawn(answering::serve(incoming, move || served.clone()));

    let addr: Multiaddr = "/memory/7401".parse().unwrap();
    answerer.listen_on(addr.clone()).unwrap();
    let mut asker =
        memory_swarm(|key| identify::Behaviour::new(identify::Config::new("/ipfs/id/1.0.0".into(), key.public())));
    asker.dial(addr).unwrap();

    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                event = asker.select_next_some() => match event {
                    SwarmEvent::Behaviour(identify::Event::Received { peer_id, info, .. }) => return (peer_id, info),
                    SwarmEvent::Behaviour(identify::Event::Error { error, .. }) => panic!("identify failed: {error}"),
                    _ => {}
                },
                _ = answerer.select_next_some() => {}
            }
        }
    })
    .await
    .expect("an identify answer within 10 s");

    let (peer, got) = received;
    assert_eq!(peer, *answerer.local_peer_id());
    assert_eq!(got.public_key, public_key);
    assert_eq!(got.agent_version, "antiphon-test/1");
    assert_eq!(got.protocol_version, answering::PROTOCOL_VERSION);
    assert_eq!(got.protocols, info.protocols);
    assert_eq!(got.listen_addrs, vec![relayed]);
}
