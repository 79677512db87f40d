//! Small browser helpers: awaiting DOM events, HTTP JSON, and JS object building.

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
        let json =
            JsFuture::from(response.json().map_err(|e| http(describe(&e)))?).await.map_err(|e| http(describe(&e)))?;
        serde_wasm_bindgen::from_value(json).map_err(|e| http(format!("unexpected response: {e}")))
    }
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
