//! What the node's benches share: running the CLI, a served node's process (killed on drop),
//! and a minimal HTTP GET for its API.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `antiphon-node serve`, killed and reaped when dropped.
pub struct Served(pub Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `bin args`, which must succeed; returns its standard output, trimmed.
pub fn cli(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `bin --data data serve serve_args` (quiet); returns it, its HTTP address and its
/// `/peer` answer once that lists at least `listeners` addresses.
pub fn serve(bin: &Path, data: &Path, serve_args: &[&str], listeners: usize) -> (Served, String, serde_json::Value) {
    let mut child = Command::new(bin)
        .arg("--data")
        .arg(data)
        .arg("serve")
        .args(serve_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let served = Served(child);
    let http = line.split("open http://").nth(1).unwrap().trim().trim_end_matches('/').to_string();
    loop {
        let peer: serde_json::Value = serde_json::from_slice(&http_get(&http, "/peer")).unwrap();
        if peer["multiaddrs"].as_array().is_some_and(|a| a.len() >= listeners) {
            return (served, http, peer);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The segments of `track` as the node at `http` lists them (`GET /tracks/<cid>`).
pub fn segments(http: &str, track: &str) -> Vec<serde_json::Value> {
    let manifest: serde_json::Value = serde_json::from_slice(&http_get(http, &format!("/tracks/{track}"))).unwrap();
    manifest["segments"].as_array().unwrap().clone()
}

/// The body of `GET path` from the HTTP API at `addr` (HTTP/1.0, close-delimited).
pub fn http_get(addr: &str, path: &str) -> Vec<u8> {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    raw[split + 4..].to_vec()
}
