//! What the node's benches share: a served node's process, killed on drop, and a minimal HTTP
//! GET for its API.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::process::Child;

/// A running `antiphon-node serve`, killed and reaped when dropped.
pub struct Served(pub Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
