//! Getting a media element going again when it stops with audio buffered ahead of it.
//!
//! Chromium's media pipeline occasionally stops advancing `currentTime` although the element is
//! playing and seconds of audio are buffered (seen in the e2e suite: stuck ~38 s at 14.56 s
//! with 33 s buffered, 2 of 17 runs of one test), and an element stops for good at a gap
//! between buffered ranges. A small seek forward restarts the pipeline, and jumps a short gap;
//! hls.js's gap controller does the same. Nothing here fetches: with less than
//! [`MIN_AHEAD_SECS`] buffered the element is out of data, which is the scheduler's business.

use std::time::Duration;

/// How long `currentTime` must stand still while playing before the element counts as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(2);
/// Audio that must lie ahead (in the current range, or past a gap) to nudge.
pub const MIN_AHEAD_SECS: f64 = 0.5;
/// The widest gap between buffered ranges that a nudge jumps.
pub const MAX_GAP_SECS: f64 = 1.0;
/// How far past the playhead (or the start of the range after a gap) a nudge lands.
const STEP_SECS: f64 = 0.05;

/// Watches one element's clock; see the module documentation.
#[derive(Debug, Default)]
pub struct StuckWatch {
    /// The playhead when it was last seen to move, and when.
    still: Option<(f64, Duration)>,
    /// Nudges made so far.
    pub nudges: u32,
}

impl StuckWatch {
    /// Looks at the element once per tick: `now` is any monotonic clock, `time` is its
    /// `currentTime`, `playing` whether it is meant to advance (not paused, seeking or ended,
    /// with a rate above 0), `ranges` gives its buffered ranges in order (asked for only once
    /// the playhead has stood still for [`STUCK_AFTER`]). Returns where to seek when it is
    /// stuck.
    pub fn check<R: AsRef<[(f64, f64)]>>(
        &mut self,
        now: Duration,
        time: f64,
        playing: bool,
        ranges: impl FnOnce() -> R,
    ) -> Option<f64> {
        if !playing {
            self.still = None;
            return None;
        }
        match self.still {
            Some((at, since)) if (time - at).abs() < 0.01 => {
                if now.saturating_sub(since) < STUCK_AFTER {
                    return None;
                }
                let target = nudge_target(time, ranges().as_ref())?;
                self.still = None;
                self.nudges += 1;
                Some(target)
            }
            _ => {
                self.still = Some((time, now));
                None
            }
        }
    }
}

/// Just past `time` when enough is buffered after it, or just inside the next range when a
/// short gap comes first; `None` when there is too little audio ahead to be worth a seek.
fn nudge_target(time: f64, ranges: &[(f64, f64)]) -> Option<f64> {
    for &(start, end) in ranges {
        if end <= time {
            continue;
        }
        if start <= time {
            if end - time >= MIN_AHEAD_SECS + STEP_SECS {
                return Some(time + STEP_SECS);
            }
            // The element stops a few frames short of a range's end: look past the gap.
            continue;
        }
        let jumpable = start - time <= MAX_GAP_SECS && end - start >= MIN_AHEAD_SECS + STEP_SECS;
        return jumpable.then_some(start + STEP_SECS);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUFFERED: &[(f64, f64)] = &[(0.0, 30.0)];

    fn after(t0: Duration, ms: u64) -> Duration {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_playhead_that_stands_still_with_audio_ahead_is_nudged_after_two_seconds() {
        let mut watch = StuckWatch::default();
        let t0 = Duration::from_secs(100);
        assert_eq!(watch.check(t0, 14.56, true, || BUFFERED), None);
        assert_eq!(watch.check(after(t0, 1500), 14.56, true, || BUFFERED), None, "not yet");
        let target = watch.check(after(t0, 2000), 14.56, true, || BUFFERED).unwrap();
        assert!((target - 14.61).abs() < 1e-9, "nudged to {target}");
        assert_eq!(watch.nudges, 1);
        // The watch starts over: the next nudge needs another two seconds standing still.
        assert_eq!(watch.check(after(t0, 2250), 14.56, true, || BUFFERED), None);
    }

    #[test]
    fn a_moving_paused_or_starved_element_is_left_alone() {
        let mut watch = StuckWatch::default();
        let t0 = Duration::from_secs(100);
        for i in 0..20u32 {
            let t = 5.0 + f64::from(i) * 0.25;
            assert_eq!(watch.check(after(t0, 250 * u64::from(i)), t, true, || BUFFERED), None, "moving");
        }
        // Nor are its buffered ranges read while it moves (they cost calls into the page).
        let reads = std::cell::Cell::new(0);
        let mut moving = StuckWatch::default();
        for i in 0..20u32 {
            let t = 5.0 + f64::from(i) * 0.25;
            let ranges = || {
                reads.set(reads.get() + 1);
                BUFFERED
            };
            assert_eq!(moving.check(after(t0, 250 * u64::from(i)), t, true, ranges), None);
        }
        assert_eq!(reads.get(), 0);
        let mut paused = StuckWatch::default();
        for i in 0..20 {
            assert_eq!(paused.check(after(t0, 250 * i), 5.0, false, || BUFFERED), None, "paused");
        }
        // Out of data (0.3 s ahead): a real rebuffer, not a stuck pipeline.
        let mut starved = StuckWatch::default();
        for i in 0..20 {
            assert_eq!(starved.check(after(t0, 250 * i), 29.7, true, || BUFFERED), None, "starved");
        }
        assert_eq!(watch.nudges + paused.nudges + starved.nudges, 0);
    }

    #[test]
    fn a_short_gap_is_jumped_and_a_long_one_is_not() {
        let t0 = Duration::from_secs(100);
        let stuck = |ranges: &[(f64, f64)]| {
            let mut watch = StuckWatch::default();
            watch.check(t0, 6.0, true, || ranges);
            watch.check(after(t0, 2000), 6.0, true, || ranges)
        };
        let target = stuck(&[(0.0, 6.0), (6.2, 12.0)]).unwrap();
        assert!((target - 6.25).abs() < 1e-9, "jumped to {target}");
        // Chromium stops a little before the end of the range, not at it.
        let target = stuck(&[(0.0, 6.04), (6.2, 12.0)]).unwrap();
        assert!((target - 6.25).abs() < 1e-9, "jumped from just short of the gap to {target}");
        assert_eq!(stuck(&[(0.0, 6.0), (8.0, 12.0)]), None, "a 2 s gap is missing audio");
        assert_eq!(stuck(&[(0.0, 6.0)]), None, "nothing ahead");
    }
}
