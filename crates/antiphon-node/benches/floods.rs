//! An honest listener's block latency from a creator node, alone and under each flood of
//! SECURITY.md, side by side in one run: `cargo bench -p antiphon-node --bench floods --
//! <antiphon-node binary>`. Everything runs on loopback (the floods from 127.0.0.2, the
//! listener from 127.0.0.1), bounded in count and time. Prints a table and rewrites the
//! `floods` section of BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use antiphon_core::Cid;
use antiphon_core::bitswap::PROTOCOL;
use antiphon_core::bitswap::message::{Message, WantEntry, WantType};
use antiphon_core::bitswap::protocol::write_framed;
use antiphon_node::client::Client;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, noise, tcp, yamux};

/// Blocks the listener asks for in each scenario, one after another.
const GETS: usize = 300;

mod support;

struct Node {
    /// Kept for its drop, which stops the node.
    _served: support::Served,
    tcp: Multiaddr,
    peer: PeerId,
}

/// Makes the default track, ingests it and serves it; returns the node and the track's
/// segment CIDs.
fn start(bin: &Path, dir: &Path) -> (Node, Vec<Cid>) {
    let data = dir.join("data");
    let mp3 = dir.join("track.mp3");
    support::cli(bin, &["demo-track", "-o", mp3.to_str().unwrap(), "--seconds", "120"]);
    let track = support::cli(bin, &["--data", data.to_str().unwrap(), "ingest", mp3.to_str().unwrap()]);
    let (served, http, peer) =
        support::serve(bin, &data, &["--http", "127.0.0.1:0", "--listen", "/ip4/127.0.0.1/tcp/0"], 1);
    let tcp = peer["multiaddrs"][0].as_str().unwrap().parse().unwrap();
    let peer = peer["peer_id"].as_str().unwrap().parse().unwrap();
    let segments =
        support::segments(&http, &track).iter().map(|s| s["cid"].as_str().unwrap().parse().unwrap()).collect();
    (Node { _served: served, tcp, peer }, segments)
}

/// The listener: connects, then fetches `GETS` blocks one after another; returns each
/// latency in milliseconds, sorted, and the time to connect.
async fn listen(node: &Node, segments: &[Cid]) -> (Vec<f64>, f64) {
    let started = Instant::now();
    let (client, peer) =
        Client::connect(node.tcp.clone(), Duration::from_secs(20)).await.expect("the listener connects");
    let connect_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut latencies = Vec::with_capacity(GETS);
    for i in 0..GETS {
        let t = Instant::now();
        client.get(segments[i % segments.len()], peer).await.expect("the listener gets its block");
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, connect_ms)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// 2000 TCP connections from 127.0.0.2 that never speak, held until dropped.
async fn connection_flood(node: &Node) -> Vec<tokio::net::TcpStream> {
    let port = node.tcp.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
        _ => None,
    });
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", port.unwrap()).parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..2000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), socket.connect(target)).await {
            held.push(s);
        }
    }
    held
}

/// A libp2p peer (its own identity) that opens raw Bitswap streams to the node; its swarm is
/// driven on a task until `stop` flips.
async fn raw_peer(node: &Node, stop: tokio::sync::watch::Receiver<bool>) -> libp2p_stream::Control {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let control = swarm.behaviour().new_control();
    swarm.dial(node.tcp.clone()).unwrap();
    let mut stop = stop;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = swarm.select_next_some() => {}
                _ = stop.changed() => break,
            }
        }
    });
    control
}

fn want(cids: impl Iterator<Item = (Cid, bool)>) -> Message {
    Message {
        wantlist: cids
            .map(|(cid, cancel)| WantEntry {
                cid,
                priority: 1,
                cancel,
                want_type: WantType::Block,
                send_dont_have: false,
            })
            .collect(),
        ..Message::default()
    }
}

