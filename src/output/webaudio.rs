//! Playback through Web Audio, for browsers with neither `MediaSource` nor `ManagedMediaSource`
//! (the `webaudio` feature). Each verified segment is decoded in wasm by [`crate::output::decode`] and
//! played by an `AudioBufferSourceNode` scheduled at its place on the timeline, so consecutive
//! segments join sample-exactly.
//!
//! There is no media element to keep time here, so this module is its own clock: the media
//! time at which playback (re)started and the `AudioContext` time that corresponds to it. When
//! the scheduled audio runs out before the next segment is here the clock stops (a stall) and
//! restarts where the audio ended once it arrives; play, pause and seek go through
//! `player.play()`, `player.pause()` and `player.seek()`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::*;
use web_sys::{AudioBufferSourceNode, AudioContext, AudioContextOptions, AudioScheduledSourceNode};

use crate::error::Error;
use crate::js::describe;
use crate::output::decode::{Pcm, decode_segment};

/// Seconds of audio kept behind the playhead; older segments are dropped.
const KEEP_BEHIND_SECS: f64 = 10.0;
/// Most audio scheduled ahead of the playhead (decoded segments waiting in `AudioBuffer`s).
const SCHEDULE_AHEAD_SECS: f64 = 12.0;
/// Most segments held (encoded and decoded) at once: far more than a 10-minute window needs.
const MAX_HELD: usize = 128;
/// Head start given to the audio thread when playback (re)starts.
const START_LEAD_SECS: f64 = 0.03;

/// What the clock reports to the player: the same moments an element signals with `playing`,
/// `waiting`, `seeking` and `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockEvent {
    /// Audio is coming out.
    Playing,
    /// Playback is wanted but the audio at the playhead has not arrived.
    Waiting,
    /// The playhead was moved.
    Seeking,
    /// The playhead reached the end of the track.
    Ended,
}

/// One verified segment, encoded and decoded.
struct Held {
    bytes: Rc<[u8]>,
    pcm: Pcm,
    /// Whether it was decoded after its predecessor's last frames (see [`crate::output::decode`]).
    primed: bool,
}

/// A segment's node on the audio graph and the closure its `ended` event calls.
type Scheduled = (usize, AudioBufferSourceNode, Closure<dyn FnMut()>);

#[derive(Default)]
struct Clock {
    /// Media time where playback starts, or stands while not running.
    media_base: f64,
    /// `AudioContext` time at which `media_base` is heard.
    ctx_base: f64,
    /// Audio is being produced.
    running: bool,
    /// The listener wants playback (play was called and pause was not).
    want_play: bool,
    /// Moved by a seek and not yet resumed.
    seeking: bool,
    /// Media time up to which audio is scheduled without a gap.
    scheduled_until: f64,
    /// Next segment to schedule.
    next: usize,
    /// The playhead reached the end.
    ended: bool,
}

/// Decodes segments and plays them through an `AudioContext`.
pub struct AudioOut {
    ctx: AudioContext,
    codec: String,
    starts: Vec<f64>,
    durations: Vec<f64>,
    held: RefCell<BTreeMap<usize, Held>>,
    clock: RefCell<Clock>,
    scheduled: RefCell<Vec<Scheduled>>,
    on_event: Box<dyn Fn(ClockEvent)>,
    this: Weak<AudioOut>,
    /// Segments decoded, and the time that took: all of it, and the longest.
    decoded: Cell<(u32, f64, f64)>,
}

impl AudioOut {
    /// An output for a track of `codec` whose segments last `durations` seconds, at
    /// `sample_rate` (the context runs at the track's rate when the browser allows it).
    pub fn new(
        codec: &str,
        sample_rate: u32,
        durations: Vec<f64>,
        on_event: impl Fn(ClockEvent) + 'static,
    ) -> Result<Rc<Self>, Error> {
        let options = AudioContextOptions::new();
        options.set_sample_rate(sample_rate as f32);
        let ctx = AudioContext::new_with_context_options(&options)
            .or_else(|_| AudioContext::new())
            .map_err(|e| Error::Media(format!("no AudioContext: {}", describe(&e))))?;
        let starts = durations
            .iter()
            .scan(0.0, |t, d| {
                let s = *t;
                *t += d;
                Some(s)
            })
            .collect();
        Ok(Rc::new_cyclic(|this| Self {
            ctx,
            codec: codec.into(),
            starts,
            durations,
            held: RefCell::new(BTreeMap::new()),
            clock: RefCell::new(Clock::default()),
            scheduled: RefCell::new(Vec::new()),
            on_event: Box::new(on_event),
            this: this.clone(),
            decoded: Cell::new((0, 0.0, 0.0)),
        }))
    }

    fn duration(&self) -> f64 {
        self.starts.last().zip(self.durations.last()).map_or(0.0, |(s, d)| s + d)
    }

    fn end_of(&self, index: usize) -> f64 {
        self.starts[index] + self.durations[index]
    }

