//! Errors reach JavaScript as `Error` objects with a stable `code`, the CID, and a cause chain.

use antiphon::Error;
use antiphon_core::VerifyError;
use antiphon_core::bitswap::{PeerId, RequestError};
use antiphon_core::block::{RAW, cid_v1};
use js_sys::Reflect;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn verification_error_carries_code_cid_and_cause() {
    let cid = cid_v1(RAW, b"expected");
    let computed = cid_v1(RAW, b"received");
    let error = Error::from_request(
        cid,
        RequestError::Corrupt { peer: PeerId::random(), error: VerifyError::Mismatch { cid, computed } },
    );
    let js: JsValue = error.into();
    let js_error: &js_sys::Error = js.dyn_ref().expect("a JS Error");
    assert_eq!(Reflect::get(&js, &"code".into()).unwrap().as_string().unwrap(), "VERIFICATION_FAILED");
    assert_eq!(Reflect::get(&js, &"cid".into()).unwrap().as_string().unwrap(), cid.to_string());
    assert!(String::from(js_error.message()).contains(&cid.to_string()));
    let cause = js_error.cause();
    let cause: &js_sys::Error = cause.dyn_ref().expect("the cause is an Error too");
    assert!(String::from(cause.message()).contains(&computed.to_string()), "the cause names what the bytes hash to");
}

#[wasm_bindgen_test]
fn stopped_error_has_no_cid() {
    let js: JsValue = Error::Stopped.into();
    assert_eq!(Reflect::get(&js, &"code".into()).unwrap().as_string().unwrap(), "STOPPED");
    assert!(Reflect::get(&js, &"cid".into()).unwrap().is_undefined());
}
