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

/// The `ws://` or `wss://` URL a WebSocket multiaddr names: `/ip4|ip6|dns|dns4|dns6/<host>/tcp/
/// <port>` then `/ws` (plain), `/wss` or `/tls/ws` (TLS; `/tls/sni/<name>/ws` names the host to
/// use), optionally ending in `/p2p/<id>`. `None` for anything else (a relayed address
/// included): the browser cannot dial it as a WebSocket.
pub fn websocket_url(addr: &Multiaddr) -> Option<String> {
    let mut parts = addr.iter();
    let host = match parts.next()? {
        Protocol::Ip4(ip) => ip.to_string(),
        Protocol::Ip6(ip) => format!("[{ip}]"),
        Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => h.to_string(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else { return None };
    let (scheme, host, path) = match parts.next()? {
        Protocol::Ws(path) => ("ws", host, path),
        Protocol::Wss(path) => ("wss", host, path),
        Protocol::Tls => match parts.next()? {
            Protocol::Ws(path) => ("wss", host, path),
            Protocol::Sni(name) => match parts.next()? {
                Protocol::Ws(path) => ("wss", name.to_string(), path),
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    };
    match (parts.next(), parts.next()) {
        (None, _) | (Some(Protocol::P2p(_)), None) => {}
        _ => return None,
    }
    Some(format!("{scheme}://{host}:{port}{path}"))
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

    #[test]
    fn websocket_urls() {
        let url = |s: &str| websocket_url(&s.parse().unwrap());
        let id = "12D3KooWHrzdHUqYBc5wStnHxQCrESymrGJvzCmFfFUGQY9Yt3jm";
        assert_eq!(url("/ip4/10.200.0.1/tcp/4002/ws").as_deref(), Some("ws://10.200.0.1:4002/"));
        assert_eq!(url(&format!("/ip6/::1/tcp/4002/ws/p2p/{id}")).as_deref(), Some("ws://[::1]:4002/"));
        assert_eq!(url("/dns4/node.example/tcp/443/wss").as_deref(), Some("wss://node.example:443/"));
        assert_eq!(url("/dns/node.example/tcp/443/tls/ws").as_deref(), Some("wss://node.example:443/"));
        assert_eq!(url("/ip4/1.2.3.4/tcp/443/tls/sni/node.example/ws").as_deref(), Some("wss://node.example:443/"));
        // Not WebSocket, or more than a WebSocket: a relayed address, a bare TCP one.
        assert_eq!(url(&format!("/ip4/10.0.0.1/tcp/4002/ws/p2p/{id}/p2p-circuit/p2p/{id}")), None);
        assert_eq!(url("/ip4/10.0.0.1/tcp/4002"), None);
        assert_eq!(url("/ip4/10.0.0.1/udp/4002/webrtc-direct"), None);
    }
}
