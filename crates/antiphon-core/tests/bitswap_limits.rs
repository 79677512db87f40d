//! The Bitswap server against a peer that writes raw streams: oversized declarations, huge
//! wantlists, and the 1.1.0 protocol. The misbehaving peer is a libp2p-stream swarm.
#![cfg(not(target_arch = "wasm32"))]

use std::time::Duration;

use antiphon_core::bitswap::message::{Message, WantEntry, WantType};
use antiphon_core::bitswap::protocol::FrameError;
use antiphon_core::bitswap::protocol::{read_frame, write_framed};
use antiphon_core::bitswap::{self, Event, InboundError, MemoryBlockstore, PROTOCOL, PROTOCOL_1_1_0};
use antiphon_core::block::{Block, RAW};
use antiphon_core::store::Blockstore;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};

mod common;
use common::memory_swarm;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};

fn server(store: MemoryBlockstore) -> Swarm<bitswap::Behaviour<MemoryBlockstore>> {
    memory_swarm(|_| bitswap::Behaviour::new(store, bitswap::Config::default()))
}

/// A swarm that fetches, with `config`, into an empty store.
fn client(config: bitswap::Config) -> Swarm<bitswap::Behaviour<MemoryBlockstore>> {
    memory_swarm(|_| bitswap::Behaviour::new(MemoryBlockstore::new(1 << 20), config))
}

/// A peer that speaks raw streams, running on its own task; returns its control and peer id.
async fn raw_peer(
    server: &mut Swarm<bitswap::Behaviour<MemoryBlockstore>>,
    port: u64,
) -> (libp2p_stream::Control, PeerId) {
    let addr: Multiaddr = format!("/memory/{port}").parse().unwrap();
    server.listen_on(addr.clone()).unwrap();
    loop {
        if let SwarmEvent::NewListenAddr { .. } = server.select_next_some().await {
            break;
        }
    }
    let mut raw = memory_swarm(|_| libp2p_stream::Behaviour::new());
    let control = raw.behaviour().new_control();
    let peer = *raw.local_peer_id();
    raw.dial(addr).unwrap();
    let mut up = (false, false);
    while up != (true, true) {
        tokio::select! {
            e = raw.select_next_some() => if let SwarmEvent::ConnectionEstablished { .. } = e { up.0 = true },
            e = server.select_next_some() => if let SwarmEvent::ConnectionEstablished { .. } = e { up.1 = true },
        }
    }
    tokio::spawn(async move {
        loop {
            raw.select_next_some().await;
        }
    });
    (control, peer)
}

/// Drives `server` until `f` returns something for one of its Bitswap events, or 10 s pass.
async fn until<T>(
    server: &mut Swarm<bitswap::Behaviour<MemoryBlockstore>>,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::Behaviour(e) = server.select_next_some().await
                && let Some(t) = f(&e)
            {
                return t;
            }
        }
    })
    .await
    .expect("the event came within 10 s")
}

#[tokio::test]
async fn a_message_declaring_one_gib_is_reset_unread() {
    let mut server = server(MemoryBlockstore::new(1 << 20));
    let server_id = *server.local_peer_id();
    let (mut control, attacker) = raw_peer(&mut server, 801).await;
    let open = control.open_stream(server_id, PROTOCOL);
    let mut stream = tokio::select! {
        s = open => s.unwrap(),
        _ = server.select_next_some() => panic!("the server should not emit before the stream opens"),
    };
    let mut buf = unsigned_varint::encode::u64_buffer();
    stream.write_all(unsigned_varint::encode::u64(1 << 30, &mut buf)).await.unwrap();
    stream.write_all(&[0u8; 1000]).await.unwrap();
    stream.flush().await.unwrap();
    let declared = until(&mut server, |e| match e {
        Event::ProtocolViolation { peer, error: InboundError::Frame(FrameError::TooLarge { declared }) }
            if *peer == attacker =>
        {
            Some(*declared)
        }
        _ => None,
    })
    .await;
    assert_eq!(declared, 1 << 30);
    // The stream was dropped by the server: reading it ends.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::select! {
                r = stream.read_to_end(&mut rest) => return r,
                _ = server.select_next_some() => {}
            }
        }
    })
    .await
    .expect("the server closed the stream");
    assert!(read.is_err() || rest.is_empty());
}

