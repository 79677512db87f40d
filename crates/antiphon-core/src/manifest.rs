//! The track manifest: a dag-cbor node whose links are the track's segments.
//!
//! The manifest's CID is the track's identity. Its segment links are real IPLD links (CBOR tag
//! 42), so pinning the manifest in any IPFS implementation pins the whole track. Decoding is
//! strict: unknown fields, wrong types, impossible counts and sizes that do not add up are all
//! refused. The format is specified in `docs/manifest.md`.

use crate::block::Cid;
use serde::{Deserialize, Serialize};

use crate::block::{Block, DAG_CBOR, DAG_PB, HashFn, RAW, VerifyError};
use crate::limits::{
    MAX_BLOCK_BYTES, MAX_COVER_BYTES, MAX_MANIFEST_BYTES, MAX_SEGMENT_BYTES, MAX_SEGMENTS, MAX_TEXT_BYTES,
};

/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u64 = 1;

/// Codecs (MSE MIME types) a manifest may name.
pub const KNOWN_CODECS: &[&str] = &["audio/mpeg", "audio/aac"];

/// One segment of a track: about six seconds of audio cut on frame boundaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRef {
    /// CID of the segment's bytes (a raw block, or a UnixFS file root for large segments).
    pub cid: Cid,
    /// Length of the segment's bytes.
    pub bytes: u64,
    /// Duration of the segment in samples per channel, at the track's sample rate.
    pub samples: u64,
}

/// A track: its codec, its audio parameters and its segments in playback order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackManifest {
    /// Format version, [`MANIFEST_VERSION`].
    pub version: u64,
    /// MIME type of the segments as Media Source Extensions expects it, e.g. `audio/mpeg`.
    pub codec: String,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of audio channels.
    pub channels: u32,
    /// Total duration in samples per channel: the sum of the segments' samples.
    pub total_samples: u64,
    /// The segments in playback order.
    pub segments: Vec<SegmentRef>,
    /// Title of the track, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Artist of the track, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artist: Option<String>,
    /// Album the track belongs to, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub album: Option<String>,
    /// Cover art, if the source file carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover: Option<Cover>,
}

/// A track's cover art: an image stored as a UnixFS file, linked so pinning the track pins it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cover {
    /// The image file (a raw block, or a UnixFS file root).
    pub cid: Cid,
    /// Length of the image in bytes.
    pub bytes: u64,
    /// Its MIME type, one of [`COVER_TYPES`].
    pub mime: String,
}

/// Image types a cover may have.
pub const COVER_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp", "image/gif"];

