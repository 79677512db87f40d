//! Bitswap between real libp2p swarms (in-memory transport, noise, yamux) in one process.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antiphon_core::Block;
use antiphon_core::Cid;
use antiphon_core::bitswap::{self, Blockstore, BlockstoreError, Event, MemoryBlockstore, RequestError, Source};
use antiphon_core::block::RAW;
use bytes::Bytes;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};

mod common;
use common::memory_swarm;

/// A blockstore that serves whatever bytes it was given for a CID, verified or not: a
/// misbehaving peer.
#[derive(Clone, Default)]
struct RawStore(Arc<Mutex<HashMap<Cid, Bytes>>>);

impl Blockstore for RawStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockstoreError> {
        Ok(self.0.lock().unwrap().get(cid).cloned())
    }
    fn put(&self, block: &Block) -> Result<(), BlockstoreError> {
        self.0.lock().unwrap().insert(*block.cid(), block.data().clone());
        Ok(())
    }
}

fn swarm<S: Blockstore + Send>(store: S) -> Swarm<bitswap::Behaviour<S>> {
    swarm_with(store, bitswap::Config::default().with_request_timeout(Duration::from_secs(5)))
}

fn swarm_with<S: Blockstore + Send>(store: S, config: bitswap::Config) -> Swarm<bitswap::Behaviour<S>> {
    memory_swarm(|_| bitswap::Behaviour::new(store, config))
}

async fn listen<S: Blockstore + Send>(s: &mut Swarm<bitswap::Behaviour<S>>, port: u64) -> Multiaddr {
    let addr: Multiaddr = format!("/memory/{port}").parse().unwrap();
    s.listen_on(addr.clone()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { .. } = s.select_next_some().await {
            return addr;
        }
    }
}

/// Drives the servers in the background and returns the client's next Bitswap event.
async fn next_event<S: Blockstore + Send>(
    client: &mut Swarm<bitswap::Behaviour<MemoryBlockstore>>,
    servers: &mut [&mut Swarm<bitswap::Behaviour<S>>],
) -> Event {
    loop {
        let servers_fut = futures::future::select_all(servers.iter_mut().map(|s| s.select_next_some()));
        tokio::select! {
            event = client.select_next_some() => {
                if let SwarmEvent::Behaviour(e) = event {
                    return e;
                }
            }
            _ = servers_fut => {}
        }
    }
}

async fn connect<S: Blockstore + Send>(
    client: &mut Swarm<bitswap::Behaviour<MemoryBlockstore>>,
    server: &mut Swarm<bitswap::Behaviour<S>>,
    addr: Multiaddr,
) -> PeerId {
    let peer = *server.local_peer_id();
    client.dial(addr).unwrap();
    let mut up = (false, false);
    while up != (true, true) {
        tokio::select! {
            e = client.select_next_some() => if let SwarmEvent::ConnectionEstablished { .. } = e { up.0 = true },
            e = server.select_next_some() => if let SwarmEvent::ConnectionEstablished { .. } = e { up.1 = true },
        }
    }
    peer
}

