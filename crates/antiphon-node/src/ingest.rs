//! Ingest: an MP3 file in, a verified track (segment blocks + manifest) out.
//!
//! symphonia demuxes the file into frames; the core segmenter cuts them into ~6 s segments on
//! frame boundaries without changing a byte; each segment becomes a UnixFS file (a single raw
//! block up to 256 KiB, a balanced dag-pb tree above) and the manifest links their roots. Nothing touches the store until the whole file has been read and checked.

use std::fs::File;
use std::path::{Path, PathBuf};

use antiphon_core::limits::MAX_SEGMENT_BYTES;
use antiphon_core::manifest::MANIFEST_VERSION;
use antiphon_core::segment::Segmenter;
use antiphon_core::unixfs::importer::import_bytes;
use antiphon_core::{Block, ManifestError, SegmentRef, TrackManifest};
use symphonia::core::codecs::CODEC_TYPE_MP3;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// symphonia does not recognise the file as audio.
    #[error("{path} is not an audio file symphonia can read (supported here: MP3)")]
    NotAudio {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: SymphoniaError,
    },
    /// The file is audio, but not MP3.
    #[error("{path} holds a codec other than MP3; this build ingests MP3 only")]
    UnsupportedCodec {
        /// The file.
        path: PathBuf,
    },
    /// The stream lacks a parameter the manifest needs.
    #[error("{path}: the MP3 stream does not declare its {what}")]
    MissingParameter {
        /// The file.
        path: PathBuf,
        /// Which parameter.
        what: &'static str,
    },
    /// Demuxing failed part way.
    #[error("{path}: the MP3 stream is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: SymphoniaError,
    },
    /// The file holds no audio frames.
    #[error("{path} holds no MP3 frames")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A segment is larger than a manifest may declare.
    #[error("{path}: segment {index} is {bytes} bytes, over the {MAX_SEGMENT_BYTES}-byte limit; use shorter segments")]
    SegmentTooLarge {
        /// The file.
        path: PathBuf,
        /// Segment index.
        index: usize,
        /// Its size.
        bytes: usize,
    },
    /// The manifest could not be built.
    #[error("{path}: could not build the track manifest")]
    Manifest {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<ManifestError>,
    },
}

/// A track ready to store: its manifest block and segment blocks.
#[derive(Debug)]
pub struct IngestedTrack {
    /// The manifest.
    pub manifest: TrackManifest,
    /// The manifest's block; its CID is the track CID.
    pub manifest_block: Block,
    /// Every block of every segment (leaves before the nodes above them), in segment order.
    pub segments: Vec<Block>,
}

/// What to record and how to cut.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Title recorded in the manifest.
    pub title: Option<String>,
    /// Artist recorded in the manifest.
    pub artist: Option<String>,
    /// Target segment length in seconds.
    pub segment_secs: u32,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { title: None, artist: None, segment_secs: antiphon_core::segment::TARGET_SEGMENT_SECS }
    }
}

/// Reads and segments an MP3 file. Touches no store.
pub fn ingest_mp3(path: &Path, options: IngestOptions) -> Result<IngestedTrack, IngestError> {
    let IngestOptions { title, artist, segment_secs } = options;
    let file = File::open(path).map_err(|source| IngestError::Read { path: path.into(), source })?;
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("mp3");
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|source| IngestError::NotAudio { path: path.into(), source })?;
    let mut format = probed.format;
    let track = format.default_track().ok_or_else(|| IngestError::Empty { path: path.into() })?;
    if track.codec_params.codec != CODEC_TYPE_MP3 {
        return Err(IngestError::UnsupportedCodec { path: path.into() });
    }
    let track_id = track.id;
    let missing = |what| IngestError::MissingParameter { path: path.into(), what };
    let sample_rate = track.codec_params.sample_rate.ok_or_else(|| missing("sample rate"))?;
    let channels = track.codec_params.channels.ok_or_else(|| missing("channel layout"))?.count() as u32;

    let mut segmenter = Segmenter::new(sample_rate, segment_secs);
    let mut segments = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(source) => return Err(IngestError::Corrupt { path: path.into(), source }),
        };
        if packet.track_id() != track_id {
            continue;
        }
        segments.extend(segmenter.push(&packet.data, packet.dur));
    }
    segments.extend(segmenter.finish());
    if segments.is_empty() {
        return Err(IngestError::Empty { path: path.into() });
    }

    let mut blocks = Vec::with_capacity(segments.len());
    let mut refs = Vec::with_capacity(segments.len());
    for (index, seg) in segments.into_iter().enumerate() {
        if seg.data.len() as u64 > MAX_SEGMENT_BYTES {
            return Err(IngestError::SegmentTooLarge { path: path.into(), index, bytes: seg.data.len() });
        }
        let (file, segment_blocks) = import_bytes(&seg.data);
        refs.push(SegmentRef { cid: file.root, bytes: file.file_size, samples: seg.samples });
        blocks.extend(segment_blocks);
    }
    let manifest = TrackManifest {
        version: MANIFEST_VERSION,
        codec: "audio/mpeg".into(),
        sample_rate,
        channels,
        total_samples: refs.iter().map(|r| r.samples).sum(),
        segments: refs,
        title,
        artist,
    };
    let manifest_block =
        manifest.to_block().map_err(|e| IngestError::Manifest { path: path.into(), source: Box::new(e) })?;
    Ok(IngestedTrack { manifest, manifest_block, segments: blocks })
}
