//! Helpers shared by the node's integration tests: the binary, a running `serve`, and a small
//! HTTP/1.0 client (close-delimited bodies, so no chunked decoding is needed).
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The `antiphon-node` binary under test.
pub fn node() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("antiphon-node"))
}

/// The peer ID the node with data directory `data` has (made now if it has none yet).
pub fn peer_id(data: &Path) -> String {
    let out = node().arg("--data").arg(data).arg("peer-id").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A running `antiphon-node serve` on ephemeral loopback ports; killed on drop.
pub struct Served {
    /// The process.
    pub child: std::process::Child,
    /// `127.0.0.1:port` of the HTTP API.
    pub http: String,
    /// Its libp2p listen addresses, with `/p2p/<id>`.
    pub addrs: Vec<String>,
    /// Its peer ID.
    pub peer_id: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// The TCP listen address.
    pub fn tcp(&self) -> &str {
        self.addrs.iter().find(|a| a.contains("/tcp/") && !a.contains("/ws")).expect("a TCP address")
    }

    /// The WebSocket listen address.
    pub fn ws(&self) -> &str {
        self.addrs.iter().find(|a| a.contains("/ws")).expect("a WebSocket address")
    }

    /// `GET path` with extra headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http(&self.http, "GET", path, headers, &[])
    }
}

/// Starts `serve` on ephemeral loopback ports (TCP and WebSocket unless `args` gives
/// `--listen`), waits until it reports its listen addresses.
pub fn serve(data: &Path, args: &[&str]) -> Served {
    let listeners =
        args.iter().filter(|a| **a == "--listen").count().max(if args.contains(&"--listen") { 1 } else { 2 });
    let mut cmd = node();
    cmd.arg("--data").arg(data).args(["serve", "--http", "127.0.0.1:0"]);
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/tcp/0/ws"]);
    }
    let log = std::env::var_os("ANTIPHON_TEST_LOG").is_some();
    let mut child = cmd
        .args(args)
        .stdout(Stdio::piped())
        .stderr(if log { Stdio::inherit() } else { Stdio::null() })
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // From here on, dropping `served` (even in a panic) kills and reaps the child.
    let mut served = Served { child, http: String::new(), addrs: Vec::new(), peer_id: String::new() };
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
    served.http =
        line.split("open http://").nth(1).expect("serve prints its address").trim().trim_end_matches('/').into();
    // The listeners come up just after the HTTP API: poll /peer until they are there.
    for _ in 0..100 {
        let peer: serde_json::Value = serde_json::from_slice(&served.get("/peer", &[]).body).unwrap();
        let addrs: Vec<String> =
            peer["multiaddrs"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        if addrs.len() >= listeners {
            served.addrs = addrs;
            served.peer_id = peer["peer_id"].as_str().unwrap().into();
            return served;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("serve did not report its listen addresses");
}

/// An HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.0 request to `addr`.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    conn.write_all(request.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    HttpResponse { status, headers, body: raw[split + 4..].to_vec() }
}
