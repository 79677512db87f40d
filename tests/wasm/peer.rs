//! `Peer.start` and `peer.attach` refuse bad options with `INVALID_ARGUMENT` and report creator
//! nodes that cannot be reached, without any network.

use antiphon::{ErrorCode, Peer};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

fn json(text: &str) -> Option<JsValue> {
    Some(js_sys::JSON::parse(text).unwrap())
}

async fn start_error(options: &str) -> antiphon::Error {
    match Peer::start(json(options)).await {
        Ok(_) => panic!("{options} was accepted"),
        Err(e) => e,
    }
}

#[wasm_bindgen_test]
async fn bad_start_options_are_invalid_arguments() {
    for options in [
        "{}",
        r#"{"creatorNodes": []}"#,
        r#"{"creatorNodes": ["/ip4/127.0.0.1/tcp/1/ws"], "unknownKey": 1}"#,
        r#"{"creatorNodes": ["/ip4/127.0.0.1/tcp/1/ws"], "transport": "quic"}"#,
        r#"{"gateways": ["ftp://example.org"]}"#,
        r#"{"gateways": ["not a url"]}"#,
        r#"{"creatorNodes": "http://one.example.org"}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "upload": {"maxPeers": -1}}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "upload": {"maxPeers": 2.5}}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "upload": {"maxPeers": 65}}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "upload": {"perPeerBytesPerSec": 10}}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "upload": {"perPeerBytesPerSec": "fast"}}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "upload": {"bandwidth": 1}}"#,
        r#"{"gateways": ["http://127.0.0.1:9"], "receipts": "yes"}"#,
    ] {
        let e = start_error(options).await;
        assert_eq!(e.code(), ErrorCode::InvalidArgument, "{options}: {e}");
    }
    let many: Vec<String> = (0..17).map(|i| format!("\"/ip4/127.0.0.1/tcp/{}/ws\"", 1000 + i)).collect();
    let e = start_error(&format!(r#"{{"creatorNodes": [{}]}}"#, many.join(","))).await;
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    assert!(e.to_string().contains("at most 16"), "{e}");
}

#[wasm_bindgen_test]
async fn unreachable_creator_nodes_without_gateways_are_dial_failed_naming_each() {
    let e = start_error(r#"{"creatorNodes": ["not a multiaddr", "/ip4/127.0.0.1/udp/1/quic-v1"]}"#).await;
    assert_eq!(e.code(), ErrorCode::DialFailed, "{e}");
    let message = e.to_string();
    assert!(message.contains("not a multiaddr") && message.contains("quic-v1"), "{message}");
    assert!(message.contains("no WebRTC-direct or WebSocket address"), "{message}");
}

#[wasm_bindgen_test]
async fn a_gateway_alone_starts_a_peer_and_failed_nodes_are_reported() {
    let peer = Peer::start(json(
        r#"{"creatorNodes": ["not a multiaddr"], "gateways": ["http://127.0.0.1:9/"], "upload": {"maxPeers": 2, "perPeerBytesPerSec": 65536}, "receipts": false}"#,
    ))
        .await
        .expect("a gateway is enough to start");
    assert_eq!(peer.transport(), None, "no creator node connected");
    assert_eq!(peer.gateways(), vec!["http://127.0.0.1:9".to_string()], "trailing slash dropped");
    let nodes = peer.creator_nodes();
    assert_eq!(nodes.length(), 1);
    let node = nodes.get(0);
    let field = |k: &str| js_sys::Reflect::get(&node, &k.into()).unwrap().as_string();
    assert_eq!(field("state").as_deref(), Some("failed"));
    assert_eq!(field("code").as_deref(), Some("INVALID_ADDRESS"));

    let document = web_sys::window().unwrap().document().unwrap();
    let audio: web_sys::HtmlMediaElement = document.create_element("audio").unwrap().dyn_into().unwrap();
    for bad in [r#"{"windowSecs": 0}"#, r#"{"windowSecs": 601}"#, r#"{"window": 30}"#] {
        match peer.attach(audio.clone().into(), json(bad)) {
            Err(e) => assert_eq!(e.code(), ErrorCode::InvalidArgument, "{bad}: {e}"),
            Ok(_) => panic!("{bad} was accepted"),
        }
    }
    assert!(peer.attach(audio.into(), json(r#"{"windowSecs": 12}"#)).is_ok());
    peer.close().await;
}

#[wasm_bindgen_test]
async fn connect_to_one_unreachable_node_fails_even_with_a_gateway() {
    match Peer::connect("not a multiaddr".into(), json(r#"{"gateways": ["http://127.0.0.1:9"]}"#)).await {
        Err(e) => assert_eq!(e.code(), ErrorCode::DialFailed, "{e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}
