//! `Player`: fetches a track's manifest and segments and appends each verified segment to Media
//! Source Extensions at its start time (`timestampOffset`), so segments may arrive in any order
//! and seeks land exactly. Which segment is fetched from which source (the creator
//! node over Bitswap, HTTP gateways) is decided by `antiphon_core::schedule`: deadline order
//! within a window ahead of the playhead, scores per source, hedging of late requests, bans for
//! sources whose bytes do not verify.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use antiphon_core::schedule::{Action, Config as ScheduleConfig, Failure, Scheduler, SourceId, SourceKind};
use antiphon_core::{Cid, TrackManifest};
use futures::StreamExt;
use futures::future::{AbortHandle, Abortable, Either, select};
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use web_sys::HtmlMediaElement;

use crate::api::{args, bootstrap};
use crate::error::{Error, ErrorCode};
use crate::fetching::fetch::{FetchedSegment, fetch_block_from_any, fetch_segment};
use crate::fetching::source::Source;
use crate::js::object;
use crate::network::session::Network;
use crate::output::media::OpeningSource;
use crate::output::sink::{ClockEvent, Output};

/// A `waiting` element with less than this buffered ahead has run out of data: a rebuffer.
const STARVED_SECS: f64 = 0.5;

/// How often the pump looks at the playhead when nothing else happens.
const TICK: Duration = Duration::from_millis(250);
/// Options of `peer.attach(element, options)`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PlayerOptions {
    /// Seconds of audio fetched ahead of the playhead (default 30).
    window_secs: Option<f64>,
}

/// Longest window a player accepts: ten minutes.
const MAX_WINDOW_SECS: f64 = 600.0;

/// Segments asked of one source at once. One 320 kb/s segment is ~240 KB, sent by the node in
/// one burst; two at once overflow Chromium's UDP receive buffer (212 KB by default on Linux)
/// on a fast path, and over WebRTC-direct a lost tail waits for SCTP's 1 s retransmission
/// timeout (measured: warm time to first audio 1.1 s median with 2, 0.1 s with 1; BENCHMARKS.md).
/// One at a time still moves 2 MB/s or more, fifty times what playback consumes.
const PER_SOURCE: usize = 1;

/// A segment that failed this many times per usable source fails playback.
const FAILURES_PER_SOURCE: usize = 3;
/// Most provenance records kept (a 10-minute track of 6 s segments has ~100).
const MAX_PROVENANCE: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SegmentState {
    Pending,
    Fetching,
    Verified,
    Appended,
    Failed,
}

impl SegmentState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fetching => "fetching",
            Self::Verified => "verified",
            Self::Appended => "appended",
            Self::Failed => "failed",
        }
    }
}

#[derive(Default)]
struct State {
    /// Bumped by every load and by destroy; a pump whose generation is stale stops.
    generation: u32,
    track: Option<Cid>,
    manifest: Option<TrackManifest>,
    segments: Vec<SegmentState>,
    bytes: u64,
    error: Option<(String, String)>,
    sink: Option<Rc<Output>>,
    ended: bool,
    /// The playhead reached the end of the track.
    ended_playback: bool,
    /// Every verified block: CID, sender, bytes, ms since load.
    provenance: Vec<(Cid, String, usize, f64)>,
    /// Sources banned for sending bytes that did not verify.
    banned: Vec<String>,
    /// When `load` was called.
    load_started: Option<web_time::Instant>,
    /// From `load` to the element's first `playing`.
    time_to_first_audio: Option<Duration>,
    /// Stalls after playback started (not counting seeks), and their total time.
    rebuffers: u32,
    rebuffer_time: Duration,
    waiting_since: Option<web_time::Instant>,
    /// Segment bytes by source kind ("node", "peer", "gateway") and by sender.
    bytes_by_kind: BTreeMap<&'static str, u64>,
    bytes_by_source: BTreeMap<String, u64>,
    /// How playback began: `"bootstrap"` (the page's JS bootstrap appended the first segments)
    /// or `"peer"`.
    start_path: Option<&'static str>,
}

