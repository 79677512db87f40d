//! Replication as an attacker would use it. A real `antiphon-node serve` is the replica; the
//! askers are libp2p swarms written here, each serving Bitswap from memory and sending
//! `/antiphon/replicate/1.0.0` requests by hand, so that what the replica fetches from them is
//! counted exactly (their Bitswap server's bytes sent).

mod common;

use std::time::Duration;

use antiphon_core::bitswap::{self, Blockstore, MemoryBlockstore};
use antiphon_core::block::{Block, DAG_CBOR};
use antiphon_core::unixfs::importer::import_bytes;
use antiphon_core::{Cid, SegmentRef, TrackManifest};
use antiphon_node::replication::{self, ReplicateRequest, ReplicateResponse};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm, noise, tcp, yamux};

#[derive(NetworkBehaviour)]
struct Asker {
    bitswap: bitswap::Behaviour<MemoryBlockstore>,
    replicate: request_response::cbor::Behaviour<ReplicateRequest, ReplicateResponse>,
}

/// A swarm listening on loopback TCP that serves `store` over Bitswap and can ask for
/// replication; returns it with its own full address.
async fn asker(store: MemoryBlockstore) -> (Swarm<Asker>, Multiaddr) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| Asker {
            bitswap: bitswap::Behaviour::new(store, bitswap::Config::default()),
            replicate: request_response::cbor::Behaviour::new(
                [(replication::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(60)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let id = *swarm.local_peer_id();
    (swarm, addr.with(Protocol::P2p(id)))
}

/// Asks `replica` to keep `track`, fetching from `from`; drives the swarm (serving whatever
/// the replica fetches) until the answer comes.
async fn ask(swarm: &mut Swarm<Asker>, replica: &Multiaddr, track: Cid, from: Vec<String>) -> ReplicateResponse {
    let replica_id = match replica.iter().last() {
        Some(Protocol::P2p(p)) => p,
        _ => panic!("the replica's address names its peer"),
    };
    swarm.add_peer_address(replica_id, replica.clone());
    let id =
        swarm.behaviour_mut().replicate.send_request(&replica_id, ReplicateRequest { track: track.to_bytes(), from });
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let SwarmEvent::Behaviour(AskerEvent::Replicate(event)) = swarm.select_next_some().await {
                match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } if request_id == id => return response,
                    request_response::Event::OutboundFailure { request_id, error, .. } if request_id == id => {
                        panic!("the request failed: {error}")
                    }
                    _ => {}
                }
            }
        }
    })
    .await
    .expect("the replica answered within 60 s")
}

/// A one-segment MP3 track whose segment is `segment` (its bytes as stored) and whose manifest
/// declares `declared` bytes for it.
fn track(store: &MemoryBlockstore, segment: &[u8], declared: u64) -> Cid {
    let (file, blocks) = import_bytes(segment);
    blocks.iter().for_each(|b| store.put(b).unwrap());
    let manifest = TrackManifest {
        version: antiphon_core::manifest::MANIFEST_VERSION,
        codec: "audio/mpeg".into(),
        sample_rate: 44_100,
        channels: 2,
        total_samples: 44_100 * 6,
        segments: vec![SegmentRef { cid: file.root, bytes: declared, samples: 44_100 * 6 }],
        title: Some("attack".into()),
        artist: None,
        album: None,
        cover: None,
    };
    let block = manifest.to_block().unwrap();
    store.put(&block).unwrap();
    *block.cid()
}

fn bytes_sent(swarm: &Swarm<Asker>) -> u64 {
    swarm.behaviour().bitswap.stats().bytes_sent
}

fn stored(node: &common::Served, track: &Cid) -> bool {
    node.get(&format!("/tracks/{track}"), &[]).status == 200
}

#[tokio::test]
async fn only_origins_are_served_and_nothing_is_fetched_past_what_the_manifest_allows() {
    let dir = tempfile::tempdir().unwrap();
    let origin_store = MemoryBlockstore::new(64 << 20);
    let (mut origin, origin_addr) = asker(origin_store.clone()).await;
    let stranger_store = MemoryBlockstore::new(64 << 20);
    let (mut stranger, stranger_addr) = asker(stranger_store.clone()).await;
    let origin_id = origin.local_peer_id().to_string();
    let replica = common::serve(&dir.path().join("replica"), &["--origin", &origin_id]);
    let replica_addr: Multiaddr = replica.tcp().parse().unwrap();

    // A stranger's well-formed track: refused with nothing fetched.
    let honest_segment: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let strangers = track(&stranger_store, &honest_segment, honest_segment.len() as u64);
    let answer = ask(&mut stranger, &replica_addr, strangers, vec![stranger_addr.to_string()]).await;
    assert!(!answer.stored);
    assert_eq!(answer.error.as_deref(), Some("not stored"), "a generic answer");
    assert_eq!(bytes_sent(&stranger), 0, "nothing fetched from a stranger");
    assert!(!stored(&replica, &strangers));

    // The origin names a root that is not a track (a 3 MiB file): refused before any fetch.
    let (file, blocks) = import_bytes(&vec![9u8; 3 << 20]);
    blocks.iter().for_each(|b| origin_store.put(b).unwrap());
    let answer = ask(&mut origin, &replica_addr, file.root, vec![origin_addr.to_string()]).await;
    assert!(!answer.stored);
    assert_eq!(bytes_sent(&origin), 0, "a non-manifest root costs nothing");
    // A dag-cbor root that is not a manifest costs its one block.
    let not_a_manifest = Block::from_data(DAG_CBOR, vec![0xa1, 0x61, 0x61, 0x01]).unwrap();
    origin_store.put(&not_a_manifest).unwrap();
    let answer = ask(&mut origin, &replica_addr, *not_a_manifest.cid(), vec![origin_addr.to_string()]).await;
    assert!(!answer.stored);
    assert!(bytes_sent(&origin) <= 16, "{} bytes", bytes_sent(&origin));

    // A manifest that understates its segment (1 KB declared, 1 MiB stored): refused once
    // the segment's root arrives; no leaf is fetched.
    let before = bytes_sent(&origin);
    let big_segment = vec![7u8; 1 << 20];
    let lying = track(&origin_store, &big_segment, 1000);
    let answer = ask(&mut origin, &replica_addr, lying, vec![origin_addr.to_string()]).await;
    assert!(!answer.stored);
    let spent = bytes_sent(&origin) - before;
    assert!(spent < 16 * 1024, "{spent} bytes fetched for a track whose segment is refused at its root");
    assert!(!stored(&replica, &lying));

    // The origin's request naming the stranger's address (with the origin's ID) is not
    // fetched from the stranger.
    let stranger_before = bytes_sent(&stranger);
    let elsewhere = stranger_addr.iter().take(2).collect::<Multiaddr>().with(Protocol::P2p(*origin.local_peer_id()));
    let honest = track(&origin_store, &honest_segment, honest_segment.len() as u64);
    let answer = ask(&mut origin, &replica_addr, honest, vec![elsewhere.to_string()]).await;
    assert!(!answer.stored);
    assert_eq!(bytes_sent(&stranger), stranger_before, "nothing fetched from whoever answered instead");

    // The same track from the origin itself is stored: the bounds refuse attacks, not work.
    let answer = ask(&mut origin, &replica_addr, honest, vec![origin_addr.to_string()]).await;
    assert!(answer.stored, "{answer:?}");
    assert!(stored(&replica, &honest));
}
