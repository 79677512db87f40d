//! Decoding any audio symphonia reads and encoding it to MP3 with LAME.

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatReader;

use super::{IngestError, Limits, Progress, Stage};
use crate::mp3_encoder::Mp3Encoder;

/// Samples a declared length may exceed what was decoded by before the file counts as
/// truncated (decoders may drop a priming frame).
const TRUNCATION_SLACK_SAMPLES: u64 = 8192;

/// Decodes the default track of `format` without encoding anything, only to count its audio:
/// fails with [`IngestError::TooLong`] as soon as more than the limit has come out (or at once
/// when the file itself declares more). Decoding is cheap next to LAME, so a small file that
/// decodes to days of audio is refused in seconds, before any of it is encoded.
pub(super) fn measure(format: &mut dyn FormatReader, limits: &Limits) -> Result<(), IngestError> {
    let track = format.default_track().ok_or(IngestError::NoAudioTrack)?;
    let track_id = track.id;
    if let (Some(declared), Some(rate)) = (track.codec_params.n_frames, track.codec_params.sample_rate) {
        limits.check(declared, rate)?;
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| IngestError::UnsupportedCodec(e.to_string()))?;
    let mut decoded: u64 = 0;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(SymphoniaError::ResetRequired) => return Ok(()),
            Err(e) => return Err(IngestError::Corrupt(format!("after {decoded} samples: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = decoder
            .decode(&packet)
            .map_err(|e| IngestError::Corrupt(format!("a packet at sample {} does not decode: {e}", packet.ts)))?;
        decoded += audio.frames() as u64;
        limits.check(decoded, audio.spec().rate)?;
    }
}

/// Decodes the default track of `format` and returns it as an MP3 stream at `kbps`.
/// Stops with [`IngestError::TooLong`] as soon as more than `limits.max_duration_secs` of audio
/// has been decoded, and with [`IngestError::Deadline`] once `limits.deadline` has passed:
/// what a file declares about its length is not trusted.
pub(super) fn to_mp3(
    format: &mut dyn FormatReader,
    kbps: u32,
    limits: &Limits,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<u8>, IngestError> {
    let track = format.default_track().ok_or(IngestError::NoAudioTrack)?;
    let track_id = track.id;
    let declared = track.codec_params.n_frames;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| IngestError::UnsupportedCodec(e.to_string()))?;

    let mut encoder: Option<Mp3Encoder> = None;
    let mut buffer: Option<SampleBuffer<i16>> = None;
    let mut stereo = Vec::new();
    let mut decoded: u64 = 0;
    let mut params: Option<(u32, usize)> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(IngestError::Corrupt(format!("after {decoded} samples: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = match decoder.decode(&packet) {
            Ok(audio) => audio,
            Err(e) => {
                return Err(IngestError::Corrupt(format!("a packet at sample {} does not decode: {e}", packet.ts)));
            }
        };
        let spec = *audio.spec();
        let channels = spec.channels.count();
        match params {
            None => params = Some((spec.rate, channels)),
            Some(p) if p != (spec.rate, channels) => {
                return Err(IngestError::Corrupt(format!(
                    "the stream changes to {} Hz, {channels} channel(s) at sample {decoded}",
                    spec.rate
                )));
            }
            Some(_) => {}
        }
        if audio.frames() == 0 {
            continue;
        }
        let buf = match &mut buffer {
            Some(b) if b.capacity() >= audio.capacity() * channels => b,
            _ => buffer.insert(SampleBuffer::new(audio.capacity() as u64, spec)),
        };
        limits.check(decoded + audio.frames() as u64, spec.rate)?;
        buf.copy_interleaved_ref(audio);
        let samples = buf.samples();
        let out_channels = channels.min(2);
        let enc = match &mut encoder {
            Some(e) => e,
            None => encoder.insert(Mp3Encoder::new(spec.rate, out_channels as u32, kbps)?),
        };
        if channels <= 2 {
            enc.push(samples)?;
        } else {
            // More than two channels: keep the front left and right.
            stereo.clear();
            stereo.extend(samples.chunks_exact(channels).flat_map(|frame| [frame[0], frame[1]]));
            enc.push(&stereo)?;
        }
        decoded += (samples.len() / channels) as u64;
        progress(Progress { stage: Stage::Transcoding, done: decoded, total: declared.unwrap_or(0) });
    }
    if let Some(declared) = declared
        && decoded + TRUNCATION_SLACK_SAMPLES < declared
    {
        return Err(IngestError::Truncated(format!(
            "it declares {declared} samples but only {decoded} could be decoded"
        )));
    }
    match encoder {
        Some(encoder) => Ok(encoder.finish()?),
        None => Err(IngestError::Empty),
    }
}