/// An event name and the closure listening for it on the media element.
type ElementListener = (&'static str, Closure<dyn FnMut()>);

struct Shared {
    network: Rc<Network>,
    window_secs: f64,
    element: HtmlMediaElement,
    state: RefCell<State>,
    listener: RefCell<Option<js_sys::Function>>,
    /// The element's `playing`, `waiting`, `seeking` and `ended` listeners, removed on destroy.
    element_listeners: RefCell<Vec<ElementListener>>,
    /// `destroy()` was called: every method but the getters fails with `STOPPED`.
    destroyed: std::cell::Cell<bool>,
    /// Wakes the pump at once (a seek), instead of at its next tick.
    wake: RefCell<Option<futures::channel::mpsc::Sender<()>>>,
}

impl Shared {
    fn emit(&self, event: JsValue) {
        let listener = self.listener.borrow().clone();
        if let Some(f) = listener {
            let _ = f.call1(&JsValue::NULL, &event);
        }
    }

    /// The playhead and whether a seek is under way: the output's clock, or the element's
    /// before a track is loaded.
    fn playhead(&self) -> (f64, bool) {
        let sink = self.state.borrow().sink.clone();
        match sink {
            Some(out) => (out.current_time(), out.seeking()),
            None => (self.element.current_time(), self.element.seeking()),
        }
    }

    /// Audio is coming out: the first time since `load` is the time to first audio; after a
    /// stall it is the recovery.
    fn on_playing(&self) {
        let (now, _) = self.playhead();
        let recovered = {
            let mut state = self.state.borrow_mut();
            if state.time_to_first_audio.is_none() {
                state.time_to_first_audio = state.load_started.map(|t| t.elapsed());
                self.network.starting(false);
                // The scheduler holds further fetches until playback starts: let them go now.
                self.wake_pump();
            }
            state.waiting_since.take().map(|since| {
                let stalled = since.elapsed();
                state.rebuffer_time += stalled;
                stalled
            })
        };
        if let Some(stalled) = recovered {
            self.emit(object(&[
                ("type", "recovered".into()),
                ("atSecs", now.into()),
                ("stalledMs", (stalled.as_secs_f64() * 1000.0).into()),
            ]));
        }
    }

    /// Playback wants data it does not have. A rebuffer is running out of data after playback
    /// started; the element also fires `waiting` with plenty buffered when the page is starved
    /// of CPU, and during seeks, and neither is the network's doing.
    fn on_waiting(&self) {
        let (now, seeking) = self.playhead();
        let stalled = {
            let mut state = self.state.borrow_mut();
            let starved = state.sink.as_ref().is_none_or(|sink| sink.buffered_until(now) - now < STARVED_SECS);
            let stall = state.time_to_first_audio.is_some()
                && starved
                && !seeking
                && state.waiting_since.is_none()
                && !state.ended
                && !state.ended_playback;
            if stall {
                state.rebuffers += 1;
                state.waiting_since = Some(web_time::Instant::now());
            }
            stall
        };
        if stalled {
            self.emit(object(&[("type", "stall".into()), ("atSecs", now.into())]));
        }
    }

    /// The playhead moved: the pump looks at it now.
    fn on_seeking(&self) {
        // Seeking back after the end plays again: stalls count again.
        self.state.borrow_mut().ended_playback = false;
        self.wake_pump();
    }

    /// Has the pump look at the playhead and the output now instead of at its next tick.
    fn wake_pump(&self) {
        if let Some(wake) = self.wake.borrow_mut().as_mut() {
            let _ = wake.try_send(());
        }
    }

    /// Lets the output look at its clock once per tick; reports a nudge of an element that had
    /// stopped with audio buffered ahead.
    fn tick_output(&self, sink: &Output) {
        if let Some((from, to)) = sink.tick() {
            self.emit(object(&[("type", "nudge".into()), ("fromSecs", from.into()), ("toSecs", to.into())]));
        }
    }

    /// The playhead reached the end of the track.
    fn on_playback_ended(&self) {
        self.state.borrow_mut().ended_playback = true;
        self.emit(object(&[("type", "playbackEnded".into())]));
    }

    fn on_clock(&self, event: ClockEvent) {
        #[cfg(feature = "webaudio")]
        match event {
            ClockEvent::Playing => self.on_playing(),
            ClockEvent::Waiting => self.on_waiting(),
            ClockEvent::Seeking => self.on_seeking(),
            ClockEvent::Ended => self.on_playback_ended(),
        }
        #[cfg(not(feature = "webaudio"))]
        match event {}
    }

    fn is_current(&self, generation: u32) -> bool {
        self.state.borrow().generation == generation
    }

    fn set_segment(&self, generation: u32, index: usize, s: SegmentState) {
        let mut state = self.state.borrow_mut();
        if state.generation == generation
            && let Some(slot) = state.segments.get_mut(index)
        {
            *slot = s;
        }
    }

    fn fail(&self, generation: u32, index: Option<usize>, error: &Error) {
        if !self.is_current(generation) {
            return;
        }
        tracing::warn!(%error, ?index, "playback error");
        if let Some(i) = index {
            self.set_segment(generation, i, SegmentState::Failed);
        }
        self.state.borrow_mut().error = Some((error.code().as_str().into(), error.to_string()));
        self.emit(object(&[
            ("type", "error".into()),
            ("code", error.code().as_str().into()),
            ("message", error.to_string().into()),
            ("cid", error.cid().map(|c| c.to_string()).into()),
            ("index", index.map(|i| i as f64).into()),
        ]));
    }
}

/// Plays tracks into one `<audio>` (or `<video>`) element.
#[wasm_bindgen]
pub struct Player {
    shared: Rc<Shared>,
}

impl Player {
    pub(crate) fn new(network: Rc<Network>, element: HtmlMediaElement, options: PlayerOptions) -> Result<Self, Error> {
        let window_secs = options.window_secs.unwrap_or(ScheduleConfig::default().window_secs);
        if !(window_secs > 0.0 && window_secs <= MAX_WINDOW_SECS) {
            return Err(Error::InvalidArgument {
                what: "windowSecs".into(),
                reason: format!("{window_secs} is not in (0, {MAX_WINDOW_SECS}]"),
            });
        }
        let shared = Rc::new(Shared {
            network,
            window_secs,
            element,
            state: RefCell::new(State::default()),
            listener: RefCell::new(None),
            element_listeners: RefCell::new(Vec::new()),
            destroyed: std::cell::Cell::new(false),
            wake: RefCell::new(None),
        });
        // Time to first audio, stalls and seeks, as the element experiences them (the Web Audio
        // output reports the same moments from its own clock).
        let listen = |handler: fn(&Shared)| {
            let weak = Rc::downgrade(&shared);
            Closure::<dyn FnMut()>::new(move || {
                if let Some(shared) = weak.upgrade() {
                    handler(&shared);
                }
            })
        };
        let listeners = [
            ("playing", listen(Shared::on_playing)),
            ("waiting", listen(Shared::on_waiting)),
            ("seeking", listen(Shared::on_seeking)),
            ("ended", listen(Shared::on_playback_ended)),
        ];
        for (name, callback) in listeners {
            let _ = shared.element.add_event_listener_with_callback(name, callback.as_ref().unchecked_ref());
            shared.element_listeners.borrow_mut().push((name, callback));
        }
        Ok(Self { shared })
    }
}

#[wasm_bindgen]
impl Player {
    /// Registers the event listener. Events are plain objects with a `type`:
    /// `"manifest"`, `"segment"` (index, cid, peer, sourceKind, bytes, blocks, latencyMs,
    /// hedged), `"sourceFailed"` (source, index, code), `"sourceBanned"` (source, kind),
    /// `"stall"` (atSecs), `"recovered"` (atSecs, stalledMs), `"nudge"` (fromSecs, toSecs),
    /// `"ended"`, `"playbackEnded"` and `"error"` (code, message, cid, index).
    ///
    /// `null` or `undefined` removes the listener.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(
        &self,
        #[wasm_bindgen(unchecked_param_type = "((event: PlayerEvent) => void) | null | undefined")] listener: JsValue,
    ) -> Result<(), Error> {
        self.check_live()?;
        let listener = args::optional(&listener, |l| args::instance::<js_sys::Function>(l, "listener", "a function"))?;
        *self.shared.listener.borrow_mut() = listener;
        Ok(())
    }

    /// Loads a track by its manifest CID: fetches and verifies the manifest, opens the media
    /// source, and starts streaming segments. Resolves once playback can be started with
    /// `element.play()`; segment progress and errors arrive as events.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn load(&self, #[wasm_bindgen(unchecked_param_type = "string")] track_cid: JsValue) -> js_sys::Promise {
        let checked = self.check_live().and_then(|()| args::string(&track_cid, "trackCid", args::MAX_CID_CHARS));
        let shared = self.shared.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            load(shared, checked?).await.map(|()| JsValue::UNDEFINED).map_err(JsValue::from)
        })
    }

    /// A snapshot of the player: track, transport, per-segment states (`pending`, `fetching`,
    /// `verified`, `appended`, `failed`), bytes (in all, by source kind, by sender), seconds
    /// buffered ahead, rebuffers and their time, time to first audio, banned sources, last
    /// error.
    #[wasm_bindgen(unchecked_return_type = "Stats")]
    pub fn stats(&self) -> JsValue {
        let state = self.shared.state.borrow();
        let segments = js_sys::Array::new();
        let appended = js_sys::Array::new();
        for (i, s) in state.segments.iter().enumerate() {
            segments.push(&s.as_str().into());
            if *s == SegmentState::Appended {
                appended.push(&(i as f64).into());
            }
        }
        let buffered_ahead = state.sink.as_ref().map_or(0.0, |out| {
            let now = out.current_time();
            out.buffered_until(now) - now
        });
        let first = self.shared.network.connected.borrow().first().cloned();
        object(&[
            ("track", state.track.map(|c| c.to_string()).into()),
            ("transport", first.as_ref().map(|n| antiphon_core::transport::transport_name(&n.addr)).into()),
            ("remotePeerId", first.as_ref().map(|n| n.peer.to_string()).into()),
            ("segments", segments.into()),
            ("appended", appended.into()),
            ("bytes", (state.bytes as f64).into()),
            ("durationSecs", state.manifest.as_ref().map(TrackManifest::duration_secs).into()),
            ("bufferedAheadSecs", buffered_ahead.max(0.0).into()),
            ("mediaSource", state.sink.as_ref().map(|out| out.kind()).filter(|k| *k != "WebAudio").into()),
            ("output", state.sink.as_ref().map(|out| out.kind()).into()),
            ("currentTime", state.sink.as_ref().map(|out| out.current_time()).into()),
            ("evictions", state.sink.as_ref().map_or(0.0, |sink| f64::from(sink.evictions())).into()),
            ("nudges", state.sink.as_ref().map_or(0.0, |sink| f64::from(sink.nudges())).into()),
            (
                "decode",
                state
                    .sink
                    .as_ref()
                    .and_then(|out| out.decode_times())
                    .map(|(n, mean, longest)| {
                        object(&[
                            ("segments", f64::from(n).into()),
                            ("meanMs", mean.into()),
                            ("longestMs", longest.into()),
                        ])
                    })
                    .into(),
            ),
            ("ended", state.ended.into()),
            ("banned", state.banned.iter().map(|b| JsValue::from(b.as_str())).collect::<js_sys::Array>().into()),
            ("rebuffers", f64::from(state.rebuffers).into()),
            ("rebufferMs", (state.rebuffer_time.as_secs_f64() * 1000.0).into()),
            ("timeToFirstAudioMs", state.time_to_first_audio.map(|d| d.as_secs_f64() * 1000.0).into()),
            ("startPath", state.start_path.into()),
            // Every kind, with 0 for a kind that sent nothing.
            (
                "bytesBySourceKind",
                counts(
                    ["node", "peer", "gateway"]
                        .into_iter()
                        .map(|k| (k, state.bytes_by_kind.get(k).copied().unwrap_or(0))),
                ),
            ),
            ("bytesBySource", counts(state.bytes_by_source.iter().map(|(k, v)| (k.as_str(), *v)))),
            ("errorCode", state.error.as_ref().map(|e| e.0.clone()).into()),
            ("error", state.error.as_ref().map(|e| e.1.clone()).into()),
        ])
    }

    /// Every verified block of the current track so far: `{ cid, from, bytes, atMs }`, where
    /// `from` is the peer ID or gateway URL that sent it and `atMs` is since `load`.
    #[wasm_bindgen(unchecked_return_type = "ProvenanceEntry[]")]
    pub fn provenance(&self) -> js_sys::Array {
        self.shared
            .state
            .borrow()
            .provenance
            .iter()
            .map(|(cid, from, bytes, at)| {
                object(&[
                    ("cid", cid.to_string().into()),
                    ("from", from.as_str().into()),
                    ("bytes", (*bytes as f64).into()),
                    ("atMs", (*at).into()),
                ])
            })
            .collect()
    }

    /// The output in use: the element's when the track plays through Media Source Extensions
    /// (or before `load`), the Web Audio output's otherwise.
    fn output(&self) -> Option<Rc<Output>> {
        self.shared.state.borrow().sink.clone()
    }

    /// Starts playback. With Media Source Extensions this is `element.play()`; where the
    /// track plays through Web Audio (no MSE in this browser) it is the only way to start it.
    ///
    /// Rejects with `STOPPED` after `destroy()` and with `NOT_LOADED` before `load()` (an
    /// element with nothing to play would leave the promise pending).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn play(&self) -> js_sys::Promise {
        if let Err(e) = self.check_live() {
            return js_sys::Promise::reject(&e.into());
        }
        if self.shared.state.borrow().track.is_none() {
            return js_sys::Promise::reject(&Error::NotLoaded.into());
        }
        match self.output() {
            Some(out) => out.play(),
            None => self.shared.element.play().unwrap_or_else(|e| js_sys::Promise::reject(&e)),
        }
    }

    /// Pauses playback (`element.pause()`, or the Web Audio output's).
    pub fn pause(&self) -> Result<(), Error> {
        self.check_live()?;
        match self.output() {
            Some(out) => out.pause(),
            None => {
                let _ = self.shared.element.pause();
            }
        }
        Ok(())
    }

    /// Moves the playhead to `secs` (`element.currentTime = secs`, or the Web Audio output's).
    /// `secs` must be a finite number, at least 0.
    pub fn seek(&self, #[wasm_bindgen(unchecked_param_type = "number")] secs: JsValue) -> Result<(), Error> {
        self.check_live()?;
        let secs = args::number(&secs, "secs", 0.0..=f64::MAX)?;
        match self.output() {
            Some(out) => out.seek(secs),
            None => self.shared.element.set_current_time(secs),
        }
        Ok(())
    }

    /// The playhead in seconds.
    #[wasm_bindgen(getter, js_name = currentTime)]
    pub fn current_time(&self) -> f64 {
        self.shared.playhead().0
    }

    /// Whether playback is paused.
    #[wasm_bindgen(getter)]
    pub fn paused(&self) -> bool {
        self.output().map_or_else(|| self.shared.element.paused(), |out| out.paused())
    }

    /// Stops streaming, detaches the media source and releases its object URL (or stops the
    /// Web Audio output and closes its `AudioContext`).
    /// Calling it again does nothing; every other method then fails with `STOPPED`.
    pub fn destroy(&self) {
        if self.shared.destroyed.replace(true) {
            return;
        }
        if let Some(out) = self.output() {
            out.pause();
        }
        for (name, callback) in self.shared.element_listeners.borrow_mut().drain(..) {
            let _ = self.shared.element.remove_event_listener_with_callback(name, callback.as_ref().unchecked_ref());
        }
        // A new generation stops the pump at its next turn; the media source is released (its
        // object URL revoked) when the last reference to it goes.
        let mut state = self.shared.state.borrow_mut();
        *state = State { generation: state.generation.wrapping_add(1), ..State::default() };
        drop(state);
        // The pump wakes, sees the new generation and lets go of the output.
        self.shared.wake_pump();
        self.shared.element.remove_attribute("src").ok();
        self.shared.element.load();
    }
}

