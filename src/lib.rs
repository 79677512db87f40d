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
//! The folders are the layers: `api` (what JavaScript calls), `network` (one task owning the
//! libp2p swarm, reached only through a small command handle), `fetching` (sources and
//! verified segments) and `output` (Media Source Extensions or Web Audio, which only ever
//! receive verified bytes).

// Errors name the CIDs involved so that messages are useful; they are produced only when
// something went wrong, where their size does not matter.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

// The crate's own unit tests run in the browser too (`wasm-pack test --headless --chrome`);
// without this the runner skips them as node-only.
#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

// The JS-facing API, the network task, fetching, and output. Only the browser build has the
// API and the network; `fetching` and `output` also hold pure parts tested natively.
#[cfg(target_arch = "wasm32")]
pub mod api;
pub mod error;
mod fetching;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod network;
pub mod output;

#[cfg(target_arch = "wasm32")]
pub use api::{peer::Peer, player::Player};
pub use error::{Error, ErrorCode};

/// Installs the panic hook and the console logger; runs once when the module loads.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    use tracing_subscriber::layer::SubscriberExt;
    console_error_panic_hook::set_once();
    let subscriber = tracing_subscriber::Registry::default().with(api::log::ConsoleLayer);
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
    api::log::set_level(&api::args::string(&level, "logLevel", 16)?)
}
