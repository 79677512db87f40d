//! The Antiphon creator node as a library: what the `antiphon-node` binary is made of.
//!
//! - [`ingest`]: an MP3 file in, segments as UnixFS files and a track manifest out;
//! - [`client`] and [`fetch`]: a Bitswap client and `antiphon-node fetch`;
//! - [`content`]: a file's CID, CAR import and export, reading files back;
//! - [`store`]: blocks and tracks in one redb database;
//! - [`network`]: the libp2p swarm (TCP, WebSocket, WebRTC-direct; Bitswap, identify, ping);
//! - [`http`]: the HTTP API (`/peer`, `/tracks`) and the demo page;
//! - [`identity`]: the persistent libp2p key and WebRTC certificate;
//! - [`demo_track`]: the synthesised default track.

// Errors name the CIDs involved (up to 144 bytes each) so that messages are useful; they are
// produced only when something went wrong, where their size does not matter.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod client;
pub mod content;
pub mod demo_track;
pub mod fetch;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod mp3_encoder;
pub mod network;
pub mod progress;
pub mod store;
