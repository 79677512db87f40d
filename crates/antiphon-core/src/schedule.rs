//! The player's scheduler: which segment to fetch next, from which source, and when to ask a
//! second source.
//!
//! It keeps a window of segments ahead of the playhead and fetches them in deadline order (a
//! segment's deadline is when the playhead reaches it). Each source (creator node, peer that
//! answered HAVE, HTTP gateway) has a score: the time it is expected to take for a segment,
//! from its measured latency and throughput plus a penalty per recent failure. Browser peers
//! are asked first whenever they can meet the deadline, since the node's bytes are what the
//! platform pays for; the node takes what is urgent or what no peer has (see
//! `Scheduler::best_source`). A request that
//! runs late for its deadline is hedged to the next best source; a request that makes no
//! progress for too long is abandoned and its source penalised; a source that sent bytes that
//! failed verification is banned for the scheduler's life. Until playback has started, once the
//! playhead's segment is in, nothing more is fetched for a short while: the element starting to
//! play needs the same (browser main) thread that receives and verifies blocks.
//!
//! The scheduler does no I/O and reads no clock: the caller passes the time in, performs the
//! [`Action`]s it returns and reports outcomes. So it behaves the same in the browser and in
//! native tests, and every decision can be tested.

use std::time::Duration;

/// A source of segments, as the caller numbered it with [`Scheduler::add_source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// What kind of source it is; sets the prior expectations before anything is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A creator node reached over libp2p.
    CreatorNode,
    /// Another listener's browser that answered HAVE.
    Peer,
    /// An HTTP trustless gateway.
    Gateway,
}

impl SourceKind {
    /// (latency, bytes per second) assumed until measured.
    fn prior(self) -> (Duration, f64) {
        match self {
            Self::CreatorNode => (Duration::from_millis(100), 2e6),
            Self::Peer => (Duration::from_millis(200), 1e6),
            Self::Gateway => (Duration::from_millis(250), 2e6),
        }
    }
}

/// Tuning; the defaults are what the player uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seconds of audio kept fetched ahead of the playhead.
    pub window_secs: f64,
    /// Requests one source serves at once.
    pub per_source: usize,
    /// Requests in flight in all.
    pub total: usize,
    /// A request is hedged when its expected finish leaves less than this before its deadline.
    pub hedge_margin: Duration,
    /// A request is also hedged, whatever its deadline, once it has run this many times its
    /// source's expected time (plus [`Config::overdue_grace`]): its source may be gone.
    pub overdue_factor: f64,
    /// Added to the overdue threshold, so that fast sources are not hedged over jitter.
    pub overdue_grace: Duration,
    /// A request that has made no progress for this long is abandoned.
    pub stall: Duration,
    /// Added to a source's expected time per failure, decaying as it succeeds.
    pub failure_penalty: Duration,
    /// Before playback has started ([`Scheduler::playback_started`]), once the playhead's
    /// segment is fetched and playback is asked for (a rate above 0), new fetches wait at most
    /// this long for it to start.
    pub start_hold: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            window_secs: 30.0,
            per_source: 2,
            total: 6,
            hedge_margin: Duration::from_millis(1500),
            overdue_factor: 4.0,
            overdue_grace: Duration::from_secs(1),
            stall: Duration::from_secs(8),
            failure_penalty: Duration::from_millis(750),
            start_hold: Duration::from_millis(250),
        }
    }
}

/// What the caller should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fetch `segment` from `source`.
    Fetch {
        /// Segment index.
        segment: usize,
        /// From whom.
        source: SourceId,
        /// Whether another source is already fetching it (a hedge).
        hedge: bool,
    },
    /// Stop fetching `segment` from `source` (done elsewhere, out of the window, or stalled).
    Cancel {
        /// Segment index.
        segment: usize,
        /// From whom.
        source: SourceId,
    },
    /// `source` is banned: it sent bytes that did not verify.
    Banned {
        /// The source.
        source: SourceId,
    },
}

/// Why a fetch failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The source does not have it, refused, or the connection failed.
    Unavailable,
    /// The bytes did not hash to the CID: the source is banned.
    Corrupt,
}

#[derive(Debug)]
struct Source {
    kind: SourceKind,
    banned: bool,
    /// Disconnected: not asked until it is back ([`Scheduler::set_connected`]).
    gone: bool,
    latency: Duration,
    bytes_per_sec: f64,
    failures: u32,
    in_flight: usize,
    /// The segments it said it holds (HAVE), once it tells ([`Scheduler::peer_holds`]);
    /// `None` while unknown: it is asked like any source, and a DONT_HAVE cools it.
    holds: Option<Vec<bool>>,
}

impl Source {
    /// Whether it may hold `segment`: it said so, or it has not said what it holds.
    fn may_hold(&self, segment: usize) -> bool {
        self.holds.as_ref().is_none_or(|h| h.get(segment).copied().unwrap_or(false))
    }

    /// Whether it said it holds a segment after `segment`: it is ahead, and will likely hold
    /// `segment` too before long.
    fn ahead_of(&self, segment: usize) -> bool {
        self.holds.as_ref().is_some_and(|h| h.iter().skip(segment + 1).any(|x| *x))
    }

