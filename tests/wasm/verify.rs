//! `verify`, `verifyAsync` (WebCrypto for sha2-256) and `cidOf` as JavaScript calls them.

use antiphon::ErrorCode;
use antiphon::api::verify::{cid_of, verify, verify_async};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// Bytes as JavaScript passes them.
fn js(bytes: &[u8]) -> JsValue {
    js_sys::Uint8Array::from(bytes).into()
}

fn block() -> Vec<u8> {
    (0..256 * 1024).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

#[wasm_bindgen_test]
async fn every_path_accepts_good_bytes_and_refuses_a_flipped_bit() {
    let data = block();
    let mut bad = data.clone();
    bad[1000] ^= 1;
    for hash in ["sha2-256", "sha2-512", "sha3-512", "blake2b-256", "blake3"] {
        let cid = cid_of(js(&data), hash.into()).unwrap();
        verify(cid.clone().into(), js(&data)).unwrap();
        verify_async(cid.clone().into(), js(&data)).await.unwrap();
        assert_eq!(verify(cid.clone().into(), js(&bad)).unwrap_err().code(), ErrorCode::VerificationFailed, "{hash}");
        let err = verify_async(cid.clone().into(), js(&bad)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::VerificationFailed, "{hash}");
        assert_eq!(err.cid().unwrap().to_string(), cid);
    }
}

#[wasm_bindgen_test]
fn cid_of_matches_the_known_empty_cid_and_refuses_unknown_hashes() {
    assert_eq!(
        cid_of(js(b""), JsValue::UNDEFINED).unwrap(),
        "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    );
    assert_eq!(cid_of(js(b""), "md5".into()).unwrap_err().code(), ErrorCode::InvalidArgument);
    assert_eq!(verify("not a cid".into(), js(b"")).unwrap_err().code(), ErrorCode::InvalidCid);
}

#[wasm_bindgen_test]
async fn an_oversized_buffer_is_refused_by_size() {
    let cid = cid_of(js(b"x"), JsValue::UNDEFINED).unwrap();
    let big = js_sys::Uint8Array::new_with_length(2 * 1024 * 1024 + 1);
    let err = verify_async(cid.into(), big.into()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::VerificationFailed);
    assert!(err.to_string().contains("bytes do not verify"), "{err}");
}
