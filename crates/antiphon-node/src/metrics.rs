//! The node's counters and gauges, rendered as Prometheus text at `GET /metrics`.
//!
//! Labels come from fixed sets (transports, protocols, results), so the number of series is
//! bounded whatever peers do.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Transports a byte or a connection is counted under.
pub const TRANSPORTS: [&str; 5] = ["tcp", "websocket", "webrtc-direct", "http", "other"];
/// Protocols bytes are served by.
pub const PROTOCOLS: [&str; 2] = ["bitswap", "gateway"];
/// Upper bounds (seconds) of the ingest duration histogram's buckets.
const INGEST_BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn transport_index(transport: &str) -> usize {
    TRANSPORTS.iter().position(|t| *t == transport).unwrap_or(TRANSPORTS.len() - 1)
}

#[derive(Default)]
struct Histogram {
    buckets: [u64; INGEST_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Everything `/metrics` reports that is not read from the store at scrape time.
#[derive(Default)]
pub struct Metrics {
    served: [[AtomicU64; PROTOCOLS.len()]; TRANSPORTS.len()],
    connections: [AtomicU64; TRANSPORTS.len()],
    peer_wants: AtomicU64,
    wants_in_flight: AtomicU64,
    replications_ok: AtomicU64,
    replications_failed: AtomicU64,
    ingests: Mutex<Histogram>,
    receipts_accepted: AtomicU64,
    receipts_refused: [AtomicU64; crate::receipts::REFUSAL_KINDS.len()],
    receipt_bytes: AtomicU64,
    webrtc: Option<std::sync::Arc<crate::webrtc::Counters>>,
}

/// Values read from the store when `/metrics` is asked.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreGauges {
    /// Blocks stored.
    pub blocks: u64,
    /// Tracks stored.
    pub tracks: u64,
    /// Tracks whose every configured replica has confirmed.
    pub tracks_fully_replicated: u64,
}

impl Metrics {
    /// Reports what the WebRTC-direct sockets count too.
    pub fn with_webrtc(mut self, counters: std::sync::Arc<crate::webrtc::Counters>) -> Self {
        self.webrtc = Some(counters);
        self
    }

    /// Counts `bytes` served over `transport` by `protocol` ("bitswap" or "gateway").
    pub fn served(&self, transport: &str, protocol: &str, bytes: u64) {
        let p = PROTOCOLS.iter().position(|x| *x == protocol).unwrap_or(0);
        self.served[transport_index(transport)][p].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes served so far over `transport` by `protocol`.
    pub fn served_bytes(&self, transport: &str, protocol: &str) -> u64 {
        let p = PROTOCOLS.iter().position(|x| *x == protocol).unwrap_or(0);
        self.served[transport_index(transport)][p].load(Ordering::Relaxed)
    }

    /// A connection over `transport` opened.
    pub fn connection_opened(&self, transport: &str) {
        self.connections[transport_index(transport)].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection over `transport` closed.
    pub fn connection_closed(&self, transport: &str) {
        let gauge = &self.connections[transport_index(transport)];
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(1)));
    }

    /// Sets the Bitswap gauges: wantlist entries peers hold here, and the node's own wants.
    pub fn set_bitswap(&self, peer_wants: usize, wants_in_flight: usize) {
        self.peer_wants.store(peer_wants as u64, Ordering::Relaxed);
        self.wants_in_flight.store(wants_in_flight as u64, Ordering::Relaxed);
    }

