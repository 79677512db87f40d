//! Names of the transports a multiaddr uses, as logs, metrics and the JS API report them.

use libp2p::Multiaddr;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;

/// The address that names a connection's transport: a listener's own address, or the address
/// a dialer dialled (a listener's view of the remote's address need not say).
pub fn connection_addr(endpoint: &ConnectedPoint) -> &Multiaddr {
    match endpoint {
        ConnectedPoint::Listener { local_addr, .. } => local_addr,
        ConnectedPoint::Dialer { address, .. } => address,
    }
}

/// `"webrtc-direct"`, `"websocket"`, `"tcp"`, or `"other"`.
pub fn transport_name(addr: &Multiaddr) -> &'static str {
    let mut name = "other";
    for p in addr.iter() {
        match p {
            Protocol::WebRTCDirect => return "webrtc-direct",
            Protocol::Ws(_) | Protocol::Wss(_) => return "websocket",
            Protocol::Tcp(_) => name = "tcp",
            _ => {}
        }
    }
    name
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn names() {
        let name = |s: &str| transport_name(&s.parse().unwrap());
        assert_eq!(
            name("/ip4/127.0.0.1/udp/4003/webrtc-direct/certhash/uEiDm3cr12rOhOoixpZwJ1tMmKZejq2lK1xFUuts8MSpYGQ"),
            "webrtc-direct"
        );
        assert_eq!(name("/ip4/127.0.0.1/tcp/4002/ws"), "websocket");
        assert_eq!(name("/ip4/127.0.0.1/tcp/4001"), "tcp");
        assert_eq!(name("/ip4/127.0.0.1/udp/4001/quic-v1"), "other");
    }
}