/// 16 peers that want every segment and never read what the node sends back.
async fn never_readers(
    node: &Node,
    segments: &[Cid],
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<Box<dyn std::any::Any + Send>> {
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for _ in 0..16 {
        let mut control = raw_peer(node, stop.clone()).await;
        let incoming = control.accept(PROTOCOL).unwrap();
        let Ok(mut stream) = control.open_stream(node.peer, PROTOCOL).await else { continue };
        let msg = want(segments.iter().map(|c| (*c, false)));
        let _ = write_framed(&mut stream, &msg.encode_framed().unwrap()).await;
        // The node's reply streams arrive here and are never read.
        let mut incoming = incoming;
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut streams = Vec::new();
            loop {
                tokio::select! {
                    Some(s) = incoming.next() => streams.push(s),
                    _ = stop.changed() => break,
                }
            }
        });
        held.push(Box::new(stream));
    }
    held
}

/// 4 peers that each send 4 MiB messages of want/cancel pairs, 8 messages apiece.
async fn want_cancel_flood(
    node: &Node,
    segments: &[Cid],
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let pairs: Vec<(Cid, bool)> = (0..20_000)
        .flat_map(|i| [(segments[i % segments.len()], false), (segments[i % segments.len()], true)])
        .collect();
    let frame = want(pairs.into_iter()).encode_framed().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut control = raw_peer(node, stop.clone()).await;
        let peer = node.peer;
        let frame = frame.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = control.open_stream(peer, PROTOCOL).await else { return };
            for _ in 0..8 {
                if write_framed(&mut stream, &frame).await.is_err() {
                    return;
                }
            }
        }));
    }
    tasks
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // cargo adds `--bench`; the binary is the first argument that is not a flag.
    let bin: PathBuf = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/antiphon-node"));
    let dir = std::env::temp_dir().join(format!("antiphon-floods-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (node, segments) = start(&bin, &dir);
    let mut rows = Vec::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    let (alone, connect) = listen(&node, &segments).await;
    rows.push(("alone", alone, connect));

    let held = connection_flood(&node).await;
    let label = format!("{} idle TCP connections from another address", held.len());
    let (lat, connect) = listen(&node, &segments).await;
    drop(held);
    rows.push((Box::leak(label.into_boxed_str()), lat, connect));

    let stuck = never_readers(&node, &segments, &stop_rx).await;
    let label = format!("{} peers that want every segment and never read", stuck.len());
    let (lat, connect) = listen(&node, &segments).await;
    drop(stuck);
    rows.push((Box::leak(label.into_boxed_str()), lat, connect));

    let flooding = want_cancel_flood(&node, &segments, &stop_rx).await;
    let (lat, connect) = listen(&node, &segments).await;
    for t in flooding {
        t.abort();
    }
    rows.push(("4 peers sending 4 MiB messages of want/cancel pairs", lat, connect));
    let _ = stop_tx.send(true);

    let mut table = String::from(
        "| while the node is under | listener's connect | block p50 | block p99 |\n|---|---:|---:|---:|\n",
    );
    for (label, lat, connect) in &rows {
        table.push_str(&format!(
            "| {label} | {connect:.1} ms | {:.2} ms | {:.2} ms |\n",
            percentile(lat, 0.5),
            percentile(lat, 0.99)
        ));
    }
    print!("{table}");
    let section = format!(
        "<!-- floods:begin -->\n{GETS} blocks of the default track (~100 KB each), one after another, by a listener on 127.0.0.1 over TCP; the floods come from 127.0.0.2. `cargo bench -p antiphon-node --bench floods -- target/release/antiphon-node` (in `make bench`). Each row connects a new listener while the flood is on.\n\n{table}<!-- floods:end -->"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
    if let Ok(md) = std::fs::read_to_string(&path)
        && let (Some(begin), Some(end)) = (md.find("<!-- floods:begin -->"), md.find("<!-- floods:end -->"))
    {
        let updated = format!("{}{section}{}", &md[..begin], &md[end + "<!-- floods:end -->".len()..]);
        std::fs::write(&path, updated).unwrap();
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