impl Player {
    /// `STOPPED` once the player is destroyed or its peer closed.
    fn check_live(&self) -> Result<(), Error> {
        if self.shared.destroyed.get() || self.shared.network.net.is_stopped() {
            return Err(Error::Stopped);
        }
        Ok(())
    }
}

async fn load(shared: Rc<Shared>, track_cid: String) -> Result<(), Error> {
    let cid: Cid = track_cid.parse().map_err(|source| Error::InvalidCid { input: track_cid.clone(), source })?;
    let generation = {
        let mut state = shared.state.borrow_mut();
        state.generation = state.generation.wrapping_add(1);
        *state = State {
            generation: state.generation,
            track: Some(cid),
            load_started: Some(web_time::Instant::now()),
            ..State::default()
        };
        state.generation
    };
    shared.network.starting(true);
    let result = start(&shared, cid, generation).await;
    if result.is_err() && shared.is_current(generation) {
        // A load that failed leaves nothing running: its pump (if it started) stops at its next
        // turn, no segment is left looking as if it were on its way, and the relay reservation
        // need not wait for it.
        let mut state = shared.state.borrow_mut();
        state.generation = state.generation.wrapping_add(1);
        state.segments.clear();
        drop(state);
        shared.network.starting(false);
        shared.wake_pump();
    }
    result
}