    /// The segment playing at media time `t`.
    fn segment_at(&self, t: f64) -> Option<usize> {
        let i = self.starts.partition_point(|s| *s <= t + 1e-6).checked_sub(1)?;
        (t < self.end_of(i) - 1e-6).then_some(i)
    }

    /// The playhead, in seconds.
    pub fn current_time(&self) -> f64 {
        let clock = self.clock.borrow();
        let t = if clock.running {
            clock.media_base + (self.ctx.current_time() - clock.ctx_base).max(0.0)
        } else {
            clock.media_base
        };
        t.min(self.duration())
    }

    /// Whether playback is paused (not wanted), as `element.paused` would say.
    pub fn paused(&self) -> bool {
        !self.clock.borrow().want_play
    }

    /// Whether a seek has not yet resumed.
    pub fn seeking(&self) -> bool {
        self.clock.borrow().seeking
    }

    /// End of the run of held segments from `t`, or `t` when `t` is not held.
    pub fn buffered_until(&self, t: f64) -> f64 {
        let held = self.held.borrow();
        let Some(mut i) = self.segment_at(t) else { return t };
        let mut end = t;
        while held.contains_key(&i) {
            end = self.end_of(i);
            i += 1;
        }
        end
    }

    /// Decodes segment `index` and holds it until it is played. Its successor, if held already
    /// without the pre-roll this one provides, is decoded again with it.
    pub fn append(&self, index: usize, bytes: &[u8]) -> Result<(), Error> {
        if index >= self.starts.len() {
            return Err(Error::Media(format!("segment {index} is beyond the track")));
        }
        self.evict();
        let bytes: Rc<[u8]> = bytes.into();
        let previous = index.checked_sub(1).and_then(|p| self.held.borrow().get(&p).map(|h| h.bytes.clone()));
        let started = web_time::Instant::now();
        let pcm = decode_segment(&self.codec, &bytes, previous.as_deref())
            .map_err(|source| Error::Decode { index, source })?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (n, total, longest) = self.decoded.get();
        self.decoded.set((n + 1, total + ms, longest.max(ms)));
        let next_unprimed = self.held.borrow().get(&(index + 1)).is_some_and(|h| !h.primed);
        if next_unprimed {
            let next = self.held.borrow()[&(index + 1)].bytes.clone();
            if let Ok(pcm) = decode_segment(&self.codec, &next, Some(&bytes)) {
                self.held.borrow_mut().insert(index + 1, Held { bytes: next, pcm, primed: true });
            }
        }
        self.held.borrow_mut().insert(index, Held { bytes, pcm, primed: previous.is_some() });
        self.tick();
        Ok(())
    }

    /// Drops segments that ended more than [`KEEP_BEHIND_SECS`] ago, and the farthest ones
    /// beyond [`MAX_HELD`].
    fn evict(&self) {
        let now = self.current_time();
        let mut held = self.held.borrow_mut();
        held.retain(|i, _| self.starts[*i] + self.durations[*i] >= now - KEEP_BEHIND_SECS);
        while held.len() >= MAX_HELD {
            let Some(far) = held
                .keys()
                .copied()
                .max_by(|a, b| (self.starts[*a] - now).abs().total_cmp(&(self.starts[*b] - now).abs()))
            else {
                break;
            };
            held.remove(&far);
        }
    }

    /// Starts playback (a promise, like `element.play()`).
    pub fn play(&self) -> js_sys::Promise {
        {
            let mut clock = self.clock.borrow_mut();
            clock.want_play = true;
            if clock.ended {
                clock.ended = false;
                clock.media_base = 0.0;
            }
        }
        let resumed = self.ctx.resume().unwrap_or_else(|e| js_sys::Promise::reject(&e));
        self.tick();
        resumed
    }

    /// Pauses playback where it is.
    pub fn pause(&self) {
        let now = self.current_time();
        self.stop_nodes();
        let mut clock = self.clock.borrow_mut();
        clock.media_base = now;
        clock.running = false;
        clock.want_play = false;
    }

    /// Moves the playhead to `t` seconds (clamped to the track).
    pub fn seek(&self, t: f64) {
        let t = if t.is_finite() { t.clamp(0.0, self.duration()) } else { 0.0 };
        self.stop_nodes();
        {
            let mut clock = self.clock.borrow_mut();
            clock.media_base = t;
            clock.running = false;
            clock.seeking = true;
            clock.ended = false;
        }
        (self.on_event)(ClockEvent::Seeking);
        self.tick();
    }

    /// Looks at the clock: starts playback when it is wanted and the audio is here, stops it
    /// when the scheduled audio ran out, schedules what comes next, notices the end.
    pub fn tick(&self) {
        let now = self.current_time();
        let (running, want_play, until) = {
            let clock = self.clock.borrow();
            (clock.running, clock.want_play, clock.scheduled_until)
        };
        if running {
            if now >= self.duration() - 1e-3 {
                self.stop_nodes();
                *self.clock.borrow_mut() = Clock { media_base: self.duration(), ended: true, ..Clock::default() };
                (self.on_event)(ClockEvent::Ended);
            } else if now >= until - 1e-3 {
                // The scheduled audio ran out. Stand where it ended, and go on from there at
                // once if the next segment came meanwhile (a gap rather than a skip).
                self.stop_nodes();
                {
                    let mut clock = self.clock.borrow_mut();
                    clock.running = false;
                    clock.media_base = until;
                }
                if self.has_audio_at(until) {
                    self.start(until);
                } else {
                    (self.on_event)(ClockEvent::Waiting);
                }
            } else {
                self.schedule_ahead();
            }
        } else if want_play && !self.clock.borrow().ended && self.has_audio_at(now) {
            self.start(now);
        }
    }

