//! Verification throughput over 256 KiB blocks, natively: `verify(cid, bytes)` for sha2-256 and
//! blake3 CIDs. Prints one JSON object per function; `make bench` compares it with the same
//! measurement in headless Chromium (bench/verify.mjs) and writes BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use antiphon_core::Cid;
use antiphon_core::block::{HashFn, RAW, verify};

const BLOCK: usize = 256 * 1024;
const BLOCKS: usize = 64;
const MIN_TIME: Duration = Duration::from_secs(2);

fn main() {
    let blocks: Vec<Vec<u8>> = (0..BLOCKS)
        .map(|b| (0..BLOCK).map(|i| ((i as u64 * 2654435761 + b as u64 * 97) >> 11) as u8).collect())
        .collect();
    for function in [HashFn::Sha2_256, HashFn::Blake3] {
        let cids: Vec<Cid> = blocks.iter().map(|b| Cid::new_v1(RAW, function.digest(b).unwrap())).collect();
        // Warm up, then run whole rounds over all blocks for at least MIN_TIME.
        for (cid, b) in cids.iter().zip(&blocks) {
            verify(cid, b).unwrap();
        }
        let start = Instant::now();
        let mut bytes = 0u64;
        while start.elapsed() < MIN_TIME {
            for (cid, b) in cids.iter().zip(&blocks) {
                black_box(verify(black_box(cid), black_box(b))).unwrap();
                bytes += b.len() as u64;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"target\":\"native\",\"path\":\"rust {}\",\"block_bytes\":{BLOCK},\"mb_per_s\":{:.1}}}",
            function.name(),
            bytes as f64 / secs / 1e6
        );
    }
}