    fn expected(&self, bytes: u64, penalty: Duration) -> Duration {
        self.latency + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec.max(1.0)) + penalty * self.failures
    }
}

#[derive(Debug, Clone, Copy)]
struct Attempt {
    source: SourceId,
    started: Duration,
    progress: Duration,
}

#[derive(Debug, Default)]
struct Segment {
    done: bool,
    attempts: Vec<Attempt>,
    /// Sources that failed this segment; not asked again for it.
    failed: Vec<SourceId>,
    /// Peers that did not have this segment, and when they may be asked again: a listener
    /// ahead of this one fetches it later.
    peer_retry: Vec<(SourceId, Duration)>,
}

/// The scheduler of one track. Times are offsets from any fixed origin the caller chooses.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    starts: Vec<f64>,
    bytes: Vec<u64>,
    segments: Vec<Segment>,
    sources: Vec<Source>,
    /// Media time of the playhead, and the wall time it was there.
    playhead: (f64, Duration),
    /// Media seconds per wall second: the playback rate, 0 when paused.
    rate: f64,
    /// Whether playback has started since the scheduler was made.
    started: bool,
    /// When new fetches began to wait for playback to start (see [`Config::start_hold`]).
    held_since: Option<Duration>,
    /// Browser peers are being looked up (see [`Scheduler::await_peers`]).
    awaiting_peers: bool,
}

/// How long after asking a browser peer that lacked a segment it may be asked again.
pub const PEER_RETRY: Duration = Duration::from_secs(2);

/// Weight of a new measurement in the moving averages.
const EWMA: f64 = 0.3;

impl Scheduler {
    /// A scheduler for segments of `durations_secs` seconds and `bytes` bytes each.
    pub fn new(durations_secs: &[f64], bytes: &[u64], config: Config) -> Self {
        let mut starts = Vec::with_capacity(durations_secs.len());
        let mut t = 0.0;
        for d in durations_secs {
            starts.push(t);
            t += d;
        }
        Self {
            config,
            starts,
            bytes: bytes.to_vec(),
            segments: durations_secs.iter().map(|_| Segment::default()).collect(),
            sources: Vec::new(),
            playhead: (0.0, Duration::ZERO),
            rate: 0.0,
            started: false,
            held_since: None,
            awaiting_peers: false,
        }
    }

    /// Adds a source; returns its id.
    pub fn add_source(&mut self, kind: SourceKind) -> SourceId {
        let (latency, bytes_per_sec) = kind.prior();
        self.sources.push(Source {
            kind,
            banned: false,
            gone: false,
            latency,
            bytes_per_sec,
            failures: 0,
            in_flight: 0,
            holds: None,
        });
        SourceId(self.sources.len() as u32 - 1)
    }

    /// `source` tells what it holds from now on: until it says HAVE for a segment, it is taken
    /// not to hold it, and is not asked for it.
    pub fn holdings_known(&mut self, source: SourceId) {
        let segments = self.segments.len();
        if let Some(s) = self.sources.get_mut(source.0 as usize)
            && s.holds.is_none()
        {
            s.holds = Some(vec![false; segments]);
        }
    }

    /// `source` holds `segment` (it said HAVE): it is asked for it when there is time.
    pub fn peer_holds(&mut self, source: SourceId, segment: usize) {
        self.holdings_known(source);
        if let Some(h) = self.sources.get_mut(source.0 as usize).and_then(|s| s.holds.as_mut())
            && let Some(x) = h.get_mut(segment)
        {
            *x = true;
        }
    }

    /// Whether `source` is connected. A source that is not is never asked; requests already
    /// running at it fail or stall on their own.
    pub fn set_connected(&mut self, source: SourceId, connected: bool) {
        if let Some(s) = self.sources.get_mut(source.0 as usize) {
            s.gone = !connected;
        }
    }

    /// Whether `source` is banned.
    pub fn is_banned(&self, source: SourceId) -> bool {
        self.sources.get(source.0 as usize).is_some_and(|s| s.banned)
    }

    /// The kind of `source`.
    pub fn kind(&self, source: SourceId) -> Option<SourceKind> {
        self.sources.get(source.0 as usize).map(|s| s.kind)
    }

    /// Whether every segment is fetched.
    pub fn is_complete(&self) -> bool {
        self.segments.iter().all(|s| s.done)
    }

    /// Whether `segment` is fetched.
    pub fn is_done(&self, segment: usize) -> bool {
        self.segments.get(segment).is_some_and(|s| s.done)
    }

    /// The segment that holds media time `secs`.
    pub fn segment_at(&self, secs: f64) -> usize {
        self.starts.partition_point(|s| *s <= secs).saturating_sub(1)
    }

    /// Reports where the playhead is at wall time `now` and how fast it moves (the playback
    /// rate; 0 when paused). A jump (seek) cancels requests for segments now outside the
    /// window.
    pub fn set_playhead(&mut self, secs: f64, rate: f64, now: Duration) -> Vec<Action> {
        self.playhead = (secs, now);
        self.rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
        let window = self.window();
        let mut out = Vec::new();
        for (i, seg) in self.segments.iter_mut().enumerate() {
            if seg.done || window.contains(&i) {
                continue;
            }
            for a in seg.attempts.drain(..) {
                self.sources[a.source.0 as usize].in_flight -= 1;
                out.push(Action::Cancel { segment: i, source: a.source });
            }
        }
        out
    }

