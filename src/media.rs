//! The media side: a Media Source Extensions sink bound to an `<audio>` element.
//!
//! It only ever receives verified segment bytes, so it can move to the main thread unchanged
//! when the network side moves into a Worker.

use js_sys::Uint8Array;
use web_sys::{HtmlMediaElement, MediaSource, MediaSourceReadyState, SourceBuffer, Url};

use crate::error::Error;
use crate::util::{describe, next_event};

/// A MediaSource with one SourceBuffer, attached to a media element.
pub struct MediaSink {
    source: MediaSource,
    buffer: SourceBuffer,
    url: String,
}

impl MediaSink {
    /// Whether this browser's Media Source Extensions accept `mime`.
    pub fn supports(mime: &str) -> bool {
        MediaSource::is_type_supported(mime)
    }

    /// Creates a MediaSource for `mime`, attaches it to `element` and waits until it opens.
    pub async fn attach(element: &HtmlMediaElement, mime: &str) -> Result<Self, Error> {
        if !Self::supports(mime) {
            return Err(Error::MediaUnsupported { mime: mime.to_owned() });
        }
        let media = |e: wasm_bindgen::JsValue| Error::Media(describe(&e));
        let source = MediaSource::new().map_err(media)?;
        let url = Url::create_object_url_with_source(&source).map_err(media)?;
        element.set_src(&url);
        next_event(&source, "sourceopen", None).await.map_err(media)?;
        let buffer = source.add_source_buffer(mime).map_err(media)?;
        Ok(Self { source, buffer, url })
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
    pub async fn append_at(&self, bytes: &[u8], start_secs: f64) -> Result<(), Error> {
        let media = |e: wasm_bindgen::JsValue| Error::Media(describe(&e));
        self.buffer.set_timestamp_offset(start_secs);
        let data = Uint8Array::from(bytes);
        let done = next_event(&self.buffer, "updateend", Some("error"));
        self.buffer.append_buffer_with_array_buffer_view(&data).map_err(media)?;
        done.await.map_err(|_| Error::Media("the SourceBuffer rejected a segment".into()))
    }

    /// Signals that the last segment has been appended.
    pub fn end_of_stream(&self) -> Result<(), Error> {
        if self.source.ready_state() == MediaSourceReadyState::Open {
            self.source.end_of_stream().map_err(|e| Error::Media(describe(&e)))?;
        }
        Ok(())
    }

    /// End of the buffered range that contains `time`, or `time` when it is not buffered.
    pub fn buffered_until(&self, time: f64) -> f64 {
        let Ok(ranges) = self.buffer.buffered() else { return time };
        for i in 0..ranges.length() {
            if let (Ok(start), Ok(end)) = (ranges.start(i), ranges.end(i))
                && start <= time + 0.1
                && time <= end
            {
                return end;
            }
        }
        time
    }
}

impl Drop for MediaSink {
    fn drop(&mut self) {
        let _ = Url::revoke_object_url(&self.url);
    }
}
