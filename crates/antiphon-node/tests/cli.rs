//! The `antiphon-node` binary as an operator uses it.

use std::path::Path;

use antiphon_core::TrackManifest;
use antiphon_node::store::{DB_FILE, Store};
use assert_cmd::Command;

mod common;

fn node() -> Command {
    Command::cargo_bin("antiphon-node").unwrap()
}

fn demo_mp3(dir: &Path, seconds: u32) -> std::path::PathBuf {
    demo_mp3_at(dir, seconds, 128)
}

fn demo_mp3_at(dir: &Path, seconds: u32, kbps: u32) -> std::path::PathBuf {
    let path = dir.join(format!("demo-{kbps}.mp3"));
    node()
        .args(["demo-track", "-o"])
        .arg(&path)
        .args(["--seconds", &seconds.to_string(), "--kbps", &kbps.to_string()])
        .assert()
        .success();
    path
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

#[test]
fn help_describes_every_subcommand_and_option() {
    let out = node().arg("--help").assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    for word in
        ["ingest", "tracks", "serve", "demo-track", "cid", "add", "fetch", "export-car", "import-car", "cat", "--data"]
    {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    assert!(!text.contains("corrupt-block"), "the fault-injection command stays hidden");
    for (sub, options) in [
        (
            "ingest",
            &[
                "--title",
                "--artist",
                "--album",
                "--kbps",
                "[default: 320]",
                "--segment-seconds",
                "[default: 6]",
                "--first-segment-seconds",
                "[default: 1]",
                "<FILE>",
            ][..],
        ),
        ("tracks", &[][..]),
        (
            "serve",
            &[
                "--config",
                "node.example.toml",
                "1024",
                "512 MiB",
                "--listen",
                "--http",
                "--www",
                "--replica",
                "4003/webrtc-direct",
                "127.0.0.1:8080",
            ][..],
        ),
        ("demo-track", &["--output", "--seconds", "--kbps", "[default: 128]"][..]),
        ("cid", &["<FILE>"][..]),
        ("add", &["<FILE>"][..]),
        ("export-car", &["<CID>", "--output"][..]),
        ("import-car", &["<FILE>"][..]),
        ("cat", &["<CID>", "--offset", "--length"][..]),
        ("fetch", &["<CID>", "--peer", "--output", "--store"][..]),
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
    let cid: antiphon_core::Cid = String::from_utf8(out).unwrap().trim().parse().unwrap();

    let store = Store::open(&data).unwrap();
    assert_eq!(store.tracks().unwrap().len(), 1);
    let manifest = TrackManifest::decode(&store.block(&cid).unwrap().unwrap()).unwrap();
    assert_eq!((manifest.codec.as_str(), manifest.sample_rate, manifest.channels), ("audio/mpeg", 44_100, 2));
    // 20 s in segments of about 1, 2, 4, 6 and 6 s (never over), then a short last one.
    let secs: Vec<f64> = manifest.segments.iter().map(|s| s.samples as f64 / 44_100.0).collect();
    assert_eq!(secs.len(), 6, "{secs:?}");
    for (got, target) in secs.iter().zip([1.0, 2.0, 4.0, 6.0, 6.0]) {
        assert!(*got <= target && *got > target - 0.05, "{secs:?}");
    }
    // LAME's frames cover the 20 s it was given: 576 samples of encoder delay, then padding to
    // the end of the last frame.
    assert!((20 * 44_100..=20 * 44_100 + 576 + 1152).contains(&manifest.total_samples), "{}", manifest.total_samples);

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

#[test]
fn large_segments_become_multi_block_files_that_read_back_and_travel_by_car() {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = demo_mp3_at(dir.path(), 20, 320);
    let data = dir.path().join("data");
    let track = stdout(node().arg("--data").arg(&data).arg("ingest").arg(&mp3).args([
        "--segment-seconds",
        "10",
        "--first-segment-seconds",
        "0",
    ]));
    let track: antiphon_core::Cid = track.trim().parse().unwrap();

    let manifest = {
        let store = Store::open(&data).unwrap();
        TrackManifest::decode(&store.block(&track).unwrap().unwrap()).unwrap()
    };
    // 10 s at 320 kbit/s is ~400 KB: two chunks under a dag-pb root. The encoder's padding
    // leaves a short last segment, one raw block.
    assert_eq!(manifest.segments.len(), 3);
    let mut joined = Vec::new();
    for (i, seg) in manifest.segments.iter().enumerate() {
        let expected = if i < 2 { antiphon_core::block::DAG_PB } else { antiphon_core::block::RAW };
        assert_eq!(seg.cid.codec(), expected, "segment {i} of {} bytes", seg.bytes);
        let out = node().arg("--data").arg(&data).arg("cat").arg(seg.cid.to_string()).assert().success();
        let bytes = out.get_output().stdout.clone();
        assert_eq!(bytes.len() as u64, seg.bytes);
        joined.extend_from_slice(&bytes);
    }
    let file = std::fs::read(&mp3).unwrap();
    assert_eq!(joined, file);
    // A byte range across the chunk boundary of the first segment.
    let out = node()
        .arg("--data")
        .arg(&data)
        .args(["cat", &manifest.segments[0].cid.to_string(), "--offset", "262000", "--length", "300"])
        .assert()
        .success();
    assert_eq!(out.get_output().stdout, &file[262_000..262_300]);

    // `cid` gives the same root for the same bytes, and stores nothing.
    std::fs::write(dir.path().join("seg0"), &file[..manifest.segments[0].bytes as usize]).unwrap();
    let cid = stdout(node().arg("--data").arg(dir.path().join("none")).arg("cid").arg(dir.path().join("seg0")));
    assert_eq!(cid.trim(), manifest.segments[0].cid.to_string());
    assert!(!dir.path().join("none").exists());
    // `add` stores it under the same CID.
    let added = stdout(node().arg("--data").arg(dir.path().join("added")).arg("add").arg(dir.path().join("seg0")));
    assert_eq!(added, cid);
    let out = node().arg("--data").arg(dir.path().join("added")).args(["cat", cid.trim()]).assert().success();
    assert_eq!(out.get_output().stdout, &file[..manifest.segments[0].bytes as usize]);

    // Export the track, import it elsewhere: the same track, readable there.
    let car = dir.path().join("track.car");
    node().arg("--data").arg(&data).args(["export-car", &track.to_string(), "-o"]).arg(&car).assert().success();
    let other = dir.path().join("other");
    let roots = stdout(node().arg("--data").arg(&other).arg("import-car").arg(&car));
    assert_eq!(roots.trim(), track.to_string());
    let tracks = Store::open(&other).unwrap().tracks().unwrap();
    assert_eq!(tracks.iter().map(|t| t.0).collect::<Vec<_>>(), [track]);
    let out = node().arg("--data").arg(&other).args(["cat", &manifest.segments[1].cid.to_string()]).assert().success();
    let start = manifest.segments[0].bytes as usize;
    assert_eq!(out.get_output().stdout, &file[start..start + manifest.segments[1].bytes as usize]);
}

#[test]
fn a_corrupt_car_is_refused_whole_and_creates_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = demo_mp3(dir.path(), 8);
    let data = dir.path().join("data");
    let track = stdout(node().arg("--data").arg(&data).arg("ingest").arg(&mp3));
    let car = dir.path().join("t.car");
    node().arg("--data").arg(&data).args(["export-car", track.trim(), "-o"]).arg(&car).assert().success();
    let mut bytes = std::fs::read(&car).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&car, &bytes).unwrap();
    let fresh = dir.path().join("fresh");
    let out = node().arg("--data").arg(&fresh).arg("import-car").arg(&car).assert().code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("is not a valid CAR") && stderr.contains("failed verification"), "{stderr}");
    assert!(!fresh.join(DB_FILE).exists(), "no store is left behind");
    // Into an existing store: nothing of the CAR is added.
    let before = Store::open(&data).unwrap().block_count().unwrap();
    node().arg("--data").arg(&data).arg("import-car").arg(&car).assert().code(1);
    assert_eq!(Store::open(&data).unwrap().block_count().unwrap(), before);
}

#[test]
fn exporting_an_unknown_cid_fails_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mp3 = demo_mp3(dir.path(), 3);
    node().arg("--data").arg(&data).arg("ingest").arg(&mp3).assert().success();
    let out = dir.path().join("x.car");
    let unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let res = node().arg("--data").arg(&data).args(["export-car", unknown, "-o"]).arg(&out).assert().code(1);
    assert!(String::from_utf8_lossy(&res.get_output().stderr).contains("missing"));
    assert!(!out.exists());
}

