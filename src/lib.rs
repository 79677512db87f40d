//! Antiphon's browser peer: an IPFS peer inside the page that fetches audio segments by CID
//! over Bitswap (WebRTC-direct or WebSocket), verifies every block against its hash, and plays
//! them through Media Source Extensions.
//!
//! From JavaScript:
//!
//! ```js
//! import { Peer } from "antiphon";
//! const peer = await Peer.start({ creatorNodes: ["http://127.0.0.1:8080"] });
//! const player = peer.attach(document.querySelector("audio"));
//! player.onEvent((e) => console.log(e));
//! await player.load(trackCid);
//! await audio.play();
//! ```
//!
//! The crate is split the way the peer will be split across threads: [`net`] (swarm, Bitswap,
//! verification) talks to the rest only through a small command handle, and [`media`] only
//! ever receives verified segment bytes.

#![cfg_attr(not(target_arch = "wasm32"), allow(unused))]
// Errors name the CIDs involved so that messages are useful; they are produced only when
// something went wrong, where their size does not matter.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

// The crate's own unit tests run in the browser too (`wasm-pack test --headless --chrome`);
// without this the runner skips them as node-only.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[cfg(target_arch = "wasm32")]
mod args;
#[cfg(feature = "webaudio")]
pub mod decode;
pub mod error;

#[cfg(target_arch = "wasm32")]
mod dial;
#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(any(target_arch = "wasm32", test))]
mod first_answer;
#[cfg(any(target_arch = "wasm32", test))]
mod held;
#[cfg(target_arch = "wasm32")]
mod log;
#[cfg(target_arch = "wasm32")]
pub mod media;
#[cfg(target_arch = "wasm32")]
pub mod net;
#[cfg(target_arch = "wasm32")]
mod output;
#[cfg(target_arch = "wasm32")]
mod peer;
#[cfg(target_arch = "wasm32")]
mod player;
#[cfg(target_arch = "wasm32")]
mod source;
#[cfg(any(target_arch = "wasm32", test))]
pub mod stuck;
#[cfg(target_arch = "wasm32")]
mod types;
#[cfg(target_arch = "wasm32")]
mod util;
#[cfg(target_arch = "wasm32")]
pub mod verify;
#[cfg(all(target_arch = "wasm32", feature = "webaudio"))]
pub mod webaudio;
#[cfg(target_arch = "wasm32")]
mod webrtc;
#[cfg(target_arch = "wasm32")]
mod websocket;

pub use error::{Error, ErrorCode};
#[cfg(target_arch = "wasm32")]
pub use peer::Peer;
#[cfg(target_arch = "wasm32")]
pub use player::Player;

/// Installs the panic hook and the console logger; runs once when the module loads.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    use tracing_subscriber::layer::SubscriberExt;
    console_error_panic_hook::set_once();
    let subscriber = tracing_subscriber::Registry::default().with(log::ConsoleLayer);
    // A second initialisation (a page loading the module twice) is harmless.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Sets what the module writes to the console: `"silent"`, `"error"`, `"warn"` (the
/// default), `"info"` or `"debug"` (debug builds only). Throws `INVALID_ARGUMENT` for
/// anything else.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = setLogLevel)]
pub fn set_log_level(
    #[wasm_bindgen(unchecked_param_type = "LogLevel")] level: wasm_bindgen::JsValue,
) -> Result<(), Error> {
    log::set_level(&args::string(&level, "logLevel", 16)?)
}
