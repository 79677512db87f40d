//! A slow-drip origin: a replica pulls a track from an origin that answers one block a second,
//! and while that pull runs, the replica's own replica confirms a track (a write to the store)
//! and a listener fetches from it. Nothing the pull does may hold the node up: the listener's
//! fetch must finish while the pull is still dripping. (When a pull held a write transaction
//! for its whole length and confirmations were written on the swarm task, the confirmation
//! waited for the pull, and the whole swarm with it.)

mod common;

use std::path::Path;
use std::time::Duration;

use antiphon_core::bitswap::{self, Blockstore, LookupFuture, MemoryBlockstore};
use antiphon_core::unixfs::importer::import_bytes;
use antiphon_core::{Block, Cid, SegmentRef, TrackManifest};
use antiphon_node::replication::{self, ReplicateRequest, ReplicateResponse};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, noise, tcp, yamux};

/// A store that takes a second over every block it serves.
#[derive(Clone)]
struct Drip(MemoryBlockstore);

impl Blockstore for Drip {
    fn get(&self, cid: &Cid) -> Result<Option<bytes::Bytes>, bitswap::BlockstoreError> {
        self.0.get(cid)
    }

    fn put(&self, block: &Block) -> Result<(), bitswap::BlockstoreError> {
        self.0.put(block)
    }

    fn lookup(&self, cid: &Cid, inline_up_to: Option<usize>) -> LookupFuture {
        let found = bitswap::lookup_now(&self.0, cid, inline_up_to);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            found
        })
    }
}

#[derive(NetworkBehaviour)]
struct Origin {
    bitswap: bitswap::Behaviour<Drip>,
    replicate: request_response::cbor::Behaviour<ReplicateRequest, ReplicateResponse>,
}

/// A track of `segments` distinct one-block segments, stored in `store`.
fn track(store: &MemoryBlockstore, segments: u32) -> Cid {
    let refs = (0..segments)
        .map(|i| {
            let (file, blocks) = import_bytes(&[i.to_be_bytes().as_slice(), &[0x33; 2000]].concat());
            blocks.iter().for_each(|b| store.put(b).unwrap());
            SegmentRef { cid: file.root, bytes: 2004, samples: 44_100 }
        })
        .collect::<Vec<_>>();
    let manifest = TrackManifest {
        version: antiphon_core::manifest::MANIFEST_VERSION,
        codec: "audio/mpeg".into(),
        sample_rate: 44_100,
        channels: 2,
        total_samples: 44_100 * u64::from(segments),
        segments: refs,
        title: Some("dripped".into()),
        artist: None,
        album: None,
        cover: None,
    };
    let block = manifest.to_block().unwrap();
    store.put(&block).unwrap();
    *block.cid()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_pull_holds_up_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");

    // The dripping origin: 20 segments, each a block that takes a second to come (a pull of
    // over 20 s).
    let store = MemoryBlockstore::new(16 << 20);
    let dripped = track(&store, 20);
    let mut origin = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| Origin {
            bitswap: bitswap::Behaviour::new(Drip(store), bitswap::Config::default()),
            replicate: request_response::cbor::Behaviour::new(
                [(replication::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    origin.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    let origin_addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = origin.select_next_some().await {
            break address.with(Protocol::P2p(*origin.local_peer_id()));
        }
    };

    // R keeps the origin's tracks and has a track of its own, which Q (down for now) keeps.
    let (r_data, q_data) = (dir.path().join("r"), dir.path().join("q"));
    let own = fixtures.join("chord.mp3");
    let out = common::node().arg("--data").arg(&r_data).arg("ingest").arg(&own).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let own_track = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r_id = common::peer_id(&r_data);
    let q_id = common::peer_id(&q_data);
    let q_listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    let config = dir.path().join("r.toml");
    std::fs::write(&config, format!("[replication]\nreplicas = [\"{q_listen}/p2p/{q_id}\"]\nretry_secs = 1\n"))
        .unwrap();
    let origin_id = origin.local_peer_id().to_string();
    let r = common::serve(&r_data, &["--config", config.to_str().unwrap(), "--origin", &origin_id]);
    let r_addr: Multiaddr = r.tcp().parse().unwrap();
    let r_peer = match r_addr.iter().last() {
        Some(Protocol::P2p(p)) => p,
        _ => panic!("R's address names it"),
    };

    // The origin asks R to pull its track; its swarm serves the drip on a task of its own and
    // says when R answers.
    origin.add_peer_address(r_peer, r_addr.clone());
    let request = ReplicateRequest { track: dripped.to_bytes(), from: vec![origin_addr.to_string()] };
    origin.behaviour_mut().replicate.send_request(&r_peer, request);
    let (answered_tx, mut answered) = tokio::sync::oneshot::channel::<ReplicateResponse>();
    tokio::spawn(async move {
        let mut answered_tx = Some(answered_tx);
        loop {
            if let SwarmEvent::Behaviour(OriginEvent::Replicate(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) = origin.select_next_some().await
                && let Some(tx) = answered_tx.take()
            {
                let _ = tx.send(response);
            }
        }
    });

    // Q comes up while the pull drips; it pulls R's own track and confirms it to R.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let q = common::serve(&q_data, &["--listen", &q_listen, "--origin", &r_id]);
    let mut confirmed = false;
    for _ in 0..100 {
        let json: serde_json::Value =
            serde_json::from_slice(&r.get(&format!("/tracks/{own_track}"), &[]).body).unwrap();
        if json["replicas"].as_array().is_some_and(|a| a.iter().any(|x| x["confirmed"] == true)) {
            confirmed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(confirmed, "Q's confirmation reached R while the pull dripped");

    // A listener fetches R's own track now.
    let tcp = r.tcp().to_string();
    let fetched = tokio::task::spawn_blocking(move || {
        common::node().args(["fetch", &own_track, "--peer", &tcp, "-o", "/dev/null"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert!(answered.try_recv().is_err(), "the listener's fetch finished while the pull was still dripping");

    // And the pull itself completes.
    let answer = tokio::time::timeout(Duration::from_secs(60), answered).await.expect("R answered").unwrap();
    assert!(answer.stored, "{answer:?}");
    drop(q);
}
