//! `antiphon-sim`: runs the swarm simulator for several listener counts and prints a Markdown
//! table. `antiphon-sim --help` lists the options.

use antiphon_sim::{Params, Report, run};

const HELP: &str = "antiphon-sim: Antiphon's scheduler in a simulated swarm of one popular track

Usage: antiphon-sim [--listeners 10,100,1000] [--seed N] [--churn F] [--unreachable F]
                    [--node-mbit N] [--arrival-secs N] [--track-secs N] [--kbps N]
                    [--first-segment-secs N]
                    [--join-every SECS] [--link-mbit N] [--rtt-ms N] [--per-peer-kib N] [--no-holdings] [--json]

Each listener count runs twice: with peers (the scheduler as shipped) and without (every byte
from the node, as before browsers served). Defaults: listeners 10,100,1000,10000; seed 1;
churn 0.2; unreachable 0.3; node egress 100 Mbit/s; arrivals over 120 s, half in the first 10;
a 210 s track (three and a half minutes) at 128 kb/s cut as the node cuts it (1, 2, 4, then 6 s segments); capacities and round trips drawn per listener; 256 KiB/s per upload.
--no-holdings: peers do not tell each other what they hold (asked blindly, found at random).
--join-every, --link-mbit and --rtt-ms fix what is otherwise drawn (to calibrate against a
real-browser swarm); --json prints one JSON object per run instead of the table.";

fn main() {
    let mut counts = vec![10, 100, 1000, 10_000];
    let mut params = Params::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--listeners" => counts = value().split(',').map(|n| parse(n, "--listeners")).collect(),
            "--seed" => params.seed = parse(&value(), "--seed"),
            "--churn" => params.churn = parse(&value(), "--churn"),
            "--unreachable" => params.unreachable = parse(&value(), "--unreachable"),
            "--node-mbit" => params.node_egress = parse::<f64>(&value(), "--node-mbit") * 1e6 / 8.0,
            "--arrival-secs" => params.arrival_secs = parse(&value(), "--arrival-secs"),
            "--track-secs" => params.track_secs = parse(&value(), "--track-secs"),
            "--kbps" => params.bytes_per_sec = parse::<f64>(&value(), "--kbps") * 1000.0 / 8.0,
            "--first-segment-secs" => params.first_segment_secs = parse(&value(), "--first-segment-secs"),
            "--join-every" => params.join_every = Some(parse(&value(), "--join-every")),
            "--link-mbit" => params.link = Some(parse::<f64>(&value(), "--link-mbit") * 1e6 / 8.0),
            "--rtt-ms" => params.rtt = Some(parse::<f64>(&value(), "--rtt-ms") / 1000.0),
            "--per-peer-kib" => params.per_peer_cap = parse::<f64>(&value(), "--per-peer-kib") * 1024.0,
            "--json" => json = true,
            "--discovery-secs" => params.discovery_secs = parse(&value(), "--discovery-secs"),
            "--no-holdings" => params.holdings = false,
            "-h" | "--help" => {
                println!("{HELP}");
                return;
            }
            other => fail(&format!("unknown option {other}")),
        }
    }
    if json {
        for n in counts {
            for peers in [params.peers_per_listener, 0] {
                let r = run(&Params { listeners: n, peers_per_listener: peers, ..params.clone() });
                println!(
                    "{{\"listeners\":{n},\"peers\":{peers},\"offload\":{:.4},\"node_bytes\":{},\"peer_bytes\":{},\"rebuffers\":{},\"start_p50_ms\":{:.0},\"start_p95_ms\":{:.0}}}",
                    r.offload(),
                    r.node_bytes,
                    r.peer_bytes,
                    r.rebuffers,
                    r.start_p50 * 1000.0,
                    r.start_p95 * 1000.0
                );
            }
        }
        return;
    }
    println!(
        "Seed {}; churn {:.0}%; unreachable {:.0}%; node egress {:.0} Mbit/s; arrivals over {:.0} s, {:.0}% in the first {:.0} s; a {} s track at {:.0} kb/s in {} segments ({} s); holdings exchanged: {}.\n",
        params.seed,
        params.churn * 100.0,
        params.unreachable * 100.0,
        params.node_egress * 8.0 / 1e6,
        params.arrival_secs,
        params.burst_share * 100.0,
        params.burst_secs,
        params.track_secs,
        params.bytes_per_sec * 8.0 / 1000.0,
        params.layout().len(),
        params.layout().iter().map(|(s, _)| s.to_string()).collect::<Vec<_>>().join(", "),
        if params.holdings { "yes" } else { "no" }
    );
    println!(
        "| listeners | peers | offload | node egress | of which each listener's first segment | rebuffers per listener-hour | start p50 / p95 |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for n in counts {
        for peers in [params.peers_per_listener, 0] {
            let report = run(&Params { listeners: n, peers_per_listener: peers, ..params.clone() });
            row(n, peers, &report);
        }
    }
}

fn row(n: usize, peers: usize, r: &Report) {
    let label = if peers == 0 { "none (node only)".to_owned() } else { format!("up to {peers}") };
    println!(
        "| {n} | {label} | {:.1}% | {:.1} MB ({:.1}% of bytes) | {:.1}% of bytes | {:.2} | {:.0} / {:.0} ms |",
        r.offload() * 100.0,
        r.node_bytes as f64 / 1e6,
        (1.0 - r.offload()) * 100.0,
        100.0 * r.node_first_segment_bytes as f64 / (r.node_bytes + r.peer_bytes).max(1) as f64,
        r.rebuffers_per_hour(),
        r.start_p50 * 1000.0,
        r.start_p95 * 1000.0
    );
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> T {
    s.trim().parse().unwrap_or_else(|_| fail(&format!("{what}: cannot read {s:?}")))
}

fn fail(message: &str) -> ! {
    eprintln!("antiphon-sim: {message}\n\n{HELP}");
    std::process::exit(2)
}
