//! Ingest of every supported format, from the committed fixtures (scripts/make-audio-fixtures.sh
//! made them with ffmpeg: 3 s of a chord, tagged; the WAV is 1 s, untagged).

use std::path::{Path, PathBuf};
use std::process::Command;

use antiphon_core::TrackManifest;
use antiphon_node::store::{DB_FILE, Store};
use assert_cmd::cargo::CommandCargoExt;

fn node() -> Command {
    Command::cargo_bin("antiphon-node").unwrap()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Ingests `file` into `data` and returns the manifest and the store.
fn ingest(data: &Path, file: &Path, extra: &[&str]) -> (TrackManifest, Store) {
    let out = node().arg("--data").arg(data).arg("ingest").arg(file).args(extra).output().unwrap();
    assert!(out.status.success(), "ingest {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    let cid: antiphon_core::Cid = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let store = Store::open(data).unwrap();
    let manifest = TrackManifest::decode(&store.block(&cid).unwrap().unwrap()).unwrap();
    (manifest, store)
}

#[test]
fn every_supported_format_becomes_a_playable_track_of_the_right_length() {
    // (file, codec, samples in the source, tagged, has cover). A passed-through stream's length
    // is its frames' (ffprobe -count_packets: 116 MP3 frames of 1152, 131 ADTS frames of 1024);
    // a transcoded one's is the decoded PCM (3 s, or 1 s for the WAV, at 44.1 kHz after LAME
    // resamples the 22.05 kHz FLAC and WAV).
    let cases = [
        ("chord.mp3", "audio/mpeg", 116 * 1152, true, true),
        ("chord.aac", "audio/aac", 131 * 1024, false, false),
        ("chord.m4a", "audio/mpeg", 3 * 44_100, true, true),
        ("chord.flac", "audio/mpeg", 3 * 44_100, true, true),
        ("chord.ogg", "audio/mpeg", 3 * 44_100, true, false),
        ("chord.wav", "audio/mpeg", 44_100, false, false),
    ];
    for (name, codec, source, tagged, cover) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (m, store) = ingest(dir.path(), &fixture(name), &["--kbps", "128"]);
        assert_eq!(m.codec, codec, "{name}");
        assert_eq!(m.sample_rate, 44_100, "{name}");
        if matches!(name, "chord.mp3" | "chord.aac") {
            assert_eq!(m.total_samples, source, "{name}: passthrough keeps every frame");
        } else {
            // LAME delays the audio by 576 samples and pads the last frame: the frames cover the
            // source, starting within 576 samples and ending within one frame of its end. For
            // M4A, symphonia 0.5 ignores the edit list, so the AAC encoder's priming frame and
            // its last frame's tail (up to 2048 samples) are decoded too. The 22.05 kHz FLAC and
            // WAV go through LAME's resampler, whose filter delay adds up to a frame.
            let decoder_extra = match name {
                "chord.m4a" => 2048,
                "chord.flac" | "chord.wav" => 1152,
                _ => 0,
            };
            assert!(
                (source..=source + 576 + 1152 + decoder_extra).contains(&m.total_samples),
                "{name}: {} samples for {source} in the source",
                m.total_samples
            );
        }
        if tagged {
            assert_eq!(m.title.as_deref(), Some("Fixture Chord"), "{name}");
            assert_eq!(m.artist.as_deref(), Some("Antiphon Tests"), "{name}");
            assert_eq!(m.album.as_deref(), Some("Fixtures"), "{name}");
        }
        assert_eq!(m.cover.is_some(), cover, "{name}: cover");
        if let Some(c) = &m.cover {
            let image = store.block(&c.cid).unwrap().expect("the cover is stored with the track");
            assert_eq!((c.mime.as_str(), image.len() as u64), ("image/png", c.bytes));
            assert!(image.starts_with(b"\x89PNG"));
        }
        for seg in &m.segments {
            let bytes = store.block(&seg.cid).unwrap().unwrap();
            assert_eq!((bytes[0], bytes[1] & 0xf0), (0xff, 0xf0), "{name}: a segment starts on a frame header");
        }
    }
}

#[test]
fn passthrough_keeps_the_frames_of_an_adts_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture("chord.aac");
    let (m, store) = ingest(dir.path(), &file, &["--segment-seconds", "1"]);
    assert_eq!(m.segments.len(), 3 + 1, "3 s in 1 s segments and a short tail");
    let joined: Vec<u8> = m.segments.iter().flat_map(|s| store.block(&s.cid).unwrap().unwrap().to_vec()).collect();
    assert_eq!(joined, std::fs::read(&file).unwrap());
}