/// `load`'s steps for the load `generation`: the manifest, the pump, the output. A bootstrap
/// the page ran on the element for this track (`src/bootstrap.js`) hands over what it built.
async fn start(shared: &Rc<Shared>, cid: Cid, generation: u32) -> Result<(), Error> {
    let handed = bootstrap::take(&shared.element, cid).await;
    if !shared.is_current(generation) {
        return Err(Error::Stopped);
    }
    let (mut adopted_sink, handed) = match handed {
        Some(mut h) => (h.sink.take(), Some(h)),
        None => (None, None),
    };
    // A MediaSource opens a few milliseconds after it is attached: it does so while the
    // manifest is on its way.
    let early = if adopted_sink.is_none() { OpeningSource::start(&shared.element)? } else { None };
    let manifest = match handed.as_ref().and_then(|h| h.manifest.clone()) {
        Some(manifest) => manifest,
        None => {
            let block = fetch_manifest(shared, cid).await?;
            if !shared.is_current(generation) {
                return Err(Error::Stopped);
            }
            TrackManifest::from_block(&block).map_err(|source| Error::Manifest { cid, source })?
        }
    };
    shared.network.hold(cid);
    {
        let mut state = shared.state.borrow_mut();
        state.segments = vec![SegmentState::Pending; manifest.segments.len()];
        state.manifest = Some(manifest.clone());
        state.start_path = Some(if adopted_sink.is_some() { "bootstrap" } else { "peer" });
    }
    let adopted: Vec<usize> = match (&handed, &adopted_sink) {
        (Some(h), Some(_)) => h.appended.iter().map(|a| a.index).collect(),
        _ => Vec::new(),
    };
    let corrupt: Vec<String> = handed
        .iter()
        .flat_map(|h| &h.failures)
        .filter(|f| f.code == ErrorCode::VerificationFailed.as_str())
        .filter_map(|f| f.source.clone())
        .collect();
    if let Some(h) = &handed {
        took_over(shared, h, adopted_sink.is_some());
    }
    // The first segments are asked for before anything else happens: the pump runs its first
    // turn (its wants go out) during this yield, before the output is made ready or the page
    // hears of the manifest; browsers are looked up once playback has started. It appends once
    // the output is there.
    wasm_bindgen_futures::spawn_local(pump(shared.clone(), generation, manifest.clone(), adopted, corrupt.clone()));
    futures_timer::Delay::new(Duration::ZERO).await;
    if !shared.is_current(generation) {
        return Err(Error::Stopped);
    }
    shared.network.discover_once_started(cid);
    let weak = Rc::downgrade(shared);
    let on_clock = move |event| {
        if let Some(shared) = weak.upgrade() {
            shared.on_clock(event);
        }
    };
    shared.emit(object(&[
        ("type", "manifest".into()),
        ("cid", cid.to_string().into()),
        ("segments", (manifest.segments.len() as f64).into()),
        ("durationSecs", manifest.duration_secs().into()),
        ("codec", manifest.codec.clone().into()),
    ]));
    if let Some(h) = &handed {
        announce_hand_over(shared, h, &manifest, adopted_sink.is_some(), &corrupt);
    }
    let opened = match adopted_sink.take() {
        Some(sink) => Ok(Output::adopt(&shared.element, sink, &manifest)),
        None => Output::open(&shared.element, &manifest, early, on_clock).await,
    };
    if !shared.is_current(generation) {
        return Err(Error::Stopped);
    }
    shared.state.borrow_mut().sink = Some(opened?);
    shared.wake_pump();
    Ok(())
}