    /// Whether browser peers are being looked up. While they are and none is a source yet, a
    /// segment with time to spare (twice [`Config::hedge_margin`] beyond the fastest source's
    /// expected time) waits for them instead of going to the node.
    pub fn await_peers(&mut self, yes: bool) {
        self.awaiting_peers = yes;
    }

    /// Playback has started: fetches held for it (see [`Config::start_hold`]) go ahead.
    pub fn playback_started(&mut self) {
        self.started = true;
    }

    /// Whether new fetches wait for playback to start: it has not, it is asked for, and the
    /// playhead's segment is in; for at most [`Config::start_hold`].
    fn holding(&mut self, now: Duration) -> bool {
        let waiting = !self.started && self.rate > 0.0 && self.is_done(self.segment_at(self.playhead.0));
        if !waiting {
            return false;
        }
        let since = *self.held_since.get_or_insert(now);
        now < since + self.config.start_hold
    }

    /// Segments the window covers: from the playhead's to the last starting within
    /// `window_secs` after it.
    fn window(&self) -> std::ops::Range<usize> {
        let first = self.segment_at(self.playhead.0);
        let end = self.starts.partition_point(|s| *s < self.playhead.0 + self.config.window_secs);
        first..end.max(first + 1).min(self.segments.len())
    }

    /// Wall time at which the playhead reaches `segment` (far away when paused).
    fn deadline(&self, segment: usize) -> Duration {
        let (secs, at) = self.playhead;
        let ahead = (self.starts[segment] - secs).max(0.0);
        if self.rate > 0.0 {
            at + Duration::from_secs_f64((ahead / self.rate).min(3600.0))
        } else {
            at + Duration::from_secs(3600)
        }
    }

    /// Where `segment` goes now, among the sources not excluded by `skip`, or `None` to wait.
    ///
    /// The cost model: a creator node's or gateway's bytes are the platform's egress, a
    /// listener's upload is free. So a segment goes to a browser peer whenever that can still
    /// meet its deadline: when the peer's expected time plus [`Config::hedge_margin`] fits
    /// before it. Among peers with room, the least loaded (then the fastest) is asked, which
    /// spreads requests over uploaders. A segment with time to spare whose peers are all busy
    /// waits for one rather than going to the node; as its deadline nears it becomes urgent.
    /// An urgent segment (the playhead's, as at the start or after a seek; a hedge; one whose
    /// deadline no peer can meet) and one no peer can serve go to the source expected to
    /// finish first, whatever its kind.
    fn best_source(
        &self,
        segment: usize,
        skip: &[SourceId],
        cooling: &[SourceId],
        now: Duration,
        hedge: bool,
    ) -> Option<SourceId> {
        let bytes = self.bytes[segment];
        let penalty = self.config.failure_penalty;
        let usable = || {
            self.sources
                .iter()
                .enumerate()
                .map(|(i, s)| (SourceId(i as u32), s))
                .filter(|(id, s)| !s.banned && !s.gone && !skip.contains(id) && s.may_hold(segment))
        };
        let urgent = hedge || segment == self.segment_at(self.playhead.0);
        let deadline = self.deadline(segment);
        if !urgent {
            let in_time = |s: &Source| now + s.expected(bytes, penalty) + self.config.hedge_margin < deadline;
            let peers: Vec<(SourceId, &Source)> =
                usable().filter(|(_, s)| s.kind == SourceKind::Peer && in_time(s)).collect();
            if !peers.is_empty() {
                return peers
                    .iter()
                    .filter(|(_, s)| s.in_flight < self.config.per_source)
                    .min_by_key(|(_, s)| (s.in_flight, s.expected(bytes, penalty)))
                    .map(|(id, _)| *id);
            }
            // Peers may yet serve it: being looked up, one that lacked it asked again soon, or
            // one ahead of it that will have it. With none of those, this listener is at the
            // front: the node sends it now, and the listeners behind get it from here.
            let live = |s: &&Source| s.kind == SourceKind::Peer && !s.banned && !s.gone;
            let no_peers = !self.sources.iter().any(|s| live(&s));
            let cooling_live = cooling.iter().any(|id| self.sources.get(id.0 as usize).is_some_and(|s| !s.gone));
            let ahead = self.sources.iter().filter(live).any(|s| s.ahead_of(segment));
            let later = (self.awaiting_peers && no_peers) || cooling_live || ahead;
            let fastest = usable().map(|(_, s)| s.expected(bytes, penalty)).min();
            if later && fastest.is_some_and(|f| now + f + self.config.hedge_margin * 2 < deadline) {
                return None;
            }
        }
        usable()
            .filter(|(_, s)| s.in_flight < self.config.per_source)
            .min_by_key(|(_, s)| s.expected(bytes, penalty))
            .map(|(id, _)| id)
    }