fn wantlist(seed: u32, n: u32, full: bool) -> Message {
    Message {
        wantlist: (0..n)
            .map(|i| WantEntry {
                cid: *Block::from_data(RAW, [seed.to_be_bytes(), i.to_be_bytes()].concat()).unwrap().cid(),
                priority: 1,
                cancel: false,
                want_type: WantType::Have,
                send_dont_have: true,
            })
            .collect(),
        full_wantlist: full,
        ..Message::default()
    }
}

type Replies = futures::stream::SelectAll<futures::stream::BoxStream<'static, Message>>;

/// Counts DONT_HAVE presences the server sends back to the raw peer until `quiet` passes
/// with none. `streams` keeps the reply streams open between calls.
async fn count_dont_haves(
    server: &mut Swarm<bitswap::Behaviour<MemoryBlockstore>>,
    incoming: &mut libp2p_stream::IncomingStreams,
    streams: &mut Replies,
    quiet: Duration,
) -> usize {
    let mut count = 0;
    loop {
        tokio::select! {
            Some((_, s)) = incoming.next() => {
                streams.push(futures::stream::unfold(s, |mut s| async move {
                    match read_frame(&mut s).await {
                        Ok(Some(frame)) => Some((Message::decode(frame).unwrap(), s)),
                        _ => None,
                    }
                }).boxed());
            }
            Some(msg) = streams.next(), if !streams.is_empty() => {
                count += msg.presences.iter().filter(|p| !p.have).count();
            }
            _ = server.select_next_some() => {}
            _ = tokio::time::sleep(quiet) => return count,
        }
    }
}

#[tokio::test]
async fn a_5000_entry_wantlist_is_capped_at_1024_also_after_a_full_replacement() {
    let mut server = server(MemoryBlockstore::new(1 << 20));
    let server_id = *server.local_peer_id();
    let (mut control, attacker) = raw_peer(&mut server, 802).await;
    // Replies come back on a stream the server opens.
    let mut incoming = control.accept(PROTOCOL).unwrap();
    let mut stream = tokio::select! {
        s = control.open_stream(server_id, PROTOCOL) => s.unwrap(),
        _ = server.select_next_some() => panic!("unexpected server event"),
    };
    let mut replies = Replies::new();
    write_framed(&mut stream, &wantlist(1, 5000, false).encode_framed().unwrap()).await.unwrap();
    let first = count_dont_haves(&mut server, &mut incoming, &mut replies, Duration::from_millis(1500)).await;
    assert_eq!(first, 1024, "one DONT_HAVE per entry kept");
    write_framed(&mut stream, &wantlist(2, 5000, true).encode_framed().unwrap()).await.unwrap();
    let second = count_dont_haves(&mut server, &mut incoming, &mut replies, Duration::from_millis(1500)).await;
    assert_eq!(second, 1024, "a full wantlist replaces the old one, capped again");
    assert!(server.behaviour().wantlist_len(&attacker) <= 1024);
}