/// Counts what the bootstrap appended as this load's, keeps its blocks to serve to others, and
/// dates the load (and its first audio) from when the bootstrap began. A bootstrap that
/// appended nothing changes nothing: the load is dated from `load()`.
fn took_over(shared: &Shared, handed: &bootstrap::HandOver, adopted: bool) {
    if !adopted {
        return;
    }
    let since_start = bootstrap::between(handed.started_at, bootstrap::performance_now());
    let mut state = shared.state.borrow_mut();
    state.load_started = web_time::Instant::now().checked_sub(since_start).or(state.load_started);
    for a in &handed.appended {
        shared.network.net.keep(&a.block);
        shared.network.hold(*a.block.cid());
        let n = a.block.data().len() as u64;
        if let Some(slot) = state.segments.get_mut(a.index) {
            *slot = SegmentState::Appended;
        }
        state.bytes += n;
        *state.bytes_by_kind.entry("gateway").or_default() += n;
        *state.bytes_by_source.entry(a.from.clone()).or_default() += n;
        if state.provenance.len() < MAX_PROVENANCE {
            state.provenance.push((*a.block.cid(), a.from.clone(), n as usize, a.at_ms));
        }
    }
    if let Some(playing) = handed.playing_at {
        state.time_to_first_audio = Some(bootstrap::between(handed.started_at, playing));
        drop(state);
        // Audio already plays: the network need not hold back for the start.
        shared.network.starting(false);
    }
}

/// Tells the page what the bootstrap did, as if this player had done it: its segments, the
/// sources that failed it and those banned for bytes that did not verify.
fn announce_hand_over(
    shared: &Shared,
    handed: &bootstrap::HandOver,
    manifest: &TrackManifest,
    adopted: bool,
    corrupt: &[String],
) {
    for f in &handed.failures {
        let Some(source) = &f.source else { continue };
        shared.emit(object(&[
            ("type", "sourceFailed".into()),
            ("source", source.as_str().into()),
            ("index", f.index.map(|i| i as f64).into()),
            ("code", f.code.as_str().into()),
        ]));
    }
    for source in corrupt {
        announce_ban(shared, source.clone(), SourceKind::Gateway);
    }
    if !adopted {
        return;
    }
    for a in &handed.appended {
        shared.emit(object(&[
            ("type", "segment".into()),
            ("index", (a.index as f64).into()),
            ("cid", manifest.segments[a.index].cid.to_string().into()),
            ("peer", a.from.as_str().into()),
            ("sourceKind", "gateway".into()),
            ("bytes", (a.block.data().len() as f64).into()),
            ("blocks", 1.0.into()),
            ("latencyMs", a.latency_ms.into()),
            ("hedged", false.into()),
        ]));
    }
}

/// A plain object of byte counts.
fn counts<'a>(entries: impl Iterator<Item = (&'a str, u64)>) -> JsValue {
    let out = js_sys::Object::new();
    for (k, v) in entries {
        let _ = js_sys::Reflect::set(&out, &k.into(), &(v as f64).into());
    }
    out.into()
}

/// The manifest block, from the first source that answers: creator nodes in the order they
/// connected, then browsers, then gateways (see [`fetch_block_from_any`]).
async fn fetch_manifest(shared: &Shared, cid: Cid) -> Result<antiphon_core::Block, Error> {
    let net = &shared.network.net;
    let nodes = shared.network.connected.borrow().clone();
    let browsers = shared.network.browsers.borrow().clone();
    let candidates: Vec<Source> = nodes
        .iter()
        .map(|n| n.peer)
        .chain(browsers.iter().map(|b| b.peer))
        .map(|peer| Source::Bitswap { net: net.clone(), peer })
        .chain(shared.network.gateways.iter().map(|g| Source::Gateway { base: g.clone(), net: net.clone() }))
        .collect();
    Ok(fetch_block_from_any(&candidates, cid).await?.block)
}

