//! WebRTC-direct dials to creator nodes (libp2p/specs `webrtc/webrtc-direct.md`) on the
//! browser's own `RTCPeerConnection`, with the same connection and data-channel code as the
//! browser-to-browser transport.
//!
//! The node's address names its UDP socket and the hash of its DTLS certificate. The browser
//! makes an offer whose ICE ufrag and password are one random string, answers it itself with an
//! SDP built from the address (the node answers STUN with that ufrag), and runs Noise on the
//! negotiated data channel 0 with both certificate fingerprints in the prologue, which proves
//! the DTLS peer is the libp2p peer.
//!
//! Unlike `libp2p-webrtc-websys`, every event handler set here is unset when its owner is
//! dropped, and a dial that fails or is abandoned closes its peer connection at once: the
//! browser never calls back into a handler Rust has dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use js_sys::Reflect;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use libp2p_webrtc_utils::Fingerprint;
use send_wrapper::SendWrapper;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RtcDataChannelInit, RtcPeerConnection, RtcSdpType, RtcSessionDescriptionInit};

use super::connection::{self, Connection};
use super::stream::Stream;
use super::{MAX_PENDING, PendingGuard};
use crate::js::describe;

/// How long a dial may take, from the certificate to the end of the Noise handshake. The
/// swarm's own dial timeout is usually shorter; this bounds a dial nobody waits for.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Why a WebRTC-direct dial failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectError {
    /// The browser's WebRTC API refused something.
    #[error("WebRTC: {0}")]
    Browser(String),
    /// The Noise handshake on data channel 0 failed: not the peer, or not libp2p.
    #[error("noise handshake: {0}")]
    Noise(String),
    /// Too many dials at once.
    #[error("more than {MAX_PENDING} WebRTC-direct dials pending")]
    Busy,
    /// No connection within [`TIMEOUT`].
    #[error("no connection within {TIMEOUT:?}")]
    Timeout,
}

fn browser(e: JsValue) -> DirectError {
    DirectError::Browser(describe(&e))
}

type Upgrade = BoxFuture<'static, Result<(PeerId, StreamMuxerBox), DirectError>>;

/// The `/webrtc-direct` transport: dials only (a browser cannot listen on UDP).
pub(crate) struct DirectTransport {
    key: Keypair,
    pending: Arc<AtomicUsize>,
}

impl DirectTransport {
    /// A transport authenticating as `key`.
    pub(crate) fn new(key: Keypair) -> Self {
        Self { key, pending: Arc::default() }
    }
}

impl libp2p::core::Transport for DirectTransport {
    type Output = (PeerId, StreamMuxerBox);
    type Error = DirectError;
    type ListenerUpgrade = Upgrade;
    type Dial = Upgrade;

    fn listen_on(&mut self, _: ListenerId, addr: Multiaddr) -> Result<(), TransportError<DirectError>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Upgrade, TransportError<DirectError>> {
        if opts.role.is_listener() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let Some((socket, fingerprint)) = libp2p_webrtc_utils::parse_webrtc_dial_addr(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let (key, guard) = (self.key.clone(), PendingGuard::take(&self.pending));
        let dial = async move {
            let _guard = guard.ok_or(DirectError::Busy)?;
            let timeout = futures_timer::Delay::new(TIMEOUT);
            futures::select! {
                result = dial(socket, fingerprint, key).fuse() => result,
                _ = FutureExt::fuse(timeout) => Err(DirectError::Timeout),
            }
        };
        // The future holds browser objects; wasm is single-threaded, so it never moves threads.
        Ok(SendWrapper::new(dial).boxed())
    }

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<TransportEvent<Upgrade, DirectError>> {
        Poll::Pending
    }
}

/// One dial; the peer connection is closed if it fails or is dropped before the end.
async fn dial(socket: SocketAddr, remote: Fingerprint, key: Keypair) -> Result<(PeerId, StreamMuxerBox), DirectError> {
    let pc = new_peer_connection().await?;
    // Owns the peer connection from here on: dropping it (an error, a lost race) closes it.
    let mut connection = Connection::new(pc.clone());

    // Channel 0, negotiated out of band, carries Noise; created before the offer so that the
    // offer has a data section.
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(0);
    let handshake = pc.create_data_channel_with_data_channel_dict("", &init);
    let handshake = Stream::new(handshake);
    // A hold keeps channel 0 open after the handshake stream is done with it.
    let keep = handshake.hold_channel();

    let ufrag = libp2p_webrtc_utils::sdp::random_ufrag();
    let offer = JsFuture::from(pc.create_offer()).await.map_err(browser)?;
    let offer = Reflect::get(&offer, &"sdp".into())
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| DirectError::Browser("an offer without SDP".into()))?;
    let offer = description(RtcSdpType::Offer, &munge_offer(&offer, &ufrag));
    JsFuture::from(pc.set_local_description(&offer)).await.map_err(browser)?;
    let answer = description(RtcSdpType::Answer, &answer_for(socket, remote, &ufrag));
    JsFuture::from(pc.set_remote_description(&answer)).await.map_err(browser)?;

    let local = pc
        .local_description()
        .and_then(|d| fingerprint_of(&d.sdp()))
        .ok_or_else(|| DirectError::Browser("no sha-256 fingerprint in the local description".into()))?;
    let peer = libp2p_webrtc_utils::noise::outbound(key, handshake, remote, local)
        .await
        .map_err(|e| DirectError::Noise(e.to_string()))?;
    connection::connected(&pc).await.map_err(DirectError::Browser)?;
    connection.keep_open(keep);
    connection.watch_sctp();
    tracing::debug!(%peer, %socket, "WebRTC-direct connection up");
    Ok((peer, StreamMuxerBox::new(connection)))
}