    fn has_audio_at(&self, t: f64) -> bool {
        self.segment_at(t).is_some_and(|i| self.held.borrow().contains_key(&i))
    }

    /// Starts playback at media time `t`, which is held.
    fn start(&self, t: f64) {
        self.stop_nodes();
        let Some(index) = self.segment_at(t) else { return };
        {
            let mut clock = self.clock.borrow_mut();
            clock.media_base = t;
            clock.ctx_base = self.ctx.current_time() + START_LEAD_SECS;
            clock.running = true;
            clock.seeking = false;
            clock.scheduled_until = self.starts[index];
            clock.next = index;
        }
        if let Err(e) = self.schedule(index, t - self.starts[index]) {
            tracing::warn!(error = %e, index, "a segment could not be scheduled");
        }
        self.schedule_ahead();
        (self.on_event)(ClockEvent::Playing);
    }

    /// Schedules held segments that follow the scheduled audio without a gap, up to
    /// [`SCHEDULE_AHEAD_SECS`] ahead of the playhead.
    fn schedule_ahead(&self) {
        let horizon = self.current_time() + SCHEDULE_AHEAD_SECS;
        loop {
            let next = self.clock.borrow().next;
            if next >= self.starts.len() || self.starts[next] > horizon || !self.held.borrow().contains_key(&next) {
                return;
            }
            if let Err(e) = self.schedule(next, 0.0) {
                tracing::warn!(error = %e, index = next, "a segment could not be scheduled");
                return;
            }
        }
    }

    /// Puts segment `index` on the audio graph, `offset` seconds into it, at its place.
    fn schedule(&self, index: usize, offset: f64) -> Result<(), Error> {
        let media = |e: JsValue| Error::Media(describe(&e));
        let held = self.held.borrow();
        let Some(segment) = held.get(&index) else { return Ok(()) };
        let pcm = &segment.pcm;
        let frames = u32::try_from(pcm.frames()).map_err(|_| Error::Media("segment too long".into()))?;
        let buffer =
            self.ctx.create_buffer(pcm.channels.len() as u32, frames.max(1), pcm.rate as f32).map_err(media)?;
        for (c, channel) in pcm.channels.iter().enumerate() {
            buffer.copy_to_channel(channel, c as i32).map_err(media)?;
        }
        drop(held);
        let node = self.ctx.create_buffer_source().map_err(media)?;
        node.set_buffer(Some(&buffer));
        node.connect_with_audio_node(&self.ctx.destination()).map_err(media)?;
        let (ctx_base, media_base) = {
            let clock = self.clock.borrow();
            (clock.ctx_base, clock.media_base)
        };
        let when = ctx_base + (self.starts[index] + offset - media_base);
        node.start_with_when_and_grain_offset(when.max(0.0), offset).map_err(media)?;
        // A node that ends is where a stall would begin: look at the clock then.
        let this = self.this.clone();
        let ended = Closure::<dyn FnMut()>::new(move || {
            if let Some(out) = this.upgrade() {
                out.tick();
            }
        });
        as_scheduled(&node).set_onended(Some(ended.as_ref().unchecked_ref()));
        self.scheduled.borrow_mut().push((index, node, ended));
        let mut clock = self.clock.borrow_mut();
        clock.scheduled_until = self.end_of(index);
        clock.next = index + 1;
        drop(clock);
        // Nodes that finished are released.
        let now = self.current_time();
        self.scheduled.borrow_mut().retain(|(i, node, _)| {
            let keep = self.end_of(*i) >= now - 1.0;
            if !keep {
                as_scheduled(node).set_onended(None);
            }
            keep
        });
        Ok(())
    }

    fn stop_nodes(&self) {
        for (_, node, _) in self.scheduled.borrow_mut().drain(..) {
            as_scheduled(&node).set_onended(None);
            let _ = as_scheduled(&node).stop();
            node.disconnect().ok();
        }
    }

    /// Segments decoded so far, their mean and their longest decode time in milliseconds.
    pub fn decode_times(&self) -> (u32, f64, f64) {
        let (n, total, longest) = self.decoded.get();
        (n, if n == 0 { 0.0 } else { total / f64::from(n) }, longest)
    }
}

/// The node as the `AudioScheduledSourceNode` it is (where `onended` and `stop` live).
fn as_scheduled(node: &AudioBufferSourceNode) -> &AudioScheduledSourceNode {
    node
}

impl Drop for AudioOut {
    fn drop(&mut self) {
        self.stop_nodes();
        let _ = self.ctx.close();
    }
}
