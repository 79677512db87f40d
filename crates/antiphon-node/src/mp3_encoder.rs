//! MP3 encoding with LAME (mp3lame-encoder): constant bitrate, no Xing/Info frame, so every
//! frame the encoder writes is audio and can go straight into a segment.

use std::num::NonZeroU32;

use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushGap, InterleavedPcm, MonoPcm, Quality};

/// Bitrates (kbit/s) the node encodes at; all are valid MPEG-1 layer III rates.
pub const KBPS_CHOICES: [u32; 6] = [128, 160, 192, 224, 256, 320];

/// Why LAME refused.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The bitrate is not one of [`KBPS_CHOICES`].
    #[error("unsupported MP3 bitrate {0} kbit/s (choose 128, 160, 192, 224, 256 or 320)")]
    Bitrate(u32),
    /// LAME refused a setting or failed to encode.
    #[error("LAME failed: {0}")]
    Lame(String),
}

fn lame<E: std::fmt::Debug>(e: E) -> EncodeError {
    EncodeError::Lame(format!("{e:?}"))
}

/// The MPEG-1 output rate for an input rate: the same when MPEG-1 has it, else 44.1 kHz for
/// the 11.025 kHz family and 48 kHz otherwise (so every bitrate choice is valid).
pub fn output_rate(input: u32) -> u32 {
    match input {
        32_000 | 44_100 | 48_000 => input,
        r if r % 11_025 == 0 => 44_100,
        _ => 48_000,
    }
}

/// A LAME encoder for mono or stereo 16-bit interleaved input.
pub struct Mp3Encoder {
    encoder: Encoder,
    channels: u32,
    /// Output samples per input sample, rounded up: LAME resamples (8 kHz in, 48 kHz out) and
    /// needs room for what comes out, not what went in.
    upsampling: usize,
    out: Vec<u8>,
}

impl Mp3Encoder {
    /// An encoder for `channels` (1 or 2) at `sample_rate`, writing `kbps` CBR.
    pub fn new(sample_rate: u32, channels: u32, kbps: u32) -> Result<Self, EncodeError> {
        let bitrate = match kbps {
            128 => Bitrate::Kbps128,
            160 => Bitrate::Kbps160,
            192 => Bitrate::Kbps192,
            224 => Bitrate::Kbps224,
            256 => Bitrate::Kbps256,
            320 => Bitrate::Kbps320,
            other => return Err(EncodeError::Bitrate(other)),
        };
        let mut builder = Builder::new().ok_or_else(|| EncodeError::Lame("could not allocate an encoder".into()))?;
        builder.set_num_channels(channels.clamp(1, 2) as u8).map_err(lame)?;
        builder.set_sample_rate(sample_rate).map_err(lame)?;
        builder.set_output_sample_rate(NonZeroU32::new(output_rate(sample_rate))).map_err(lame)?;
        builder.set_brate(bitrate).map_err(lame)?;
        builder.set_quality(Quality::Good).map_err(lame)?;
        builder.set_to_write_vbr_tag(false).map_err(lame)?;
        let upsampling = output_rate(sample_rate).div_ceil(sample_rate.max(1)).max(1) as usize;
        Ok(Self {
            encoder: builder.build().map_err(lame)?,
            channels: channels.clamp(1, 2),
            upsampling,
            out: Vec::new(),
        })
    }

    /// Encodes interleaved samples (one per channel per instant).
    pub fn push(&mut self, interleaved: &[i16]) -> Result<(), EncodeError> {
        let instants = interleaved.len() / self.channels as usize;
        self.out.reserve(mp3lame_encoder::max_required_buffer_size(instants.saturating_mul(self.upsampling)));
        if self.channels == 1 {
            self.encoder.encode_to_vec(MonoPcm(interleaved), &mut self.out).map_err(lame)?;
        } else {
            self.encoder.encode_to_vec(InterleavedPcm(interleaved), &mut self.out).map_err(lame)?;
        }
        Ok(())
    }

    /// Bytes of MP3 written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Flushes the encoder and returns the whole MP3 stream.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        self.out.reserve(7200);
        self.encoder.flush_to_vec::<FlushGap>(&mut self.out).map_err(lame)?;
        Ok(self.out)
    }
}