/// A peer connection with a fresh ECDSA P-256 certificate and no STUN or TURN server.
async fn new_peer_connection() -> Result<RtcPeerConnection, DirectError> {
    let algorithm = js_sys::Object::new();
    let _ = Reflect::set(&algorithm, &"name".into(), &"ECDSA".into());
    let _ = Reflect::set(&algorithm, &"namedCurve".into(), &"P-256".into());
    let certificate = RtcPeerConnection::generate_certificate_with_object(&algorithm).map_err(browser)?;
    let certificate = JsFuture::from(certificate).await.map_err(browser)?;
    let config = web_sys::RtcConfiguration::new();
    config.set_ice_servers(&js_sys::Array::new());
    config.set_certificates(&js_sys::Array::of1(&certificate));
    RtcPeerConnection::new_with_configuration(&config).map_err(browser)
}

fn description(kind: RtcSdpType, sdp: &str) -> RtcSessionDescriptionInit {
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(sdp);
    init
}

/// The browser's offer with its ICE ufrag and password both replaced by `ufrag`, as the spec
/// requires (the node reads the ufrag from the first STUN request and checks the password).
fn munge_offer(offer: &str, ufrag: &str) -> String {
    let mut out = String::with_capacity(offer.len() + 2 * ufrag.len());
    for line in offer.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(ufrag);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The node's answer, which the browser writes itself (webrtc-direct.md): an ICE-lite peer
/// at `socket` with one host candidate, whose DTLS certificate has `fingerprint`, and the ufrag
/// of our offer as its ufrag and password. Written out here rather than taken from
/// `libp2p-webrtc-utils`, whose template engine cost the module 17 KB.
fn answer_for(socket: SocketAddr, fingerprint: Fingerprint, ufrag: &str) -> String {
    let (ip, port) = (socket.ip(), socket.port());
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let hash = fingerprint.to_sdp_format();
    [
        "v=0".to_owned(),
        format!("o=- 0 0 IN {family} {ip}"),
        "s=-".to_owned(),
        "t=0 0".to_owned(),
        "a=ice-lite".to_owned(),
        format!("m=application {port} UDP/DTLS/SCTP webrtc-datachannel"),
        format!("c=IN {family} {ip}"),
        "a=mid:0".to_owned(),
        "a=ice-options:ice2".to_owned(),
        format!("a=ice-ufrag:{ufrag}"),
        format!("a=ice-pwd:{ufrag}"),
        format!("a=fingerprint:sha-256 {hash}"),
        "a=setup:passive".to_owned(),
        "a=sctp-port:5000".to_owned(),
        "a=max-message-size:16384".to_owned(),
        // The candidate's foundation and priority are arbitrary: it is the only one.
        format!("a=candidate:1467250027 1 UDP 1467250027 {ip} {port} typ host"),
        "a=end-of-candidates".to_owned(),
        String::new(),
    ]
    .join("\r\n")
}

/// The sha-256 certificate fingerprint an SDP declares, if any.
fn fingerprint_of(sdp: &str) -> Option<Fingerprint> {
    let value = sdp.split("\r\n").find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))?;
    let hex: String = value.trim().split(':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Fingerprint::raw(bytes))
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn the_offer_carries_one_ufrag_as_ufrag_and_password() {
        let offer = "v=0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secretsecret\r\na=setup:actpass\r\n";
        let munged = munge_offer(offer, "libp2p+webrtc+v1/xyz");
        assert_eq!(
            munged,
            "v=0\r\na=ice-ufrag:libp2p+webrtc+v1/xyz\r\na=ice-pwd:libp2p+webrtc+v1/xyz\r\na=setup:actpass\r\n"
        );
    }

    #[test]
    fn the_answer_says_what_libp2p_webrtc_utils_says_for_ipv4_and_ipv6() {
        let fingerprint = Fingerprint::raw([0xA8; 32]);
        let ufrag = "libp2p+webrtc+v1/abc";
        for socket in ["10.200.0.1:4003", "[2001:db8::1]:9090"] {
            let socket: SocketAddr = socket.parse().unwrap();
            let ours = answer_for(socket, fingerprint, ufrag);
            let theirs = libp2p_webrtc_utils::sdp::answer(socket, fingerprint, ufrag);
            assert_eq!(ours.lines().collect::<Vec<_>>(), theirs.lines().collect::<Vec<_>>(), "{socket}");
            assert!(ours.ends_with("a=end-of-candidates\r\n"), "CRLF line ends, as RFC 8866 asks");
        }
    }

    #[test]
    fn fingerprints_are_read_from_the_sdp_and_malformed_ones_refused() {
        let hex = "A8:17:77:1E:02:7E:D1:2B:53:92:70:A6:8E:F9:02:CC:21:72:3A:92:5D:F4:97:5F:27:C4:5E:75:D4:F4:31:89";
        let sdp = format!("v=0\r\na=fingerprint:sha-256 {hex}\r\na=setup:passive\r\n");
        assert_eq!(fingerprint_of(&sdp).map(|f| f.to_sdp_format()), Some(hex.to_owned()));
        assert!(fingerprint_of("v=0\r\na=fingerprint:sha-1 AB:CD\r\n").is_none());
        assert!(fingerprint_of("v=0\r\na=fingerprint:sha-256 A8:17\r\n").is_none());
        assert!(fingerprint_of(&format!("a=fingerprint:sha-256 {}", hex.replace('A', "Z"))).is_none());
    }
}
