//! Browser test suites: run in headless Chromium with `wasm-pack test --headless --chrome`
//! (or `make test-wasm`). Natively this file compiles to nothing.
#![cfg(target_arch = "wasm32")]

mod errors;
mod media;
mod peer;
mod verify;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
