//! What receipts cost (`docs/receipts.md`), natively: signing one, opening one (decode and
//! signature check), the node's ledger taking a batch of 256 (open, checks, one redb write
//! transaction), and the bytes a receipt adds per MB served. Prints a Markdown table; the
//! browser's signing cost is in the swarm bench (bench/swarm.mjs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use antiphon_core::Block;
use antiphon_core::block::{DAG_CBOR, RAW};
use antiphon_core::receipt::{MAX_RECEIPTS_PER_BATCH, Receipt, ReceiptBatch, open};
use antiphon_node::receipts::{Ledger, Limits};
use antiphon_node::store::Store;
use libp2p::identity::Keypair;

const MIN_TIME: Duration = Duration::from_secs(2);

/// Runs `f` for at least [`MIN_TIME`]; microseconds per call.
fn per_call(mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < MIN_TIME {
        n += 1;
        f(n);
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A 6 s segment at 320 kb/s.
    let block = Block::from_data(RAW, vec![5u8; 240_000]).unwrap();
    let manifest = Block::from_data(DAG_CBOR, vec![0xa0]).unwrap();
    store.put_track(&manifest, std::slice::from_ref(&block), 1).unwrap();
    let ledger = Ledger::open(store, Limits { max_sessions: u64::MAX, ..Limits::default() }).unwrap();
    let (listener, server) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let receipt = |session: u64, seq: u64| Receipt {
        block: *block.cid(),
        bytes: block.data().len() as u64,
        server: server.public().to_peer_id().to_bytes(),
        listener: listener.public().to_peer_id().to_bytes(),
        track: *manifest.cid(),
        at: now,
        session,
        seq,
    };

    let sign_us = per_call(|n| {
        black_box(receipt(1, n).sign(&listener).unwrap());
    });
    let envelope = receipt(1, 1).sign(&listener).unwrap();
    let open_us = per_call(|_| {
        black_box(open(black_box(&envelope)).unwrap());
    });
    // Batches of 256 from fresh sessions, so every receipt is taken.
    let mut session = 0;
    let batch_us = per_call(|_| {
        session += 1;
        let envelopes: Vec<Vec<u8>> =
            (1..=MAX_RECEIPTS_PER_BATCH as u64).map(|seq| receipt(session, seq).sign(&listener).unwrap()).collect();
        let refs: Vec<&[u8]> = envelopes.iter().map(Vec::as_slice).collect();
        let out = ledger.record(&refs, now).unwrap();
        assert!(out.iter().all(Result::is_ok));
    }) - sign_us * MAX_RECEIPTS_PER_BATCH as f64;
    let batch = ReceiptBatch::new(vec![envelope.clone(); MAX_RECEIPTS_PER_BATCH]).encode().unwrap();
    let per_receipt_bytes = batch.len() as f64 / MAX_RECEIPTS_PER_BATCH as f64;
    println!("| what | figure |");
    println!("|---|---:|");
    println!("| signed envelope, one receipt | {} bytes |", envelope.len());
    println!("| in a batch of {MAX_RECEIPTS_PER_BATCH}, per receipt | {per_receipt_bytes:.1} bytes |");
    for (label, block_bytes) in [
        ("320 kb/s segments (240 kB blocks)", 240_000.0),
        ("128 kb/s segments (96 kB blocks)", 96_000.0),
        ("256 KiB UnixFS chunks", 262_144.0),
    ] {
        println!(
            "| overhead per MB served, {label} | {:.0} bytes ({:.3}%) |",
            per_receipt_bytes * 1e6 / block_bytes,
            100.0 * per_receipt_bytes / block_bytes
        );
    }
    println!("| sign one receipt (native, ed25519) | {sign_us:.1} µs |");
    println!("| open one receipt: decode + verify (native) | {open_us:.1} µs |");
    println!(
        "| node ledger, per receipt in a batch of {MAX_RECEIPTS_PER_BATCH} (open, checks, redb commit) | {:.1} µs |",
        batch_us / MAX_RECEIPTS_PER_BATCH as f64
    );
}
