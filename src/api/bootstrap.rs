//! The hand-over from the JS bootstrap (`src/bootstrap.js`): a page may start a track over
//! HTTP, verified with WebCrypto, before this module has compiled; `load` then takes what it
//! built. Nothing it hands over is taken on trust: the manifest and every appended segment are
//! verified again here against their CIDs, and one that fails makes the whole hand-over void
//! (its MediaSource is dropped and the player starts from nothing).

use antiphon_core::{Block, Cid, TrackManifest};
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{HtmlMediaElement, MediaSource, SourceBuffer};

use crate::output::media::MediaSink;

#[wasm_bindgen(module = "/src/bootstrap.js")]
extern "C" {
    /// The bootstrap's hand-over for `track` on `element` (a promise), or `undefined`.
    #[wasm_bindgen(js_name = takeBootstrap)]
    fn take_bootstrap(element: &HtmlMediaElement, track: &str) -> JsValue;
}

/// `performance.now()`, the clock the bootstrap's times are on.
pub(crate) fn performance_now() -> f64 {
    let performance = Reflect::get(&js_sys::global(), &"performance".into()).unwrap_or(JsValue::UNDEFINED);
    Reflect::get(&performance, &"now".into())
        .ok()
        .and_then(|now| now.dyn_into::<js_sys::Function>().ok())
        .and_then(|now| now.call0(&performance).ok())
        .and_then(|t| t.as_f64())
        .unwrap_or(0.0)
}

/// Whether a bootstrap runs on `element`, for any track (so that `load` leaves its
/// MediaSource alone until it has asked for it).
pub(crate) fn running_on(element: &HtmlMediaElement) -> bool {
    let key = js_sys::Symbol::for_("antiphon.bootstrap");
    Reflect::get(element, &key).is_ok_and(|v| !v.is_undefined())
}

/// A segment the bootstrap verified and appended.
pub(crate) struct Appended {
    pub index: usize,
    pub block: Block,
    pub from: String,
    pub latency_ms: f64,
    pub at_ms: f64,
}

/// Something the bootstrap could not do, as it reported it.
pub(crate) struct Failure {
    /// The gateway URL, when a source failed.
    pub source: Option<String>,
    pub index: Option<usize>,
    pub code: String,
}

/// What a bootstrap hands a player, checked.
pub(crate) struct HandOver {
    /// The manifest, verified against the track CID and decoded; absent if the bootstrap did
    /// not get it.
    pub manifest: Option<TrackManifest>,
    /// The MediaSource with the segments in it; absent if nothing was appended.
    pub sink: Option<MediaSink>,
    pub appended: Vec<Appended>,
    pub failures: Vec<Failure>,
    /// `performance.now()` when the bootstrap began, and when the element first played.
    pub started_at: f64,
    pub playing_at: Option<f64>,
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// Takes over the bootstrap running on `element` for `track`, if there is one.
pub(crate) async fn take(element: &HtmlMediaElement, track: Cid) -> Option<HandOver> {
    let promise = take_bootstrap(element, &track.to_string());
    if promise.is_undefined() {
        return None;
    }
    let handed = JsFuture::from(js_sys::Promise::from(promise)).await.ok()?;
    Some(check(&handed, track))
}

fn check(handed: &JsValue, track: Cid) -> HandOver {
    let failures = Array::from(&get(handed, "failures"))
        .iter()
        .take(64)
        .map(|f| Failure {
            source: get(&f, "source").as_string(),
            index: get(&f, "index").as_f64().map(|i| i as usize),
            code: get(&f, "code").as_string().unwrap_or_default(),
        })
        .collect();
    let manifest = get(handed, "manifest")
        .dyn_into::<Uint8Array>()
        .ok()
        .and_then(|bytes| Block::new(track, bytes.to_vec()).ok())
        .and_then(|block| TrackManifest::from_block(&block).ok());
    let mut out = HandOver {
        manifest,
        sink: None,
        appended: Vec::new(),
        failures,
        started_at: get(handed, "startedAt").as_f64().unwrap_or(0.0),
        playing_at: get(handed, "playingAt").as_f64(),
    };
    let source = get(handed, "mediaSource").dyn_into::<MediaSource>().ok();
    let buffer = get(handed, "sourceBuffer").dyn_into::<SourceBuffer>().ok();
    let url = get(handed, "objectUrl").as_string();
    let (Some(manifest), Some(source), Some(buffer), Some(url)) = (&out.manifest, source, buffer, url) else {
        return out;
    };
    let kind = if get(handed, "kind").as_string().as_deref() == Some("ManagedMediaSource") {
        "ManagedMediaSource"
    } else {
        "MediaSource"
    };
    // Dropped unless every segment checks out: that detaches it from the element.
    let sink = MediaSink::adopt(source, buffer, url, kind);
    let mut appended: Vec<Appended> = Vec::new();
    for segment in Array::from(&get(handed, "segments")).iter() {
        let index = get(&segment, "index").as_f64().map(|i| i as usize);
        let Some((index, reference)) = index.and_then(|i| Some((i, manifest.segments.get(i)?))) else { return out };
        let bytes = get(&segment, "bytes").dyn_into::<Uint8Array>().ok();
        let block = bytes
            .filter(|b| u64::from(b.length()) == reference.bytes)
            .and_then(|b| Block::new(reference.cid, b.to_vec()).ok());
        let Some(block) = block else {
            tracing::warn!(index, "the bootstrap appended a segment that does not verify: starting over");
            return out;
        };
        if appended.iter().any(|a| a.index == index) {
            return out;
        }
        appended.push(Appended {
            index,
            block,
            from: get(&segment, "from").as_string().unwrap_or_default(),
            latency_ms: get(&segment, "latencyMs").as_f64().unwrap_or(0.0),
            at_ms: get(&segment, "atMs").as_f64().unwrap_or(0.0),
        });
    }
    if !appended.is_empty() {
        out.sink = Some(sink);
        out.appended = appended;
    }
    out
}
