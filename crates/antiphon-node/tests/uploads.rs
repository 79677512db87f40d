//! `POST /tracks` as an attacker would use it: from another site's page, to a node listening
//! off loopback without a token, with a small file that decodes to a day of audio, and twenty
//! at once.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::serve;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn tracks(node: &common::Served) -> usize {
    let r = node.get("/tracks", &[]);
    serde_json::from_slice::<serde_json::Value>(&r.body).unwrap().as_array().unwrap().len()
}

#[test]
fn a_page_of_another_site_cannot_upload_but_curl_on_loopback_can() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir.path().join("node"), &[]);
    let body = fixture("chord.mp3");
    // What a form or a no-cors fetch on https://evil.example sends to 127.0.0.1: no preflight.
    for headers in [
        vec![("Origin", "https://evil.example"), ("Content-Type", "text/plain")],
        vec![("Origin", "null")],
        vec![("Sec-Fetch-Site", "cross-site")],
    ] {
        let r = common::http(&node.http, "POST", "/tracks?filename=a.mp3", &headers, &body);
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
        assert!(r.header("access-control-allow-origin").is_none() || r.status == 403);
    }
    // A DNS-rebound name pointing at 127.0.0.1, with its own origin.
    let rebound = [("Host", "evil.example:8080"), ("Origin", "http://evil.example:8080")];
    let r = common::http(&node.http, "POST", "/tracks?filename=a.mp3", &rebound, &body);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(tracks(&node), 0, "nothing was stored");
    // A preflight for POST gets no grant; GET still does.
    let preflight = [
        ("Origin", "https://evil.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let r = common::http(&node.http, "OPTIONS", "/tracks", &preflight, &[]);
    let allowed = r.header("access-control-allow-methods").unwrap_or("");
    assert!(!allowed.contains("POST"), "POST allowed cross-origin: {allowed:?}");
    let r = node.get("/tracks", &[("Origin", "https://any.example")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // curl (no Origin) on loopback uploads.
    let r = common::http(&node.http, "POST", "/tracks?filename=a.mp3", &[], &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(tracks(&node), 1);
}

#[test]
fn a_token_is_checked_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[http]\nupload_token = \"correct horse\"\n").unwrap();
    let node = serve(&dir.path().join("node"), &["--config", config.to_str().unwrap()]);
    let body = fixture("chord.mp3");
    for token in ["Bearer correct hors", "Bearer correct horse battery", "Bearer ", "correct horse"] {
        let r = common::http(&node.http, "POST", "/tracks?filename=a.mp3", &[("Authorization", token)], &body);
        assert_eq!(r.status, 401, "{token:?}");
    }
    let r =
        common::http(&node.http, "POST", "/tracks?filename=a.mp3", &[("Authorization", "Bearer correct horse")], &body);
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Writes a FLAC stream of `seconds` of 8 kHz mono audio made of CONSTANT subframes: about
/// 15 bytes per 65 535 samples, so a day of audio is some 160 KB. `declare` writes the true
/// length in the header; otherwise it says "unknown", as a streamed FLAC may.
fn constant_flac(seconds: u64, declare: bool) -> Vec<u8> {
    const RATE: u64 = 8000;
    const BLOCK: u64 = 65_535;
    let total = seconds * RATE;
    let mut out = b"fLaC".to_vec();
    // STREAMINFO, the last metadata block: 34 bytes.
    out.extend_from_slice(&[0x80, 0, 0, 34]);
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes());
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes());
    out.extend_from_slice(&[0; 6]); // frame sizes unknown
    let packed: u64 = (RATE << 44) | (15 << 36) | if declare { total } else { 0 }; // mono, 16 bits
    out.extend_from_slice(&packed.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // no MD5
    let mut frame_number = 0u32;
    let mut left = total;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        let start = out.len();
        // Sync, fixed blocking; block size in 16 bits at the end, rate from STREAMINFO; mono,
        // sample size from STREAMINFO.
        out.extend_from_slice(&[0xFF, 0xF8, 0x70, 0x00]);
        out.extend_from_slice(&utf8_number(frame_number));
        out.extend_from_slice(&((n - 1) as u16).to_be_bytes());
        let crc = crc8(&out[start..]);
        out.push(crc);
        // CONSTANT subframe, no wasted bits, value 1000.
        out.push(0x00);
        out.extend_from_slice(&1000u16.to_be_bytes());
        let crc = crc16(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
        frame_number += 1;
    }
    out
}

fn utf8_number(n: u32) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x800 => vec![0xC0 | (n >> 6) as u8, 0x80 | (n & 0x3F) as u8],
        _ => vec![0xE0 | (n >> 12) as u8, 0x80 | ((n >> 6) & 0x3F) as u8, 0x80 | (n & 0x3F) as u8],
    }
}

fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &b in data {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 { (crc << 1) ^ 0x07 } else { crc << 1 };
        }
    }
    crc
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x8005 } else { crc << 1 };
        }
    }
    crc
}

#[test]
fn a_small_flac_that_decodes_to_a_day_is_refused_in_seconds_and_a_short_one_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir.path().join("node"), &[]);
    // Declared in the header or not (counted while decoding, before any encoding).
    for declare in [true, false] {
        let day = constant_flac(24 * 3600, declare);
        assert!(day.len() < 256 * 1024, "{} bytes", day.len());
        let started = Instant::now();
        let r = common::http(&node.http, "POST", "/tracks?filename=day.flac", &[], &day);
        let took = started.elapsed();
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains("21600 s"), "{}", r.text());
        eprintln!("a day of audio in {} bytes (length declared: {declare}) refused in {took:?}", day.len());
    }
    assert_eq!(tracks(&node), 0, "nothing was stored");
    // The same writer's 20 s file is audio the node takes: the refusal was the length.
    let short = constant_flac(20, false);
    let r = common::http(&node.http, "POST", "/tracks?filename=short.flac", &[], &short);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn twenty_uploads_at_once_are_bounded_and_each_gets_an_answer() {
    let dir = tempfile::tempdir().unwrap();
    let node = serve(&dir.path().join("node"), &[]);
    let body = std::sync::Arc::new(fixture("chord.flac"));
    let http = node.http.clone();
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let body = body.clone();
                let http = http.clone();
                scope.spawn(move || {
                    let path = format!("/tracks?filename=chord.flac&title=take{i}");
                    common::http(&http, "POST", &path, &[], &body).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == 201).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(ok + busy, 20, "only stored or busy: {statuses:?}");
    assert!(ok >= 1 && busy >= 1, "ingests are bounded (2 at once by default): {statuses:?}");
    assert_eq!(tracks(&node), ok, "each stored upload is one track");
    // The spool is empty once every upload has been answered.
    let spool = dir.path().join("node/spool/uploads");
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "spool files left behind");
}

/// Inside a private network namespace (`unshare -n`), a node whose HTTP API listens on every
/// address without an upload token refuses uploads; given a token, it takes them.
#[test]
fn off_loopback_without_a_token_uploads_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let bin = assert_cmd::cargo::cargo_bin("antiphon-node");
    let mp3 = dir.path().join("a.mp3");
    std::fs::write(&mp3, fixture("chord.mp3")).unwrap();
    let script = r#"
        set -e
        ip link set lo up
        post() { python3 -c '
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=open(sys.argv[2], "rb").read(), method="POST")
if len(sys.argv) > 3: req.add_header("Authorization", "Bearer " + sys.argv[3])
try: print(urllib.request.urlopen(req, timeout=30).status)
except urllib.error.HTTPError as e: print(e.code)
' "$@"; }
        for token in "" s3cret; do
            data="$DIR/node-$RANDOM"
            if [ -n "$token" ]; then extra="--upload-token $token"; else extra=""; fi
            "$BIN" --data "$data" serve --http 0.0.0.0:18080 --listen /ip4/127.0.0.1/tcp/0 $extra >/dev/null 2>&1 &
            pid=$!
            for i in $(seq 50); do python3 -c 'import socket; socket.create_connection(("127.0.0.1", 18080), 1)' 2>/dev/null && break; sleep 0.1; done
            echo "token=${token:-none} status=$(post http://127.0.0.1:18080/tracks?filename=a.mp3 "$MP3" $token)"
            kill $pid; wait $pid 2>/dev/null || true
        done
    "#;
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", script])
        .env("BIN", &bin)
        .env("MP3", &mp3)
        .env("DIR", dir.path())
        .output()
        .expect("unshare runs (the tests run as root)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("token=none status=403"), "{text}");
    assert!(text.contains("token=s3cret status=201"), "{text}");
}
