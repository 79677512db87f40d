//! Splitting MP3 and ADTS AAC elementary streams into frames, byte for byte.
//!
//! symphonia's demuxers resynchronise silently and strip ADTS headers, so passthrough uses this
//! walker instead: it skips an ID3v2 tag at the start, then reads frames back to back and
//! refuses junk between them, a frame cut short at the end, or a change of sample rate or
//! channel count part way. Trailing ID3v1/APE/Lyrics tags are allowed. An MP3 Xing/Info/VBRI
//! header frame (silent, describing the file) is dropped.

use std::ops::Range;

/// One frame: where it lies in the file and how many samples per channel it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Byte range in the input.
    pub range: Range<usize>,
    /// Samples per channel.
    pub samples: u64,
}

/// Frames of one stream, all at one sample rate and channel count.
#[derive(Debug)]
pub struct Frames {
    /// The frames, in order.
    pub frames: Vec<Frame>,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
}

/// Why a stream could not be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No frame header where one must start.
    #[error("no {kind} frame header at byte {offset} (the file is corrupt)")]
    NoSync {
        /// "MP3" or "ADTS".
        kind: &'static str,
        /// Byte offset.
        offset: usize,
    },
    /// The last frame is cut short.
    #[error("the file is truncated: the {kind} frame at byte {offset} needs {needed} bytes, {available} remain")]
    Truncated {
        /// "MP3" or "ADTS".
        kind: &'static str,
        /// Byte offset of the frame.
        offset: usize,
        /// Its declared length.
        needed: usize,
        /// Bytes left in the file.
        available: usize,
    },
    /// A frame changes the stream's parameters.
    #[error("the {kind} frame at byte {offset} changes the stream to {sample_rate} Hz, {channels} channel(s)")]
    ParametersChanged {
        /// "MP3" or "ADTS".
        kind: &'static str,
        /// Byte offset.
        offset: usize,
        /// New sample rate.
        sample_rate: u32,
        /// New channel count.
        channels: u32,
    },
    /// A header uses a form this build does not pass through.
    #[error("the {kind} frame at byte {offset} is {what}, which is not supported")]
    Unsupported {
        /// "MP3" or "ADTS".
        kind: &'static str,
        /// Byte offset.
        offset: usize,
        /// What it is.
        what: &'static str,
    },
    /// No frames at all.
    #[error("the file holds no {kind} frames")]
    Empty {
        /// "MP3" or "ADTS".
        kind: &'static str,
    },
}

/// How far past an ID3v2 tag junk before the first MP3 frame is tolerated (some encoders pad).
const MAX_LEADING_JUNK: usize = 64 * 1024;

/// Length of an ID3v2 tag at the start of `data`, 0 if there is none.
pub fn id3v2_len(data: &[u8]) -> usize {
    if data.len() < 10 || &data[..3] != b"ID3" || data[6..10].iter().any(|b| b & 0x80 != 0) {
        return 0;
    }
    let size = data[6..10].iter().fold(0usize, |acc, b| (acc << 7) | usize::from(*b));
    let footer = if data[5] & 0x10 != 0 { 10 } else { 0 };
    (10 + size + footer).min(data.len())
}

/// Whether the bytes at the end of the stream are a known trailing tag.
fn is_trailing_tag(rest: &[u8]) -> bool {
    rest.starts_with(b"TAG") || rest.starts_with(b"APETAGEX") || rest.starts_with(b"LYRICSBEGIN")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mp3Header {
    len: usize,
    samples: u64,
    sample_rate: u32,
    channels: u32,
    /// Offset of the Xing/Info tag inside the frame (after the side information).
    xing_offset: usize,
}

/// Parses an MPEG audio header; `Ok(None)` if `h` does not start with a valid one.
fn mp3_header(h: &[u8]) -> Result<Option<Mp3Header>, &'static str> {
    if h.len() < 4 || h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
        return Ok(None);
    }
    let version = (h[1] >> 3) & 3; // 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
    let layer = (h[1] >> 1) & 3; // 1: layer III
    let bitrate_index = usize::from(h[2] >> 4);
    let rate_index = usize::from((h[2] >> 2) & 3);
    if version == 1 || layer == 0 || bitrate_index == 15 || rate_index == 3 {
        return Ok(None);
    }
    if layer != 1 {
        return Err("MPEG layer I or II (only layer III, MP3, is passed through)");
    }
    if bitrate_index == 0 {
        return Err("free-format MP3");
    }
    const MPEG1_KBPS: [u32; 15] = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
    const MPEG2_KBPS: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    let mpeg1 = version == 3;
    let kbps = if mpeg1 { MPEG1_KBPS[bitrate_index] } else { MPEG2_KBPS[bitrate_index] };
    let base_rate = [44_100, 48_000, 32_000][rate_index];
    let sample_rate = match version {
        3 => base_rate,
        2 => base_rate / 2,
        _ => base_rate / 4,
    };
    let padding = usize::from((h[2] >> 1) & 1);
    let mono = h[3] >> 6 == 3;
    let (samples, coefficient) = if mpeg1 { (1152, 144) } else { (576, 72) };
    let len = (coefficient * kbps as usize * 1000) / sample_rate as usize + padding;
    let side_info = match (mpeg1, mono) {
        (true, false) => 32,
        (true, true) | (false, false) => 17,
        (false, true) => 9,
    };
    let crc = if h[1] & 1 == 0 { 2 } else { 0 };
    Ok(Some(Mp3Header {
        len,
        samples,
        sample_rate,
        channels: if mono { 1 } else { 2 },
        xing_offset: 4 + crc + side_info,
    }))
}