    /// What to start or stop now: new fetches in deadline order, hedges for late requests,
    /// cancellations of stalled ones. No new fetch or hedge while waiting for playback to start
    /// ([`Config::start_hold`]).
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        // Stalled requests are abandoned and their sources penalised.
        for (i, seg) in self.segments.iter_mut().enumerate() {
            let stall = self.config.stall;
            let (stalled, kept): (Vec<Attempt>, Vec<Attempt>) =
                seg.attempts.drain(..).partition(|a| now.saturating_sub(a.progress) >= stall);
            seg.attempts = kept;
            for a in stalled {
                let source = &mut self.sources[a.source.0 as usize];
                source.in_flight -= 1;
                source.failures += 1;
                seg.failed.push(a.source);
                out.push(Action::Cancel { segment: i, source: a.source });
            }
        }
        if self.holding(now) {
            return out;
        }
        let mut in_flight: usize = self.sources.iter().map(|s| s.in_flight).sum();
        for i in self.window() {
            if in_flight >= self.config.total {
                break;
            }
            if self.segments[i].done {
                continue;
            }
            let trying: Vec<SourceId> = self.segments[i].attempts.iter().map(|a| a.source).collect();
            let mut skip = trying.clone();
            skip.extend(&self.segments[i].failed);
            self.segments[i].peer_retry.retain(|(_, at)| *at > now);
            let cooling: Vec<SourceId> = self.segments[i].peer_retry.iter().map(|(id, _)| *id).collect();
            skip.extend(&cooling);
            let hedge = match self.segments[i].attempts.iter().map(|a| a.started).min() {
                None => false,
                Some(started) => {
                    // Late: the running request's expected finish (never before now) is within
                    // the margin of the deadline; or it has run far longer than its source
                    // usually takes.
                    let source = &self.sources[trying[0].0 as usize];
                    let expected = source.expected(self.bytes[i], self.config.failure_penalty);
                    let finish = (started + expected).max(now);
                    let overdue = now.saturating_sub(started)
                        > expected.mul_f64(self.config.overdue_factor) + self.config.overdue_grace;
                    let late = finish + self.config.hedge_margin >= self.deadline(i);
                    if trying.len() >= 2 || !(late || overdue) {
                        continue;
                    }
                    true
                }
            };
            let every_source_failed = self
                .sources
                .iter()
                .enumerate()
                .all(|(id, s)| s.banned || self.segments[i].failed.contains(&SourceId(id as u32)));
            if every_source_failed && !hedge && trying.is_empty() {
                // Every usable source failed this segment once: try them again rather than stall.
                self.segments[i].failed.clear();
                skip.clear();
            }
            let Some(source) = self.best_source(i, &skip, &cooling, now, hedge) else { continue };
            self.sources[source.0 as usize].in_flight += 1;
            self.segments[i].attempts.push(Attempt { source, started: now, progress: now });
            in_flight += 1;
            out.push(Action::Fetch { segment: i, source, hedge });
        }
        out
    }

    /// `source` delivered some bytes of `segment` (resets its stall timer).
    pub fn on_progress(&mut self, segment: usize, source: SourceId, now: Duration) {
        if let Some(a) = self.segments.get_mut(segment).and_then(|s| s.attempts.iter_mut().find(|a| a.source == source))
        {
            a.progress = now;
        }
    }

    /// `source` delivered all of `segment`, verified. Cancels the other attempts at it.
    pub fn on_success(&mut self, segment: usize, source: SourceId, now: Duration) -> Vec<Action> {
        let Some(seg) = self.segments.get_mut(segment) else { return Vec::new() };
        let mut out = Vec::new();
        for a in seg.attempts.drain(..) {
            let s = &mut self.sources[a.source.0 as usize];
            s.in_flight -= 1;
            if a.source == source {
                let took = now.saturating_sub(a.started).max(Duration::from_millis(1));
                // Split the time into latency and transfer with the current throughput
                // estimate, and fold both into the averages.
                let bytes = self.bytes[segment] as f64;
                let transfer = (bytes / s.bytes_per_sec).min(took.as_secs_f64());
                let latency = took.as_secs_f64() - transfer;
                s.latency = Duration::from_secs_f64(s.latency.as_secs_f64() * (1.0 - EWMA) + latency * EWMA);
                let rate = bytes / took.as_secs_f64();
                s.bytes_per_sec = s.bytes_per_sec * (1.0 - EWMA) + rate * EWMA;
                s.failures = s.failures.saturating_sub(1);
            } else {
                out.push(Action::Cancel { segment, source: a.source });
            }
        }
        seg.done = true;
        out
    }

    /// `segment` was fetched and verified elsewhere (a page's bootstrap fetched it before the
    /// player ran): it is not asked for. Cancels any attempt at it.
    pub fn mark_done(&mut self, segment: usize) -> Vec<Action> {
        let Some(seg) = self.segments.get_mut(segment) else { return Vec::new() };
        let mut out = Vec::new();
        for a in seg.attempts.drain(..) {
            self.sources[a.source.0 as usize].in_flight -= 1;
            out.push(Action::Cancel { segment, source: a.source });
        }
        seg.done = true;
        out
    }

    /// `source` failed `segment`. A corrupt delivery bans the source. A browser peer that did
    /// not have it may be asked again [`PEER_RETRY`] after the request began (it may fetch it
    /// meanwhile), unpenalised: lacking a segment is not being slow. Any other source is
    /// penalised and not asked for this segment again until every other source has failed it
    /// too.
    pub fn on_failure(&mut self, segment: usize, source: SourceId, failure: Failure) -> Vec<Action> {
        let mut out = Vec::new();
        let lacked = failure == Failure::Unavailable && self.kind(source) == Some(SourceKind::Peer);
        if let Some(seg) = self.segments.get_mut(segment)
            && let Some(pos) = seg.attempts.iter().position(|a| a.source == source)
        {
            let attempt = seg.attempts.remove(pos);
            if lacked {
                seg.peer_retry.push((source, attempt.started + PEER_RETRY));
            } else {
                seg.failed.push(source);
            }
            self.sources[source.0 as usize].in_flight -= 1;
        }
        let s = &mut self.sources[source.0 as usize];
        match failure {
            Failure::Unavailable if lacked => {}
            Failure::Unavailable => s.failures += 1,
            Failure::Corrupt => {
                if self.ban(source) {
                    out.push(Action::Banned { source });
                }
            }
        }
        out
    }

    /// Bans `source`, caught sending bytes that do not verify (here or, by a page's bootstrap,
    /// before the scheduler was made): it is never asked again. Requests already running at it
    /// may finish: their blocks are verified one by one like anyone else's. `false` if it was
    /// banned already.
    pub fn ban(&mut self, source: SourceId) -> bool {
        match self.sources.get_mut(source.0 as usize) {
            Some(s) if !s.banned => {
                s.banned = true;
                true
            }
            _ => false,
        }
    }

    /// Sources that are not banned.
    pub fn usable_sources(&self) -> usize {
        self.sources.iter().filter(|s| !s.banned).count()
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A scheduler of `n` 6 s segments whose playback has already started (the wait for the
    /// start has tests of its own).
    fn sched(n: usize) -> Scheduler {
        let mut s = Scheduler::new(&vec![6.0; n], &vec![100_000; n], Config::default());
        s.playback_started();
        s
    }

    /// A started scheduler of 20 segments with a creator node and a browser peer, playing
    /// from 0 at wall time 0.
    fn node_and_peer_playing() -> (Scheduler, SourceId, SourceId) {
        let mut s = sched(20);
        let node = s.add_source(SourceKind::CreatorNode);
        let peer = s.add_source(SourceKind::Peer);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        (s, node, peer)
    }

    fn fetches(actions: &[Action]) -> Vec<(usize, u32, bool)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Fetch { segment, source, hedge } => Some((*segment, source.0, *hedge)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fetches_the_window_in_deadline_order_within_the_limits() {
        let mut s = sched(20);
        let node = s.add_source(SourceKind::CreatorNode);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        // One source, two at a time: segments 0 and 1 first.
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, 0, false), (1, 0, false)]);
        assert!(s.poll(10 * MS).is_empty(), "the source is busy");
        assert!(s.on_success(0, node, 200 * MS).is_empty());
        assert_eq!(fetches(&s.poll(200 * MS)), vec![(2, 0, false)]);
        // The window is 30 s of 6 s segments: never past segment 4 while the playhead is at 0.
        for t in 0..10u32 {
            for a in s.poll((300 + t) * MS) {
                if let Action::Fetch { segment, .. } = a {
                    assert!(segment < 5);
                    s.on_success(segment, node, (301 + t) * MS);
                }
            }
            let _ = s.on_success(1, node, (300 + t) * MS);
            let _ = s.on_success(2, node, (300 + t) * MS);
        }
        assert!((0..5).all(|i| s.is_done(i)));
        assert!(!s.is_done(5));
    }

    #[test]
    fn segments_a_bootstrap_fetched_are_not_asked_for_and_the_rest_follow_in_order() {
        let mut s = sched(20);
        let node = s.add_source(SourceKind::CreatorNode);
        assert!(s.mark_done(0).is_empty());
        assert!(s.mark_done(1).is_empty());
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(2, 0, false), (3, 0, false)]);
        // Marked while a fetch of it runs: the fetch is cancelled.
        assert_eq!(s.mark_done(2), vec![Action::Cancel { segment: 2, source: node }]);
        assert!(s.is_done(2));
        assert!(s.mark_done(99).is_empty(), "an index past the track is ignored");
        // A source the bootstrap caught sending bad bytes is banned before it is asked.
        let gateway = s.add_source(SourceKind::Gateway);
        assert!(s.ban(gateway));
        assert!(!s.ban(gateway), "once");
        assert!(s.is_banned(gateway));
        assert_eq!(s.usable_sources(), 1);
    }

    #[test]
    fn the_faster_source_wins_once_measured() {
        let mut s = sched(40);
        let slow = s.add_source(SourceKind::CreatorNode);
        let fast = s.add_source(SourceKind::Gateway);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut served = [0usize; 2];
        for _ in 0..30 {
            for a in s.poll(now) {
                if let Action::Fetch { segment, source, .. } = a {
                    served[source.0 as usize] += 1;
                    let took = if source == slow { 900 * MS } else { 60 * MS };
                    s.on_success(segment, source, now + took);
                }
            }
            now += 100 * MS;
            let playhead = (now.as_secs_f64()).min(200.0);
            s.set_playhead(playhead, 1.0, now);
        }
        assert!(served[fast.0 as usize] > served[slow.0 as usize], "{served:?}");
    }

    #[test]
    fn a_corrupt_source_is_banned_and_the_segment_fetched_elsewhere() {
        let mut s = sched(3);
        let gateway = s.add_source(SourceKind::Gateway);
        let node = s.add_source(SourceKind::CreatorNode);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        let first = fetches(&s.poll(Duration::ZERO));
        // The creator node's prior is better: it gets segments 0 and 1, the gateway segment 2.
        assert_eq!(first, vec![(0, node.0, false), (1, node.0, false), (2, gateway.0, false)]);
        let actions = s.on_failure(2, gateway, Failure::Corrupt);
        assert_eq!(actions, vec![Action::Banned { source: gateway }]);
        assert!(s.is_banned(gateway));
        s.on_success(0, node, 100 * MS);
        assert_eq!(fetches(&s.poll(100 * MS)), vec![(2, node.0, false)], "refetched from the node");
        for t in 0..5 {
            assert!(fetches(&s.poll((200 + t) * MS)).iter().all(|(_, src, _)| *src != gateway.0), "never again");
        }
    }

    #[test]
    fn a_late_request_is_hedged_and_the_loser_cancelled() {
        let mut s = sched(3);
        let node = s.add_source(SourceKind::CreatorNode);
        let gateway = s.add_source(SourceKind::Gateway);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        assert_eq!(fetches(&s.poll(Duration::ZERO))[0], (0, node.0, false));
        // Segment 0's deadline is now: the running request is late, so it is hedged.
        let hedged = fetches(&s.poll(10 * MS));
        assert!(hedged.contains(&(0, gateway.0, true)), "{hedged:?}");
        let cancels = s.on_success(0, gateway, 80 * MS);
        assert_eq!(cancels, vec![Action::Cancel { segment: 0, source: node }]);
    }

    #[test]
    fn a_request_far_overdue_is_hedged_even_with_time_to_spare() {
        let mut s = sched(10);
        let node = s.add_source(SourceKind::CreatorNode);
        let gateway = s.add_source(SourceKind::Gateway);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        let _ = s.poll(Duration::ZERO);
        for seg in 0..4 {
            let _ = s.on_success(seg, if seg < 2 { node } else { gateway }, 50 * MS);
        }
        // Segment 5 (starts at 30 s) goes to the node, which then goes silent.
        let asked = fetches(&s.poll(100 * MS));
        assert!(asked.contains(&(4, node.0, false)), "{asked:?}");
        assert!(!fetches(&s.poll(500 * MS)).iter().any(|(seg, _, hedge)| *seg == 4 && *hedge), "not yet overdue");
        let later = fetches(&s.poll(Duration::from_secs(3)));
        assert!(later.contains(&(4, gateway.0, true)), "hedged long before its deadline at 24 s: {later:?}");
    }

    #[test]
    fn a_stalled_request_is_abandoned_and_retried_elsewhere() {
        // No hedging here: only the stall rule acts.
        let config = Config { hedge_margin: Duration::ZERO, overdue_factor: 1000.0, ..Config::default() };
        let mut s = Scheduler::new(&[6.0; 4], &[100_000; 4], config);
        let a = s.add_source(SourceKind::CreatorNode);
        let b = s.add_source(SourceKind::Peer);
        s.set_playhead(0.0, 0.0, Duration::ZERO);
        let first = fetches(&s.poll(Duration::ZERO));
        assert!(first.contains(&(0, a.0, false)));
        s.on_progress(0, a, Duration::from_secs(3));
        assert!(
            !s.poll(Duration::from_secs(10)).contains(&Action::Cancel { segment: 0, source: a }),
            "progress at 3 s"
        );
        let later = s.poll(Duration::from_secs(12));
        assert!(later.contains(&Action::Cancel { segment: 0, source: a }), "{later:?}");
        assert!(!fetches(&later).iter().any(|(seg, src, _)| *seg == 0 && *src == a.0), "not from the stalled source");
        // Once the other source has room, segment 0 goes to it.
        for seg in 1..4 {
            s.on_success(seg, b, Duration::from_secs(12));
        }
        let mut retried = fetches(&later);
        retried.extend(fetches(&s.poll(Duration::from_secs(12))));
        assert!(retried.contains(&(0, b.0, false)), "{retried:?}");
    }

    #[test]
    fn peers_take_what_they_can_serve_in_time_and_the_node_only_the_playhead_segment() {
        let (mut s, node, peer) = node_and_peer_playing();
        // Segment 0 is due now: the fastest source. Segments 1 and 2 have seconds to spare:
        // the peer, up to its two at a time. Segments 3 and 4 wait for the peer, not the node.
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, node.0, false), (1, peer.0, false), (2, peer.0, false)]);
        s.on_success(0, node, 150 * MS);
        assert!(fetches(&s.poll(150 * MS)).is_empty(), "the node is idle, yet nothing goes to it");
        s.on_success(1, peer, 300 * MS);
        assert_eq!(fetches(&s.poll(300 * MS)), vec![(3, peer.0, false)]);
    }

    #[test]
    fn requests_spread_over_peers_least_loaded_first() {
        let mut s = sched(20);
        let _node = s.add_source(SourceKind::CreatorNode);
        let (a, b) = (s.add_source(SourceKind::Peer), s.add_source(SourceKind::Peer));
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        let got = fetches(&s.poll(Duration::ZERO));
        assert_eq!(got[1..], [(1, a.0, false), (2, b.0, false), (3, a.0, false), (4, b.0, false)]);
    }

    #[test]
    fn a_segment_no_peer_can_deliver_in_time_goes_to_the_node() {
        let mut s = sched(20);
        let node = s.add_source(SourceKind::CreatorNode);
        let peer = s.add_source(SourceKind::Peer);
        // At 4.9 s segment 1 is due in 1.1 s: less than the peer's 0.3 s plus the margin.
        let now = Duration::from_millis(4900);
        s.set_playhead(4.9, 1.0, now);
        assert_eq!(
            fetches(&s.poll(now)),
            vec![(0, node.0, false), (1, node.0, false), (2, peer.0, false), (3, peer.0, false)]
        );
    }

    #[test]
    fn a_peer_that_lacks_a_segment_is_asked_again_and_the_node_takes_it_only_when_it_must() {
        let (mut s, node, peer) = node_and_peer_playing();
        assert!(fetches(&s.poll(Duration::ZERO)).contains(&(1, peer.0, false)));
        s.on_success(0, node, 100 * MS);
        s.on_failure(1, peer, Failure::Unavailable);
        // Segment 1 (due at 6 s) waits: the peer, ahead of us, may fetch it meanwhile.
        assert!(!fetches(&s.poll(100 * MS)).iter().any(|f| f.0 == 1), "not to the node yet");
        for segment in [2, 3] {
            s.on_success(segment, peer, Duration::from_secs(1));
        }
        assert!(fetches(&s.poll(Duration::from_secs(2))).contains(&(1, peer.0, false)), "asked again");
        s.on_failure(1, peer, Failure::Unavailable);
        // At 3 s it can wait no longer: 0.15 s for the node plus twice the margin reaches 6 s.
        assert!(fetches(&s.poll(Duration::from_secs(3))).contains(&(1, node.0, false)));
    }

    #[test]
    fn a_peer_that_says_what_it_holds_is_asked_only_for_that() {
        let (mut s, node, peer) = node_and_peer_playing();
        s.holdings_known(peer);
        s.peer_holds(peer, 2);
        let first = fetches(&s.poll(Duration::ZERO));
        // Segment 2 from the peer that holds it; segment 1 waits for it (it is ahead); nothing
        // it does not hold is asked of it.
        assert!(first.contains(&(2, peer.0, false)), "{first:?}");
        assert!(!first.iter().any(|f| f.1 == peer.0 && f.0 != 2), "{first:?}");
        assert!(!first.iter().any(|f| f.0 == 1), "{first:?}");
        s.on_success(0, node, 100 * MS);
        s.on_success(2, peer, 300 * MS);
        // It says HAVE for segment 1: asked at once, with no DONT_HAVE and retry in between.
        s.peer_holds(peer, 1);
        assert!(fetches(&s.poll(400 * MS)).contains(&(1, peer.0, false)));
    }

    #[test]
    fn a_listener_whose_peers_are_all_behind_it_takes_the_node_at_once() {
        let (mut s, node, peer) = node_and_peer_playing();
        // The peer holds only segment 0: it is behind, and nobody will bring segment 3 in
        // time for this listener to wait for it. Followers get it from here instead.
        s.holdings_known(peer);
        s.peer_holds(peer, 0);
        s.on_success(0, node, 100 * MS);
        s.on_success(1, node, 200 * MS);
        s.on_success(2, node, 300 * MS);
        let later = fetches(&s.poll(400 * MS));
        assert!(later.contains(&(3, node.0, false)), "{later:?}");
        assert!(!later.iter().any(|f| f.1 == peer.0), "{later:?}");
    }

    #[test]
    fn a_peer_request_running_late_is_hedged_to_the_node() {
        let (mut s, node, peer) = node_and_peer_playing();
        assert!(fetches(&s.poll(Duration::ZERO)).contains(&(1, peer.0, false)));
        s.on_success(0, node, 200 * MS);
        // At 4.6 s segment 1 (due at 6 s) is still coming from the peer: within the margin.
        let got = fetches(&s.poll(Duration::from_millis(4600)));
        assert!(got.contains(&(1, node.0, true)), "{got:?}");
    }

    #[test]
    fn while_peers_are_looked_up_only_what_cannot_wait_goes_to_the_node() {
        let mut s = sched(20);
        let node = s.add_source(SourceKind::CreatorNode);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        s.await_peers(true);
        // Segment 0 is due now; segment 1 (due at 6 s) can wait 6 - 0.15 - 3 s.
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, node.0, false)]);
        s.on_success(0, node, 150 * MS);
        assert!(fetches(&s.poll(Duration::from_secs(2))).is_empty());
        assert_eq!(fetches(&s.poll(Duration::from_secs(3))), vec![(1, node.0, false)], "it can wait no longer");
        // A peer arrives: what has time goes to it.
        let peer = s.add_source(SourceKind::Peer);
        assert_eq!(fetches(&s.poll(Duration::from_secs(3))), vec![(2, peer.0, false), (3, peer.0, false)]);
        // Nobody looked up: the node takes the window as before.
        let mut lone = sched(20);
        let n = lone.add_source(SourceKind::CreatorNode);
        lone.set_playhead(0.0, 1.0, Duration::ZERO);
        assert_eq!(fetches(&lone.poll(Duration::ZERO)), vec![(0, n.0, false), (1, n.0, false)], "nobody awaited");
    }

    #[test]
    fn a_peer_that_left_is_not_asked_or_waited_for() {
        let (mut s, node, peer) = node_and_peer_playing();
        assert!(fetches(&s.poll(Duration::ZERO)).contains(&(1, peer.0, false)));
        s.on_success(0, node, 100 * MS);
        s.on_failure(1, peer, Failure::Unavailable);
        s.on_failure(2, peer, Failure::Unavailable);
        s.set_connected(peer, false);
        let got = fetches(&s.poll(200 * MS));
        assert_eq!(got, vec![(1, node.0, false), (2, node.0, false)], "straight to the node");
        s.set_connected(peer, true);
        s.on_success(1, node, 300 * MS);
        assert_eq!(fetches(&s.poll(300 * MS)), vec![(3, peer.0, false), (4, peer.0, false)], "back");
    }

    #[test]
    fn a_seek_cancels_what_left_the_window_and_starts_at_the_target() {
        let mut s = sched(30);
        let node = s.add_source(SourceKind::CreatorNode);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, 0, false), (1, 0, false)]);
        let cancels = s.set_playhead(120.0, 1.0, 50 * MS);
        assert_eq!(
            cancels,
            vec![Action::Cancel { segment: 0, source: node }, Action::Cancel { segment: 1, source: node }]
        );
        assert_eq!(s.segment_at(120.0), 20);
        assert_eq!(fetches(&s.poll(60 * MS)), vec![(20, 0, false), (21, 0, false)]);
    }

    #[test]
    fn when_every_source_failed_a_segment_they_are_tried_again() {
        let mut s = sched(1);
        let node = s.add_source(SourceKind::CreatorNode);
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, 0, false)]);
        s.on_failure(0, node, Failure::Unavailable);
        assert_eq!(fetches(&s.poll(10 * MS)), vec![(0, 0, false)]);
        // A banned source is never retried, even as the last one.
        s.on_failure(0, node, Failure::Corrupt);
        assert!(s.poll(20 * MS).is_empty());
        assert_eq!(s.usable_sources(), 0);
    }

    /// A scheduler as the player makes it (one request per source, playback not started) with
    /// one creator node, the playhead at 0 moving at `rate`, and segment 0 fetched at 50 ms.
    fn first_segment_in(rate: f64) -> (Scheduler, SourceId) {
        let config = Config { per_source: 1, ..Config::default() };
        let mut s = Scheduler::new(&[6.0; 5], &[100_000; 5], config);
        let node = s.add_source(SourceKind::CreatorNode);
        s.set_playhead(0.0, rate, Duration::ZERO);
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, node.0, false)]);
        s.on_success(0, node, 50 * MS);
        (s, node)
    }

    #[test]
    fn before_playback_starts_the_next_fetch_waits_for_it_at_most_the_start_hold() {
        let (mut s, node) = first_segment_in(1.0);
        // Segment 0 is in and playback is asked for but has not started: nothing new goes out.
        assert!(s.poll(50 * MS).is_empty());
        assert!(s.poll(299 * MS).is_empty());
        // The hold is over: the window is fetched as usual.
        assert_eq!(fetches(&s.poll(300 * MS)), vec![(1, node.0, false)]);
    }

    #[test]
    fn playback_starting_ends_the_hold_at_once() {
        let (mut s, node) = first_segment_in(1.0);
        assert!(s.poll(60 * MS).is_empty());
        s.playback_started();
        assert_eq!(fetches(&s.poll(70 * MS)), vec![(1, node.0, false)]);
    }

    #[test]
    fn nothing_is_held_while_paused_or_while_the_playhead_segment_is_missing() {
        // Paused (rate 0): playback is not about to start, so fetching goes on.
        let (mut s, node) = first_segment_in(0.0);
        assert_eq!(fetches(&s.poll(60 * MS)), vec![(1, node.0, false)]);
        // A seek before the start, to a segment not yet fetched: it is fetched at once.
        let (mut s, node) = first_segment_in(1.0);
        s.set_playhead(13.0, 1.0, 60 * MS);
        assert_eq!(fetches(&s.poll(60 * MS)), vec![(2, node.0, false)]);
    }

    #[test]
    fn a_stalled_request_is_abandoned_even_during_the_hold() {
        let config = Config { per_source: 1, stall: Duration::from_millis(100), ..Config::default() };
        let mut s = Scheduler::new(&[6.0; 4], &[100_000; 4], config);
        let (a, b) = (s.add_source(SourceKind::CreatorNode), s.add_source(SourceKind::Gateway));
        s.set_playhead(0.0, 1.0, Duration::ZERO);
        // Segment 0 from the node, segment 1 from the gateway.
        assert_eq!(fetches(&s.poll(Duration::ZERO)), vec![(0, a.0, false), (1, b.0, false)]);
        s.on_success(0, a, 50 * MS);
        let actions = s.poll(150 * MS);
        assert_eq!(actions, vec![Action::Cancel { segment: 1, source: b }]);
    }
}
