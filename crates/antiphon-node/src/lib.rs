//! The Antiphon creator node as a library: what the `antiphon-node` binary is made of.
//!
//! - [`ingest`]: an audio file in (MP3 and ADTS AAC passed through, the rest transcoded to
//!   MP3), segments as UnixFS files and a track manifest out;
//! - [`client`] and [`fetch`]: a Bitswap client and `antiphon-node fetch`;
//! - [`content`]: a file's CID, CAR import and export, reading files back;
//! - [`store`]: blocks and tracks in one redb database;
//! - [`catalog`]: the tracks held, their manifests and confirmations, in memory;
//! - [`swarm`]: the libp2p swarm the node serves with (and the transports any client uses);
//! - [`network`]: the loop that runs it (listeners, relay reservations, browsers'
//!   announcements, replication);
//! - [`receipts`]: the ledger of listeners' signed receipts, credited per serving peer;
//! - [`replication`]: asking replicas to pull tracks, and pulling them as a replica;
//! - [`http`]: the HTTP API (trustless gateway, tracks, HLS, uploads, metrics, delegated
//!   routing) and the demo page;
//! - [`config`]: `serve --config node.toml`;
//! - [`metrics`]: what `GET /metrics` reports;
//! - [`ip_limits`]: connections per IP address;
//! - [`identity`]: the persistent libp2p key and WebRTC certificate;
//! - [`webrtc`]: WebRTC-direct on str0m, listener and dialer, as a libp2p transport;
//! - [`demo_track`]: the synthesised default track.

// Errors name the CIDs involved (up to 144 bytes each) so that messages are useful; they are
// produced only when something went wrong, where their size does not matter.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod browsers;
pub mod catalog;
pub mod client;
pub mod config;
pub mod content;
pub mod demo_track;
pub mod fetch;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod ip_limits;
pub mod metrics;
pub mod mp3_encoder;
pub mod network;
pub mod progress;
pub mod receipts;
pub mod replication;
pub mod store;
pub mod swarm;
pub mod webrtc;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