/// Whether a frame is a Xing/Info or VBRI header frame rather than audio.
fn is_info_frame(frame: &[u8], header: &Mp3Header) -> bool {
    let at = |offset: usize, tag: &[u8]| frame.get(offset..offset + tag.len()) == Some(tag);
    at(header.xing_offset, b"Xing") || at(header.xing_offset, b"Info") || at(36, b"VBRI")
}

/// Splits an MP3 file (optionally ID3-tagged) into its audio frames.
pub fn split_mp3(data: &[u8]) -> Result<Frames, FrameError> {
    const KIND: &str = "MP3";
    let start = id3v2_len(data);
    // Find the first frame: a header whose successor (if the file goes on) is a header too.
    let mut pos = start;
    let first = loop {
        if pos > start + MAX_LEADING_JUNK || pos + 4 > data.len() {
            return Err(if pos > start {
                FrameError::NoSync { kind: KIND, offset: start }
            } else {
                FrameError::Empty { kind: KIND }
            });
        }
        match mp3_header(&data[pos..]) {
            Ok(Some(h)) => {
                let next = pos + h.len;
                let confirmed = next >= data.len()
                    || is_trailing_tag(&data[next..])
                    || matches!(mp3_header(&data[next..]), Ok(Some(n)) if n.sample_rate == h.sample_rate);
                if confirmed {
                    break h;
                }
                pos += 1;
            }
            Ok(None) => pos += 1,
            Err(what) => return Err(FrameError::Unsupported { kind: KIND, offset: pos, what }),
        }
    };
    let mut frames = Vec::new();
    let mut first_frame = true;
    while pos < data.len() {
        let rest = &data[pos..];
        if is_trailing_tag(rest) {
            break;
        }
        let header = match mp3_header(rest) {
            Ok(Some(h)) => h,
            Ok(None) if rest.len() < 4 && rest.iter().all(|b| *b == 0xFF || *b == 0) => break,
            Ok(None) => return Err(FrameError::NoSync { kind: KIND, offset: pos }),
            Err(what) => return Err(FrameError::Unsupported { kind: KIND, offset: pos, what }),
        };
        if header.len > rest.len() {
            return Err(FrameError::Truncated { kind: KIND, offset: pos, needed: header.len, available: rest.len() });
        }
        if header.sample_rate != first.sample_rate || header.channels != first.channels {
            return Err(FrameError::ParametersChanged {
                kind: KIND,
                offset: pos,
                sample_rate: header.sample_rate,
                channels: header.channels,
            });
        }
        if !(first_frame && is_info_frame(&rest[..header.len], &header)) {
            frames.push(Frame { range: pos..pos + header.len, samples: header.samples });
        }
        first_frame = false;
        pos += header.len;
    }
    if frames.is_empty() {
        return Err(FrameError::Empty { kind: KIND });
    }
    Ok(Frames { frames, sample_rate: first.sample_rate, channels: first.channels })
}

/// Whether `data` (after any ID3v2 tag) starts with an ADTS header.
pub fn looks_like_adts(data: &[u8]) -> bool {
    let start = id3v2_len(data);
    data.len() >= start + 2 && data[start] == 0xFF && data[start + 1] & 0xF6 == 0xF0
}

/// Whether `data` (after any ID3v2 tag) starts with an MPEG audio layer III header.
pub fn looks_like_mp3(data: &[u8]) -> bool {
    let start = id3v2_len(data);
    matches!(data.get(start..).map(mp3_header), Some(Ok(Some(_))))
}

