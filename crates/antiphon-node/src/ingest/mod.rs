//! Ingest: an audio file in, a verified track (segment blocks, cover, manifest) out.
//!
//! MP3 and ADTS AAC are passed through: [`frames`] splits them into frames byte for byte and
//! the core segmenter cuts those into ~6 s segments. Everything else symphonia decodes (AAC in
//! MP4/M4A, FLAC, WAV, Ogg Vorbis) is transcoded to MP3 with LAME ([`transcode`]) and then cut
//! the same way. Tags ([`tags`]) give title, artist, album and cover art. Each segment becomes
//! a UnixFS file and the manifest links their roots. Nothing touches the store: the caller
//! writes the result in one transaction.

pub mod frames;
pub mod tags;
mod transcode;

use std::path::{Path, PathBuf};

use antiphon_core::limits::{MAX_BLOCK_BYTES, MAX_SEGMENT_BYTES, MAX_SEGMENTS};
use antiphon_core::manifest::MANIFEST_VERSION;
use antiphon_core::segment::Segmenter;
use antiphon_core::unixfs::importer::import_bytes;
use antiphon_core::{Block, Cover, ManifestError, SegmentRef, TrackManifest};
use bytes::Bytes;
use symphonia::core::codecs::{CODEC_TYPE_AAC, CODEC_TYPE_MP3, CODEC_TYPE_NULL};
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::mp3_encoder::EncodeError;
use frames::{FrameError, Frames};
use tags::Tags;

/// Largest file `ingest` reads (1 GiB: an hour of CD-quality WAV fits).
pub const MAX_INGEST_BYTES: u64 = 1 << 30;

/// Default bitrate (kbit/s) of transcoded tracks.
pub const DEFAULT_KBPS: u32 = 320;

/// Why a file was refused; [`IngestFailed`] adds which file.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// The file is larger than [`MAX_INGEST_BYTES`].
    #[error("it is {0} bytes, over the {MAX_INGEST_BYTES}-byte limit")]
    TooLarge(u64),
    /// symphonia does not recognise the file as audio.
    #[error(
        "it is not an audio file symphonia can read (supported: MP3, AAC in ADTS or MP4/M4A, FLAC, WAV, Ogg Vorbis)"
    )]
    NotAudio(#[source] symphonia::core::errors::Error),
    /// The container holds no audio track.
    #[error("it holds no audio track")]
    NoAudioTrack,
    /// The codec has no decoder in this build.
    #[error("its codec is not supported: {0}")]
    UnsupportedCodec(String),
    /// The audio data is damaged.
    #[error("it is corrupt: {0}")]
    Corrupt(String),
    /// The file ends early.
    #[error("it is truncated: {0}")]
    Truncated(String),
    /// A passthrough stream could not be split into frames.
    #[error(transparent)]
    Frames(#[from] FrameError),
    /// The file holds no audio.
    #[error("it holds no audio")]
    Empty,
    /// Transcoding to MP3 failed.
    #[error("transcoding to MP3 failed")]
    Encode(#[from] EncodeError),
    /// A segment is larger than a manifest may declare.
    #[error("segment {index} is {bytes} bytes, over the {MAX_SEGMENT_BYTES}-byte limit; use shorter segments")]
    SegmentTooLarge {
        /// Segment index.
        index: usize,
        /// Its size.
        bytes: usize,
    },
    /// More segments than a manifest may hold.
    #[error("it makes {0} segments, over the {MAX_SEGMENTS} a manifest may hold; use longer segments")]
    TooManySegments(usize),
    /// More audio than [`IngestOptions::max_duration_secs`] (counted while decoding).
    #[error("it decodes to more than {limit_secs} s of audio, the longest accepted")]
    TooLong {
        /// The limit.
        limit_secs: u64,
    },
    /// [`IngestOptions::deadline`] passed.
    #[error("ingesting it took longer than allowed")]
    Deadline,
    /// The manifest could not be built.
    #[error("could not build the track manifest")]
    Manifest(#[source] Box<ManifestError>),
}

/// An ingest that failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot ingest {path}: {kind}")]
pub struct IngestFailed {
    /// The file.
    pub path: PathBuf,
    /// What was wrong.
    #[source]
    pub kind: IngestError,
}

/// What is happening, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding and encoding to MP3; units are samples per channel.
    Transcoding,
    /// Hashing segments into blocks; units are segments.
    Hashing,
}

/// How far an ingest has come; `total` is 0 when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The current stage.
    pub stage: Stage,
    /// Units done.
    pub done: u64,
    /// Units in all, 0 if unknown.
    pub total: u64,
}

/// A track ready to store: its manifest block and every other block.
#[derive(Debug)]
pub struct IngestedTrack {
    /// The manifest.
    pub manifest: TrackManifest,
    /// The manifest's block; its CID is the track CID.
    pub manifest_block: Block,
    /// Every block of every segment (leaves before the nodes above them) and of the cover.
    pub segments: Vec<Block>,
    /// Whether the audio was transcoded to MP3 (false: passed through untouched).
    pub transcoded: bool,
}

/// What to record and how to cut.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Title recorded in the manifest; the file's tag if absent.
    pub title: Option<String>,
    /// Artist recorded in the manifest; the file's tag if absent.
    pub artist: Option<String>,
    /// Album recorded in the manifest; the file's tag if absent.
    pub album: Option<String>,
    /// Target segment length in seconds.
    pub segment_secs: u32,
    /// Target length of the first segment in seconds; later ones double up to
    /// `segment_secs`. 0: every segment aims at `segment_secs`.
    pub first_segment_secs: u32,
    /// Bitrate of transcoded audio, kbit/s.
    pub kbps: u32,
    /// Longest audio accepted, in seconds: decoding stops with [`IngestError::TooLong`] as soon
    /// as more has come out, whatever the file declares.
    pub max_duration_secs: u64,
    /// When set, ingest stops with [`IngestError::Deadline`] once this instant has passed.
    pub deadline: Option<std::time::Instant>,
}

