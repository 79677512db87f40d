//! Target-neutral core of Antiphon.
//!
//! Everything here compiles for native targets and for `wasm32-unknown-unknown`: it has no
//! web-sys, no tokio and no storage engine. It holds
//!
//! - [`block`]: CIDs, blocks and their verification (every byte that arrives is re-hashed);
//! - [`dag_pb`] and [`unixfs`]: files as IPFS stores them, imported the way Kubo does and read
//!   back block by block;
//! - [`store`]: the blockstore interface and a bounded in-memory store;
//! - [`dag`]: the links of raw, dag-pb and dag-cbor blocks, and walks over whole DAGs;
//! - [`car`]: content-addressed archives, read and written as streams;
//! - [`manifest`]: the dag-cbor track manifest that names a track's segments;
//! - [`schedule`]: the player's scheduler: deadline order, source scores, hedging, bans;
//! - [`segment`]: cutting a stream of codec frames into ~6 s segments on frame boundaries;
//! - [`bitswap`]: the `/ipfs/bitswap/1.2.0` protocol as a libp2p `NetworkBehaviour`;
//! - [`identify`]: answering `/ipfs/id/1.0.0` without asking it (the browser peer's side);
//! - [`limits`]: every bound the core enforces on untrusted input;
//! - [`transport`]: transport names of multiaddrs.

// Errors name the CIDs involved (up to 96 bytes each) so that messages are useful; they are
// produced only for bad input, where their size does not matter.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

pub mod bitswap;
pub mod block;
pub mod car;
#[cfg(test)]
mod corpus_tests;
pub mod dag;
pub mod dag_pb;
pub mod datachannel;
pub mod identify;
pub mod limits;
pub mod liveness;
pub mod manifest;
pub mod provide;
pub mod receipt;
pub mod schedule;
pub mod segment;
pub mod store;
pub mod transport;
pub mod unixfs;

pub use block::{Block, Cid, Multihash, VerifyError};
pub use cid;
pub use manifest::{Cover, ManifestError, SegmentRef, TrackManifest};