/// Splits an ADTS AAC stream (optionally ID3-tagged) into its frames, headers included.
pub fn split_adts(data: &[u8]) -> Result<Frames, FrameError> {
    const KIND: &str = "ADTS";
    const RATES: [u32; 13] =
        [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];
    let mut pos = id3v2_len(data);
    let mut frames = Vec::new();
    let mut params: Option<(u32, u32)> = None;
    while pos < data.len() {
        let rest = &data[pos..];
        if is_trailing_tag(rest) {
            break;
        }
        if rest.len() < 7 {
            return Err(FrameError::Truncated { kind: KIND, offset: pos, needed: 7, available: rest.len() });
        }
        if rest[0] != 0xFF || rest[1] & 0xF6 != 0xF0 {
            return Err(FrameError::NoSync { kind: KIND, offset: pos });
        }
        let rate_index = usize::from((rest[2] >> 2) & 0x0F);
        let channels = u32::from(((rest[2] & 1) << 2) | (rest[3] >> 6));
        let len = (usize::from(rest[3] & 3) << 11) | (usize::from(rest[4]) << 3) | usize::from(rest[5] >> 5);
        let blocks = u64::from(rest[6] & 3) + 1;
        let header_len = if rest[1] & 1 == 0 { 9 } else { 7 };
        let Some(&sample_rate) = RATES.get(rate_index) else {
            return Err(FrameError::Unsupported { kind: KIND, offset: pos, what: "a reserved sample rate" });
        };
        if channels == 0 {
            return Err(FrameError::Unsupported {
                kind: KIND,
                offset: pos,
                what: "a channel layout given in-band (PCE)",
            });
        }
        if len < header_len {
            return Err(FrameError::NoSync { kind: KIND, offset: pos });
        }
        if len > rest.len() {
            return Err(FrameError::Truncated { kind: KIND, offset: pos, needed: len, available: rest.len() });
        }
        match params {
            None => params = Some((sample_rate, channels)),
            Some(p) if p != (sample_rate, channels) => {
                return Err(FrameError::ParametersChanged { kind: KIND, offset: pos, sample_rate, channels });
            }
            Some(_) => {}
        }
        frames.push(Frame { range: pos..pos + len, samples: 1024 * blocks });
        pos += len;
    }
    match params {
        Some((sample_rate, channels)) => Ok(Frames { frames, sample_rate, channels }),
        None => Err(FrameError::Empty { kind: KIND }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MPEG-1 layer III, 128 kbit/s, 44.1 kHz stereo frame (417 bytes, no padding).
    fn mp3_frame(fill: u8) -> Vec<u8> {
        let mut f = vec![fill; 417];
        f[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x00]);
        f
    }

    fn adts_frame(payload: usize) -> Vec<u8> {
        let len = payload + 7;
        // AAC LC, 44.1 kHz (index 4), 2 channels, no CRC, one raw data block.
        let mut f = vec![
            0xFF,
            0xF1,
            0x50,
            0x80 | ((len >> 11) as u8 & 3),
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1F,
            0xFC,
        ];
        f.resize(len, 0x21);
        f
    }

    #[test]
    fn mp3_frames_are_found_byte_for_byte_after_an_id3_tag() {
        let mut data = b"ID3\x03\x00\x00\x00\x00\x00\x05hello".to_vec();
        for i in 0..3 {
            data.extend(mp3_frame(i));
        }
        data.extend(b"TAG");
        data.resize(data.len() + 125, 0);
        let frames = split_mp3(&data).unwrap();
        assert_eq!((frames.sample_rate, frames.channels), (44_100, 2));
        assert_eq!(frames.frames.len(), 3);
        assert_eq!(frames.frames[0].range, 15..15 + 417);
        assert!(frames.frames.iter().all(|f| f.samples == 1152));
    }

    #[test]
    fn a_truncated_mp3_is_refused() {
        let mut data = [mp3_frame(1), mp3_frame(2)].concat();
        data.truncate(417 + 200);
        assert_eq!(
            split_mp3(&data).unwrap_err(),
            FrameError::Truncated { kind: "MP3", offset: 417, needed: 417, available: 200 }
        );
    }

    #[test]
    fn junk_between_mp3_frames_is_refused() {
        let data = [mp3_frame(1), mp3_frame(2), vec![0x00; 10], mp3_frame(3)].concat();
        assert_eq!(split_mp3(&data).unwrap_err(), FrameError::NoSync { kind: "MP3", offset: 834 });
    }

    #[test]
    fn text_is_not_mp3() {
        let text = b"This is not audio, only words in a file renamed to .mp3\n".repeat(50);
        assert!(matches!(split_mp3(&text), Err(FrameError::NoSync { .. } | FrameError::Empty { .. })));
        assert!(!looks_like_mp3(&text));
    }

    #[test]
    fn a_xing_frame_is_dropped() {
        let mut info = mp3_frame(0);
        info[36..40].copy_from_slice(b"Info");
        let data = [info, mp3_frame(1)].concat();
        let frames = split_mp3(&data).unwrap();
        assert_eq!(frames.frames.len(), 1);
        assert_eq!(frames.frames[0].range.start, 417);
    }

    #[test]
    fn adts_frames_keep_their_headers() {
        let data = [adts_frame(100), adts_frame(200)].concat();
        assert!(looks_like_adts(&data));
        let frames = split_adts(&data).unwrap();
        assert_eq!((frames.sample_rate, frames.channels), (44_100, 2));
        assert_eq!(frames.frames[1].range, 107..314);
        assert_eq!(frames.frames[0].samples, 1024);
        let cut = &data[..250];
        assert!(matches!(split_adts(cut), Err(FrameError::Truncated { offset: 107, .. })));
    }
}