/// The longest audio ingested unless told otherwise: six hours (albums, long mixes).
pub const DEFAULT_MAX_DURATION_SECS: u64 = 6 * 3600;

/// The bounds one ingest runs within, checked as audio comes out of the decoder.
pub(crate) struct Limits {
    max_duration_secs: u64,
    deadline: Option<std::time::Instant>,
}

impl Limits {
    fn of(options: &IngestOptions) -> Self {
        Self { max_duration_secs: options.max_duration_secs, deadline: options.deadline }
    }

    /// Fails once `samples` at `rate` exceed the duration, or the deadline has passed.
    pub(crate) fn check(&self, samples: u64, rate: u32) -> Result<(), IngestError> {
        if samples > self.max_duration_secs.saturating_mul(u64::from(rate.max(1))) {
            return Err(IngestError::TooLong { limit_secs: self.max_duration_secs });
        }
        if self.deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return Err(IngestError::Deadline);
        }
        Ok(())
    }
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            title: None,
            artist: None,
            album: None,
            segment_secs: antiphon_core::segment::TARGET_SEGMENT_SECS,
            first_segment_secs: antiphon_core::segment::FIRST_SEGMENT_SECS,
            kbps: DEFAULT_KBPS,
            max_duration_secs: DEFAULT_MAX_DURATION_SECS,
            deadline: None,
        }
    }
}

