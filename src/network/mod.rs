//! The network task and what it is made of: the swarm and its commands ([`swarm`]), dialling
//! creator nodes ([`dial`]), the transports the browser dials with ([`websocket`], [`webrtc`]:
//! WebRTC-direct and browser-to-browser), and the session a peer's players share
//! ([`session`]: connected nodes and browsers, the relay reservation, announcements of what it
//! holds ([`announce`])), and the receipts it signs for blocks other browsers sent it
//! ([`receipts`]).

// Pure bookkeeping, tested natively too; only the wasm build uses it.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) mod announce;
#[cfg(target_arch = "wasm32")]
pub(crate) mod dial;
#[cfg(target_arch = "wasm32")]
pub(crate) mod receipts;
#[cfg(target_arch = "wasm32")]
pub(crate) mod session;
#[cfg(target_arch = "wasm32")]
pub(crate) mod swarm;
#[cfg(target_arch = "wasm32")]
pub(crate) mod webrtc;
#[cfg(target_arch = "wasm32")]
pub(crate) mod websocket;
