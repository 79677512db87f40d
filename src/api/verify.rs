//! Verifying bytes against CIDs from JavaScript, and the browser's native SHA-256.
//!
//! `verify` and `cidOf` hash in Rust (synchronously, every function [`HashFn`] lists);
//! `verifyAsync` hands sha2-256 to `crypto.subtle.digest`, which Chromium runs natively at
//! several times the speed of sha2 compiled to wasm (see BENCHMARKS.md), and falls back to Rust
//! for the other functions.

use antiphon_core::Cid;
use antiphon_core::block::{HashFn, Multihash, RAW, VerifyError, verify as verify_sync};
use antiphon_core::limits::{MAX_BLOCK_BYTES, MIN_DIGEST_BYTES};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::api::args;
use crate::error::Error;

/// Checks that `bytes` are the content of `cid`; throws a `VERIFICATION_FAILED` error if not.
#[wasm_bindgen]
pub fn verify(
    #[wasm_bindgen(unchecked_param_type = "string")] cid: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
) -> Result<(), Error> {
    let cid = parse(&args::string(&cid, "cid", args::MAX_CID_CHARS)?)?;
    let bytes = block_bytes(&cid, &bytes)?;
    verify_sync(&cid, &bytes.to_vec()).map_err(|source| Error::Verify { cid, source })
}

/// `bytes` as a `Uint8Array` no larger than a block; refused before anything is copied.
fn block_bytes(cid: &Cid, bytes: &JsValue) -> Result<js_sys::Uint8Array, Error> {
    let bytes = args::bytes(bytes, "bytes")?;
    let len = bytes.length() as usize;
    if len > MAX_BLOCK_BYTES {
        return Err(Error::Verify { cid: *cid, source: VerifyError::TooLarge { len, max: MAX_BLOCK_BYTES } });
    }
    Ok(bytes)
}

/// Like `verify`, but hashes sha2-256 with the browser's `crypto.subtle.digest`, straight from
/// the caller's buffer (nothing is copied into wasm memory unless the bytes fail to verify).
#[wasm_bindgen(js_name = verifyAsync)]
pub async fn verify_async(
    #[wasm_bindgen(unchecked_param_type = "string")] cid: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
) -> Result<(), Error> {
    let cid = parse(&args::string(&cid, "cid", args::MAX_CID_CHARS)?)?;
    let bytes = block_bytes(&cid, &bytes)?;
    let expected = cid.hash().digest();
    let fast = cid.hash().code() == antiphon_core::block::SHA2_256 && (MIN_DIGEST_BYTES..=32).contains(&expected.len());
    if fast
        && let Some(digest) = subtle_sha256_js(&bytes).await
        && digest[..expected.len()] == *expected
    {
        return Ok(());
    }
    // Other hash functions, and every failure, go through Rust for the typed error.
    verify_sync(&cid, &bytes.to_vec()).map_err(|source| Error::Verify { cid, source })
}

/// The CIDv1 of `bytes` as a raw block, hashed with `hash` (default `"sha2-256"`; also
/// `"sha2-512"`, `"sha3-512"`, `"blake2b-256"`, `"blake3"`).
#[wasm_bindgen(js_name = cidOf)]
pub fn cid_of(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | undefined")] hash: JsValue,
) -> Result<String, Error> {
    let bytes = args::bytes(&bytes, "bytes")?;
    if bytes.length() as usize > MAX_BLOCK_BYTES {
        return Err(Error::InvalidArgument {
            what: "bytes".into(),
            reason: format!("{} bytes, at most {MAX_BLOCK_BYTES} (one block)", bytes.length()),
        });
    }
    let bytes = bytes.to_vec();
    let name = args::optional(&hash, |h| args::string(h, "hash", 32))?.unwrap_or_else(|| "sha2-256".into());
    let function = HashFn::ALL
        .into_iter()
        .find(|f| f.name() == name && *f != HashFn::Identity)
        .ok_or_else(|| Error::InvalidArgument { what: "hash".into(), reason: format!("{name:?} is not supported") })?;
    let mh = function
        .digest(&bytes)
        .map_err(|source| Error::Verify { cid: Cid::new_v1(RAW, Multihash::default()), source })?;
    Ok(Cid::new_v1(RAW, mh).to_string())
}

fn parse(cid: &str) -> Result<Cid, Error> {
    cid.parse().map_err(|source| Error::InvalidCid { input: cid.to_owned(), source })
}

/// SHA-256 by `crypto.subtle.digest`, or `None` where WebCrypto is unavailable.
pub(crate) async fn subtle_sha256(data: &[u8]) -> Option<[u8; 32]> {
    // One copy out of wasm memory (a view would need `unsafe`).
    subtle_sha256_js(&js_sys::Uint8Array::from(data)).await
}

async fn subtle_sha256_js(input: &js_sys::Uint8Array) -> Option<[u8; 32]> {
    let global = js_sys::global();
    let crypto = js_sys::Reflect::get(&global, &"crypto".into()).ok()?;
    let subtle: web_sys::SubtleCrypto = js_sys::Reflect::get(&crypto, &"subtle".into()).ok()?.dyn_into().ok()?;
    let promise = subtle.digest_with_str_and_buffer_source("SHA-256", input).ok()?;
    let buffer = JsFuture::from(promise).await.ok()?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    bytes.try_into().ok()
}
