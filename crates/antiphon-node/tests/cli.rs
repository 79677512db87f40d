//! The `antiphon-node` binary as an operator uses it.

use std::path::Path;

use antiphon_core::TrackManifest;
use antiphon_node::store::{DB_FILE, Store};
use assert_cmd::Command;

fn node() -> Command {
    Command::cargo_bin("antiphon-node").unwrap()
}

fn demo_mp3(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let path = dir.join("demo.mp3");
    node().args(["demo-track", "-o"]).arg(&path).args(["--seconds", &seconds.to_string()]).assert().success();
    path
}

#[test]
fn help_describes_every_subcommand_and_option() {
    let out = node().arg("--help").assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    for word in ["ingest", "serve", "demo-track", "--data"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    assert!(!text.contains("corrupt-block"), "the fault-injection command stays hidden");
    for (sub, options) in [
        ("ingest", &["--title", "--artist", "<FILE>"][..]),
        ("serve", &["--listen", "--http", "--www", "4003/webrtc-direct"][..]),
        ("demo-track", &["--output", "--seconds"][..]),
    ] {
        let out = node().args([sub, "--help"]).assert().success().get_output().stdout.clone();
        let text = String::from_utf8(out).unwrap();
        for option in options {
            assert!(text.contains(option), "`{sub} --help` lacks {option}:\n{text}");
        }
    }
}

#[test]
fn ingest_cuts_frame_aligned_segments_that_add_up_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = demo_mp3(dir.path(), 20);
    let data = dir.path().join("data");
    let out = node().arg("--data").arg(&data).arg("ingest").arg(&mp3).assert().success().get_output().stdout.clone();
    let cid: cid::Cid = String::from_utf8(out).unwrap().trim().parse().unwrap();

    let store = Store::open(&data).unwrap();
    assert_eq!(store.tracks().unwrap().len(), 1);
    let manifest = TrackManifest::decode(&store.block(&cid).unwrap().unwrap()).unwrap();
    assert_eq!((manifest.codec.as_str(), manifest.sample_rate, manifest.channels), ("audio/mpeg", 44_100, 2));
    // 20 s in ~6 s segments, the last one shorter.
    assert_eq!(manifest.segments.len(), 4);
    // Within one MP3 frame (1152 samples) of the source's 20 s.
    assert!(manifest.total_samples.abs_diff(20 * 44_100) <= 1152, "{} samples", manifest.total_samples);

    let file = std::fs::read(&mp3).unwrap();
    let mut joined = Vec::new();
    for seg in &manifest.segments {
        let bytes = store.block(&seg.cid).unwrap().unwrap();
        assert_eq!(bytes.len() as u64, seg.bytes);
        // Every segment starts on an MPEG audio frame header.
        assert_eq!((bytes[0], bytes[1] & 0xe0), (0xff, 0xe0));
        assert!(antiphon_core::block::verify(&seg.cid, &bytes).is_ok());
        joined.extend_from_slice(&bytes);
    }
    assert_eq!(joined, file, "segments are the file's frames, untouched");
}

#[test]
fn refused_files_fail_clearly_and_leave_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mp3 = demo_mp3(dir.path(), 3);
    node().arg("--data").arg(&data).arg("ingest").arg(&mp3).assert().success();
    let before = std::fs::read(data.join(DB_FILE)).unwrap();

    let text = dir.path().join("notes.mp3");
    std::fs::write(&text, "these are not the droids you are looking for\n".repeat(50)).unwrap();
    let truncated = dir.path().join("empty.mp3");
    std::fs::write(&truncated, b"").unwrap();
    for (file, expect) in [
        (text.as_path(), "is not an audio file"),
        (dir.path().join("missing.mp3").as_path(), "cannot read"),
        (truncated.as_path(), "is not an audio file"),
    ] {
        let out = node().arg("--data").arg(&data).arg("ingest").arg(file).assert().code(1).get_output().stderr.clone();
        let stderr = String::from_utf8(out).unwrap();
        assert!(stderr.contains(expect), "stderr for {}: {stderr}", file.display());
        assert!(stderr.contains(&file.display().to_string()), "the message names the file: {stderr}");
    }
    assert_eq!(std::fs::read(data.join(DB_FILE)).unwrap(), before, "the store is byte for byte unchanged");
}

#[test]
fn a_refused_file_creates_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    node().arg("--data").arg(&data).args(["ingest", "/nonexistent.mp3"]).assert().code(1);
    assert!(!data.exists());
}
