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

/// The time from `from` to `to`, two `performance.now()` readings the page handed over: zero
/// when they are out of order or not numbers, and at most a day (`Duration::from_secs_f64`
/// panics on what it cannot hold).
pub(crate) fn between(from: f64, to: f64) -> std::time::Duration {
    let secs = (to - from) / 1000.0;
    if secs.is_finite() && secs > 0.0 {
        std::time::Duration::from_secs_f64(secs.min(86_400.0))
    } else {
        std::time::Duration::ZERO
    }
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
    let failures = get(handed, "failures")
        .dyn_into::<Array>()
        .unwrap_or_default()
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
    for segment in get(handed, "segments").dyn_into::<Array>().unwrap_or_default().iter() {
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

#[cfg(test)]
mod tests {
    use antiphon_core::block::RAW;
    use antiphon_core::manifest::{MANIFEST_VERSION, SegmentRef};
    use js_sys::Object;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::js::next_event;

    const SEGMENT: &[u8] = &[0x42; 1000];

    /// A track of one segment (`SEGMENT`) and its manifest block.
    fn track() -> (Cid, Vec<u8>, Cid) {
        let segment = Block::from_data(RAW, SEGMENT.to_vec()).unwrap();
        let manifest = TrackManifest {
            version: MANIFEST_VERSION,
            codec: "audio/mpeg".into(),
            sample_rate: 44_100,
            channels: 2,
            total_samples: 44_100,
            segments: vec![SegmentRef { cid: *segment.cid(), bytes: SEGMENT.len() as u64, samples: 44_100 }],
            title: None,
            artist: None,
            album: None,
            cover: None,
        };
        let block = manifest.to_block().unwrap();
        (*block.cid(), block.data().to_vec(), *segment.cid())
    }

    /// What the bootstrap hands over: an open MediaSource with a SourceBuffer, the manifest's
    /// bytes, and `segments` as (index, bytes) said to be appended.
    async fn hand_over(manifest: &[u8], segments: &[(u32, &[u8])]) -> JsValue {
        let document = web_sys::window().unwrap().document().unwrap();
        let element: HtmlMediaElement = document.create_element("audio").unwrap().unchecked_into();
        let source = MediaSource::new().unwrap();
        let url = web_sys::Url::create_object_url_with_source(&source).unwrap();
        element.set_src(&url);
        next_event(&source, "sourceopen", None).await.unwrap();
        let buffer = source.add_source_buffer("audio/mpeg").unwrap();
        let list = Array::new();
        for (index, bytes) in segments {
            let s = Object::new();
            Reflect::set(&s, &"index".into(), &(*index).into()).unwrap();
            Reflect::set(&s, &"bytes".into(), &Uint8Array::from(*bytes)).unwrap();
            Reflect::set(&s, &"from".into(), &"https://gateway.example".into()).unwrap();
            list.push(&s);
        }
        let handed = Object::new();
        for (key, value) in [
            ("manifest", Uint8Array::from(manifest).into()),
            ("mediaSource", source.into()),
            ("sourceBuffer", buffer.into()),
            ("objectUrl", url.into()),
            ("kind", "MediaSource".into()),
            ("segments", list.into()),
            ("failures", Array::new().into()),
            ("startedAt", 1.0.into()),
        ] {
            Reflect::set(&handed, &key.into(), &value).unwrap();
        }
        handed.into()
    }

    #[test]
    fn times_from_the_page_become_durations_without_panicking() {
        use std::time::Duration;
        assert_eq!(between(1000.0, 1250.0), Duration::from_millis(250));
        assert_eq!(between(-1e300, 0.0), Duration::from_secs(86_400), "at most a day");
        assert_eq!(between(5.0, 1.0), Duration::ZERO);
        assert_eq!(between(f64::NAN, 1.0), Duration::ZERO);
        assert_eq!(between(0.0, f64::INFINITY), Duration::ZERO);
    }

    #[test]
    async fn a_hand_over_that_verifies_is_taken_whole() {
        let (track_cid, manifest, segment) = track();
        let handed = check(&hand_over(&manifest, &[(0, SEGMENT)]).await, track_cid);
        assert!(handed.manifest.is_some());
        assert!(handed.sink.is_some());
        assert_eq!(handed.appended.len(), 1);
        assert_eq!(*handed.appended[0].block.cid(), segment);
    }

    #[test]
    async fn an_appended_segment_that_does_not_verify_voids_the_hand_over() {
        let (track_cid, manifest, _) = track();
        let mut tampered = SEGMENT.to_vec();
        tampered[500] ^= 1;
        let handed = check(&hand_over(&manifest, &[(0, &tampered)]).await, track_cid);
        assert!(handed.manifest.is_some(), "the manifest itself verified");
        assert!(handed.sink.is_none(), "the MediaSource that holds unverified bytes is not taken");
        assert!(handed.appended.is_empty());
    }

    #[test]
    async fn a_segment_said_twice_or_past_the_track_voids_the_hand_over() {
        let (track_cid, manifest, _) = track();
        for segments in [&[(0, SEGMENT), (0, SEGMENT)][..], &[(1, SEGMENT)][..]] {
            let handed = check(&hand_over(&manifest, segments).await, track_cid);
            assert!(handed.sink.is_none());
            assert!(handed.appended.is_empty());
        }
    }

    #[test]
    async fn a_manifest_that_does_not_verify_is_not_taken_nor_is_its_media_source() {
        let (track_cid, mut manifest, _) = track();
        let last = manifest.len() - 1;
        manifest[last] ^= 1;
        let handed = check(&hand_over(&manifest, &[(0, SEGMENT)]).await, track_cid);
        assert!(handed.manifest.is_none());
        assert!(handed.sink.is_none());
    }
}
