//! Segment decoding with symphonia, for browsers without Media Source Extensions (the `webaudio`
//! feature). A segment is a run of whole MP3 or ADTS AAC frames, so it parses on its own; a
//! frame's audio also depends on the frames before it (MP3's bit reservoir, the MDCT overlap of
//! both codecs), so the last frames of the previous segment are decoded first and their output
//! dropped. With that pre-roll, consecutive segments decoded one by one give the same samples
//! as the whole track decoded in one go.

use std::io::Cursor;

use symphonia::core::audio::AudioBuffer;
use symphonia::core::codecs::{Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::MediaSourceStream;

/// Frames of the previous segment decoded (and discarded) before a segment's own. An MP3
/// frame's data may start up to 511 bytes back, in earlier frames, and the first pre-roll frame
/// itself lacks its own: at 128 kb/s two frames are not enough (the tests show it) and three
/// are; eight cover the smallest frames of 64 kb/s and cost ~3% more decoding per segment.
pub const PREROLL_FRAMES: usize = 8;

/// Most audio one segment may decode to, in seconds per channel: far beyond any ~6 s segment,
/// so a hostile frame header cannot make the decoder allocate without bound.
const MAX_SEGMENT_SECS: u64 = 120;

/// Why a segment did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The manifest's codec has no decoder in this build.
    #[error("no decoder for {0:?} (this build decodes audio/mpeg and audio/aac)")]
    Unsupported(String),
    /// The bytes are not frames of the codec.
    #[error("the segment is not {codec}: {reason}")]
    Malformed {
        /// The manifest's codec.
        codec: String,
        /// What symphonia said.
        reason: String,
    },
    /// The frames change sample rate or channel count midway.
    #[error("the segment changes from {from} to {to} mid-stream")]
    SpecChanged {
        /// The first frame's rate and channels.
        from: String,
        /// The offending frame's.
        to: String,
    },
    /// More audio than any segment holds.
    #[error("the segment decodes to more than {MAX_SEGMENT_SECS} s of audio")]
    TooLong,
}

/// Decoded audio: one `Vec` of samples per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    /// Samples per second.
    pub rate: u32,
    /// Planar samples, one vector per channel, all the same length.
    pub channels: Vec<Vec<f32>>,
}

impl Pcm {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Length in seconds.
    pub fn secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.rate.max(1))
    }
}

/// A demuxer and a decoder for one codec.
type Codec = (Box<dyn FormatReader>, Box<dyn Decoder>);

/// A format reader and a decoder for `codec` over `bytes`.
fn open(codec: &str, bytes: &[u8]) -> Result<Codec, DecodeError> {
    use symphonia::default::codecs::{AacDecoder, MpaDecoder};
    use symphonia::default::formats::{AdtsReader, MpaReader};
    let malformed = |e: SymphoniaError| DecodeError::Malformed { codec: codec.into(), reason: e.to_string() };
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let options = FormatOptions { enable_gapless: false, ..FormatOptions::default() };
    let reader: Box<dyn FormatReader> = match codec {
        "audio/mpeg" => Box::new(MpaReader::try_new(stream, &options).map_err(malformed)?),
        "audio/aac" => Box::new(AdtsReader::try_new(stream, &options).map_err(malformed)?),
        other => return Err(DecodeError::Unsupported(other.into())),
    };
    let params = &reader
        .default_track()
        .ok_or_else(|| DecodeError::Malformed { codec: codec.into(), reason: "no audio frames".into() })?
        .codec_params;
    let decoder: Box<dyn Decoder> = match codec {
        "audio/mpeg" => Box::new(MpaDecoder::try_new(params, &DecoderOptions::default()).map_err(malformed)?),
        _ => Box::new(AacDecoder::try_new(params, &DecoderOptions::default()).map_err(malformed)?),
    };
    Ok((reader, decoder))
}

/// Every frame of `bytes`, in order.
fn packets(reader: &mut dyn FormatReader, codec: &str) -> Result<Vec<Packet>, DecodeError> {
    let mut out = Vec::new();
    loop {
        match reader.next_packet() {
            Ok(packet) => out.push(packet),
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(out),
            Err(SymphoniaError::ResetRequired) => return Ok(out),
            Err(e) => return Err(DecodeError::Malformed { codec: codec.into(), reason: e.to_string() }),
        }
    }
}