/// The sources a player fetches from, in the scheduler's order: the creator nodes connected at
/// load, the gateways, then creator nodes that connect later.
struct Sources {
    list: Vec<(Source, SourceKind)>,
    nodes_seen: usize,
    /// Browsers already made sources. One that reconnects keeps its source (and its score).
    browsers_seen: std::collections::HashMap<libp2p::PeerId, SourceId>,
    /// The track's segments' root CIDs: browsers are watched for them, and say HAVE.
    segment_cids: Vec<Cid>,
    /// Per browser, the segments it said HAVE for (already told to the scheduler).
    said_have: std::collections::HashMap<libp2p::PeerId, Vec<bool>>,
}

impl Sources {
    fn new(shared: &Shared, scheduler: &mut Scheduler, manifest: &TrackManifest) -> Self {
        let mut sources = Self {
            list: Vec::new(),
            nodes_seen: 0,
            browsers_seen: Default::default(),
            segment_cids: manifest.segments.iter().map(|s| s.cid).collect(),
            said_have: Default::default(),
        };
        sources.refresh(shared, scheduler);
        for g in &shared.network.gateways {
            sources.add(
                scheduler,
                Source::Gateway { base: g.clone(), net: shared.network.net.clone() },
                SourceKind::Gateway,
            );
        }
        sources
    }

    /// Adds the creator nodes and browsers that connected since the last look.
    fn refresh(&mut self, shared: &Shared, scheduler: &mut Scheduler) {
        let nodes = shared.network.connected.borrow();
        for node in &nodes[self.nodes_seen..] {
            let source = Source::Bitswap { net: shared.network.net.clone(), peer: node.peer };
            self.add(scheduler, source, SourceKind::CreatorNode);
        }
        self.nodes_seen = nodes.len();
        let browsers = shared.network.browsers.borrow();
        let net = &shared.network.net;
        for browser in browsers.iter() {
            if !self.browsers_seen.contains_key(&browser.peer) {
                let source = Source::Bitswap { net: net.clone(), peer: browser.peer };
                let id = self.add(scheduler, source, SourceKind::Peer);
                self.browsers_seen.insert(browser.peer, id);
            }
            // Sent once per connection: a watch ends when the browser disconnects.
            net.watch(browser.peer, &self.segment_cids);
        }
        // What browsers said HAVE for since the last look. From its first HAVE on, a browser is
        // asked only for what it said HAVE for (`Scheduler::peer_holds`); one that has said
        // nothing yet is asked like any source, since its answers may still be on their way.
        for (peer, id) in &self.browsers_seen {
            let told = self.said_have.entry(*peer).or_insert_with(|| vec![false; self.segment_cids.len()]);
            for (segment, cid) in self.segment_cids.iter().enumerate() {
                if !told[segment] && net.said_have(peer, cid) {
                    told[segment] = true;
                    scheduler.peer_holds(*id, segment);
                }
            }
        }
        // A browser that left is neither asked nor waited for until it is back. When all
        // have left, others are looked up.
        let mut any = false;
        for (peer, id) in &self.browsers_seen {
            let connected = shared.network.net.is_connected(peer);
            scheduler.set_connected(*id, connected);
            any |= connected;
        }
        if !any
            && !self.browsers_seen.is_empty()
            && let Some(track) = shared.state.borrow().track
        {
            shared.network.look_up_again(track);
        }
    }

    fn add(&mut self, scheduler: &mut Scheduler, source: Source, kind: SourceKind) -> SourceId {
        let id = scheduler.add_source(kind);
        debug_assert_eq!(id.0 as usize, self.list.len());
        self.list.push((source, kind));
        id
    }
}

impl std::ops::Index<SourceId> for Sources {
    type Output = (Source, SourceKind);
    fn index(&self, id: SourceId) -> &Self::Output {
        &self.list[id.0 as usize]
    }
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::CreatorNode => "node",
        SourceKind::Peer => "peer",
        SourceKind::Gateway => "gateway",
    }
}

type Outcome = (usize, SourceId, Result<FetchedSegment, Error>);

/// How long after a load the scheduler may leave segments with time to spare for the browsers
/// a lookup may find (the lookup starts once playback has, within 3 s).
const AWAIT_PEERS_AT_MOST: Duration = Duration::from_secs(8);

/// Records and announces that a source sent bytes that do not verify and is never asked again.
fn banned(shared: &Shared, (source, kind): &(Source, SourceKind)) {
    announce_ban(shared, source.label(), *kind);
}

/// Records and announces the ban of the source `label` (once per label).
fn announce_ban(shared: &Shared, label: String, kind: SourceKind) {
    if shared.state.borrow().banned.contains(&label) {
        return;
    }
    tracing::warn!(source = %label, "source banned: it sent bytes that do not verify");
    shared.state.borrow_mut().banned.push(label.clone());
    shared.emit(object(&[("type", "sourceBanned".into()), ("source", label.into()), ("kind", kind_name(kind).into())]));
}

type Running = FuturesUnordered<Abortable<futures::future::LocalBoxFuture<'static, Outcome>>>;

/// Fetches segments as the scheduler directs and appends each, as it is verified, at its place
/// on the timeline; then watches playback to its end. Starts before the output is open: until
/// `load` has put it in the state, the playhead is 0 and verified segments wait in `ready`.
/// `adopted` are the segments a bootstrap appended; `corrupt` the sources it banned.
async fn pump(shared: Rc<Shared>, generation: u32, manifest: TrackManifest, adopted: Vec<usize>, corrupt: Vec<String>) {
    let mut pump = Pump::new(shared, generation, manifest);
    pump.took_over(&adopted, &corrupt);
    pump.run().await;
}

