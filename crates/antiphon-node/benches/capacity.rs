//! How many listeners one creator node carries: N native dialers (`antiphon_node::client`, the
//! same code as `antiphon-node fetch`) each pull a 320 kb/s track's segments at real time from
//! one release node, over WebRTC-direct or WebSocket.
//!
//! `cargo bench -p antiphon-node --bench capacity -- <antiphon-node binary> [label]`, inside
//! `scripts/netns.sh` (loopback of a private namespace). `CAPACITY_N` (default `100,300,1000`),
//! `CAPACITY_SECS` (seconds of playback per listener, default 30) and `CAPACITY_TRANSPORTS`
//! (default `webrtc-direct,websocket`) change the run. Bounded: every listener stops after its
//! seconds, every dial and block has a timeout. Prints one Markdown row per run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use antiphon_core::Cid;
use antiphon_node::client::Client;
use libp2p::Multiaddr;

mod support;

/// A segment: its CID and its duration.
type Segment = (Cid, f64);

/// Makes a 90 s 320 kb/s track, ingests it and serves it over WebRTC-direct and WebSocket with
/// the per-address caps lifted (every listener here comes from one address); returns the node,
/// the track's segments and the node's addresses.
fn start(bin: &Path, dir: &Path) -> (support::Served, Vec<Segment>, Vec<String>) {
    let data = dir.join("data");
    let mp3 = dir.join("track.mp3");
    support::cli(bin, &["demo-track", "-o", mp3.to_str().unwrap(), "--seconds", "90", "--kbps", "320"]);
    let track = support::cli(bin, &["--data", data.to_str().unwrap(), "ingest", mp3.to_str().unwrap()]);
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        "[limits]\nmax_connections = 5000\nmax_connections_per_ip = 5000\nmax_pending_incoming = 1024\nmax_pending_incoming_per_ip = 1024\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap(), "--http", "127.0.0.1:0"];
    let listen = ["--listen", "/ip4/127.0.0.1/udp/0/webrtc-direct", "--listen", "/ip4/127.0.0.1/tcp/0/ws"];
    let (served, http, peer) = support::serve(bin, &data, &[&args[..], &listen[..]].concat(), 2);
    let addrs = peer["multiaddrs"].as_array().unwrap().iter().filter_map(|a| a.as_str().map(String::from)).collect();
    let segments = support::segments(&http, &track)
        .iter()
        .map(|s| (s["cid"].as_str().unwrap().parse().unwrap(), s["duration"].as_f64().unwrap_or(6.0)))
        .collect();
    (served, segments, addrs)
}

/// CPU seconds (user + system) and resident bytes of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is 0, utime 11, stime 12 (clock ticks, 100 per second).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024;
    (cpu, rss)
}

/// What one listener saw.
#[derive(Default)]
struct Listened {
    connected: bool,
    latencies_ms: Vec<f64>,
    late: usize,
    failed: bool,
}

/// One listener: connects, then asks for each segment when playback would need it (two ahead),
/// for `secs` seconds of audio.
async fn listen(addr: Multiaddr, segments: Arc<Vec<Segment>>, secs: f64) -> Listened {
    let mut out = Listened::default();
    let Ok(Ok((client, peer))) =
        tokio::time::timeout(Duration::from_secs(30), Client::connect(addr, Duration::from_secs(20))).await
    else {
        out.failed = true;
        return out;
    };
    out.connected = true;
    let start = Instant::now();
    let mut due = 0.0;
    for (i, (cid, duration)) in segments.iter().enumerate() {
        if due > secs {
            break;
        }
        // The player wants segment i when segment i-2 starts playing.
        let wanted_at = if i < 2 { 0.0 } else { segments[..i - 2].iter().map(|s| s.1).sum::<f64>() };
        let wait = Duration::from_secs_f64(wanted_at).saturating_sub(start.elapsed());
        tokio::time::sleep(wait).await;
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(20), client.get(*cid, peer)).await {
            Ok(Ok(_)) => out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3),
            _ => {
                out.failed = true;
                break;
            }
        }
        // Late: the segment arrived after it was due to play.
        let plays_at = segments[..i].iter().map(|s| s.1).sum::<f64>();
        if start.elapsed().as_secs_f64() > plays_at + 0.5 {
            out.late += 1;
        }
        due += duration;
    }
    drop(client);
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let bin = args.next().expect("usage: capacity <antiphon-node binary> [label]");
    let label = args.next().unwrap_or_else(|| "str0m (ours)".into());
    let counts: Vec<usize> = std::env::var("CAPACITY_N")
        .unwrap_or_else(|_| "100,300,1000".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let secs: f64 = std::env::var("CAPACITY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30.0);
    let transports: Vec<String> = std::env::var("CAPACITY_TRANSPORTS")
        .unwrap_or_else(|_| "webrtc-direct,websocket".into())
        .split(',')
        .map(String::from)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "| listener (transport) | N | connected | p50 block | p99 block | late segments | node CPU | node RSS per connection |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for transport in &transports {
        for &n in &counts {
            let dir = tempfile::tempdir().unwrap();
            let (node, segments, addrs) = start(Path::new(&bin), dir.path());
            let pattern = if transport == "websocket" { "/ws/" } else { "/webrtc-direct/" };
            let addr: Multiaddr = addrs.iter().find(|a| a.contains(pattern)).unwrap().parse().unwrap();
            let segments = Arc::new(segments);
            let pid = node.0.id();
            let (cpu0, rss0) = usage(pid);
            let began = Instant::now();
            let results = runtime.block_on(async {
                let mut tasks = Vec::with_capacity(n);
                for i in 0..n {
                    tasks.push(tokio::spawn(listen(addr.clone(), segments.clone(), secs)));
                    // Arrivals spread over the first seconds, as a popular track's are.
                    if i % 10 == 9 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                // The node's resident size, sampled while the listeners play.
                let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
                let sampler = {
                    let peak = peak.clone();
                    tokio::spawn(async move {
                        loop {
                            peak.fetch_max(usage(pid).1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    })
                };
                let mut out = Vec::with_capacity(n);
                for task in tasks {
                    out.push(task.await.unwrap_or_default());
                }
                sampler.abort();
                (out, peak.load(std::sync::atomic::Ordering::Relaxed))
            });
            let (results, peak_rss) = results;
            let (cpu1, _) = usage(pid);
            let wall = began.elapsed().as_secs_f64();
            let connected = results.iter().filter(|r| r.connected).count();
            let mut all: Vec<f64> = results.iter().flat_map(|r| r.latencies_ms.iter().copied()).collect();
            all.sort_by(f64::total_cmp);
            let late: usize = results.iter().map(|r| r.late).sum();
            let per_conn = (peak_rss.saturating_sub(rss0)) as f64 / n as f64 / 1024.0;
            println!(
                "| {label} ({transport}) | {n} | {connected} | {:.1} ms | {:.1} ms | {late} | {:.0}% of a core | {:.0} KiB |",
                percentile(&all, 0.5),
                percentile(&all, 0.99),
                (cpu1 - cpu0) / wall * 100.0,
                per_conn,
            );
            drop(node);
        }
    }
}