#[tokio::test]
async fn bitswap_1_1_0_wants_are_served() {
    let store = MemoryBlockstore::new(1 << 20);
    let block = Block::from_data(RAW, b"served over 1.1.0".to_vec()).unwrap();
    store.put(&block).unwrap();
    let mut server = server(store);
    let server_id = *server.local_peer_id();
    let (mut control, _) = raw_peer(&mut server, 803).await;
    let mut incoming = control.accept(PROTOCOL).unwrap();
    let mut stream = tokio::select! {
        s = control.open_stream(server_id, PROTOCOL_1_1_0) => s.unwrap(),
        _ = server.select_next_some() => panic!("unexpected server event"),
    };
    let want = Message {
        wantlist: vec![WantEntry {
            cid: *block.cid(),
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: false,
        }],
        ..Message::default()
    };
    write_framed(&mut stream, &want.encode_framed().unwrap()).await.unwrap();
    // The server opens its stream as soon as ours is negotiated, before it has the reply: it
    // is driven while the reply is read.
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        let (_, mut s) = loop {
            tokio::select! {
                Some(incoming) = incoming.next() => break incoming,
                _ = server.select_next_some() => {}
            }
        };
        let read = read_frame(&mut s);
        tokio::pin!(read);
        loop {
            tokio::select! {
                frame = &mut read => return Message::decode(frame.unwrap().unwrap()).unwrap(),
                _ = server.select_next_some() => {}
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got.blocks.len(), 1);
    assert_eq!(got.blocks[0].clone().into_block().unwrap(), block);
}

#[tokio::test]
async fn a_duplicate_block_is_not_taken_for_a_corrupt_answer_to_another_want() {
    // The bitswap swarm here is the client; the raw peer answers its wants by hand.
    let config = bitswap::Config::default().with_request_timeout(Duration::from_secs(2));
    let mut client = client(config);
    let (mut control, raw) = raw_peer(&mut client, 804).await;
    let mut wants = control.accept(PROTOCOL).unwrap();
    let x = Block::from_data(RAW, vec![1u8; 5000]).unwrap();
    let y = Block::from_data(RAW, vec![2u8; 5000]).unwrap();
    client.behaviour_mut().get(*x.cid(), bitswap::Source::Peers(vec![raw]));
    client.behaviour_mut().get(*y.cid(), bitswap::Source::Peers(vec![raw]));
    // Wait for the wants, then send X twice and never Y.
    let mut want_stream = tokio::select! {
        Some((_, s)) = wants.next() => s,
        _ = client.select_next_some() => panic!("no event expected yet"),
    };
    let _ = tokio::select! {
        f = read_frame(&mut want_stream) => f.unwrap(),
        _ = client.select_next_some() => panic!("no event expected yet"),
    };
    let mut reply = Message::default();
    reply.push_block(&x);
    let mut out = control.open_stream(*client.local_peer_id(), PROTOCOL).await.unwrap();
    for _ in 0..2 {
        write_framed(&mut out, &reply.encode_framed().unwrap()).await.unwrap();
    }
    let (mut delivered, mut duplicates) = (0, 0);
    loop {
        match until(&mut client, |e| Some(format!("{e:?}"))).await {
            e if e.starts_with("Block") => delivered += 1,
            e if e.starts_with("UnwantedBlock") => duplicates += 1,
            e if e.starts_with("Failed") => {
                assert!(e.contains("Timeout"), "Y must time out, not be blamed on X's copy: {e}");
                break;
            }
            e => panic!("unexpected {e}"),
        }
    }
    assert_eq!((delivered, duplicates), (1, 1));
    assert_eq!(client.behaviour().stats().corrupt_blocks, 0);
}

#[tokio::test]
async fn unasked_blocks_are_not_handed_out_for_external_hashing() {
    let config = bitswap::Config::default().with_external_sha2_256(true);
    let mut client = client(config);
    let (mut control, _raw) = raw_peer(&mut client, 805).await;
    let mut flood = Message::default();
    for i in 0..20u8 {
        flood.push_block(&Block::from_data(RAW, vec![i; 1000]).unwrap());
    }
    let mut out = control.open_stream(*client.local_peer_id(), PROTOCOL).await.unwrap();
    write_framed(&mut out, &flood.encode_framed().unwrap()).await.unwrap();
    for _ in 0..20 {
        let event = until(&mut client, |e| Some(format!("{e:?}"))).await;
        assert!(event.starts_with("UnwantedBlock"), "hashed here and dropped, not queued: {event}");
    }
    assert_eq!(client.behaviour().stats().unwanted_blocks, 20);
}

#[tokio::test]
async fn a_want_stream_the_remote_dropped_is_reopened_for_the_next_want() {
    // Helia aborts an incoming Bitswap stream that carries no message for 10 s. The client
    // keeps one outbound stream per connection, so the next want finds it dead: it must go
    // out on a new stream, not fail the request.
    let config = bitswap::Config::default().with_request_timeout(Duration::from_secs(5));
    let mut client = client(config);
    let (mut control, raw) = raw_peer(&mut client, 806).await;
    let mut wants = control.accept(PROTOCOL).unwrap();
    let mut out = None;
    for (i, data) in [b"first".as_slice(), b"second"].into_iter().enumerate() {
        let block = Block::from_data(RAW, data.to_vec()).unwrap();
        client.behaviour_mut().get(*block.cid(), bitswap::Source::Peers(vec![raw]));
        let mut want_stream = tokio::select! {
            Some((_, s)) = wants.next() => s,
            e = client.select_next_some() => panic!("want {i}: no event expected before the want: {e:?}"),
        };
        let frame = tokio::select! {
            f = read_frame(&mut want_stream) => f.unwrap().unwrap(),
            e = client.select_next_some() => panic!("want {i}: no event expected before the want: {e:?}"),
        };
        assert_eq!(Message::decode(frame).unwrap().wantlist[0].cid, *block.cid(), "want {i}");
        // Gone, the way Helia's receive timeout resets it.
        drop(want_stream);
        let mut reply = Message::default();
        reply.push_block(&block);
        let stream = match out.as_mut() {
            Some(s) => s,
            None => out.insert(control.open_stream(*client.local_peer_id(), PROTOCOL).await.unwrap()),
        };
        write_framed(stream, &reply.encode_framed().unwrap()).await.unwrap();
        let event = until(&mut client, |e| Some(format!("{e:?}"))).await;
        assert!(event.starts_with("Block"), "want {i} answered: {event}");
        // Let the reset reach the client before the next want is written.
        let _ = tokio::time::timeout(Duration::from_millis(300), client.select_next_some()).await;
    }
}

/// A peer wants large blocks and then never reads the server's stream. Its reply must not hold
/// the server's byte budget for ever: the write gives up after `write_timeout`, the stream is
/// dropped, and an honest peer asking afterwards is served although the whole budget was the
/// stuck peer's.
#[tokio::test]
async fn a_peer_that_never_reads_loses_its_stream_and_the_budget_it_held() {
    let store = MemoryBlockstore::new(16 << 20);
    let blocks: Vec<Block> = (0..6u8).map(|i| Block::from_data(RAW, vec![i; 1 << 20]).unwrap()).collect();
    blocks.iter().for_each(|b| store.put(b).unwrap());
    let honest_block = Block::from_data(RAW, b"for the honest peer".to_vec()).unwrap();
    store.put(&honest_block).unwrap();
    let config = bitswap::Config::default()
        .with_write_timeout(Duration::from_secs(2))
        .with_max_outstanding_bytes(8 << 20, 3 << 20);
    let mut server = memory_swarm(|_| bitswap::Behaviour::new(store, config));
    let server_id = *server.local_peer_id();
    let (mut control, _) = raw_peer(&mut server, 807).await;
    let mut incoming = control.accept(PROTOCOL).unwrap();
    let mut stream = tokio::select! {
        s = control.open_stream(server_id, PROTOCOL) => s.unwrap(),
        _ = server.select_next_some() => panic!("unexpected server event"),
    };
    let want = Message {
        wantlist: blocks
            .iter()
            .map(|b| WantEntry {
                cid: *b.cid(),
                priority: 1,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: true,
            })
            .collect(),
        ..Message::default()
    };
    write_framed(&mut stream, &want.encode_framed().unwrap()).await.unwrap();
    // Take the server's reply stream and never read it.
    let (_, mut stuck) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                Some(s) = incoming.next() => return s,
                _ = server.select_next_some() => {}
            }
        }
    })
    .await
    .expect("the server opened its reply stream");
    // Let replies pile up against the unread stream, past the write deadline.
    let _ = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            server.select_next_some().await;
        }
    })
    .await;

    // An honest peer asks for a block and gets it.
    let mut honest = client(bitswap::Config::default().with_request_timeout(Duration::from_secs(8)));
    let addr: Multiaddr = "/memory/808".parse().unwrap();
    server.listen_on(addr.clone()).unwrap();
    honest.dial(addr).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(15), async {
        let mut asked = false;
        loop {
            tokio::select! {
                e = honest.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if !asked && peer_id == server_id => {
                        honest.behaviour_mut().get(*honest_block.cid(), bitswap::Source::Peers(vec![server_id]));
                        asked = true;
                    }
                    SwarmEvent::Behaviour(Event::Block { block, .. }) => return Ok(block),
                    SwarmEvent::Behaviour(Event::Failed { error, .. }) => return Err(error.to_string()),
                    _ => {}
                },
                _ = server.select_next_some() => {}
            }
        }
    })
    .await
    .expect("the honest request ended");
    assert_eq!(got.unwrap(), honest_block);

    // The stuck stream was given up on: reading it now ends (what was buffered, then the
    // reset), where a server without a write deadline would keep it open for ever.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                r = stuck.read_to_end(&mut rest) => return r.map(|_| ()),
                _ = server.select_next_some() => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the server still holds the stuck stream open ({} bytes read)", rest.len());
}