#[tokio::test]
async fn fetches_a_block_from_the_chosen_peer_and_names_it() {
    let store = RawStore::default();
    let block = Block::from_data(RAW, vec![9u8; 300_000]).unwrap();
    store.put(&block).unwrap();
    let mut server = swarm(store);
    let addr = listen(&mut server, 101).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;

    let id = client.behaviour_mut().get(*block.cid(), Source::Peers(vec![peer]));
    match next_event(&mut client, &mut [&mut server]).await {
        Event::Block { request, block: got, peer: from, .. } => {
            assert_eq!(request, id);
            assert_eq!(got, block);
            assert_eq!(from, peer);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn dont_have_from_one_peer_then_success_from_another() {
    let block = Block::from_data(RAW, b"only on the second peer".to_vec()).unwrap();
    let mut empty = swarm(RawStore::default());
    let full_store = RawStore::default();
    full_store.put(&block).unwrap();
    let mut full = swarm(full_store);
    let a1 = listen(&mut empty, 201).await;
    let a2 = listen(&mut full, 202).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let p1 = connect(&mut client, &mut empty, a1).await;
    let p2 = connect(&mut client, &mut full, a2).await;

    // Only the empty peer: DONT_HAVE, then the request fails as not found.
    client.behaviour_mut().get(*block.cid(), Source::Peers(vec![p1]));
    let mut saw_dont_have = false;
    loop {
        match next_event(&mut client, &mut [&mut empty, &mut full]).await {
            Event::DontHave { peer, cid } => {
                assert_eq!((peer, cid), (p1, *block.cid()));
                saw_dont_have = true;
            }
            Event::Failed { error: RequestError::NotFound, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_dont_have);

    // Then the other peer has it.
    client.behaviour_mut().get(*block.cid(), Source::Peers(vec![p2]));
    match next_event(&mut client, &mut [&mut empty, &mut full]).await {
        Event::Block { peer, block: got, .. } => {
            assert_eq!(peer, p2);
            assert_eq!(got, block);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_corrupt_block_is_refused_and_its_sender_reported() {
    let good: Vec<Block> = (0..3u8).map(|i| Block::from_data(RAW, vec![i; 50_000]).unwrap()).collect();
    let store = RawStore::default();
    for b in &good {
        store.put(b).unwrap();
    }
    // The server's copy of the middle block has one flipped byte.
    let mut bad = good[1].data().to_vec();
    bad[100] ^= 1;
    store.0.lock().unwrap().insert(*good[1].cid(), Bytes::from(bad));
    let mut server = swarm(store);
    let addr = listen(&mut server, 301).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;

    for b in &good {
        client.behaviour_mut().get(*b.cid(), Source::Peers(vec![peer]));
    }
    let (mut delivered, mut reported, mut failed) = (Vec::new(), false, None);
    while delivered.len() < 2 || failed.is_none() || !reported {
        match next_event(&mut client, &mut [&mut server]).await {
            Event::Block { block, .. } => delivered.push(*block.cid()),
            Event::CorruptBlock { peer: p, .. } => {
                assert_eq!(p, peer);
                reported = true;
            }
            Event::Failed { cid, error: RequestError::Corrupt { peer: p, .. }, .. } => {
                assert_eq!(p, peer);
                failed = Some(cid);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failed, Some(*good[1].cid()), "the failure names the CID whose bytes were corrupt");
    assert!(!delivered.contains(good[1].cid()));
    assert!(client.behaviour().store().get(good[1].cid()).unwrap().is_none());
}

#[tokio::test]
async fn a_request_to_an_unconnected_peer_fails_at_once() {
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let cid = *Block::from_data(RAW, b"x".to_vec()).unwrap().cid();
    client.behaviour_mut().get(cid, Source::Peers(vec![PeerId::random()]));
    let event = client.select_next_some().await;
    assert!(matches!(event, SwarmEvent::Behaviour(Event::Failed { error: RequestError::NoPeers, .. })));
}

#[tokio::test]
async fn a_burst_of_wants_larger_than_any_queue_is_served_in_full() {
    let store = RawStore::default();
    let blocks: Vec<Block> = (0..300u32).map(|i| Block::from_data(RAW, i.to_be_bytes().repeat(64)).unwrap()).collect();
    for b in &blocks {
        store.put(b).unwrap();
    }
    let mut server = swarm(store);
    let addr = listen(&mut server, 401).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;

    for b in &blocks {
        client.behaviour_mut().get(*b.cid(), Source::Peers(vec![peer]));
    }
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < blocks.len() {
        match next_event(&mut client, &mut [&mut server]).await {
            Event::Block { block, .. } => {
                delivered.insert(*block.cid());
            }
            other => panic!("after {} blocks: unexpected {other:?}", delivered.len()),
        }
    }
    assert!(blocks.iter().all(|b| delivered.contains(b.cid())));
}

/// Counts store reads, to show that serving reads each block once.
#[derive(Clone, Default)]
struct CountingStore(RawStore, Arc<Mutex<usize>>);

impl Blockstore for CountingStore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockstoreError> {
        *self.1.lock().unwrap() += 1;
        self.0.get(cid)
    }
    fn put(&self, block: &Block) -> Result<(), BlockstoreError> {
        self.0.put(block)
    }
}

#[tokio::test]
async fn serving_reads_each_wanted_block_once_across_several_replies() {
    let store = CountingStore::default();
    // 12 MiB of blocks: more than one reply and more than the per-peer outstanding budget.
    let blocks: Vec<Block> = (0..12u8).map(|i| Block::from_data(RAW, vec![i; 1024 * 1024]).unwrap()).collect();
    for b in &blocks {
        store.put(b).unwrap();
    }
    let reads = store.1.clone();
    let mut server = swarm(store);
    let addr = listen(&mut server, 501).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;
    for b in &blocks {
        client.behaviour_mut().get(*b.cid(), Source::Peers(vec![peer]));
    }
    let mut delivered = 0;
    while delivered < blocks.len() {
        match next_event(&mut client, &mut [&mut server]).await {
            Event::Block { .. } => delivered += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(*reads.lock().unwrap(), blocks.len());
}

#[tokio::test]
async fn externally_hashed_blocks_are_delivered_or_refused_like_the_others() {
    use sha2::Digest;
    let good = Block::from_data(RAW, vec![4u8; 70_000]).unwrap();
    let victim = Block::from_data(RAW, vec![5u8; 70_000]).unwrap();
    let store = RawStore::default();
    store.put(&good).unwrap();
    let mut bad = victim.data().to_vec();
    bad[7] ^= 1;
    store.0.lock().unwrap().insert(*victim.cid(), Bytes::from(bad));
    let mut server = swarm(store);
    let addr = listen(&mut server, 701).await;
    let config = bitswap::Config::default().with_request_timeout(Duration::from_secs(5)).with_external_sha2_256(true);
    let mut client = swarm_with(MemoryBlockstore::new(1 << 20), config);
    let peer = connect(&mut client, &mut server, addr).await;

    client.behaviour_mut().get(*good.cid(), Source::Peers(vec![peer]));
    client.behaviour_mut().get(*victim.cid(), Source::Peers(vec![peer]));
    let (mut hashed, mut delivered, mut failed) = (0, None, None);
    while delivered.is_none() || failed.is_none() {
        match next_event(&mut client, &mut [&mut server]).await {
            Event::HashNeeded { peer: from, block } => {
                assert_eq!(from, peer);
                hashed += 1;
                // What the browser does with WebCrypto, done here with sha2.
                let digest: [u8; 32] = sha2::Sha256::digest(&block.data).into();
                client.behaviour_mut().deliver_hashed(from, block, Some(digest));
            }
            Event::Block { block, .. } => delivered = Some(*block.cid()),
            Event::CorruptBlock { .. } => {}
            Event::Failed { cid, error: RequestError::Corrupt { .. }, .. } => failed = Some(cid),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(hashed, 2, "both blocks were handed out to be hashed");
    assert_eq!(delivered, Some(*good.cid()));
    assert_eq!(failed, Some(*victim.cid()));
}

#[tokio::test]
async fn want_have_first_asks_the_peer_that_has_it_for_the_block() {
    use antiphon_core::bitswap::WantMode;
    let block = Block::from_data(RAW, vec![3u8; 100_000]).unwrap();
    let mut empty = swarm(RawStore::default());
    let full_store = RawStore::default();
    full_store.put(&block).unwrap();
    let mut full = swarm(full_store);
    let a1 = listen(&mut empty, 901).await;
    let a2 = listen(&mut full, 902).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let p1 = connect(&mut client, &mut empty, a1).await;
    let p2 = connect(&mut client, &mut full, a2).await;

    let id = client.behaviour_mut().get_with(*block.cid(), Source::Peers(vec![p1, p2]), WantMode::HaveFirst);
    let (mut have, mut dont_have) = (None, None);
    loop {
        match next_event(&mut client, &mut [&mut empty, &mut full]).await {
            Event::Have { peer, cid } => have = Some((peer, cid)),
            Event::DontHave { peer, cid } => dont_have = Some((peer, cid)),
            Event::Block { request, block: got, peer, .. } => {
                assert_eq!((request, peer), (id, p2));
                assert_eq!(got, block);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(have, Some((p2, *block.cid())), "the block came after a HAVE");
    assert_eq!(dont_have, Some((p1, *block.cid())));
    let stats = client.behaviour().stats();
    assert_eq!((stats.haves_received, stats.dont_haves_received, stats.blocks_received), (1, 1, 1));
    assert_eq!(stats.bytes_received, 100_000);
    // Only the peer that said HAVE sent the block.
    assert_eq!(full.behaviour().stats().blocks_sent, 1);
    assert_eq!(empty.behaviour().stats().blocks_sent, 0);
}

#[tokio::test]
async fn a_small_block_comes_inlined_in_answer_to_want_have() {
    use antiphon_core::bitswap::{INLINE_HAVE_BYTES, WantMode};
    let block = Block::from_data(RAW, vec![1u8; INLINE_HAVE_BYTES]).unwrap();
    let store = RawStore::default();
    store.put(&block).unwrap();
    let mut server = swarm(store);
    let addr = listen(&mut server, 903).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;
    client.behaviour_mut().get_with(*block.cid(), Source::Peers(vec![peer]), WantMode::HaveFirst);
    match next_event(&mut client, &mut [&mut server]).await {
        Event::Block { block: got, .. } => assert_eq!(got, block),
        other => panic!("expected the block itself, not {other:?}"),
    }
    assert_eq!(client.behaviour().stats().haves_received, 0);
}

#[tokio::test]
async fn a_cancelled_request_is_neither_answered_nor_kept_by_the_server() {
    let block = Block::from_data(RAW, vec![8u8; 10_000]).unwrap();
    let store = RawStore::default();
    store.put(&block).unwrap();
    let mut server = swarm(store);
    let addr = listen(&mut server, 904).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;
    let id = client.behaviour_mut().get(*block.cid(), Source::Peers(vec![peer]));
    client.behaviour_mut().cancel(id);
    let quiet = tokio::time::timeout(Duration::from_millis(1500), next_event(&mut client, &mut [&mut server])).await;
    assert!(quiet.is_err(), "no event for a cancelled request: {quiet:?}");
    assert_eq!(client.behaviour().requests_in_flight(), 0);
    assert_eq!(server.behaviour().wantlist_len(client.local_peer_id()), 0);
    assert_eq!(server.behaviour().stats().blocks_sent, 0, "the want and its cancel arrived together");
}

#[tokio::test]
async fn a_block_over_2_mib_is_refused() {
    // The server holds 3 MiB of bytes under a CID (as a raw store would let it) and sends
    // them; the client refuses the message and the request times out with nothing delivered.
    let data = vec![6u8; 3 * 1024 * 1024];
    let cid = Cid::new_v1(RAW, antiphon_core::block::sha2_256(&data));
    let store = RawStore::default();
    store.0.lock().unwrap().insert(cid, Bytes::from(data));
    let mut server = swarm(store);
    let addr = listen(&mut server, 905).await;
    let config = bitswap::Config::default().with_request_timeout(Duration::from_secs(2));
    let mut client = swarm_with(MemoryBlockstore::new(1 << 20), config);
    let peer = connect(&mut client, &mut server, addr).await;
    client.behaviour_mut().get(cid, Source::Peers(vec![peer]));
    let mut violation = false;
    loop {
        match next_event(&mut client, &mut [&mut server]).await {
            Event::ProtocolViolation { peer: p, .. } => {
                assert_eq!(p, peer);
                violation = true;
            }
            Event::Failed { error: RequestError::Timeout, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(violation, "the oversized block was reported as a protocol violation");
    assert_eq!(client.behaviour().stats().blocks_received, 0);
}

/// The client's next Bitswap event, within 10 s.
async fn own_event(client: &mut Swarm<bitswap::Behaviour<MemoryBlockstore>>) -> Event {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::Behaviour(e) = client.select_next_some().await {
                return e;
            }
        }
    })
    .await
    .expect("an event within 10 s")
}

#[tokio::test]
async fn an_upload_budget_turns_away_peers_past_its_cap_and_paces_the_one_it_serves() {
    let store = MemoryBlockstore::new(8 << 20);
    let blocks: Vec<Block> = (0..4u8).map(|i| Block::from_data(RAW, vec![i; 100_000]).unwrap()).collect();
    for b in &blocks {
        store.put(b).unwrap();
    }
    let budget = bitswap::UploadBudget { bytes_per_sec_per_peer: 200_000, max_peers: 1 };
    let mut server = swarm_with(store, bitswap::Config::default().with_upload_budget(Some(budget)));
    let addr = listen(&mut server, 921).await;
    let mut first = swarm(MemoryBlockstore::new(1 << 20));
    let mut second = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut first, &mut server, addr.clone()).await;
    connect(&mut second, &mut server, addr).await;
    tokio::spawn(async move {
        loop {
            server.select_next_some().await;
        }
    });

    // The first peer is served; while it is, the second is told DONT_HAVE at once.
    first.behaviour_mut().get(*blocks[0].cid(), Source::Peers(vec![peer]));
    assert!(matches!(own_event(&mut first).await, Event::Block { .. }));
    second.behaviour_mut().get(*blocks[0].cid(), Source::Peers(vec![peer]));
    loop {
        match own_event(&mut second).await {
            Event::DontHave { .. } => {}
            Event::Failed { error: RequestError::NotFound, .. } => break,
            other => panic!("the second peer was served past the cap: {other:?}"),
        }
    }

    // 300 kB more to the first peer at 200 kB/s. What is left of its one-second burst (100 kB)
    // and one block of debt go at once; the last 100 kB wait for the debt to be paid: at least
    // half a second, where the in-memory transport alone takes milliseconds.
    let started = std::time::Instant::now();
    for b in &blocks[1..] {
        first.behaviour_mut().get(*b.cid(), Source::Peers(vec![peer]));
        assert!(matches!(own_event(&mut first).await, Event::Block { .. }));
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "300 kB at 200 kB/s took {took:?}");
}

#[tokio::test]
async fn a_watched_peer_says_have_when_it_gets_the_block_even_after_a_dont_have() {
    tokio::time::timeout(Duration::from_secs(30), watched_peer_says_have()).await.expect("done within 30 s");
}

async fn watched_peer_says_have() {
    let block = Block::from_data(RAW, vec![7u8; 50_000]).unwrap();
    let mut server = swarm(MemoryBlockstore::new(1 << 20));
    let addr = listen(&mut server, 931).await;
    let mut client = swarm(MemoryBlockstore::new(1 << 20));
    let peer = connect(&mut client, &mut server, addr).await;

    // Watched, then asked while the server lacks it: DONT_HAVE, and the request fails.
    client.behaviour_mut().watch(peer, &[*block.cid()]);
    client.behaviour_mut().get(*block.cid(), Source::Peers(vec![peer]));
    loop {
        match next_event(&mut client, &mut [&mut server]).await {
            Event::DontHave { .. } => {}
            Event::Failed { error: RequestError::NotFound, .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Let the server take in what the client sent after the failure (the watch again).
    let settle = tokio::time::sleep(Duration::from_millis(200));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            _ = &mut settle => break,
            _ = server.select_next_some() => {}
            _ = client.select_next_some() => {}
        }
    }
    // The server gets the block later: it says HAVE unasked, and the client fetches it.
    server.behaviour().store().put(&block).unwrap();
    server.behaviour_mut().block_added(block.cid());
    match next_event(&mut client, &mut [&mut server]).await {
        Event::Have { peer: from, cid } => assert_eq!((from, cid), (peer, *block.cid())),
        other => panic!("expected HAVE, got {other:?}"),
    }
    client.behaviour_mut().get(*block.cid(), Source::Peers(vec![peer]));
    assert!(matches!(next_event(&mut client, &mut [&mut server]).await, Event::Block { .. }));
}