#[test]
fn cid_of_an_empty_file_is_the_empty_raw_leaf() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty"), b"").unwrap();
    let cid = stdout(node().arg("cid").arg(dir.path().join("empty")));
    assert_eq!(cid.trim(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
}

#[test]
fn fetch_gets_a_track_over_tcp_and_a_file_over_websocket_verified() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let mp3 = demo_mp3_at(dir.path(), 25, 320);
    let track = stdout(node().arg("--data").arg(&data).arg("ingest").arg(&mp3).args(["--segment-seconds", "10"]));
    let file: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 7) as u8).collect();
    std::fs::write(dir.path().join("file.bin"), &file).unwrap();
    let file_cid = stdout(node().arg("--data").arg(&data).arg("add").arg(dir.path().join("file.bin")));
    let served = common::serve(&data, &[]);
    let (tcp, ws) = (served.tcp(), served.ws());

    // The whole track, segments in order: the original MP3, byte for byte.
    let out = dir.path().join("track.mp3");
    node().args(["fetch", track.trim(), "--peer", tcp, "-o"]).arg(&out).assert().success();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&mp3).unwrap());

    // A multi-block file over WebSocket, kept in another store.
    let other = dir.path().join("other");
    let res =
        node().arg("--data").arg(&other).args(["fetch", file_cid.trim(), "--peer", ws, "--store"]).assert().success();
    assert_eq!(res.get_output().stdout, file);
    let back = node().arg("--data").arg(&other).args(["cat", file_cid.trim()]).assert().success();
    assert_eq!(back.get_output().stdout, file);

    // A CID the server does not have: DONT_HAVE, a clear failure, no output file left.
    let missing = dir.path().join("missing.bin");
    let unknown = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let res = node().args(["fetch", unknown, "--peer", tcp, "-o"]).arg(&missing).assert().code(1);
    let stderr = String::from_utf8_lossy(&res.get_output().stderr).to_string();
    assert!(stderr.contains(unknown) && stderr.contains("no peer asked has the block"), "{stderr}");
    assert!(!missing.exists());
}