/// A store whose reads of one CID take seconds (a slow disk, a contended database), read off
/// the swarm's task as a disk store must: its `lookup` runs the read on a thread of its own.
#[derive(Clone)]
struct SlowStore {
    inner: MemoryBlockstore,
    slow: antiphon_core::Cid,
}

impl Blockstore for SlowStore {
    fn get(&self, cid: &antiphon_core::Cid) -> Result<Option<bytes::Bytes>, bitswap::BlockstoreError> {
        if *cid == self.slow {
            std::thread::sleep(Duration::from_secs(3));
        }
        self.inner.get(cid)
    }

    fn put(&self, block: &Block) -> Result<(), bitswap::BlockstoreError> {
        self.inner.put(block)
    }

    fn lookup(&self, cid: &antiphon_core::Cid, inline_up_to: Option<usize>) -> bitswap::LookupFuture {
        let (store, cid) = (self.clone(), *cid);
        let (tx, rx) = futures::channel::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(bitswap::lookup_now(&store, &cid, inline_up_to));
        });
        Box::pin(async move { rx.await.unwrap_or_else(|_| Ok(bitswap::Lookup::Missing)) })
    }
}

/// One peer's want waits on a read that takes seconds; another peer asking afterwards for a
/// block that reads at once gets it first: no read holds up the task that serves everyone.
#[tokio::test]
async fn a_slow_read_for_one_peer_does_not_delay_another() {
    let inner = MemoryBlockstore::new(1 << 20);
    let slow = Block::from_data(RAW, b"on a slow disk".to_vec()).unwrap();
    let fast = Block::from_data(RAW, b"in the page cache".to_vec()).unwrap();
    inner.put(&slow).unwrap();
    inner.put(&fast).unwrap();
    let store = SlowStore { inner, slow: *slow.cid() };
    let mut server = memory_swarm(|_| bitswap::Behaviour::new(store, bitswap::Config::default()));
    let server_id = *server.local_peer_id();
    let addr: Multiaddr = "/memory/809".parse().unwrap();
    server.listen_on(addr.clone()).unwrap();
    let mut a = client(bitswap::Config::default());
    let mut b = client(bitswap::Config::default());
    a.dial(addr.clone()).unwrap();
    b.dial(addr).unwrap();
    let mut order = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        let (mut a_asked, mut b_asked) = (false, false);
        while order.len() < 2 {
            tokio::select! {
                e = a.select_next_some() => match e {
                    SwarmEvent::ConnectionEstablished { .. } if !a_asked => {
                        a.behaviour_mut().get(*slow.cid(), bitswap::Source::Peers(vec![server_id]));
                        a_asked = true;
                    }
                    SwarmEvent::Behaviour(Event::Block { .. }) => order.push("a"),
                    SwarmEvent::Behaviour(Event::Failed { error, .. }) => panic!("a: {error}"),
                    _ => {}
                },
                e = b.select_next_some() => match e {
                    // B asks once A's want has reached the server.
                    SwarmEvent::ConnectionEstablished { .. } => {}
                    SwarmEvent::Behaviour(Event::Block { .. }) => order.push("b"),
                    SwarmEvent::Behaviour(Event::Failed { error, .. }) => panic!("b: {error}"),
                    _ => {}
                },
                _ = server.select_next_some() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)), if a_asked && !b_asked => {
                    b.behaviour_mut().get(*fast.cid(), bitswap::Source::Peers(vec![server_id]));
                    b_asked = true;
                }
            }
        }
    })
    .await
    .expect("both blocks arrived");
    assert_eq!(order, ["b", "a"], "the fast block came first");
}
