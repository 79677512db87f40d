//! The embedded default track: a minute of music synthesised here and encoded with LAME.
//!
//! Nothing is downloaded: a four-chord progression (A minor, F, C, G at 120 BPM) played by a
//! pad, a bass, an arpeggio and a small drum kit, all generated sample by sample from a fixed
//! seed, so every build produces the same MP3 and therefore the same track CID.

use std::f32::consts::TAU;

use crate::mp3_encoder::Mp3Encoder;

/// Sample rate of the default track.
pub const SAMPLE_RATE: u32 = 44_100;
const BEAT_SECS: f32 = 0.5;
/// MIDI notes of each bar's chord (root, third, fifth): Am, F, C, G.
const CHORDS: [[u8; 3]; 4] = [[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]];

fn midi_hz(note: u8) -> f32 {
    440.0 * 2f32.powf((f32::from(note) - 69.0) / 12.0)
}

/// A tiny deterministic noise source (xorshift).
struct Noise(u32);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        (self.0 as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

/// Renders `seconds` of stereo audio as two channels of f32 in [-1, 1].
pub fn render(seconds: u32) -> (Vec<f32>, Vec<f32>) {
    let n = (SAMPLE_RATE * seconds) as usize;
    let sr = SAMPLE_RATE as f32;
    let mut left = Vec::with_capacity(n);
    let mut right = Vec::with_capacity(n);
    let mut noise = Noise(0x1234_5678);
    let total = n as f32 / sr;
    for i in 0..n {
        let t = i as f32 / sr;
        let beat = t / BEAT_SECS;
        let bar = (beat / 4.0) as usize;
        let chord = CHORDS[bar % CHORDS.len()];
        let in_beat = beat.fract() * BEAT_SECS;
        let in_eighth = (beat * 2.0).fract() * BEAT_SECS / 2.0;

        // Pad: the chord an octave down, soft sines with a little second harmonic.
        let mut pad = 0.0;
        for (k, note) in chord.iter().enumerate() {
            let f = midi_hz(note - 12) * (1.0 + 0.002 * k as f32);
            pad += (TAU * f * t).sin() + 0.3 * (TAU * 2.0 * f * t).sin();
        }
        pad *= 0.06;

        // Bass: the root, two octaves down, plucked on every beat.
        let bass_f = midi_hz(chord[0] - 24);
        let bass_env = (-in_beat * 6.0).exp();
        let bass = 0.25 * bass_env * ((TAU * bass_f * t).sin() + 0.4 * (TAU * 2.0 * bass_f * t).sin());

        // Arpeggio: chord tones up and down in eighth notes, from bar 4 on.
        let step = (beat * 2.0) as usize % 4;
        let arp_note = chord[[0, 1, 2, 1][step]] + 12;
        let arp = if bar >= 4 {
            0.12 * (-in_eighth * 9.0).exp() * (TAU * midi_hz(arp_note) * t).sin().signum() * 0.5
                + 0.08 * (-in_eighth * 9.0).exp() * (TAU * midi_hz(arp_note) * t).sin()
        } else {
            0.0
        };

        // Drums: kick on beats 1 and 3, snare on 2 and 4 from bar 8, hats on every eighth.
        let beat_in_bar = beat as usize % 4;
        let kick = if beat_in_bar.is_multiple_of(2) {
            let f = 45.0 + 90.0 * (-in_beat * 30.0).exp();
            0.5 * (-in_beat * 12.0).exp() * (TAU * f * in_beat).sin()
        } else {
            0.0
        };
        let hiss = noise.next();
        let snare = if bar >= 8 && beat_in_bar % 2 == 1 {
            (-in_beat * 18.0).exp() * (0.22 * hiss + 0.15 * (TAU * 180.0 * in_beat).sin())
        } else {
            0.0
        };
        let hat = 0.05 * (-in_eighth * 60.0).exp() * hiss;

        let fade = (t / 1.0).min(1.0).min((total - t) / 2.0).max(0.0);
        let centre = pad + bass + kick + snare;
        left.push((fade * (centre + 0.8 * arp + 0.6 * hat)).clamp(-1.0, 1.0));
        right.push((fade * (centre + 0.5 * arp + 1.0 * hat)).clamp(-1.0, 1.0));
    }
    (left, right)
}

/// Renders and encodes the default track: `seconds` long, 128 kb/s CBR stereo MP3.
pub fn encode_mp3(seconds: u32, kbps: u32) -> anyhow::Result<Vec<u8>> {
    let (left, right) = render(seconds);
    let interleaved: Vec<i16> =
        left.iter().zip(&right).flat_map(|(l, r)| [*l, *r]).map(|s| (s * f32::from(i16::MAX)) as i16).collect();
    let mut encoder = Mp3Encoder::new(SAMPLE_RATE, 2, kbps)?;
    for chunk in interleaved.chunks(2 * SAMPLE_RATE as usize) {
        encoder.push(chunk)?;
    }
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_deterministic_and_not_silent() {
        let (l1, r1) = render(2);
        let (l2, _) = render(2);
        assert_eq!(l1, l2);
        let rms = (l1.iter().map(|s| s * s).sum::<f32>() / l1.len() as f32).sqrt();
        assert!(rms > 0.02, "rms {rms}");
        assert_ne!(l1, r1);
    }
}
