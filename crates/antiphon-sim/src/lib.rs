//! A swarm simulator for Antiphon's offload: simulated listeners of one popular track, each
//! driving the player's real [`Scheduler`] (`antiphon_core::schedule`), fetch segments from the
//! creator node and from one another, and play them.
//!
//! Time moves in fixed steps. Listeners arrive as a Poisson process, part of them in a burst
//! when the track is new; each has an upload and a download capacity and a round-trip time
//! drawn from the distributions in [`Params`]; some leave mid-track (churn) and some are
//! behind a NAT no direct connection reaches (two such listeners never connect; one of them
//! and a reachable one do). A listener looks up at most [`Params::peers_per_listener`]
//! earlier listeners once its playback has started, as the browser does, and looks again
//! when all of them have left. A source's capacity is shared equally among the transfers it
//! runs; a peer that lacks a segment, or already uploads [`Params::uploads_at_once`], answers
//! after a round trip that it does not have it.
//!
//! Nothing reads a clock or the environment: the same [`Params`] give the same [`Report`].

pub mod rng;

use std::time::Duration;

use antiphon_core::schedule::{Action, Config, Failure, Scheduler, SourceId, SourceKind};
use rng::Rng;

/// What a run simulates. Rates are in bytes per second, times in seconds.
#[derive(Debug, Clone)]
pub struct Params {
    /// Listeners in all.
    pub listeners: usize,
    /// The random seed.
    pub seed: u64,
    /// Listeners arrive over this long.
    pub arrival_secs: f64,
    /// The share of listeners that arrive in the first [`Params::burst_secs`].
    pub burst_share: f64,
    /// The length of the opening burst.
    pub burst_secs: f64,
    /// The share of listeners that leave before the end, at a uniform time of their play.
    pub churn: f64,
    /// The share of listeners behind a NAT that no direct connection reaches.
    pub unreachable: f64,
    /// The creator node's egress capacity.
    pub node_egress: f64,
    /// Seconds of audio in the track.
    pub track_secs: f64,
    /// The audio's bytes per second (16 000: 128 kb/s).
    pub bytes_per_sec: f64,
    /// The first segment's seconds; each next one is twice as long up to 6 s, as the node's
    /// ingest cuts them (`antiphon_core::segment`): 1, 2, 4, 6, 6... With 0, all are 6 s.
    pub first_segment_secs: f64,
    /// Earlier listeners one listener connects to at most (0: no peers, the node serves all).
    pub peers_per_listener: usize,
    /// Uploads a listener serves at once at most (the browser's `upload.maxPeers`).
    pub uploads_at_once: usize,
    /// Bytes per second one upload gets at most (the browser's `upload.perPeerBytesPerSec`).
    pub per_peer_cap: f64,
    /// Listeners join this many seconds apart, in place of the burst and Poisson arrivals.
    pub join_every: Option<f64>,
    /// Every listener's upload and download, in place of the drawn capacities (bytes/s).
    pub link: Option<f64>,
    /// Every round trip, in place of the drawn ones (seconds).
    pub rtt: Option<f64>,
    /// Seconds from a listener's first audio to its connected peers.
    pub discovery_secs: f64,
    /// Connected peers tell each other what they hold (Bitswap HAVE as segments arrive), and
    /// discovery prefers peers ahead of the listener; without, peers are asked blindly.
    pub holdings: bool,
    /// The simulation step.
    pub step: f64,
}

impl Params {
    /// The track's segments: each one's seconds and bytes.
    pub fn layout(&self) -> Vec<(f64, u64)> {
        let target = antiphon_core::segment::TARGET_SEGMENT_SECS as f64;
        let mut next = if self.first_segment_secs > 0.0 { self.first_segment_secs.min(target) } else { target };
        let mut left = self.track_secs;
        let mut out = Vec::new();
        while left > 1e-9 {
            let secs = next.min(left);
            out.push((secs, (secs * self.bytes_per_sec).round() as u64));
            left -= secs;
            next = (next * 2.0).min(target);
        }
        out
    }
}

