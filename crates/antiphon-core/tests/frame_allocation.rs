//! A Bitswap frame's declared length is not what the reader allocates: a peer that declares a
//! 4 MiB message and sends ten bytes costs a small buffer. Counted by an instrumented global
//! allocator, so this test has its own binary.
#![cfg(not(target_arch = "wasm32"))]

use std::alloc::System;

use antiphon_core::bitswap::protocol::{FrameError, read_frame};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn a_4_mib_declaration_with_ten_bytes_behind_it_allocates_little() {
    let mut prefix = unsigned_varint::encode::u64_buffer();
    let mut input = unsigned_varint::encode::u64(4 * 1024 * 1024, &mut prefix).to_vec();
    input.extend_from_slice(&[7; 10]);
    let mut stream = futures::io::Cursor::new(input);
    let region = Region::new(GLOBAL);
    let result = futures::executor::block_on(read_frame(&mut stream));
    let allocated = region.change().bytes_allocated;
    assert!(matches!(result, Err(FrameError::Io(_))), "the stream ended early: {result:?}");
    assert!(allocated < 256 * 1024, "the reader allocated {allocated} bytes for 10 that arrived");
}
