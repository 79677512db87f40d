//! `POST /receipts` as listeners and attackers use it: honest receipts credit their server;
//! forged, replayed and foreign-signed ones, receipts for blocks the node does not hold, and
//! malformed or oversized batches are refused and credit nobody.

mod common;

use antiphon_core::block::{Block, RAW};
use antiphon_core::car::CarWriter;
use antiphon_core::receipt::{MAX_BATCH_BYTES, Receipt, ReceiptBatch};
use antiphon_core::{SegmentRef, TrackManifest};
use libp2p::identity::Keypair;
use serde_json::Value;

const DAG_CBOR: (&str, &str) = ("Content-Type", "application/vnd.ipld.dag-cbor");

struct Track {
    manifest: Block,
    segment: Block,
}

/// A one-segment track imported into the node at `data`.
fn import_track(dir: &std::path::Path, data: &std::path::Path) -> Track {
    let segment = Block::from_data(RAW, vec![0x42; 40_000]).unwrap();
    let manifest = TrackManifest {
        version: antiphon_core::manifest::MANIFEST_VERSION,
        codec: "audio/mpeg".into(),
        sample_rate: 44_100,
        channels: 2,
        total_samples: 264_600,
        segments: vec![SegmentRef { cid: *segment.cid(), bytes: 40_000, samples: 264_600 }],
        title: None,
        artist: None,
        album: None,
        cover: None,
    }
    .to_block()
    .unwrap();
    let car = dir.join("track.car");
    let mut writer = CarWriter::new(std::fs::File::create(&car).unwrap(), &[*manifest.cid()]).unwrap();
    writer.write_block(&manifest).unwrap();
    writer.write_block(&segment).unwrap();
    writer.finish().unwrap();
    let out = common::node().arg("--data").arg(data).arg("import-car").arg(&car).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Track { manifest, segment }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn receipt(track: &Track, listener: &Keypair, server: &Keypair, seq: u64) -> Receipt {
    Receipt {
        block: *track.segment.cid(),
        bytes: track.segment.data().len() as u64,
        server: server.public().to_peer_id().to_bytes(),
        listener: listener.public().to_peer_id().to_bytes(),
        track: *track.manifest.cid(),
        at: now_ms(),
        session: 7,
        seq,
    }
}

fn post(node: &common::Served, envelopes: Vec<Vec<u8>>) -> Value {
    let body = ReceiptBatch::new(envelopes).encode().unwrap();
    let r = common::http(&node.http, "POST", "/receipts", &[DAG_CBOR], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

fn refusal_kinds(answer: &Value) -> Vec<String> {
    answer["refused"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap().to_owned()).collect()
}

fn credited(node: &common::Served, server: &Keypair) -> Option<Value> {
    let r = node.get(&format!("/receipts/{}", server.public().to_peer_id()), &[]);
    (r.status == 200).then(|| serde_json::from_slice(&r.body).unwrap())
}

#[test]
fn receipts_credit_servers_and_attacks_credit_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let track = import_track(dir.path(), &data);
    let node = common::serve(&data, &[]);
    let (listener, server, stranger) =
        (Keypair::generate_ed25519(), Keypair::generate_ed25519(), Keypair::generate_ed25519());

    // Two honest receipts.
    let honest: Vec<Vec<u8>> =
        (1..=2).map(|seq| receipt(&track, &listener, &server, seq).sign(&listener).unwrap()).collect();
    let answer = post(&node, honest.clone());
    assert_eq!(answer["accepted"], 2, "{answer}");
    let total = credited(&node, &server).expect("the server is credited");
    assert_eq!((total["bytes"].as_u64(), total["receipts"].as_u64()), (Some(80_000), Some(2)));

    // Replayed: the same envelopes again.
    let answer = post(&node, honest);
    assert_eq!(refusal_kinds(&answer), ["replayed", "replayed"], "{answer}");

    // Forged: an honest receipt's payload changed after signing (more bytes claimed).
    let mut forged = receipt(&track, &listener, &server, 3).sign(&listener).unwrap();
    let at = forged.len() - 67;
    forged[at] += 1;
    // Foreign-signed: a receipt naming `listener`, signed by a stranger.
    let foreign = receipt(&track, &listener, &server, 4).sign(&stranger).unwrap();
    // For a block the node does not store, and with the wrong size.
    let mut unknown = receipt(&track, &listener, &server, 5);
    unknown.block = *Block::from_data(RAW, vec![1u8; 10]).unwrap().cid();
    let mut inflated = receipt(&track, &listener, &server, 6);
    inflated.bytes = 2_000_000;
    // Dated an hour ago.
    let mut stale = receipt(&track, &listener, &server, 7);
    stale.at -= 3_600_000;
    let answer = post(
        &node,
        vec![
            forged,
            foreign,
            unknown.sign(&listener).unwrap(),
            inflated.sign(&listener).unwrap(),
            stale.sign(&listener).unwrap(),
        ],
    );
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(
        refusal_kinds(&answer),
        ["bad_signature", "foreign_signer", "unknown_content", "unknown_content", "out_of_window"],
        "{answer}"
    );
    let total = credited(&node, &server).unwrap();
    assert_eq!(total["receipts"].as_u64(), Some(2), "nothing refused was credited");
    assert!(credited(&node, &stranger).is_none());

    // Malformed and oversized batches.
    let r = common::http(&node.http, "POST", "/receipts", &[DAG_CBOR], b"\xa1\x61x\x01");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = common::http(&node.http, "POST", "/receipts", &[DAG_CBOR], &vec![0u8; MAX_BATCH_BYTES + 1]);
    assert_eq!(r.status, 413, "{}", r.text());

    // The listing, and /metrics.
    let list: Value = serde_json::from_slice(&node.get("/receipts", &[]).body).unwrap();
    assert_eq!(list["servers"][0]["peerId"], server.public().to_peer_id().to_string());
    let metrics = node.get("/metrics", &[]).text();
    assert!(metrics.contains("antiphon_receipts_total{result=\"accepted\"} 2"), "{metrics}");
    assert!(metrics.contains("antiphon_receipts_total{result=\"replayed\"} 2"));
    assert!(metrics.contains("antiphon_receipts_total{result=\"bad_signature\"} 1"));
    assert!(metrics.contains("antiphon_receipt_credited_bytes_total 80000"));
    assert!(
        metrics.contains(&format!("antiphon_receipt_server_bytes{{peer=\"{}\"}} 80000", server.public().to_peer_id()))
    );

    // Any page may post receipts; the preflight says so (and still not for uploads).
    let preflight = [
        ("Origin", "https://dapp.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let r = common::http(&node.http, "OPTIONS", "/receipts", &preflight, &[]);
    assert!(r.header("access-control-allow-methods").unwrap_or("").contains("POST"), "{:?}", r.headers);
    let r = common::http(&node.http, "OPTIONS", "/tracks", &preflight, &[]);
    assert!(!r.header("access-control-allow-methods").unwrap_or("").contains("POST"));
}

#[test]
fn the_ledger_survives_a_restart_and_still_refuses_replays() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let track = import_track(dir.path(), &data);
    let (listener, server) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let envelope = receipt(&track, &listener, &server, 1).sign(&listener).unwrap();
    {
        let node = common::serve(&data, &[]);
        assert_eq!(post(&node, vec![envelope.clone()])["accepted"], 1);
    }
    let node = common::serve(&data, &[]);
    assert_eq!(credited(&node, &server).unwrap()["bytes"].as_u64(), Some(40_000));
    assert_eq!(refusal_kinds(&post(&node, vec![envelope])), ["replayed"]);
}