impl Default for Params {
    fn default() -> Self {
        Self {
            listeners: 100,
            seed: 1,
            arrival_secs: 120.0,
            burst_share: 0.5,
            burst_secs: 10.0,
            churn: 0.2,
            unreachable: 0.3,
            node_egress: 100e6 / 8.0,
            track_secs: 210.0,
            bytes_per_sec: 16_000.0,
            first_segment_secs: antiphon_core::segment::FIRST_SEGMENT_SECS as f64,
            peers_per_listener: 3,
            uploads_at_once: 4,
            per_peer_cap: 256.0 * 1024.0,
            join_every: None,
            link: None,
            rtt: None,
            discovery_secs: 1.0,
            holdings: true,
            step: 0.05,
        }
    }
}

/// Upload capacities (bytes/s) and their weights: home links, most of them asymmetric.
const UPLOAD: [(f64, f64); 5] =
    [(1e6 / 8.0, 0.15), (2e6 / 8.0, 0.2), (5e6 / 8.0, 0.3), (10e6 / 8.0, 0.2), (20e6 / 8.0, 0.15)];
/// Download capacities (bytes/s) and their weights.
const DOWNLOAD: [(f64, f64); 4] = [(10e6 / 8.0, 0.2), (25e6 / 8.0, 0.3), (50e6 / 8.0, 0.3), (100e6 / 8.0, 0.2)];
/// Round-trip times are uniform in this range (seconds), to the node and to peers alike.
const RTT: (f64, f64) = (0.02, 0.15);
/// How long a lookup's first answer may be waited for, from the load (the browser's
/// `AWAIT_PEERS_AT_MOST`).
const AWAIT_PEERS_SECS: f64 = 8.0;
/// Lookups made because every peer left are at least this far apart (the browser's).
const LOOK_UP_AGAIN_SECS: f64 = 10.0;

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Listeners simulated.
    pub listeners: usize,
    /// Bytes listeners got from the node.
    pub node_bytes: u64,
    /// Of those, the bytes of each listener's first segment (the start, which is urgent).
    pub node_first_segment_bytes: u64,
    /// Bytes listeners got from other listeners.
    pub peer_bytes: u64,
    /// Stalls after playback had started.
    pub rebuffers: u64,
    /// Hours of audio played, all listeners together.
    pub listener_hours: f64,
    /// Time from load to first audio, median and 95th percentile, in seconds.
    pub start_p50: f64,
    /// See [`Report::start_p50`].
    pub start_p95: f64,
}

impl Report {
    /// Bytes from peers over all bytes.
    pub fn offload(&self) -> f64 {
        let all = self.node_bytes + self.peer_bytes;
        if all == 0 { 0.0 } else { self.peer_bytes as f64 / all as f64 }
    }

