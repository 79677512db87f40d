//! The media side: a Media Source Extensions sink bound to an `<audio>` element.
//!
//! It only ever receives verified segment bytes, so it can move to the main thread unchanged
//! when the network side moves into a Worker.

use std::cell::Cell;

use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{HtmlMediaElement, MediaSource, MediaSourceReadyState, SourceBuffer, Url};

use crate::error::Error;
use crate::js::{describe, next_event};

/// Seconds of audio kept behind the playhead when the SourceBuffer is full and room is made.
const KEEP_BEHIND_SECS: f64 = 10.0;

/// A MediaSource with one SourceBuffer, attached to a media element.
pub struct MediaSink {
    source: MediaSource,
    buffer: SourceBuffer,
    url: String,
    kind: &'static str,
    evictions: Cell<u32>,
}

/// The Media Source Extensions constructor this browser has: `MediaSource`, or Safari's
/// `ManagedMediaSource` (iOS has only that one).
fn media_source_class() -> Option<(Function, &'static str)> {
    let global = js_sys::global();
    ["MediaSource", "ManagedMediaSource"].into_iter().find_map(|name| {
        let class = Reflect::get(&global, &name.into()).ok()?;
        class.is_function().then(|| (class.unchecked_into(), name))
    })
}

impl MediaSink {
    /// Whether this browser's Media Source Extensions (either kind) accept `mime`.
    pub fn supports(mime: &str) -> bool {
        let Some((class, _)) = media_source_class() else { return false };
        Reflect::get(&class, &"isTypeSupported".into())
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .and_then(|f| f.call1(&class, &mime.into()).ok())
            .is_some_and(|v| v.is_truthy())
    }

    /// Which constructor this browser offers, if any: `"MediaSource"` or
    /// `"ManagedMediaSource"`.
    pub fn available() -> Option<&'static str> {
        media_source_class().map(|(_, name)| name)
    }

    /// Creates a MediaSource (or ManagedMediaSource) for `mime`, attaches it to `element` and
    /// waits until it opens. An unplayable `mime` is refused before the element is touched.
    pub async fn attach(element: &HtmlMediaElement, mime: &str) -> Result<Self, Error> {
        if !Self::supports(mime) {
            return Err(unsupported(mime));
        }
        let opening = OpeningSource::start(element)?.ok_or_else(|| unsupported(mime))?;
        Self::finish(opening, mime).await
    }

    /// Waits until `opening` is open (it may be already) and gives it a SourceBuffer for `mime`.
    /// On an error `opening` is dropped, which detaches it from its element.
    pub async fn finish(mut opening: OpeningSource, mime: &str) -> Result<Self, Error> {
        if !Self::supports(mime) {
            return Err(unsupported(mime));
        }
        let media = |e: JsValue| Error::Media(describe(&e));
        // `sourceopen` is not fired again for a source that opened while nobody listened.
        if opening.source.ready_state() != MediaSourceReadyState::Open {
            next_event(&opening.source, "sourceopen", None).await.map_err(media)?;
        }
        let buffer = opening.source.add_source_buffer(mime).map_err(media)?;
        opening.taken = true;
        let (source, url, kind) = (opening.source.clone(), opening.url.clone(), opening.kind);
        Ok(Self { source, buffer, url, kind, evictions: Cell::new(0) })
    }

    /// Takes over a MediaSource someone else opened on an element and gave a SourceBuffer (the
    /// JS bootstrap, see `crate::api::bootstrap`), with its object URL, which it revokes when
    /// dropped.
    pub fn adopt(source: MediaSource, buffer: SourceBuffer, url: String, kind: &'static str) -> Self {
        Self { source, buffer, url, kind, evictions: Cell::new(0) }
    }

    /// `"MediaSource"` or `"ManagedMediaSource"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// How many times a full SourceBuffer had audio behind the playhead removed to make room.
    pub fn evictions(&self) -> u32 {
        self.evictions.get()
    }

    /// Sets the presentation's duration (so that a seek bar spans the whole track before it is
    /// all buffered).
    pub fn set_duration(&self, secs: f64) {
        if self.source.ready_state() == MediaSourceReadyState::Open && !self.buffer.updating() {
            self.source.set_duration(secs);
        }
    }

    /// Appends one segment at media time `start_secs` (so segments may arrive in any order and
    /// land exactly where the manifest places them) and waits until the SourceBuffer has it.
    ///
    /// When the browser refuses it for lack of room (`QuotaExceededError`), audio more than
    /// 10 s behind `playhead` is removed and the append retried; if nothing can be removed the
    /// error is [`Error::BufferFull`], and the caller should retry once playback has moved on.
    pub async fn append_at(&self, bytes: &[u8], start_secs: f64, playhead: f64) -> Result<(), Error> {
        let media = |e: JsValue| Error::Media(describe(&e));
        let data = Uint8Array::from(bytes);
        let mut evicted = false;
        loop {
            self.buffer.set_timestamp_offset(start_secs);
            let done = next_event(&self.buffer, "updateend", Some("error"));
            match self.buffer.append_buffer_with_array_buffer_view(&data) {
                Ok(()) => return done.await.map_err(|_| Error::Media("the SourceBuffer rejected a segment".into())),
                Err(e) if is_quota_exceeded(&e) => {
                    let behind = playhead - KEEP_BEHIND_SECS;
                    let start = self.buffered_start();
                    if evicted || start.is_none_or(|s| s >= behind) {
                        return Err(Error::BufferFull { playhead });
                    }
                    tracing::info!(until = behind, "SourceBuffer full: removing audio behind the playhead");
                    let removed = next_event(&self.buffer, "updateend", Some("error"));
                    self.buffer.remove(0.0, behind).map_err(media)?;
                    removed.await.map_err(media)?;
                    self.evictions.set(self.evictions.get() + 1);
                    evicted = true;
                }
                Err(e) => return Err(media(e)),
            }
        }
    }

    /// Start of the earliest buffered range.
    fn buffered_start(&self) -> Option<f64> {
        let ranges = self.buffer.buffered().ok()?;
        (ranges.length() > 0).then(|| ranges.start(0).ok()).flatten()
    }

    /// Signals that the last segment has been appended.
    pub fn end_of_stream(&self) -> Result<(), Error> {
        if self.source.ready_state() == MediaSourceReadyState::Open {
            self.source.end_of_stream().map_err(|e| Error::Media(describe(&e)))?;
        }
        Ok(())
    }

    /// The buffered ranges, in order, as (start, end) seconds.
    pub fn buffered_ranges(&self) -> Vec<(f64, f64)> {
        let Ok(ranges) = self.buffer.buffered() else { return Vec::new() };
        (0..ranges.length()).filter_map(|i| Some((ranges.start(i).ok()?, ranges.end(i).ok()?))).collect()
    }

    /// End of the buffered range that contains `time`, or `time` when it is not buffered.
    pub fn buffered_until(&self, time: f64) -> f64 {
        self.buffered_ranges()
            .into_iter()
            .find(|&(start, end)| start <= time + 0.1 && time <= end)
            .map_or(time, |(_, end)| end)
    }
}

