//! One address opens 2000 TCP connections to the node and says nothing on them (peer IDs are
//! free, so a flood need not even finish a handshake); a listener from another address still
//! connects and fetches a track. Both addresses are loopback: 127.0.0.2 floods, 127.0.0.1
//! fetches.

mod common;

use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

async fn flood(target: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        match tokio::time::timeout(Duration::from_secs(2), socket.connect(target)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => break,
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_the_handshake_slots_of_everyone_else() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::serve(&dir.path().join("node"), &[]);
    let mp3 = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chord.mp3")).unwrap();
    let r = common::http(&node.http, "POST", "/tracks?filename=chord.mp3", &[], &mp3);
    assert_eq!(r.status, 201, "{}", r.text());
    let track = serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["cid"].as_str().unwrap().to_string();

    let tcp = node.tcp().to_string();
    let port: u16 = tcp.split('/').nth(4).unwrap().parse().unwrap();
    let held = flood(format!("127.0.0.1:{port}").parse().unwrap(), 2000).await;
    eprintln!("the flood holds {} connections", held.len());
    assert!(held.len() >= 200, "the flood opened {} connections, enough to fill every shared slot", held.len());

    let out = tokio::task::spawn_blocking(move || {
        common::node().args(["fetch", &track, "--peer", &tcp, "-o", "/dev/null"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "the honest fetch failed during the flood: {}", String::from_utf8_lossy(&out.stderr));
    drop(held);
}