    /// Rebuffers per listener-hour.
    pub fn rebuffers_per_hour(&self) -> f64 {
        if self.listener_hours == 0.0 { 0.0 } else { self.rebuffers as f64 / self.listener_hours }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Waiting,
    Active,
    Gone,
}

struct Listener {
    join: f64,
    leave_at: Option<f64>,
    reachable: bool,
    up: f64,
    down: f64,
    rtt: f64,
    phase: Phase,
    sched: Option<Scheduler>,
    node: SourceId,
    /// Peers this listener connected to: (listener index, its source id here).
    peers: Vec<(usize, SourceId)>,
    held: Vec<bool>,
    playhead: f64,
    started_at: Option<f64>,
    stalled: bool,
    rebuffers: u64,
    discovered: bool,
    last_lookup: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum From {
    Node,
    Peer(usize),
}

struct Transfer {
    to: usize,
    from: From,
    source: SourceId,
    segment: usize,
    remaining: f64,
    /// Bytes flow from then (a round trip after the request).
    starts: f64,
    /// The request fails then instead (the peer lacks the segment, is busy or left).
    fails_at: Option<f64>,
}

/// Runs one simulation.
pub fn run(params: &Params) -> Report {
    Sim::new(params).run()
}

struct Sim<'a> {
    p: &'a Params,
    rng: Rng,
    listeners: Vec<Listener>,
    transfers: Vec<Transfer>,
    /// Uploads each listener runs, counted at the start of each step and as requests come.
    busy: Vec<usize>,
    node_bytes: u64,
    node_first_segment_bytes: u64,
    peer_bytes: u64,
    /// Each segment's seconds and bytes ([`Params::layout`]), and when each starts.
    layout: Vec<(f64, u64)>,
    starts_at: Vec<f64>,
    played_secs: f64,
    starts: Vec<f64>,
}

fn at(secs: f64) -> Duration {
    Duration::from_secs_f64(secs.max(0.0))
}

impl<'a> Sim<'a> {
    fn new(p: &'a Params) -> Self {
        let mut rng = Rng::new(p.seed);
        let duration = p.track_secs;
        let layout = p.layout();
        let burst = (p.listeners as f64 * p.burst_share).round() as usize;
        let mut listeners = Vec::with_capacity(p.listeners);
        // The burst's arrivals are uniform over its seconds; the rest a Poisson process over
        // the remaining arrival time.
        let rest = p.listeners - burst;
        let mean_gap = if rest > 0 { (p.arrival_secs - p.burst_secs).max(0.0) / rest as f64 } else { 0.0 };
        let mut t = p.burst_secs;
        let mut joins: Vec<f64> = (0..burst).map(|_| rng.range(0.0, p.burst_secs)).collect();
        for _ in 0..rest {
            t += rng.exponential(mean_gap);
            joins.push(t);
        }
        if let Some(gap) = p.join_every {
            joins = (0..p.listeners).map(|k| k as f64 * gap).collect();
        }
        joins.sort_by(f64::total_cmp);
        for join in joins {
            let leave_at = rng.chance(p.churn).then(|| join + rng.range(0.0, duration));
            listeners.push(Listener {
                join,
                leave_at,
                reachable: !rng.chance(p.unreachable),
                up: p.link.unwrap_or_else(|| rng.weighted(&UPLOAD)),
                down: p.link.unwrap_or_else(|| rng.weighted(&DOWNLOAD)),
                rtt: p.rtt.unwrap_or_else(|| rng.range(RTT.0, RTT.1)),
                phase: Phase::Waiting,
                sched: None,
                node: SourceId(0),
                peers: Vec::new(),
                held: vec![false; layout.len()],
                playhead: 0.0,
                started_at: None,
                stalled: false,
                rebuffers: 0,
                discovered: false,
                last_lookup: f64::NEG_INFINITY,
            });
        }
        let busy = vec![0; listeners.len()];
        Self {
            p,
            rng,
            listeners,
            transfers: Vec::new(),
            busy,
            node_bytes: 0,
            node_first_segment_bytes: 0,
            peer_bytes: 0,
            starts_at: layout
                .iter()
                .scan(0.0, |t, (secs, _)| {
                    let at = *t;
                    *t += secs;
                    Some(at)
                })
                .collect(),
            layout,
            played_secs: 0.0,
            starts: Vec::new(),
        }
    }