    /// Records one replication attempt's outcome.
    pub fn replication(&self, ok: bool) {
        if ok { &self.replications_ok } else { &self.replications_failed }.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long an ingest took.
    pub fn ingest(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut h = self.ingests.lock().unwrap_or_else(|e| e.into_inner());
        for (bound, bucket) in INGEST_BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if secs <= *bound {
                *bucket += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Counts a receipt taken, crediting `bytes` to its server.
    pub fn receipt_accepted(&self, bytes: u64) {
        self.receipts_accepted.fetch_add(1, Ordering::Relaxed);
        self.receipt_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a receipt refused, by [`crate::receipts::Refusal::kind`].
    pub fn receipt_refused(&self, kind: &str) {
        let kinds = crate::receipts::REFUSAL_KINDS;
        let i = kinds.iter().position(|k| *k == kind).unwrap_or(kinds.len() - 1);
        self.receipts_refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, store: StoreGauges) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family("antiphon_served_bytes_total", "counter", "Bytes of blocks served, by transport and protocol.");
        let mut lines = String::new();
        for (t, row) in TRANSPORTS.iter().zip(&self.served) {
            for (p, v) in PROTOCOLS.iter().zip(row) {
                let v = v.load(Ordering::Relaxed);
                let _ = writeln!(lines, "antiphon_served_bytes_total{{transport=\"{t}\",protocol=\"{p}\"}} {v}");
            }
        }
        out.push_str(&lines);
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        let _ = writeln!(
            out,
            "# HELP antiphon_connected_peers Open libp2p connections, by transport.\n# TYPE antiphon_connected_peers gauge"
        );
        for (t, v) in TRANSPORTS.iter().zip(&self.connections) {
            if *t != "http" {
                let _ = writeln!(out, "antiphon_connected_peers{{transport=\"{t}\"}} {}", v.load(Ordering::Relaxed));
            }
        }
        gauge(&mut out, "antiphon_blocks_stored", "Blocks in the store.", store.blocks);
        gauge(&mut out, "antiphon_tracks_stored", "Tracks in the store.", store.tracks);
        gauge(
            &mut out,
            "antiphon_tracks_fully_replicated",
            "Tracks every configured replica has confirmed.",
            store.tracks_fully_replicated,
        );
        gauge(
            &mut out,
            "antiphon_bitswap_peer_wants",
            "Wantlist entries peers hold at this node (blocks they wait for).",
            self.peer_wants.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "antiphon_bitswap_wants_in_flight",
            "Blocks this node is fetching by Bitswap.",
            self.wants_in_flight.load(Ordering::Relaxed),
        );
        by_result(
            &mut out,
            "antiphon_replications_total",
            "Replication requests answered by a replica, by result.",
            [("ok", &self.replications_ok), ("failed", &self.replications_failed)],
        );
        let h = self.ingests.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP antiphon_ingest_duration_seconds Time to ingest an uploaded file.\n# TYPE antiphon_ingest_duration_seconds histogram"
        );
        for (bound, n) in INGEST_BUCKETS.iter().zip(h.buckets) {
            let _ = writeln!(out, "antiphon_ingest_duration_seconds_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "antiphon_ingest_duration_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "antiphon_ingest_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "antiphon_ingest_duration_seconds_count {}", h.count);
        by_result(
            &mut out,
            "antiphon_receipts_total",
            "Signed receipts received from listeners, by result.",
            std::iter::once(("accepted", &self.receipts_accepted))
                .chain(crate::receipts::REFUSAL_KINDS.iter().copied().zip(&self.receipts_refused)),
        );
        let _ = writeln!(
            out,
            "# HELP antiphon_receipt_credited_bytes_total Bytes credited to serving peers by accepted receipts.\n# TYPE antiphon_receipt_credited_bytes_total counter\nantiphon_receipt_credited_bytes_total {}",
            self.receipt_bytes.load(Ordering::Relaxed)
        );
        if let Some(w) = &self.webrtc {
            render_webrtc(&mut out, w);
        }
        out
    }
}

/// Most servers `/metrics` lists by peer ID (the rest are at `GET /receipts`).
pub const TOP_SERVERS: usize = 10;

/// The servers credited most, one series each: at most [`TOP_SERVERS`].
pub fn render_top_servers(out: &mut String, servers: &[crate::receipts::ServerTotal]) {
    let _ = writeln!(
        out,
        "# HELP antiphon_receipt_server_bytes Bytes credited by receipts to each of the {TOP_SERVERS} peers credited most (all of them: GET /receipts).\n# TYPE antiphon_receipt_server_bytes gauge"
    );
    for s in servers.iter().take(TOP_SERVERS) {
        let _ = writeln!(out, "antiphon_receipt_server_bytes{{peer=\"{}\"}} {}", s.peer_id, s.bytes);
    }
}

/// A counter family with one series per `result` label.
fn by_result<'a>(out: &mut String, name: &str, help: &str, series: impl IntoIterator<Item = (&'a str, &'a AtomicU64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (result, v) in series {
        let _ = writeln!(out, "{name}{{result=\"{result}\"}} {}", v.load(Ordering::Relaxed));
    }
}

fn render_webrtc(out: &mut String, w: &crate::webrtc::Counters) {
    let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP antiphon_webrtc_direct_connections_total WebRTC-direct connections created from a first binding request.\n# TYPE antiphon_webrtc_direct_connections_total counter\nantiphon_webrtc_direct_connections_total {}",
        v(&w.connections)
    );
    let _ = writeln!(
        out,
        "# HELP antiphon_webrtc_direct_first_packets_total First packets of WebRTC-direct connections: received, and answered at once.\n# TYPE antiphon_webrtc_direct_first_packets_total counter"
    );
    for (packet, received, answered) in [
        ("binding_request", &w.connections, &w.first_binding_answered),
        ("client_hello", &w.first_hello_received, &w.first_hello_answered),
    ] {
        let _ = writeln!(
            out,
            "antiphon_webrtc_direct_first_packets_total{{packet=\"{packet}\",result=\"received\"}} {}",
            v(received)
        );
        let _ = writeln!(
            out,
            "antiphon_webrtc_direct_first_packets_total{{packet=\"{packet}\",result=\"answered\"}} {}",
            v(answered)
        );
    }
    let _ = writeln!(
        out,
        "# HELP antiphon_webrtc_direct_stun_total STUN binding requests received and responses sent.\n# TYPE antiphon_webrtc_direct_stun_total counter\nantiphon_webrtc_direct_stun_total{{kind=\"request\"}} {}\nantiphon_webrtc_direct_stun_total{{kind=\"response\"}} {}",
        v(&w.binding_requests),
        v(&w.binding_responses)
    );
    let _ = writeln!(
        out,
        "# HELP antiphon_webrtc_direct_datagrams_dropped_total Datagrams not taken (unknown senders, refused, past limits) or not sent (socket full).\n# TYPE antiphon_webrtc_direct_datagrams_dropped_total counter\nantiphon_webrtc_direct_datagrams_dropped_total{{direction=\"in\"}} {}\nantiphon_webrtc_direct_datagrams_dropped_total{{direction=\"out\"}} {}",
        v(&w.dropped),
        v(&w.send_drops)
    );
    let _ = writeln!(
        out,
        "# HELP antiphon_webrtc_direct_stream_closes_total Streams whose write side this node closed (FIN sent), and how those closes ended: acknowledged (FIN_ACK), timed out, or cut by the channel or connection ending first.\n# TYPE antiphon_webrtc_direct_stream_closes_total counter"
    );
    for (result, counter) in
        [("fin_sent", &w.fins_sent), ("acked", &w.fins_acked), ("timed_out", &w.fins_timed_out), ("cut", &w.fins_cut)]
    {
        let _ = writeln!(out, "antiphon_webrtc_direct_stream_closes_total{{result=\"{result}\"}} {}", v(counter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let m = Metrics::default();
        m.served("websocket", "bitswap", 1000);
        m.served("carrier-pigeon", "bitswap", 7);
        m.served("http", "gateway", 5);
        m.connection_opened("tcp");
        m.connection_opened("tcp");
        m.connection_closed("tcp");
        m.connection_closed("webrtc-direct");
        m.ingest(Duration::from_millis(300));
        let text = m.render(StoreGauges { blocks: 9, tracks: 2, tracks_fully_replicated: 1 });
        assert!(text.contains("antiphon_served_bytes_total{transport=\"websocket\",protocol=\"bitswap\"} 1000"));
        assert!(text.contains("antiphon_served_bytes_total{transport=\"other\",protocol=\"bitswap\"} 7"));
        assert!(text.contains("antiphon_served_bytes_total{transport=\"http\",protocol=\"gateway\"} 5"));
        assert!(text.contains("antiphon_connected_peers{transport=\"tcp\"} 1"));
        assert!(text.contains("antiphon_connected_peers{transport=\"webrtc-direct\"} 0"));
        assert!(text.contains("antiphon_blocks_stored 9"));
        assert!(text.contains("antiphon_ingest_duration_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("antiphon_ingest_duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("antiphon_ingest_duration_seconds_count 1"));
        // Every sample line belongs to a declared family.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }
}