/// One load's streaming: the scheduler, the fetches it started, what is verified and waiting
/// for the output, and what is appended.
struct Pump {
    shared: Rc<Shared>,
    generation: u32,
    manifest: TrackManifest,
    scheduler: Scheduler,
    sources: Sources,
    started: web_time::Instant,
    running: Running,
    aborts: HashMap<(usize, SourceId), AbortHandle>,
    hedged: HashMap<usize, bool>,
    /// Verified, waiting for the output.
    ready: BTreeMap<usize, (FetchedSegment, SourceId)>,
    failures: HashMap<usize, usize>,
    last_error: Option<(usize, Error)>,
    appended: Vec<bool>,
}

impl Pump {
    fn new(shared: Rc<Shared>, generation: u32, manifest: TrackManifest) -> Self {
        let rate = f64::from(manifest.sample_rate);
        let durations: Vec<f64> = manifest.segments.iter().map(|s| s.samples as f64 / rate).collect();
        let sizes: Vec<u64> = manifest.segments.iter().map(|s| s.bytes).collect();
        let config =
            ScheduleConfig { window_secs: shared.window_secs, per_source: PER_SOURCE, ..ScheduleConfig::default() };
        let mut scheduler = Scheduler::new(&durations, &sizes, config);
        let sources = Sources::new(&shared, &mut scheduler, &manifest);
        let total = manifest.segments.len();
        Self {
            shared,
            generation,
            manifest,
            scheduler,
            sources,
            started: web_time::Instant::now(),
            running: FuturesUnordered::new(),
            aborts: HashMap::new(),
            hedged: HashMap::new(),
            ready: BTreeMap::new(),
            failures: HashMap::new(),
            last_error: None,
            appended: vec![false; total],
        }
    }

    /// Segments a bootstrap appended are not fetched again; sources it caught sending bytes
    /// that do not verify are banned (they were announced with the hand-over).
    fn took_over(&mut self, adopted: &[usize], corrupt: &[String]) {
        for &index in adopted {
            if let Some(slot) = self.appended.get_mut(index) {
                *slot = true;
                let _ = self.scheduler.mark_done(index);
            }
        }
        for label in corrupt {
            let ids: Vec<SourceId> = (0..self.sources.list.len() as u32)
                .map(SourceId)
                .filter(|id| self.sources[*id].0.label() == *label)
                .collect();
            for id in ids {
                self.scheduler.ban(id);
            }
        }
    }

    async fn run(mut self) {
        // A seek wakes the loop at once instead of at the next tick.
        let (seek_tx, mut seeks) = futures::channel::mpsc::channel::<()>(1);
        *self.shared.wake.borrow_mut() = Some(seek_tx);
        while !self.appended.iter().all(|a| *a) {
            if !self.is_current() {
                break;
            }
            let output = self.shared.state.borrow().sink.clone();
            self.schedule(output.as_deref());
            let outcome = self.next_outcome(&mut seeks).await;
            if !self.is_current() {
                break;
            }
            if let Some(outcome) = outcome {
                self.on_outcome(outcome);
            }
            if let Some(sink) = &output
                && !self.append_ready(sink).await
            {
                return;
            }
            if self.gave_up() {
                return;
            }
        }
        self.abort_all();
        if self.is_current() {
            self.finish().await;
        }
    }

    fn is_current(&self) -> bool {
        self.shared.is_current(self.generation)
    }

    fn abort_all(&self) {
        for handle in self.aborts.values() {
            handle.abort();
        }
    }

    /// Tells the scheduler where the playhead is and starts or cancels what it says.
    fn schedule(&mut self, output: Option<&Output>) {
        self.sources.refresh(&self.shared, &mut self.scheduler);
        let (playhead, rate) = match output {
            Some(sink) => {
                self.shared.tick_output(sink);
                (sink.current_time(), sink.rate())
            }
            None => (0.0, 1.0),
        };
        let now = self.started.elapsed();
        if self.shared.state.borrow().time_to_first_audio.is_some() {
            self.scheduler.playback_started();
        }
        self.scheduler.await_peers(self.shared.network.discovering() && now < AWAIT_PEERS_AT_MOST);
        let mut actions = self.scheduler.set_playhead(playhead, rate, now);
        actions.extend(self.scheduler.poll(now));
        for action in actions {
            match action {
                Action::Fetch { segment, source, hedge } => self.start_fetch(segment, source, hedge),
                Action::Cancel { segment, source } => self.cancel(segment, source),
                Action::Banned { source } => banned(&self.shared, &self.sources[source]),
            }
        }
    }

    fn start_fetch(&mut self, segment: usize, source: SourceId, hedge: bool) {
        let (src, seg) = (self.sources[source].0.clone(), self.manifest.segments[segment].clone());
        let (handle, registration) = AbortHandle::new_pair();
        self.aborts.insert((segment, source), handle);
        self.hedged.insert(segment, hedge);
        self.shared.set_segment(self.generation, segment, SegmentState::Fetching);
        let job: futures::future::LocalBoxFuture<'static, Outcome> =
            Box::pin(async move { (segment, source, fetch_segment(&src, &seg).await) });
        self.running.push(Abortable::new(job, registration));
    }

    fn cancel(&mut self, segment: usize, source: SourceId) {
        if let Some(handle) = self.aborts.remove(&(segment, source)) {
            handle.abort();
        }
    }