    fn run(mut self) -> Report {
        let duration = self.p.track_secs;
        let mut now = 0.0;
        loop {
            let mut waiting = false;
            for i in 0..self.listeners.len() {
                match self.listeners[i].phase {
                    Phase::Waiting if self.listeners[i].join <= now => self.arrive(i),
                    Phase::Waiting => waiting = true,
                    _ => {}
                }
            }
            let active: Vec<usize> =
                (0..self.listeners.len()).filter(|i| self.listeners[*i].phase == Phase::Active).collect();
            // A node that cannot keep up leaves listeners stalled for long: the run ends at
            // the latest when the last arrival would have played the track five times.
            if (active.is_empty() && !waiting) || now > self.p.arrival_secs + 5.0 * duration {
                break;
            }
            for &i in &active {
                if self.listeners[i].leave_at.is_some_and(|t| t <= now) {
                    self.leave(i, now);
                }
            }
            self.busy.iter_mut().for_each(|b| *b = 0);
            for t in self.transfers.iter().filter(|t| t.fails_at.is_none()) {
                if let From::Peer(j) = t.from {
                    self.busy[j] += 1;
                }
            }
            for &i in &active {
                if self.listeners[i].phase == Phase::Active {
                    self.schedule(i, now);
                }
            }
            self.move_bytes(now);
            for &i in &active {
                if self.listeners[i].phase == Phase::Active {
                    self.play(i, now, duration);
                }
            }
            now += self.p.step;
        }
        let mut starts = self.starts.clone();
        starts.sort_by(f64::total_cmp);
        let pct =
            |q: f64| if starts.is_empty() { 0.0 } else { starts[((starts.len() - 1) as f64 * q).round() as usize] };
        Report {
            listeners: self.listeners.len(),
            node_bytes: self.node_bytes,
            node_first_segment_bytes: self.node_first_segment_bytes,
            peer_bytes: self.peer_bytes,
            rebuffers: self.listeners.iter().map(|l| l.rebuffers).sum(),
            listener_hours: self.played_secs / 3600.0,
            start_p50: pct(0.5),
            start_p95: pct(0.95),
        }
    }

    fn arrive(&mut self, i: usize) {
        // As the player configures it (src/api/player.rs): one request per source at once.
        let config = Config { window_secs: 30.0, per_source: 1, ..Config::default() };
        let secs: Vec<f64> = self.layout.iter().map(|(s, _)| *s).collect();
        let bytes: Vec<u64> = self.layout.iter().map(|(_, b)| *b).collect();
        let mut sched = Scheduler::new(&secs, &bytes, config);
        let l = &mut self.listeners[i];
        l.node = sched.add_source(SourceKind::CreatorNode);
        l.sched = Some(sched);
        l.phase = Phase::Active;
    }

    /// Connects `i` to up to `peers_per_listener` earlier listeners that hold some of the track.
    fn discover(&mut self, i: usize, now: f64) {
        self.listeners[i].discovered = true;
        self.listeners[i].last_lookup = now;
        let reachable = self.listeners[i].reachable;
        let known: Vec<usize> = self.listeners[i].peers.iter().map(|(j, _)| *j).collect();
        let mut candidates: Vec<usize> = (0..self.listeners.len())
            .filter(|&j| {
                let l = &self.listeners[j];
                j != i
                    && l.phase == Phase::Active
                    && (reachable || l.reachable)
                    && l.held.iter().any(|h| *h)
                    && !known.contains(&j)
            })
            .collect();
        if self.p.holdings {
            // The node's routing lists the browsers that announced a later segment: ahead.
            let mine = self.listeners[i].held.iter().filter(|h| **h).count();
            let ahead: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&j| self.listeners[j].held.iter().filter(|h| **h).count() > mine + 1)
                .collect();
            if !ahead.is_empty() {
                candidates = ahead;
            }
        }
        let want = self.p.peers_per_listener.saturating_sub(self.connected_peers(i));
        for _ in 0..want.min(candidates.len()) {
            let j = candidates.swap_remove(self.rng.below(candidates.len()));
            let held: Vec<usize> = (0..self.layout.len()).filter(|k| self.listeners[j].held[*k]).collect();
            let holdings = self.p.holdings;
            let l = &mut self.listeners[i];
            let Some(sched) = l.sched.as_mut() else { return };
            let source = sched.add_source(SourceKind::Peer);
            if holdings {
                sched.holdings_known(source);
                for k in held {
                    sched.peer_holds(source, k);
                }
            }
            l.peers.push((j, source));
        }
    }

    fn connected_peers(&self, i: usize) -> usize {
        self.listeners[i].peers.iter().filter(|(j, _)| self.listeners[*j].phase == Phase::Active).count()
    }