/// Reads, checks and segments an audio file. Touches no store.
pub fn ingest_file(
    path: &Path,
    options: IngestOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<IngestedTrack, IngestFailed> {
    ingest_inner(path, options, progress).map_err(|kind| IngestFailed { path: path.into(), kind })
}

fn ingest_inner(
    path: &Path,
    options: IngestOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<IngestedTrack, IngestError> {
    let size = std::fs::metadata(path).map_err(IngestError::Read)?.len();
    if size > MAX_INGEST_BYTES {
        return Err(IngestError::TooLarge(size));
    }
    let data = Bytes::from(std::fs::read(path).map_err(IngestError::Read)?);

    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut probed = probe(&data, &hint)?;
    let mut tags = Tags::default();
    if let Some(revision) = probed.metadata.get().as_ref().and_then(|m| m.current()) {
        tags.absorb(revision);
    }
    if let Some(revision) = probed.format.metadata().current() {
        tags.absorb(revision);
    }
    let codec = probed
        .format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .map(|t| t.codec_params.codec)
        .ok_or(IngestError::NoAudioTrack)?;

    // Passthrough for elementary MP3 and ADTS streams; MP4/M4A AAC is transcoded like the rest.
    let limits = Limits::of(&options);
    if codec == CODEC_TYPE_MP3 && frames::looks_like_mp3(&data) {
        let frames = frames::split_mp3(&data)?;
        limits.check(frames.frames.iter().map(|f| f.samples).sum(), frames.sample_rate)?;
        return build(&data, frames, "audio/mpeg", false, tags, options, progress);
    }
    if codec == CODEC_TYPE_AAC && frames::looks_like_adts(&data) {
        let frames = frames::split_adts(&data)?;
        limits.check(frames.frames.iter().map(|f| f.samples).sum(), frames.sample_rate)?;
        return build(&data, frames, "audio/aac", false, tags, options, progress);
    }
    // A first pass decodes without encoding, to refuse what is too long before LAME starts.
    let mut measuring = probe(&data, &hint)?;
    transcode::measure(measuring.format.as_mut(), &limits)?;
    drop(measuring);
    let mp3 = transcode::to_mp3(probed.format.as_mut(), options.kbps, &limits, progress)?;
    let frames = frames::split_mp3(&mp3)?;
    build(&mp3, frames, "audio/mpeg", true, tags, options, progress)
}

/// Opens `data` as a container symphonia reads.
fn probe(data: &Bytes, hint: &Hint) -> Result<symphonia::core::probe::ProbeResult, IngestError> {
    let mss = MediaSourceStream::new(Box::new(std::io::Cursor::new(data.clone())), Default::default());
    symphonia::default::get_probe()
        .format(hint, mss, &FormatOptions { enable_gapless: true, ..Default::default() }, &MetadataOptions::default())
        .map_err(IngestError::NotAudio)
}

fn build(
    data: &[u8],
    stream: Frames,
    codec: &str,
    transcoded: bool,
    tags: Tags,
    options: IngestOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<IngestedTrack, IngestError> {
    let mut segmenter = Segmenter::ramped(stream.sample_rate, options.first_segment_secs, options.segment_secs);
    let mut segments = Vec::new();
    for frame in &stream.frames {
        segments.extend(segmenter.push(&data[frame.range.clone()], frame.samples));
    }
    segments.extend(segmenter.finish());
    if segments.is_empty() {
        return Err(IngestError::Empty);
    }
    if segments.len() > MAX_SEGMENTS {
        return Err(IngestError::TooManySegments(segments.len()));
    }

    let total = segments.len() as u64;
    let mut blocks = Vec::with_capacity(segments.len());
    let mut refs = Vec::with_capacity(segments.len());
    for (index, seg) in segments.into_iter().enumerate() {
        if seg.data.len() as u64 > MAX_SEGMENT_BYTES {
            return Err(IngestError::SegmentTooLarge { index, bytes: seg.data.len() });
        }
        let (file, segment_blocks) = import_bytes(&seg.data);
        refs.push(SegmentRef { cid: file.root, bytes: file.file_size, samples: seg.samples });
        blocks.extend(segment_blocks);
        progress(Progress { stage: Stage::Hashing, done: index as u64 + 1, total });
    }
    let cover = tags.cover.map(|(image, mime)| {
        let (file, cover_blocks) = import_bytes(&image);
        blocks.extend(cover_blocks);
        Cover { cid: file.root, bytes: file.file_size, mime: mime.into() }
    });
    debug_assert!(blocks.iter().all(|b| b.data().len() <= MAX_BLOCK_BYTES));
    let manifest = TrackManifest {
        version: MANIFEST_VERSION,
        codec: codec.into(),
        sample_rate: stream.sample_rate,
        channels: stream.channels,
        total_samples: refs.iter().map(|r| r.samples).sum(),
        segments: refs,
        title: options.title.or(tags.title),
        artist: options.artist.or(tags.artist),
        album: options.album.or(tags.album),
        cover,
    };
    let manifest_block = manifest.to_block().map_err(|e| IngestError::Manifest(Box::new(e)))?;
    Ok(IngestedTrack { manifest, manifest_block, segments: blocks, transcoded })
}