/// Why bytes were refused as a track manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The encoded manifest is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest of {0} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    /// The bytes are not a dag-cbor manifest of the expected shape.
    #[error("manifest is not valid dag-cbor of the expected shape")]
    Decode(#[source] serde_ipld_dagcbor::DecodeError<std::convert::Infallible>),
    /// The manifest could not be encoded.
    #[error("manifest could not be encoded")]
    Encode(#[source] serde_ipld_dagcbor::EncodeError<std::collections::TryReserveError>),
    /// The manifest decoded but its content is inconsistent or out of bounds.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// The manifest block does not hash to its CID.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

impl TrackManifest {
    /// Decodes and validates a manifest.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let manifest: Self = serde_ipld_dagcbor::from_slice(bytes).map_err(ManifestError::Decode)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Validates and encodes the manifest as canonical dag-cbor.
    pub fn encode(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        let bytes = serde_ipld_dagcbor::to_vec(self).map_err(ManifestError::Encode)?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// Encodes the manifest into its dag-cbor block; the block's CID is the track's CID.
    pub fn to_block(&self) -> Result<Block, ManifestError> {
        Ok(Block::from_data(DAG_CBOR, self.encode()?)?)
    }

    /// Decodes a manifest from a verified block, refusing blocks that are not dag-cbor.
    pub fn from_block(block: &Block) -> Result<Self, ManifestError> {
        if block.cid().codec() != DAG_CBOR {
            return Err(ManifestError::Invalid(format!(
                "{} has codec {:#x}, a manifest is dag-cbor (0x71)",
                block.cid(),
                block.cid().codec()
            )));
        }
        Self::decode(block.data())
    }

    /// Total duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.total_samples as f64 / f64::from(self.sample_rate)
    }

    /// Start time of segment `index` in seconds, from the durations of the segments before it.
    pub fn segment_start_secs(&self, index: usize) -> f64 {
        let before: u64 = self.segments.iter().take(index).map(|s| s.samples).sum();
        before as f64 / f64::from(self.sample_rate)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |msg: String| Err(ManifestError::Invalid(msg));
        if self.version != MANIFEST_VERSION {
            return invalid(format!("version {} is not supported (expected {MANIFEST_VERSION})", self.version));
        }
        if !KNOWN_CODECS.contains(&self.codec.as_str()) {
            return invalid(format!("codec {:?} is not one of {KNOWN_CODECS:?}", truncate(&self.codec)));
        }
        if !(8_000..=192_000).contains(&self.sample_rate) {
            return invalid(format!("sample rate {} Hz is out of range", self.sample_rate));
        }
        if !(1..=8).contains(&self.channels) {
            return invalid(format!("{} channels is out of range", self.channels));
        }
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return invalid(format!("{} segments (expected 1 to {MAX_SEGMENTS})", self.segments.len()));
        }
        if let Some(cover) = &self.cover {
            if !COVER_TYPES.contains(&cover.mime.as_str()) {
                return invalid(format!("cover type {:?} is not one of {COVER_TYPES:?}", truncate(&cover.mime)));
            }
            if cover.bytes == 0 || cover.bytes > MAX_COVER_BYTES {
                return invalid(format!("cover of {} bytes (expected 1 to {MAX_COVER_BYTES})", cover.bytes));
            }
            check_file_link("cover", &cover.cid, cover.bytes)?;
        }
        for field in [&self.title, &self.artist, &self.album].into_iter().flatten() {
            if field.len() > MAX_TEXT_BYTES {
                return invalid(format!("a text field of {} bytes exceeds {MAX_TEXT_BYTES}", field.len()));
            }
        }
        let mut sum: u64 = 0;
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.samples == 0 || seg.bytes == 0 {
                return invalid(format!("segment {i} is empty"));
            }
            check_file_link(&format!("segment {i}"), &seg.cid, seg.bytes)?;
            if seg.bytes > MAX_SEGMENT_BYTES {
                return invalid(format!("segment {i} claims {} bytes, over {MAX_SEGMENT_BYTES}", seg.bytes));
            }
            // No segment may be longer than a minute: it bounds what a player buffers.
            if seg.samples > u64::from(self.sample_rate) * 60 {
                return invalid(format!("segment {i} lasts longer than 60 s"));
            }
            sum = sum.saturating_add(seg.samples);
        }
        if sum != self.total_samples {
            return invalid(format!("segments add up to {sum} samples but total_samples is {}", self.total_samples));
        }
        Ok(())
    }
}

