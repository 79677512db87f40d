//! `Player`: fetches a track's manifest and segments through the network side and appends the
//! verified segments, in order, to Media Source Extensions.

use std::cell::RefCell;
use std::rc::Rc;

use antiphon_core::{Cid, TrackManifest};
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use libp2p::PeerId;
use wasm_bindgen::prelude::*;
use web_sys::HtmlMediaElement;

use crate::error::Error;
use crate::fetch::fetch_segment;
use crate::media::MediaSink;
use crate::net::NetHandle;
use crate::util::object;

/// Segments fetched ahead of the one being appended.
const LOOKAHEAD: usize = 3;

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
    sink: Option<Rc<MediaSink>>,
    ended: bool,
}

struct Shared {
    net: NetHandle,
    remote: PeerId,
    transport: String,
    element: HtmlMediaElement,
    state: RefCell<State>,
    listener: RefCell<Option<js_sys::Function>>,
}

impl Shared {
    fn emit(&self, event: JsValue) {
        let listener = self.listener.borrow().clone();
        if let Some(f) = listener {
            let _ = f.call1(&JsValue::NULL, &event);
        }
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
    pub(crate) fn new(net: NetHandle, remote: PeerId, transport: String, element: HtmlMediaElement) -> Self {
        Self {
            shared: Rc::new(Shared {
                net,
                remote,
                transport,
                element,
                state: RefCell::new(State::default()),
                listener: RefCell::new(None),
            }),
        }
    }
}

#[wasm_bindgen]
impl Player {
    /// Registers the event listener. Events are plain objects with a `type`:
    /// `"manifest"`, `"segment"` (index, cid, peer, bytes, blocks, latencyMs), `"ended"` and `"error"`
    /// (code, message, cid, index).
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, listener: js_sys::Function) {
        *self.shared.listener.borrow_mut() = Some(listener);
    }

    /// Loads a track by its manifest CID: fetches and verifies the manifest, opens the media
    /// source, and starts streaming segments. Resolves once playback can be started with
    /// `element.play()`; segment progress and errors arrive as events.
    pub fn load(&self, track_cid: String) -> js_sys::Promise {
        let shared = self.shared.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            load(shared, track_cid).await.map(|()| JsValue::UNDEFINED).map_err(JsValue::from)
        })
    }

    /// A snapshot of the player: track, transport, per-segment states, bytes, last error.
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
        let buffered_ahead = state.sink.as_ref().map_or(0.0, |sink| {
            sink.buffered_until(self.shared.element.current_time()) - self.shared.element.current_time()
        });
        object(&[
            ("track", state.track.map(|c| c.to_string()).into()),
            ("transport", self.shared.transport.clone().into()),
            ("remotePeerId", self.shared.remote.to_string().into()),
            ("segments", segments.into()),
            ("appended", appended.into()),
            ("bytes", (state.bytes as f64).into()),
            ("durationSecs", state.manifest.as_ref().map(TrackManifest::duration_secs).into()),
            ("bufferedAheadSecs", buffered_ahead.max(0.0).into()),
            ("ended", state.ended.into()),
            ("errorCode", state.error.as_ref().map(|e| e.0.clone()).into()),
            ("error", state.error.as_ref().map(|e| e.1.clone()).into()),
        ])
    }

    /// Stops streaming, detaches the media source and releases its object URL.
    pub fn destroy(&self) {
        let mut state = self.shared.state.borrow_mut();
        state.generation = state.generation.wrapping_add(1);
        state.sink = None;
        self.shared.element.remove_attribute("src").ok();
        self.shared.element.load();
    }
}

async fn load(shared: Rc<Shared>, track_cid: String) -> Result<(), Error> {
    let cid: Cid = track_cid.parse().map_err(|source| Error::InvalidCid { input: track_cid.clone(), source })?;
    let generation = {
        let mut state = shared.state.borrow_mut();
        state.generation = state.generation.wrapping_add(1);
        *state = State { generation: state.generation, track: Some(cid), ..State::default() };
        state.generation
    };
    let fetched = shared.net.get(cid, shared.remote).await?;
    let manifest = TrackManifest::from_block(&fetched.block).map_err(|source| Error::Manifest { cid, source })?;
    let sink = Rc::new(MediaSink::attach(&shared.element, &manifest.codec).await?);
    if !shared.is_current(generation) {
        return Err(Error::Stopped);
    }
    {
        let mut state = shared.state.borrow_mut();
        state.segments = vec![SegmentState::Pending; manifest.segments.len()];
        state.manifest = Some(manifest.clone());
        state.sink = Some(sink.clone());
    }
    shared.emit(object(&[
        ("type", "manifest".into()),
        ("cid", cid.to_string().into()),
        ("segments", (manifest.segments.len() as f64).into()),
        ("durationSecs", manifest.duration_secs().into()),
        ("codec", manifest.codec.clone().into()),
    ]));
    wasm_bindgen_futures::spawn_local(pump(shared, generation, manifest, sink));
    Ok(())
}

/// Fetches segments with a small lookahead and appends them strictly in order.
async fn pump(shared: Rc<Shared>, generation: u32, manifest: TrackManifest, sink: Rc<MediaSink>) {
    let mut inflight = FuturesOrdered::new();
    let mut next = 0usize;
    let total = manifest.segments.len();
    while next < total || !inflight.is_empty() {
        while inflight.len() < LOOKAHEAD && next < total {
            let (net, remote, seg) = (shared.net.clone(), shared.remote, manifest.segments[next].clone());
            shared.set_segment(generation, next, SegmentState::Fetching);
            let index = next;
            inflight.push_back(async move { (index, fetch_segment(&net, remote, &seg).await) });
            next += 1;
        }
        let Some((index, result)) = inflight.next().await else { break };
        if !shared.is_current(generation) {
            return;
        }
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(e) => {
                // The block was refused (or never came): it is not appended, and nothing after
                // it can be, since segments go in strictly in order.
                shared.fail(generation, Some(index), &e);
                return;
            }
        };
        shared.set_segment(generation, index, SegmentState::Verified);
        if let Err(e) = sink.append(&fetched.data).await {
            shared.fail(generation, Some(index), &e);
            return;
        }
        if !shared.is_current(generation) {
            return;
        }
        shared.set_segment(generation, index, SegmentState::Appended);
        shared.state.borrow_mut().bytes += fetched.data.len() as u64;
        shared.emit(object(&[
            ("type", "segment".into()),
            ("index", (index as f64).into()),
            ("cid", manifest.segments[index].cid.to_string().into()),
            ("peer", fetched.peer.to_string().into()),
            ("bytes", (fetched.data.len() as f64).into()),
            ("blocks", (fetched.blocks as f64).into()),
            ("latencyMs", (fetched.latency.as_secs_f64() * 1000.0).into()),
        ]));
    }
    if let Err(e) = sink.end_of_stream() {
        shared.fail(generation, None, &e);
        return;
    }
    shared.state.borrow_mut().ended = true;
    shared.emit(object(&[("type", "ended".into())]));
}