    fn schedule(&mut self, i: usize, now: f64) {
        let p = self.p;
        if p.peers_per_listener > 0 {
            let started = self.listeners[i].started_at;
            let l = &self.listeners[i];
            let first = !l.discovered && started.is_some_and(|s| now >= s + p.discovery_secs);
            // No peer connected (none found, or all left) while segments are missing.
            let again = l.discovered
                && l.held.iter().any(|h| !h)
                && self.connected_peers(i) == 0
                && now - l.last_lookup >= LOOK_UP_AGAIN_SECS;
            if first || again {
                self.discover(i, now);
            }
        }
        let states: Vec<(SourceId, bool)> =
            self.listeners[i].peers.iter().map(|(j, s)| (*s, self.listeners[*j].phase == Phase::Active)).collect();
        let l = &mut self.listeners[i];
        let Some(sched) = l.sched.as_mut() else { return };
        for (source, connected) in states {
            sched.set_connected(source, connected);
        }
        sched.await_peers(p.peers_per_listener > 0 && !l.discovered && now - l.join < AWAIT_PEERS_SECS);
        let mut actions = sched.set_playhead(l.playhead, 1.0, at(now));
        actions.extend(sched.poll(at(now)));
        self.act(i, actions, now);
    }

    fn act(&mut self, i: usize, actions: Vec<Action>, now: f64) {
        for action in actions {
            match action {
                Action::Fetch { segment, source, .. } => self.request(i, segment, source, now),
                Action::Cancel { segment, source } => {
                    self.transfers.retain(|t| !(t.to == i && t.segment == segment && t.source == source))
                }
                Action::Banned { .. } => {}
            }
        }
    }

    fn request(&mut self, i: usize, segment: usize, source: SourceId, now: f64) {
        let rtt = self.listeners[i].rtt;
        let from = if source == self.listeners[i].node {
            From::Node
        } else {
            match self.listeners[i].peers.iter().find(|(_, s)| *s == source) {
                Some((j, _)) => From::Peer(*j),
                None => return,
            }
        };
        let fails = match from {
            From::Node => false,
            From::Peer(j) => {
                let l = &self.listeners[j];
                let refused = l.phase != Phase::Active || !l.held[segment] || self.busy[j] >= self.p.uploads_at_once;
                if !refused {
                    self.busy[j] += 1;
                }
                refused
            }
        };
        self.transfers.push(Transfer {
            to: i,
            from,
            source,
            segment,
            remaining: self.layout[segment].1 as f64,
            starts: now + rtt,
            fails_at: fails.then_some(now + rtt),
        });
    }

