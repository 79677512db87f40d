//! Cutting a stream of codec frames into segments of about [`TARGET_SEGMENT_SECS`] seconds,
//! after a short ramp that starts at [`FIRST_SEGMENT_SECS`].
//!
//! The segmenter never splits a frame and never changes a byte: a segment is the exact
//! concatenation of the frames it holds. Which frames exist is the demuxer's business (the node
//! uses symphonia); this module only decides where the cuts fall.

/// Target duration of a segment in seconds.
pub const TARGET_SEGMENT_SECS: u32 = 6;

/// Target duration of a track's first segment in seconds. A player starts on a first segment
/// it has fetched and verified whole, so a short one starts playback sooner (40 KB at
/// 320 kb/s instead of 240 KB); each later segment aims at twice the one before until
/// [`TARGET_SEGMENT_SECS`]: 1, 2, 4, 6, 6, ... seconds.
pub const FIRST_SEGMENT_SECS: u32 = 1;

/// A finished segment: frame bytes passed through untouched, and their duration.
#[derive(Clone, PartialEq, Eq)]
pub struct Segment {
    /// The concatenated frames.
    pub data: Vec<u8>,
    /// Duration in samples per channel.
    pub samples: u64,
    /// Number of frames in the segment.
    pub frames: u32,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("bytes", &self.data.len())
            .field("samples", &self.samples)
            .field("frames", &self.frames)
            .finish()
    }
}

/// Groups frames into segments, cutting before the frame that would pass the current
/// segment's target duration.
#[derive(Debug)]
pub struct Segmenter {
    target_samples: u64,
    /// The current segment's target: starts at the first segment's, doubles up to
    /// `target_samples`.
    limit_samples: u64,
    current: Segment,
}

impl Segmenter {
    /// A segmenter for audio at `sample_rate` aiming at `target_secs` for every segment.
    pub fn new(sample_rate: u32, target_secs: u32) -> Self {
        Self::ramped(sample_rate, target_secs, target_secs)
    }

    /// A segmenter whose first segment aims at `first_secs` and each later one at twice the
    /// one before, up to `target_secs`. A `first_secs` of 0, or at or over `target_secs`, means
    /// no ramp.
    pub fn ramped(sample_rate: u32, first_secs: u32, target_secs: u32) -> Self {
        let target_secs = target_secs.max(1);
        let first_secs = if first_secs == 0 { target_secs } else { first_secs.min(target_secs) };
        Self {
            target_samples: u64::from(sample_rate) * u64::from(target_secs),
            limit_samples: u64::from(sample_rate) * u64::from(first_secs),
            current: Segment { data: Vec::new(), samples: 0, frames: 0 },
        }
    }

    /// Adds one frame; returns the segment it closed, if adding it crossed the target.
    pub fn push(&mut self, frame: &[u8], samples: u64) -> Option<Segment> {
        let closed = if self.current.frames > 0 && self.current.samples + samples > self.limit_samples {
            self.limit_samples = (self.limit_samples * 2).min(self.target_samples);
            Some(std::mem::replace(&mut self.current, Segment { data: Vec::new(), samples: 0, frames: 0 }))
        } else {
            None
        };
        self.current.data.extend_from_slice(frame);
        self.current.samples += samples;
        self.current.frames += 1;
        closed
    }

    /// Returns the last, possibly shorter, segment.
    pub fn finish(self) -> Option<Segment> {
        (self.current.frames > 0).then_some(self.current)
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn cuts_on_frame_boundaries_without_changing_bytes() {
        let mut seg = Segmenter::new(44_100, 6);
        let mut out = Vec::new();
        let mut input = Vec::new();
        for i in 0..1000u32 {
            let frame = vec![(i % 251) as u8; 417];
            input.extend_from_slice(&frame);
            out.extend(seg.push(&frame, 1152));
        }
        out.extend(seg.finish());
        // 1152 samples per frame: 229 frames fit in 6 s at 44.1 kHz.
        assert_eq!(out[0].frames, 229);
        assert!(out[..out.len() - 1].iter().all(|s| s.samples <= 44_100 * 6));
        let joined: Vec<u8> = out.iter().flat_map(|s| s.data.iter().copied()).collect();
        assert_eq!(joined, input);
        assert_eq!(out.iter().map(|s| s.samples).sum::<u64>(), 1000 * 1152);
    }

    #[test]
    fn ramps_from_a_short_first_segment_up_to_the_target() {
        // 1152-sample frames at 48 kHz: 41 frames fit in 1 s, 83 in 2 s, 166 in 4 s, 250 in 6 s.
        let mut seg = Segmenter::ramped(48_000, 1, 6);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.extend(seg.push(&[0u8; 4], 1152));
        }
        out.extend(seg.finish());
        let frames: Vec<u32> = out.iter().map(|s| s.frames).collect();
        assert_eq!(frames[..5], [41, 83, 166, 250, 250]);
        assert_eq!(frames.iter().sum::<u32>(), 1000);
    }

    #[test]
    fn a_first_target_of_zero_or_past_the_target_means_no_ramp() {
        for first in [0, 6, 9] {
            let mut seg = Segmenter::ramped(48_000, first, 6);
            let first_closed = (0..1000).find_map(|_| seg.push(&[0u8; 4], 1152)).expect("a segment closes");
            assert_eq!(first_closed.frames, 250, "first_secs {first}");
        }
    }
}