/// Checks a link to a UnixFS file of `bytes` bytes: raw or dag-pb, with a verifiable hash.
fn check_file_link(what: &str, cid: &Cid, bytes: u64) -> Result<(), ManifestError> {
    let invalid = |msg: String| Err(ManifestError::Invalid(msg));
    match cid.codec() {
        RAW if bytes > MAX_BLOCK_BYTES as u64 => {
            return invalid(format!("{what} is one raw block but claims {bytes} bytes"));
        }
        RAW | DAG_PB => {}
        other => return invalid(format!("{what} links to codec {other:#x}, not raw or dag-pb")),
    }
    if HashFn::from_code(cid.hash().code()).is_none() {
        return invalid(format!("{what} uses multihash {:#x}, which cannot be verified", cid.hash().code()));
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::block::cid_v1;

    pub(crate) fn sample() -> TrackManifest {
        let segments =
            (0..3u8).map(|i| SegmentRef { cid: cid_v1(RAW, &[i]), bytes: 1000, samples: 44_100 * 6 }).collect();
        TrackManifest {
            version: MANIFEST_VERSION,
            codec: "audio/mpeg".into(),
            sample_rate: 44_100,
            channels: 2,
            total_samples: 44_100 * 18,
            segments,
            title: Some("Test".into()),
            artist: None,
            album: None,
            cover: None,
        }
    }

    #[test]
    fn round_trips_and_is_canonical() {
        let m = sample();
        let bytes = m.encode().unwrap();
        let back = TrackManifest::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode().unwrap(), bytes);
        let block = m.to_block().unwrap();
        assert_eq!(block.cid().codec(), crate::block::DAG_CBOR);
        assert_eq!(TrackManifest::from_block(&block).unwrap(), m);
        assert!((m.duration_secs() - 18.0).abs() < 1e-9);
        assert!((m.segment_start_secs(2) - 12.0).abs() < 1e-9);
    }

    #[test]
    fn links_are_ipld_links() {
        let bytes = sample().encode().unwrap();
        // CBOR tag 42 (0xd8 0x2a) precedes every CID.
        let tags = bytes.windows(2).filter(|w| w == &[0xd8, 0x2a]).count();
        assert_eq!(tags, 3);
    }

    #[test]
    fn durations_must_add_up() {
        let mut m = sample();
        m.total_samples += 1;
        assert!(matches!(m.encode(), Err(ManifestError::Invalid(_))));
    }

    #[test]
    fn unknown_fields_and_garbage_are_refused() {
        assert!(TrackManifest::decode(b"\xa1\x61x\x01").is_err());
        assert!(TrackManifest::decode(&[0xff; 40]).is_err());
        assert!(TrackManifest::decode(&[]).is_err());
    }

    #[test]
    fn segment_links_must_be_verifiable_files_of_sane_size() {
        let mut m = sample();
        m.segments[1].cid = cid_v1(DAG_CBOR, b"x");
        assert!(matches!(m.encode(), Err(ManifestError::Invalid(_))), "a dag-cbor segment");
        let mut m = sample();
        m.segments[1].bytes = MAX_BLOCK_BYTES as u64 + 1;
        assert!(matches!(m.encode(), Err(ManifestError::Invalid(_))), "a raw segment over one block");
        m.segments[1].cid = cid_v1(DAG_PB, b"x");
        assert!(m.encode().is_ok(), "a multi-block UnixFS segment");
        m.segments[1].bytes = MAX_SEGMENT_BYTES + 1;
        assert!(matches!(m.encode(), Err(ManifestError::Invalid(_))));
        let mut m = sample();
        let sha1 = crate::block::Multihash::wrap(0x11, &[0u8; 20]).unwrap();
        m.segments[0].cid = crate::Cid::new_v1(RAW, sha1);
        assert!(matches!(m.encode(), Err(ManifestError::Invalid(_))), "an unverifiable hash");
    }

    #[test]
    fn duplicate_keys_and_wrong_types_are_refused() {
        let good = sample().encode().unwrap();
        // {"version": "1", ...}: a text version.
        let mut text_version = good.clone();
        let at = text_version.windows(8).position(|w| w == b"version\x01").unwrap() + 7;
        text_version.splice(at..at + 1, [0x61, b'1']);
        assert!(TrackManifest::decode(&text_version).is_err());
        // A segment link as plain bytes instead of tag 42.
        let untagged: Vec<u8> = {
            let mut b = good.clone();
            let at = b.windows(2).position(|w| w == [0xd8, 0x2a]).unwrap();
            b.drain(at..at + 2);
            b
        };
        assert!(TrackManifest::decode(&untagged).is_err());
    }

    #[test]
    fn a_cover_is_a_link_of_a_known_image_type() {
        let mut m = sample();
        m.album = Some("Album".into());
        m.cover = Some(Cover { cid: cid_v1(RAW, b"png"), bytes: 3, mime: "image/png".into() });
        let bytes = m.encode().unwrap();
        assert_eq!(TrackManifest::decode(&bytes).unwrap(), m);
        assert_eq!(bytes.windows(2).filter(|w| w == &[0xd8, 0x2a]).count(), 4, "the cover is an IPLD link");
        let mut bad = m.clone();
        bad.cover.as_mut().unwrap().mime = "text/html".into();
        assert!(matches!(bad.encode(), Err(ManifestError::Invalid(_))));
        let mut bad = m.clone();
        bad.cover.as_mut().unwrap().bytes = MAX_COVER_BYTES + 1;
        assert!(matches!(bad.encode(), Err(ManifestError::Invalid(_))));
        let mut bad = m;
        bad.cover.as_mut().unwrap().cid = cid_v1(DAG_CBOR, b"x");
        assert!(matches!(bad.encode(), Err(ManifestError::Invalid(_))));
    }

    #[test]
    fn unknown_codec_is_refused() {
        let mut m = sample();
        m.codec = "video/x-nonsense".into();
        assert!(matches!(m.encode(), Err(ManifestError::Invalid(_))));
    }
}