    /// Shares every source's capacity among its flowing transfers, and every listener's
    /// download among its own; delivers a step's bytes; reports completions and failures.
    fn move_bytes(&mut self, now: f64) {
        let n = self.listeners.len();
        let (mut uploads, mut downloads, mut node) = (vec![0usize; n], vec![0usize; n], 0usize);
        for t in self.transfers.iter().filter(|t| t.fails_at.is_none() && t.starts <= now) {
            match t.from {
                From::Node => node += 1,
                From::Peer(j) => uploads[j] += 1,
            }
            downloads[t.to] += 1;
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        for (k, t) in self.transfers.iter_mut().enumerate() {
            if let Some(when) = t.fails_at {
                if when <= now {
                    failed.push(k);
                }
                continue;
            }
            if t.starts > now {
                continue;
            }
            let supply = match t.from {
                From::Node => self.p.node_egress / node as f64,
                From::Peer(j) => (self.listeners[j].up / uploads[j] as f64).min(self.p.per_peer_cap),
            };
            let rate = supply.min(self.listeners[t.to].down / downloads[t.to] as f64);
            t.remaining -= rate * self.p.step;
            if t.remaining <= 0.0 {
                done.push(k);
            } else if let Some(sched) = self.listeners[t.to].sched.as_mut() {
                sched.on_progress(t.segment, t.source, at(now));
            }
        }
        let mut finished: Vec<(usize, bool)> = done.into_iter().map(|k| (k, true)).collect();
        finished.extend(failed.into_iter().map(|k| (k, false)));
        finished.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut tell_holders = Vec::new();
        // Actions are taken once every finished transfer is out: a cancel among them removes
        // transfers, which would move the indexes still to be taken out.
        let mut follow_ups = Vec::new();
        for (k, ok) in finished {
            let t = self.transfers.swap_remove(k);
            let l = &mut self.listeners[t.to];
            let Some(sched) = l.sched.as_mut() else { continue };
            let actions = if ok {
                l.held[t.segment] = true;
                if self.p.holdings {
                    tell_holders.push((t.to, t.segment));
                }
                match t.from {
                    From::Node => {
                        self.node_bytes += self.layout[t.segment].1;
                        if t.segment == 0 {
                            self.node_first_segment_bytes += self.layout[t.segment].1;
                        }
                    }
                    From::Peer(_) => self.peer_bytes += self.layout[t.segment].1,
                }
                sched.on_success(t.segment, t.source, at(now))
            } else {
                sched.on_failure(t.segment, t.source, Failure::Unavailable)
            };
            follow_ups.push((t.to, actions));
        }
        for (to, actions) in follow_ups {
            self.act(to, actions, now);
        }
        // What a listener got, it tells the listeners connected to it (HAVE).
        for (j, segment) in tell_holders {
            for l in self.listeners.iter_mut().filter(|l| l.phase == Phase::Active) {
                let sources: Vec<SourceId> = l.peers.iter().filter(|(p, _)| *p == j).map(|(_, s)| *s).collect();
                if let Some(sched) = l.sched.as_mut() {
                    for source in sources {
                        sched.peer_holds(source, segment);
                    }
                }
            }
        }
    }

    fn play(&mut self, i: usize, now: f64, duration: f64) {
        let step = self.p.step;
        let l = &mut self.listeners[i];
        match l.started_at {
            None => {
                if l.held[0] {
                    l.started_at = Some(now);
                    self.starts.push(now - l.join);
                    if let Some(s) = l.sched.as_mut() {
                        s.playback_started();
                    }
                }
            }
            Some(_) => {
                let segment = self.starts_at.partition_point(|s| *s <= l.playhead).saturating_sub(1);
                if l.held[segment] {
                    l.playhead += step;
                    l.stalled = false;
                    self.played_secs += step;
                } else if !l.stalled {
                    l.stalled = true;
                    l.rebuffers += 1;
                }
                if l.playhead >= duration {
                    self.leave(i, now);
                }
            }
        }
    }

    /// `i` leaves: its uploads fail a round trip later for their listeners, its downloads stop.
    fn leave(&mut self, i: usize, now: f64) {
        self.listeners[i].phase = Phase::Gone;
        self.listeners[i].sched = None;
        self.transfers.retain(|t| t.to != i);
        let listeners = &self.listeners;
        for t in self.transfers.iter_mut().filter(|t| t.from == From::Peer(i) && t.fails_at.is_none()) {
            t.fails_at = Some(now + listeners[t.to].rtt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(peers: usize) -> Params {
        Params { listeners: 40, arrival_secs: 60.0, peers_per_listener: peers, ..Params::default() }
    }

    #[test]
    fn the_same_parameters_give_the_same_report() {
        assert_eq!(run(&small(3)), run(&small(3)));
        assert_ne!(run(&small(3)), run(&Params { seed: 2, ..small(3) }));
    }

    #[test]
    fn without_peers_the_node_serves_every_byte_of_every_listener() {
        let report = run(&small(0));
        assert_eq!(report.peer_bytes, 0);
        // Listeners that churn leave before fetching everything; the rest fetch it all.
        assert!(report.node_bytes >= 96_000 * 11 * 20, "{report:?}");
    }

    #[test]
    fn with_peers_most_bytes_come_from_listeners() {
        let report = run(&Params { churn: 0.0, unreachable: 0.0, ..small(3) });
        assert!(report.offload() > 0.5, "{report:?}");
    }

    #[test]
    fn listeners_nobody_reaches_are_served_by_the_node() {
        let report = run(&Params { unreachable: 1.0, ..small(3) });
        assert_eq!(report.peer_bytes, 0, "{report:?}");
    }
}
