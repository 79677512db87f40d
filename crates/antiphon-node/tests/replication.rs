//! Three creator nodes on loopback: a track uploaded to A is pulled by its replicas B and C,
//! which confirm; a replica that was down catches up when it returns; delegated routing then
//! names all three.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Served, serve};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

/// Uploads `body` to `node` as `name`; returns the track CID.
fn upload(node: &Served, name: &str, body: &[u8]) -> String {
    let r = common::http(&node.http, "POST", &format!("/tracks?filename={name}"), &[], body);
    assert_eq!(r.status, 201, "{}", r.text());
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    json["cid"].as_str().unwrap().to_string()
}

/// Waits until `node` lists `track`; returns how long it took.
fn wait_for_track(node: &Served, track: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if node.get(&format!("/tracks/{track}"), &[]).status == 200 {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{track} did not reach {} within {limit:?}", node.http);
}

/// The blocks of a track's CAR at `node`, in order (200 means every block is there).
fn car_blocks(node: &Served, track: &str) -> Vec<String> {
    let r = node.get(&format!("/ipfs/{track}?format=car&dag-scope=all"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut reader = antiphon_core::car::CarReader::new(r.body.as_slice()).unwrap();
    let mut out = Vec::new();
    while let Some(b) = reader.next_block().unwrap() {
        out.push(b.cid().to_string());
    }
    out
}

fn replicas_confirmed(node: &Served, track: &str) -> usize {
    let json: serde_json::Value = serde_json::from_slice(&node.get(&format!("/tracks/{track}"), &[]).body).unwrap();
    json["replicas"].as_array().unwrap().iter().filter(|r| r["confirmed"] == true).count()
}

#[test]
fn a_track_lives_on_three_nodes_and_a_returning_replica_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    // B and C keep A's tracks: A is their origin.
    let a_id = common::peer_id(&dir.path().join("a"));
    let b = serve(&dir.path().join("b"), &["--origin", &a_id]);
    let c_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c_listen = format!("/ip4/127.0.0.1/tcp/{c_port}");
    let c = serve(&dir.path().join("c"), &["--listen", &c_listen, "--origin", &a_id]);
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!("[replication]\nreplicas = [\"{}\", \"{}\"]\nretry_secs = 1\n", b.tcp(), c.addrs[0]),
    )
    .unwrap();
    let a = serve(&dir.path().join("a"), &["--config", config.to_str().unwrap()]);

    // Ingest on A; B and C hold every block within a bounded time.
    let track = upload(&a, "chord.flac", &fixture("chord.flac"));
    let on_b = wait_for_track(&b, &track, Duration::from_secs(30));
    let on_c = wait_for_track(&c, &track, Duration::from_secs(30));
    eprintln!("replicated to B in {on_b:?}, to C in {on_c:?}");
    let blocks = car_blocks(&a, &track);
    assert!(blocks.len() >= 3, "manifest, segment, cover: {blocks:?}");
    assert_eq!(car_blocks(&b, &track), blocks);
    assert_eq!(car_blocks(&c, &track), blocks);
    let started = Instant::now();
    while replicas_confirmed(&a, &track) < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "A records both confirmations");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = a.get("/metrics", &[]).text();
    assert!(metrics.contains("antiphon_tracks_fully_replicated 1"), "{metrics}");
    assert!(b.get("/metrics", &[]).text().contains("antiphon_replications_total{result=\"ok\"} 1"));

    // C goes down; a second track reaches B only; C catches up when it comes back.
    let c_data = dir.path().join("c");
    drop(c);
    let second = upload(&a, "chord.mp3", &fixture("chord.mp3"));
    wait_for_track(&b, &second, Duration::from_secs(30));
    assert_eq!(replicas_confirmed(&a, &second), 1);
    let c = serve(&c_data, &["--listen", &c_listen, "--origin", &a_id]);
    let caught_up = wait_for_track(&c, &second, Duration::from_secs(60));
    eprintln!("C caught up {caught_up:?} after its restart");
    assert_eq!(car_blocks(&c, &second), car_blocks(&a, &second));

    // Delegated routing: A names itself and both replicas for the track and its segments.
    let started = Instant::now();
    while replicas_confirmed(&a, &second) < 2 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
    }
    let routing = a.get(&format!("/routing/v1/providers/{second}"), &[]);
    assert_eq!(routing.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&routing.body).unwrap();
    let ids: Vec<&str> = json["Providers"].as_array().unwrap().iter().map(|p| p["ID"].as_str().unwrap()).collect();
    assert_eq!(ids[0], a.peer_id, "the node itself first");
    let mut replicas = ids[1..].to_vec();
    replicas.sort();
    let mut expected = vec![b.peer_id.as_str(), c.peer_id.as_str()];
    expected.sort();
    assert_eq!(replicas, expected);
    assert!(json["Providers"][0]["Protocols"].as_array().unwrap().iter().any(|p| p == "transport-bitswap"));
    let unknown = a.get("/routing/v1/providers/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku", &[]);
    assert_eq!(unknown.status, 404);
}