#[test]
fn options_override_tags_and_set_the_transcode_bitrate() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--title", "T", "--artist", "A", "--album", "B", "--kbps", "320"];
    let (m, store) = ingest(dir.path(), &fixture("chord.flac"), &args);
    assert_eq!((m.title.as_deref(), m.artist.as_deref(), m.album.as_deref()), (Some("T"), Some("A"), Some("B")));
    let mut first = Vec::new();
    antiphon_node::content::cat(&store, m.segments[0].cid, 0..4, &mut first).unwrap();
    // The first header's bitrate index: 320 kbit/s is index 14 in MPEG-1 layer III.
    assert_eq!(first[2] >> 4, 14);
}

#[test]
fn truncated_and_bogus_files_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ingest(&data, &fixture("chord.wav"), &[]);
    let before = std::fs::read(data.join(DB_FILE)).unwrap();

    let mp3 = std::fs::read(fixture("chord.mp3")).unwrap();
    let truncated = dir.path().join("truncated.mp3");
    std::fs::write(&truncated, &mp3[..mp3.len() - 300]).unwrap();
    let flac = std::fs::read(fixture("chord.flac")).unwrap();
    let cut_flac = dir.path().join("cut.flac");
    std::fs::write(&cut_flac, &flac[..flac.len() / 2]).unwrap();
    let text = dir.path().join("song.mp3");
    std::fs::write(&text, "la la la, this is a text file and not a song\n".repeat(40)).unwrap();
    let mut garbled = mp3.clone();
    let middle = garbled.len() / 2;
    garbled[middle..middle + 64].fill(0);
    let garbled_path = dir.path().join("garbled.mp3");
    std::fs::write(&garbled_path, &garbled).unwrap();
    for (file, expect) in
        [(&truncated, "truncated"), (&cut_flac, "truncated"), (&text, "not an audio file"), (&garbled_path, "corrupt")]
    {
        let out = node().arg("--data").arg(&data).arg("ingest").arg(file).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", file.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{}: {stderr}", file.display());
        assert!(stderr.contains(&file.display().to_string()), "the message names the file: {stderr}");
    }
    assert_eq!(std::fs::read(data.join(DB_FILE)).unwrap(), before, "the store is byte for byte unchanged");
}

/// Writes a 16-bit stereo 44.1 kHz WAV of `secs` seconds of a sweep.
fn write_wav(path: &Path, secs: u32) {
    let frames = 44_100 * secs;
    let data_len = frames * 4;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend(b"RIFF");
    out.extend((36 + data_len).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes()); // PCM
    out.extend(2u16.to_le_bytes());
    out.extend(44_100u32.to_le_bytes());
    out.extend((44_100u32 * 4).to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(data_len.to_le_bytes());
    for i in 0..frames {
        let t = i as f32 / 44_100.0;
        let s = ((t * (220.0 + t) * std::f32::consts::TAU).sin() * 8000.0) as i16;
        out.extend(s.to_le_bytes());
        out.extend(s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn kill_9_during_a_long_ingest_leaves_no_partial_track() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, _) = ingest(&data, &fixture("chord.wav"), &[]);
    let long = dir.path().join("long.wav");
    write_wav(&long, 300);

    // Killed early (while transcoding), then later and later, possibly while committing.
    let mut killed = 0;
    for delay_ms in [300u64, 2500, 4000] {
        let mut child = node().arg("--data").arg(&data).arg("ingest").arg(&long).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        killed += usize::from(!status.success());

        // "Restart": the store opens, and every track it lists is whole.
        let store = Store::open(&data).unwrap();
        let tracks = store.tracks().unwrap();
        assert!(tracks.len() <= 2, "{tracks:?}");
        for (cid, _) in &tracks {
            let blocks = antiphon_core::dag::walk(&store, *cid, &mut |_| {}).expect("a listed track is complete");
            assert!(blocks > 0);
        }
        assert!(
            tracks.iter().any(|(cid, _)| TrackManifest::decode(&store.block(cid).unwrap().unwrap()).unwrap() == first)
        );
    }
    assert!(killed >= 1, "at least the first ingest was killed part way");
}