    /// The next fetch to finish, or `None` at a tick (or a seek) to look at the playhead again.
    async fn next_outcome(&mut self, seeks: &mut futures::channel::mpsc::Receiver<()>) -> Option<Outcome> {
        let wake = select(futures_timer::Delay::new(TICK), seeks.next());
        if self.running.is_empty() {
            wake.await;
            return None;
        }
        match select(self.running.next(), wake).await {
            Either::Left((Some(Ok(outcome)), _)) => Some(outcome),
            _ => None,
        }
    }

    fn on_outcome(&mut self, (segment, source, result): Outcome) {
        self.aborts.remove(&(segment, source));
        match result {
            Ok(fetched) => self.on_fetched(segment, source, fetched),
            Err(e) => self.on_failed(segment, source, e),
        }
    }

    fn on_fetched(&mut self, segment: usize, source: SourceId, fetched: FetchedSegment) {
        let now = self.started.elapsed();
        for action in self.scheduler.on_success(segment, source, now) {
            if let Action::Cancel { segment, source } = action {
                self.cancel(segment, source);
            }
        }
        if self.ready.contains_key(&segment) || self.appended[segment] {
            return;
        }
        self.shared.set_segment(self.generation, segment, SegmentState::Verified);
        let track = {
            let mut state = self.shared.state.borrow_mut();
            let at = now.as_secs_f64() * 1000.0;
            for (cid, bytes) in &fetched.block_list {
                if state.provenance.len() < MAX_PROVENANCE {
                    state.provenance.push((*cid, fetched.from.clone(), *bytes, at));
                }
            }
            state.track
        };
        // Another browser served these blocks: sign a receipt for each.
        if let ((Source::Bitswap { peer, .. }, SourceKind::Peer), Some(track)) =
            (&self.sources.list[source.0 as usize], track)
        {
            for (cid, bytes) in &fetched.block_list {
                self.shared.network.receipt(*cid, *bytes, *peer, track);
            }
        }
        self.ready.insert(segment, (fetched, source));
    }

    fn on_failed(&mut self, segment: usize, source: SourceId, e: Error) {
        let failure = if e.code() == ErrorCode::VerificationFailed { Failure::Corrupt } else { Failure::Unavailable };
        let label = self.sources[source].0.label();
        tracing::info!(segment, source = %label, error = %e, "a source failed a segment");
        self.shared.emit(object(&[
            ("type", "sourceFailed".into()),
            ("source", label.into()),
            ("index", (segment as f64).into()),
            ("code", e.code().as_str().into()),
        ]));
        for action in self.scheduler.on_failure(segment, source, failure) {
            if let Action::Banned { source } = action {
                banned(&self.shared, &self.sources[source]);
            }
        }
        *self.failures.entry(segment).or_default() += 1;
        self.last_error = Some((segment, e));
    }

    /// Appends what is ready, each segment placed at its own start time; `false` when the
    /// output failed or another load took over.
    async fn append_ready(&mut self, sink: &Output) -> bool {
        while let Some((index, (fetched, source))) = self.ready.pop_first() {
            match sink.append(index, &fetched.data, self.manifest.segment_start_secs(index)).await {
                Ok(()) => {}
                Err(Error::BufferFull { .. }) => {
                    // Kept until playback has moved on and room can be made behind it.
                    self.ready.insert(index, (fetched, source));
                    return true;
                }
                Err(e) => {
                    self.shared.fail(self.generation, Some(index), &e);
                    return false;
                }
            }
            if !self.is_current() {
                return false;
            }
            self.on_appended(index, &fetched, source);
        }
        true
    }

    fn on_appended(&mut self, index: usize, fetched: &FetchedSegment, source: SourceId) {
        self.shared.set_segment(self.generation, index, SegmentState::Appended);
        self.shared.network.hold(self.manifest.segments[index].cid);
        let kind = kind_name(self.sources[source].1);
        {
            let mut state = self.shared.state.borrow_mut();
            let n = fetched.data.len() as u64;
            state.bytes += n;
            *state.bytes_by_kind.entry(kind).or_default() += n;
            *state.bytes_by_source.entry(fetched.from.clone()).or_default() += n;
        }
        self.shared.emit(object(&[
            ("type", "segment".into()),
            ("index", (index as f64).into()),
            ("cid", self.manifest.segments[index].cid.to_string().into()),
            ("peer", fetched.from.clone().into()),
            ("sourceKind", kind.into()),
            ("bytes", (fetched.data.len() as f64).into()),
            ("blocks", (fetched.blocks as f64).into()),
            ("latencyMs", (fetched.latency.as_secs_f64() * 1000.0).into()),
            ("hedged", self.hedged.get(&index).copied().unwrap_or(false).into()),
        ]));
        self.appended[index] = true;
    }

    /// Gives up when no source is left, or one segment keeps failing everywhere.
    fn gave_up(&mut self) -> bool {
        let usable = self.scheduler.usable_sources();
        let exhausted = self.failures.values().any(|n| *n >= FAILURES_PER_SOURCE * usable.max(1));
        if !((usable == 0 && self.running.is_empty()) || exhausted) {
            return false;
        }
        if let Some((index, e)) = self.last_error.take() {
            self.abort_all();
            self.shared.fail(self.generation, Some(index), &e);
        }
        true
    }

    /// Every segment is appended: ends the stream, then watches playback to its end, since the
    /// element can still stop with audio ahead of it (until another load or destroy() takes
    /// over).
    async fn finish(self) {
        let Some(sink) = self.shared.state.borrow().sink.clone() else { return };
        if let Err(e) = sink.end_of_stream() {
            self.shared.fail(self.generation, None, &e);
            return;
        }
        self.shared.state.borrow_mut().ended = true;
        self.shared.emit(object(&[("type", "ended".into())]));
        while self.is_current() && !self.shared.state.borrow().ended_playback {
            self.shared.tick_output(&sink);
            futures_timer::Delay::new(TICK).await;
        }
    }
}
