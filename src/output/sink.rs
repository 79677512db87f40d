//! Where verified segments go: Media Source Extensions on the `<audio>` element when the
//! browser has them, or (with the `webaudio` feature) symphonia in wasm and Web Audio when it
//! does not. The player sees one interface: append a segment at its place, how much is buffered,
//! and a clock (the element's, or the Web Audio output's own).

use std::cell::RefCell;
use std::rc::Rc;

use antiphon_core::TrackManifest;
use web_sys::HtmlMediaElement;

use crate::error::Error;
use crate::output::media::{MediaSink, OpeningSource};
use crate::output::stall::StuckWatch;
#[cfg(feature = "webaudio")]
use crate::output::webaudio::AudioOut;
#[cfg(feature = "webaudio")]
pub(crate) use crate::output::webaudio::ClockEvent;

/// What the Web Audio clock reports; without the feature there is no such clock.
#[cfg(not(feature = "webaudio"))]
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClockEvent {}

/// A player's output.
pub(crate) enum Output {
    /// `MediaSource` or `ManagedMediaSource` attached to the element, and a watch that nudges
    /// the element when it stops with audio buffered ahead (see [`crate::output::stall`]).
    Mse { sink: MediaSink, element: HtmlMediaElement, watch: RefCell<StuckWatch>, born: web_time::Instant },
    /// Decoded in wasm, played through an `AudioContext`.
    #[cfg(feature = "webaudio")]
    WebAudio(Rc<AudioOut>),
}

impl Output {
    /// Media Source Extensions when they can play the track's codec; otherwise Web Audio when
    /// this build has it; otherwise [`Error::MediaUnsupported`].
    /// `early` is a MediaSource the caller attached to `element` before it knew the codec: it
    /// becomes the sink, or is detached when Media Source Extensions cannot play the track.
    pub(crate) async fn open(
        element: &HtmlMediaElement,
        manifest: &TrackManifest,
        early: Option<OpeningSource>,
        on_event: impl Fn(ClockEvent) + 'static,
    ) -> Result<Rc<Self>, Error> {
        let mime = manifest.codec.as_str();
        if MediaSink::supports(mime) {
            let sink = match early {
                Some(opening) => MediaSink::finish(opening, mime).await?,
                None => MediaSink::attach(element, mime).await?,
            };
            sink.set_duration(manifest.duration_secs());
            let (watch, born) = (RefCell::default(), web_time::Instant::now());
            return Ok(Rc::new(Self::Mse { sink, element: element.clone(), watch, born }));
        }
        drop(early);
        #[cfg(feature = "webaudio")]
        {
            let rate = f64::from(manifest.sample_rate.max(1));
            let durations = manifest.segments.iter().map(|s| s.samples as f64 / rate).collect();
            tracing::info!(
                codec = mime,
                "no Media Source Extensions for this codec: decoding in wasm, playing through Web Audio"
            );
            Ok(Rc::new(Self::WebAudio(AudioOut::new(mime, manifest.sample_rate, durations, on_event)?)))
        }
        #[cfg(not(feature = "webaudio"))]
        {
            let _ = on_event;
            let why = match MediaSink::available() {
                Some(kind) => format!("{mime} ({kind} refuses it; this build has no Web Audio fallback)"),
                None => format!(
                    "{mime} (this browser has neither MediaSource nor ManagedMediaSource, and this build has no Web Audio fallback: the `webaudio` feature)"
                ),
            };
            Err(Error::MediaUnsupported { mime: why })
        }
    }

    /// A sink the page's bootstrap opened on `element` and appended to, made this player's
    /// output.
    pub(crate) fn adopt(element: &HtmlMediaElement, sink: MediaSink, manifest: &TrackManifest) -> Rc<Self> {
        sink.set_duration(manifest.duration_secs());
        let (watch, born) = (RefCell::default(), web_time::Instant::now());
        Rc::new(Self::Mse { sink, element: element.clone(), watch, born })
    }