/// Decodes one segment. `previous` is the segment before it, when the caller has it: its last
/// [`PREROLL_FRAMES`] frames prime the decoder so that the segment's first frames come out as
/// they would in a continuous decode. A frame that fails to decode becomes silence of its own
/// length, so the segment keeps its place on the timeline.
pub fn decode_segment(codec: &str, bytes: &[u8], previous: Option<&[u8]>) -> Result<Pcm, DecodeError> {
    let (mut reader, mut decoder) = open(codec, bytes)?;
    let own = packets(reader.as_mut(), codec)?;
    let preroll = match previous {
        Some(prev) => match open(codec, prev) {
            Ok((mut prev_reader, _)) => {
                let mut frames = packets(prev_reader.as_mut(), codec).unwrap_or_default();
                frames.split_off(frames.len().saturating_sub(PREROLL_FRAMES))
            }
            // A previous segment that does not parse only costs the pre-roll.
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    for packet in &preroll {
        let _ = decoder.decode(packet);
    }
    let mut pcm: Option<Pcm> = None;
    let mut spec_seen = None;
    let mut decoded_any = false;
    for packet in &own {
        let limit = |pcm: &Pcm| pcm.frames() as u64 > MAX_SEGMENT_SECS * u64::from(pcm.rate.max(1));
        match decoder.decode(packet) {
            Ok(audio) => {
                let spec = *audio.spec();
                if let Some(first) = spec_seen
                    && first != spec
                {
                    return Err(DecodeError::SpecChanged { from: describe(first), to: describe(spec) });
                }
                spec_seen = Some(spec);
                let mut planar = AudioBuffer::<f32>::new(audio.capacity() as u64, spec);
                audio.convert(&mut planar);
                let out = pcm
                    .get_or_insert_with(|| Pcm { rate: spec.rate, channels: vec![Vec::new(); spec.channels.count()] });
                for (c, channel) in out.channels.iter_mut().enumerate() {
                    channel.extend_from_slice(symphonia::core::audio::Signal::chan(&planar, c));
                }
                decoded_any = true;
                if limit(out) {
                    return Err(DecodeError::TooLong);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a frame did not decode; silence in its place");
                if let Some(out) = pcm.as_mut() {
                    let silent = usize::try_from(packet.dur).unwrap_or(usize::MAX).min(4096);
                    for channel in &mut out.channels {
                        channel.resize(channel.len() + silent, 0.0);
                    }
                    if limit(out) {
                        return Err(DecodeError::TooLong);
                    }
                }
            }
        }
    }
    match pcm {
        Some(pcm) if decoded_any => Ok(pcm),
        _ => Err(DecodeError::Malformed { codec: codec.into(), reason: "no frame decoded".into() }),
    }
}

fn describe(spec: symphonia::core::audio::SignalSpec) -> String {
    format!("{} Hz, {} channels", spec.rate, spec.channels.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SECONDS: &[u8] = include_bytes!("../../tests/wasm/fixtures/two-seconds.mp3");

    /// The fixture cut into segments of `frames` MP3 frames each, the way ingest cuts tracks.
    fn segments(frames: usize) -> Vec<Vec<u8>> {
        let (mut reader, _) = open("audio/mpeg", TWO_SECONDS).unwrap();
        let all = packets(reader.as_mut(), "audio/mpeg").unwrap();
        all.chunks(frames).map(|chunk| chunk.iter().flat_map(|p| p.buf().to_vec()).collect()).collect()
    }

    #[test]
    fn segments_with_preroll_match_one_continuous_decode() {
        let whole = decode_segment("audio/mpeg", TWO_SECONDS, None).unwrap();
        let parts = segments(20);
        assert!(parts.len() >= 3, "the fixture gives {} segments", parts.len());
        let mut joined: Vec<Vec<f32>> = vec![Vec::new(); whole.channels.len()];
        for (i, part) in parts.iter().enumerate() {
            let previous = i.checked_sub(1).map(|p| parts[p].as_slice());
            let pcm = decode_segment("audio/mpeg", part, previous).unwrap();
            assert_eq!(pcm.rate, whole.rate);
            for (c, ch) in pcm.channels.iter().enumerate() {
                joined[c].extend_from_slice(ch);
            }
        }
        assert_eq!(joined[0].len(), whole.frames());
        for (c, channel) in joined.iter().enumerate() {
            let worst = channel.iter().zip(&whole.channels[c]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "channel {c} differs from the continuous decode by {worst}");
        }
        let energy: f32 = whole.channels[0].iter().map(|s| s * s).sum();
        assert!(energy > 1.0, "the fixture decodes to silence");
    }

    #[test]
    fn without_preroll_a_segment_start_differs() {
        // What the pre-roll is for: the same segment decoded cold starts differently.
        let parts = segments(20);
        let warm = decode_segment("audio/mpeg", &parts[1], Some(&parts[0])).unwrap();
        let cold = decode_segment("audio/mpeg", &parts[1], None).unwrap();
        assert_eq!(warm.frames(), cold.frames());
        let head = 1152;
        let differs = warm.channels[0][..head].iter().zip(&cold.channels[0][..head]).any(|(a, b)| (a - b).abs() > 1e-4);
        assert!(differs);
    }

    #[test]
    fn garbage_and_unknown_codecs_are_refused() {
        let err = decode_segment("audio/mpeg", &[0x42; 4096], None).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
        let err = decode_segment("audio/flac", TWO_SECONDS, None).unwrap_err();
        assert!(matches!(err, DecodeError::Unsupported(_)), "{err}");
        let err = decode_segment("audio/mpeg", &[], None).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    }

    #[test]
    fn a_truncated_segment_still_decodes_what_it_has() {
        let parts = segments(20);
        let cut = &parts[1][..parts[1].len() / 2];
        let pcm = decode_segment("audio/mpeg", cut, Some(&parts[0])).unwrap();
        assert!(pcm.frames() > 0 && pcm.frames() < 20 * 1152);
    }
}
