//! The node's own WebRTC-direct transport (str0m): a node-to-node fetch with the native dialer,
//! every first packet answered, and the listener's caps under a flood of strangers.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use str0m::ice::{StunMessage, TransId};

/// One series of `/metrics`.
fn metric(served: &common::Served, series: &str) -> u64 {
    let text = served.get("/metrics", &[]).text();
    let line =
        text.lines().find(|l| l.starts_with(&format!("{series} "))).unwrap_or_else(|| panic!("{series} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn webrtc_addr(served: &common::Served) -> &str {
    served.addrs.iter().find(|a| a.contains("/webrtc-direct/")).expect("a WebRTC-direct address")
}

const LISTEN: [&str; 4] = ["--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/webrtc-direct"];

#[test]
fn a_node_fetches_a_file_from_a_node_over_webrtc_direct_and_every_first_packet_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let file: Vec<u8> = (0..2_500_000u32).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8).collect();
    std::fs::write(dir.path().join("file.bin"), &file).unwrap();
    let out = common::node().arg("--data").arg(&data).arg("add").arg(dir.path().join("file.bin")).output().unwrap();
    let cid = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let served = common::serve(&data, &LISTEN);

    let res = common::node().args(["fetch", &cid, "--peer", webrtc_addr(&served)]).output().unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert_eq!(res.stdout, file, "the bytes the native dialer fetched over WebRTC-direct");

    let first = |packet: &str, result: &str| {
        metric(
            &served,
            &format!("antiphon_webrtc_direct_first_packets_total{{packet=\"{packet}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(first("binding_request", "received"), 1);
    assert_eq!(first("binding_request", "answered"), 1);
    assert_eq!(first("client_hello", "received"), 1);
    assert_eq!(first("client_hello", "answered"), 1);
    assert_eq!(metric(&served, "antiphon_webrtc_direct_datagrams_dropped_total{direction=\"in\"}"), 0);
}

/// A binding request as a WebRTC-direct dialer sends it, for `ufrag`.
fn binding_request(ufrag: &str) -> Vec<u8> {
    signed_request(&format!("{ufrag}:{ufrag}"), ufrag)
}

/// A binding request with USERNAME `username`, signed with `password`.
fn signed_request(username: &str, password: &str) -> Vec<u8> {
    let message = StunMessage::binding_request(username, TransId::new(), true, 1, 100, false);
    let provider = str0m::crypto::from_feature_flags();
    let mut buf = vec![0u8; 1500];
    let n = message
        .to_bytes(Some(password.as_bytes()), &mut buf, |key, payloads| {
            provider.sha1_hmac_provider.sha1_hmac(key, payloads)
        })
        .unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn strangers_cannot_make_the_listener_hold_more_than_its_caps() {
    let dir = tempfile::tempdir().unwrap();
    let served = common::serve(&dir.path().join("node"), &LISTEN);
    let target = webrtc_addr(&served).split('/').nth(4).unwrap().parse::<u16>().unwrap();
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], target));

    // Garbage and STUN that is not a binding request open nothing.
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in [&b"hello"[..], &[22u8; 200], &[0u8; 20], &binding_request("x")[..40]] {
        junk.send_to(datagram, target).unwrap();
    }
    // A binding request whose two ufrags differ is not WebRTC-direct's.
    junk.send_to(&signed_request("a:b", "a"), target).unwrap();

    // Fifty "dialers" from one address, each with its own port and ufrag, none finishing DTLS.
    let sockets: Vec<UdpSocket> = (0..50).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for (i, socket) in sockets.iter().enumerate() {
        socket.send_to(&binding_request(&format!("libp2p+webrtc+v1/flood{i}")), target).unwrap();
    }
    // Every datagram is handled in order by one task: wait until all 55 are counted.
    let mut seen = 0;
    for _ in 0..100 {
        seen = metric(&served, "antiphon_webrtc_direct_connections_total")
            + metric(&served, "antiphon_webrtc_direct_datagrams_dropped_total{direction=\"in\"}");
        if seen >= 55 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, 55, "every datagram was either a connection or a drop");
    assert_eq!(
        metric(&served, "antiphon_webrtc_direct_connections_total"),
        8,
        "one address holds at most 8 handshaking connections"
    );
    // The ones it took were answered, as a real dialer's would be.
    assert_eq!(
        metric(&served, "antiphon_webrtc_direct_first_packets_total{packet=\"binding_request\",result=\"answered\"}"),
        8
    );
    let mut reply = [0u8; 1500];
    sockets[0].set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = sockets[0].recv(&mut reply).unwrap();
    assert!(StunMessage::parse(&reply[..n]).unwrap().is_successful_binding_response());
}
