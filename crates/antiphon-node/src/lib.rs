//! The Antiphon creator node as a library: what the `antiphon-node` binary is made of.
//!
//! - [`ingest`]: an MP3 file in, segment blocks and a track manifest out;
//! - [`store`]: blocks and tracks in one redb database;
//! - [`network`]: the libp2p swarm (TCP, WebSocket, WebRTC-direct; Bitswap, identify, ping);
//! - [`http`]: the HTTP API (`/peer`, `/tracks`) and the demo page;
//! - [`identity`]: the persistent libp2p key and WebRTC certificate;
//! - [`demo_track`]: the synthesised default track.

pub mod demo_track;
pub mod http;
pub mod identity;
pub mod ingest;
pub mod network;
pub mod store;