    /// `"MediaSource"`, `"ManagedMediaSource"` or `"WebAudio"`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Mse { sink, .. } => sink.kind(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(_) => "WebAudio",
        }
    }

    /// How many times buffered audio was removed to make room for an append.
    pub(crate) fn evictions(&self) -> u32 {
        match self {
            Self::Mse { sink, .. } => sink.evictions(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(_) => 0,
        }
    }

    /// For the Web Audio output: segments decoded, mean and longest decode time (ms).
    pub(crate) fn decode_times(&self) -> Option<(u32, f64, f64)> {
        match self {
            Self::Mse { .. } => None,
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => Some(out.decode_times()),
        }
    }

    /// Places segment `index` at `start_secs`; see [`MediaSink::append_at`].
    pub(crate) async fn append(&self, index: usize, bytes: &[u8], start_secs: f64) -> Result<(), Error> {
        match self {
            Self::Mse { sink, element, .. } => {
                let _ = index;
                sink.append_at(bytes, start_secs, element.current_time()).await
            }
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => {
                let _ = start_secs;
                out.append(index, bytes)
            }
        }
    }

    /// Signals that every segment has been appended.
    pub(crate) fn end_of_stream(&self) -> Result<(), Error> {
        match self {
            Self::Mse { sink, .. } => sink.end_of_stream(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(_) => Ok(()),
        }
    }

    /// End of the buffered run that contains `t`, or `t`.
    pub(crate) fn buffered_until(&self, t: f64) -> f64 {
        match self {
            Self::Mse { sink, .. } => sink.buffered_until(t),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.buffered_until(t),
        }
    }

    /// The playhead in seconds.
    pub(crate) fn current_time(&self) -> f64 {
        match self {
            Self::Mse { element, .. } => element.current_time(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.current_time(),
        }
    }

    /// Media seconds per second while playing: 0 when paused.
    pub(crate) fn rate(&self) -> f64 {
        match self {
            Self::Mse { element, .. } if element.paused() => 0.0,
            Self::Mse { element, .. } => element.playback_rate(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => {
                if out.paused() {
                    0.0
                } else {
                    1.0
                }
            }
        }
    }

    /// Whether a seek is under way.
    pub(crate) fn seeking(&self) -> bool {
        match self {
            Self::Mse { element, .. } => element.seeking(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.seeking(),
        }
    }

    /// Whether playback is paused.
    pub(crate) fn paused(&self) -> bool {
        match self {
            Self::Mse { element, .. } => element.paused(),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.paused(),
        }
    }

    /// Starts playback; the element's `play()` promise, or the `AudioContext`'s `resume()`.
    pub(crate) fn play(&self) -> js_sys::Promise {
        match self {
            Self::Mse { element, .. } => element.play().unwrap_or_else(|e| js_sys::Promise::reject(&e)),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.play(),
        }
    }

    /// Pauses playback.
    pub(crate) fn pause(&self) {
        match self {
            Self::Mse { element, .. } => {
                let _ = element.pause();
            }
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.pause(),
        }
    }

    /// Moves the playhead.
    pub(crate) fn seek(&self, secs: f64) {
        match self {
            Self::Mse { element, .. } => element.set_current_time(secs),
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => out.seek(secs),
        }
    }

    /// Called every player tick: lets the Web Audio clock look at itself, and nudges an
    /// element that stopped with audio buffered ahead. Returns the nudge (from, to), if any.
    pub(crate) fn tick(&self) -> Option<(f64, f64)> {
        match self {
            Self::Mse { sink, element, watch, born } => {
                let time = element.current_time();
                let playing =
                    !element.paused() && !element.seeking() && !element.ended() && element.playback_rate() > 0.0;
                let target = watch.borrow_mut().check(born.elapsed(), time, playing, || sink.buffered_ranges())?;
                tracing::info!(from = time, to = target, "the element stopped with audio buffered ahead: nudged");
                element.set_current_time(target);
                Some((time, target))
            }
            #[cfg(feature = "webaudio")]
            Self::WebAudio(out) => {
                out.tick();
                None
            }
        }
    }

    /// Times the element was nudged after stopping with audio buffered ahead.
    pub(crate) fn nudges(&self) -> u32 {
        match self {
            Self::Mse { watch, .. } => watch.borrow().nudges,
            #[cfg(feature = "webaudio")]
            Self::WebAudio(_) => 0,
        }
    }
}
