//! Small browser helpers: awaiting DOM events, HTTP bodies read within a bound, JSON, and JS
//! object building.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AddEventListenerOptions, EventTarget};

use crate::error::Error;

/// Resolves when `target` fires `event`, rejects when it fires `error_event` first. Both
/// listeners are removed once either fires, so repeated waits leave nothing behind.
pub(crate) async fn next_event(target: &EventTarget, event: &str, error_event: Option<&str>) -> Result<(), JsValue> {
    let listeners: Rc<RefCell<Option<(Function, Function)>>> = Rc::default();
    let promise = Promise::new(&mut |resolve, reject| {
        let options = AddEventListenerOptions::new();
        options.set_once(true);
        let _ = target.add_event_listener_with_callback_and_add_event_listener_options(event, &resolve, &options);
        if let Some(error_event) = error_event {
            let _ =
                target.add_event_listener_with_callback_and_add_event_listener_options(error_event, &reject, &options);
        }
        *listeners.borrow_mut() = Some((resolve, reject));
    });
    let outcome = JsFuture::from(promise).await.map(|_| ());
    if let Some((resolve, reject)) = listeners.borrow_mut().take() {
        let _ = target.remove_event_listener_with_callback(event, &resolve);
        if let Some(error_event) = error_event {
            let _ = target.remove_event_listener_with_callback(error_event, &reject);
        }
    }
    outcome
}

/// GETs `url` and decodes its JSON body. The request is sent when this is called, not when the
/// future is first polled, so a caller can have it under way while it does other work.
pub(crate) fn fetch_json<T: DeserializeOwned>(url: &str) -> impl Future<Output = Result<T, Error>> + use<T> {
    fetch_json_with(url, web_sys::RequestCache::Default)
}

/// GETs `url` past the HTTP cache (answers that change by the second, such as routing's).
pub(crate) fn fetch_json_fresh<T: DeserializeOwned>(url: &str) -> impl Future<Output = Result<T, Error>> + use<T> {
    fetch_json_with(url, web_sys::RequestCache::NoCache)
}

fn fetch_json_with<T: DeserializeOwned>(
    url: &str,
    cache: web_sys::RequestCache,
) -> impl Future<Output = Result<T, Error>> + use<T> {
    let sent = js_sys::global().dyn_into::<web_sys::Window>().map(|global| {
        let init = web_sys::RequestInit::new();
        init.set_cache(cache);
        JsFuture::from(global.fetch_with_str_and_init(url, &init))
    });
    let url = url.to_owned();
    async move {
        let http = |reason: String| Error::Http { url: url.clone(), reason };
        let sent = sent.map_err(|_| http("no window object".into()))?;
        let response = sent.await.map_err(|e| http(describe(&e)))?;
        let response: web_sys::Response = response.dyn_into().map_err(|e| http(describe(&e)))?;
        if !response.ok() {
            return Err(http(format!("status {}", response.status())));
        }
        json_body(&response, MAX_JSON_BYTES).await.map_err(|e| http(e.to_string()))
    }
}

/// Most bytes of JSON read from a node (`/peer`, routing and receipt answers: a few KB each).
pub(crate) const MAX_JSON_BYTES: usize = 1 << 20;

/// Why a response's body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// It declared, or sent, more than the reader takes.
    #[error("a body over {max} bytes")]
    TooLarge {
        /// The most the reader takes.
        max: usize,
    },
    /// Reading it failed (the browser's message).
    #[error("reading the body failed: {0}")]
    Read(String),
    /// It is not JSON, or not JSON of the expected shape (the parser's message).
    #[error("unexpected answer: {0}")]
    Json(String),
}

/// Reads `response`'s body chunk by chunk, failing as soon as it declares or holds more than
/// `max` bytes: what a sender can make this peer hold is `max`, not what it sends.
pub(crate) async fn read_body(response: &web_sys::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    let read = |e: JsValue| BodyError::Read(describe(&e));
    let declared = response.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max });
    }
    let Some(body) = response.body() else { return Ok(Vec::new()) };
    let reader: web_sys::ReadableStreamDefaultReader =
        body.get_reader().dyn_into().map_err(|o: Object| read(o.into()))?;
    let mut data = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(read)?;
        if Reflect::get(&chunk, &"done".into()).map(|v| v.is_truthy()).unwrap_or(true) {
            return Ok(data);
        }
        let bytes: js_sys::Uint8Array =
            Reflect::get(&chunk, &"value".into()).map_err(read)?.dyn_into().map_err(read)?;
        if data.len() + bytes.length() as usize > max {
            let _ = reader.cancel();
            return Err(BodyError::TooLarge { max });
        }
        let at = data.len();
        data.resize(at + bytes.length() as usize, 0);
        bytes.copy_to(&mut data[at..]);
    }
}

/// `response`'s body, at most `max` bytes, as JSON of type `T`.
pub(crate) async fn json_body<T: DeserializeOwned>(response: &web_sys::Response, max: usize) -> Result<T, BodyError> {
    let bytes = read_body(response, max).await?;
    let text = std::str::from_utf8(&bytes).map_err(|e| BodyError::Json(e.to_string()))?;
    let value = js_sys::JSON::parse(text).map_err(|e| BodyError::Json(describe(&e)))?;
    serde_wasm_bindgen::from_value(value).map_err(|e| BodyError::Json(e.to_string()))
}

/// A readable description of a thrown JS value.
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return String::from(e.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

/// Builds a plain JS object from key/value pairs.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (k, v) in fields {
        let _ = Reflect::set(&obj, &JsValue::from_str(k), v);
    }
    obj.into()
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// A response whose body never ends: 64 KiB chunks for as long as anyone reads.
    fn endless() -> web_sys::Response {
        Function::new_no_args(
            "return new Response(new ReadableStream({ pull(c) { c.enqueue(new Uint8Array(65536)); } }));",
        )
        .call0(&JsValue::NULL)
        .unwrap()
        .unchecked_into()
    }

    fn response_of(body: &[u8]) -> web_sys::Response {
        web_sys::Response::new_with_opt_u8_array(Some(&mut body.to_vec())).unwrap()
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Answer {
        accepted: u64,
    }

    #[test]
    async fn a_body_is_read_only_up_to_its_bound() {
        assert!(matches!(read_body(&endless(), 1 << 20).await, Err(BodyError::TooLarge { max: 1_048_576 })));
        let over = vec![b' '; MAX_JSON_BYTES + 1];
        assert!(matches!(
            json_body::<Answer>(&response_of(&over), MAX_JSON_BYTES).await,
            Err(BodyError::TooLarge { .. })
        ));
        assert!(matches!(json_body::<Answer>(&endless(), MAX_JSON_BYTES).await, Err(BodyError::TooLarge { .. })));
        assert_eq!(read_body(&response_of(b"12345"), 5).await.unwrap(), b"12345");
    }

    #[test]
    async fn json_within_the_bound_is_parsed_and_anything_else_is_a_typed_error() {
        let ok = json_body::<Answer>(&response_of(br#"{"accepted":3,"refused":[]}"#), MAX_JSON_BYTES).await;
        assert_eq!(ok.unwrap(), Answer { accepted: 3 });
        for bad in [&b"not json"[..], br#"{"accepted":"three"}"#, &[0xff, 0xfe][..]] {
            assert!(matches!(json_body::<Answer>(&response_of(bad), MAX_JSON_BYTES).await, Err(BodyError::Json(_))));
        }
    }
}