/// A MediaSource (or ManagedMediaSource) attached to an element, opening. It opens a few
/// milliseconds after it is attached, so a player starts it before it knows the track's codec
/// and makes it a [`MediaSink`] with [`MediaSink::finish`] once it does. Dropped before that,
/// it lets go of the element.
pub struct OpeningSource {
    source: MediaSource,
    url: String,
    kind: &'static str,
    element: HtmlMediaElement,
    /// Whether a [`MediaSink`] took it over (and with it the object URL).
    taken: bool,
}

impl OpeningSource {
    /// Creates a MediaSource and attaches it to `element`; `None` where the browser has
    /// neither `MediaSource` nor `ManagedMediaSource`.
    pub fn start(element: &HtmlMediaElement) -> Result<Option<Self>, Error> {
        let Some((class, kind)) = media_source_class() else { return Ok(None) };
        let media = |e: JsValue| Error::Media(describe(&e));
        let source: MediaSource = Reflect::construct(&class, &js_sys::Array::new()).map_err(media)?.unchecked_into();
        if kind == "ManagedMediaSource" {
            // Safari streams from a ManagedMediaSource only when the element cannot be
            // handed to AirPlay, or offers an alternative source for it.
            let _ = Reflect::set(element, &"disableRemotePlayback".into(), &JsValue::TRUE);
        }
        let url = Url::create_object_url_with_source(&source).map_err(media)?;
        element.set_src(&url);
        Ok(Some(Self { source, url, kind, element: element.clone(), taken: false }))
    }
}

impl Drop for OpeningSource {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let _ = Url::revoke_object_url(&self.url);
        // Unless something else has been attached since.
        if self.element.src() == self.url {
            let _ = self.element.remove_attribute("src");
            self.element.load();
        }
    }
}

impl Drop for MediaSink {
    fn drop(&mut self) {
        let _ = Url::revoke_object_url(&self.url);
    }
}

/// [`Error::MediaUnsupported`] for `mime`, saying so when the browser has no MediaSource at all.
fn unsupported(mime: &str) -> Error {
    match media_source_class() {
        Some(_) => Error::MediaUnsupported { mime: mime.to_owned() },
        None => Error::MediaUnsupported {
            mime: format!("{mime} (this browser has neither MediaSource nor ManagedMediaSource)"),
        },
    }
}

/// Whether a thrown value is the DOMException browsers throw when a SourceBuffer is full.
fn is_quota_exceeded(e: &JsValue) -> bool {
    Reflect::get(e, &"name".into()).ok().and_then(|n| n.as_string()).is_some_and(|n| n == "QuotaExceededError")
}
