//! `/webrtc-signaling/0.0.1` (libp2p/specs `webrtc/webrtc.md`): the SDP offer, the answer and
//! the ICE candidates of a browser-to-browser connection, exchanged over a stream on the relayed
//! connection between the two peers. That connection is authenticated (Noise through the relay),
//! and the offer and answer carry the DTLS certificate fingerprints, so the direct connection
//! needs no second handshake.
//!
//! Messages are protobuf, each prefixed with its length as an unsigned varint, and at most
//! [`MAX_MESSAGE`] bytes. The side that dialled the relayed connection makes the offer.

use std::time::Duration;

use futures::channel::mpsc;
use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};
use js_sys::{JSON, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    RtcDataChannelInit, RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType,
    RtcSessionDescriptionInit,
};

use super::connection::{self, Connection};
use crate::js::describe;

/// The largest signaling message read or written. An SDP with a handful of candidates is a few
/// KiB; the relayed connection carrying it is itself limited (by the relay) to tens of KiB.
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;
/// Local ICE candidates queued for sending at most; later ones are dropped.
const CANDIDATE_QUEUE: usize = 32;
/// Remote ICE candidates accepted at most.
const MAX_REMOTE_CANDIDATES: usize = 64;
/// How long a connection attempt may take, from the offer to `connected`.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(15);
/// The label of the data channel the offerer creates so that its offer has a data section.
/// It is closed once connected and never becomes a stream.
pub(crate) const INIT_LABEL: &str = "init";

/// A signaling message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
enum Kind {
    SdpOffer = 0,
    SdpAnswer = 1,
    IceCandidate = 2,
}

/// A signaling message.
#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(enumeration = "Kind", optional, tag = "1")]
    kind: Option<i32>,
    #[prost(string, optional, tag = "2")]
    data: Option<String>,
}

/// Why a browser-to-browser connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignalingError {
    /// The stream failed or closed early.
    #[error("signaling stream: {0}")]
    Io(#[from] std::io::Error),
    /// The remote sent something the protocol does not allow.
    #[error("signaling protocol: {0}")]
    Protocol(String),
    /// The browser's WebRTC API refused something.
    #[error("WebRTC: {0}")]
    Browser(String),
    /// No connection within [`TIMEOUT`].
    #[error("no connection within {TIMEOUT:?}")]
    Timeout,
}

fn browser(e: JsValue) -> SignalingError {
    SignalingError::Browser(describe(&e))
}

async fn write_message<W: AsyncWrite + Unpin>(io: &mut W, kind: Kind, data: String) -> std::io::Result<()> {
    let body = prost::Message::encode_to_vec(&Message { kind: Some(kind as i32), data: Some(data) });
    if body.len() > MAX_MESSAGE {
        return Err(std::io::Error::other(format!("a {} byte signaling message is over the limit", body.len())));
    }
    io.write_all(&varint(body.len())).await?;
    io.write_all(&body).await?;
    io.flush().await
}

/// `n` as an unsigned varint.
fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// Reads one message; `None` at a clean end of the stream.
async fn read_message<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<(Kind, String)>, SignalingError> {
    let mut len: usize = 0;
    for i in 0..3 {
        let mut byte = [0u8];
        if io.read(&mut byte).await? == 0 {
            return if i == 0 { Ok(None) } else { Err(SignalingError::Protocol("stream ended in a length".into())) };
        }
        len |= usize::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            break;
        }
        if i == 2 {
            return Err(SignalingError::Protocol("length prefix over 3 bytes".into()));
        }
    }
    if len > MAX_MESSAGE {
        return Err(SignalingError::Protocol(format!("a {len} byte message is over the {MAX_MESSAGE}-byte limit")));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    let message = <Message as prost::Message>::decode(body.as_slice())
        .map_err(|e| SignalingError::Protocol(format!("undecodable message: {e}")))?;
    let kind = message
        .kind
        .and_then(|k| Kind::try_from(k).ok())
        .ok_or_else(|| SignalingError::Protocol("a message with no known type".into()))?;
    Ok(Some((kind, message.data.unwrap_or_default())))
}

/// A new peer connection with no STUN or TURN server: candidates are the host's own addresses.
fn new_peer_connection() -> Result<RtcPeerConnection, SignalingError> {
    let config = web_sys::RtcConfiguration::new();
    config.set_ice_servers(&js_sys::Array::new());
    RtcPeerConnection::new_with_configuration(&config).map_err(browser)
}

/// Sends every local ICE candidate as it is gathered, then `"null"` when gathering ends.
struct LocalCandidates {
    rx: mpsc::Receiver<String>,
    _on_candidate: Closure<dyn FnMut(RtcPeerConnectionIceEvent)>,
    pc: RtcPeerConnection,
}

impl LocalCandidates {
    fn watch(pc: &RtcPeerConnection) -> Self {
        let (mut tx, rx) = mpsc::channel(CANDIDATE_QUEUE);
        let on_candidate = Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(move |e: RtcPeerConnectionIceEvent| {
            let json = match e.candidate() {
                Some(candidate) => JSON::stringify(&candidate.to_json()).ok().and_then(|s| s.as_string()),
                None => Some("null".to_owned()),
            };
            if let Some(json) = json
                && tx.try_send(json).is_err()
            {
                tracing::debug!("dropped a local ICE candidate: queue full");
            }
        });
        pc.set_onicecandidate(Some(on_candidate.as_ref().unchecked_ref()));
        Self { rx, _on_candidate: on_candidate, pc: pc.clone() }
    }

    async fn send_all<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> std::io::Result<()> {
        while let Some(json) = self.rx.next().await {
            let last = json == "null";
            write_message(io, Kind::IceCandidate, json).await?;
            if last {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for LocalCandidates {
    fn drop(&mut self) {
        self.pc.set_onicecandidate(None);
    }
}

/// Adds the remote's candidates until it sends `"null"` or ends the stream.
async fn add_remote_candidates<R: AsyncRead + Unpin>(pc: &RtcPeerConnection, io: &mut R) -> Result<(), SignalingError> {
    for _ in 0..MAX_REMOTE_CANDIDATES {
        let Some((kind, data)) = read_message(io).await? else { return Ok(()) };
        if kind != Kind::IceCandidate {
            return Err(SignalingError::Protocol(format!("expected an ICE candidate, got {kind:?}")));
        }
        if data == "null" || data.is_empty() {
            return Ok(());
        }
        let parsed = JSON::parse(&data).map_err(|_| SignalingError::Protocol("an ICE candidate is not JSON".into()))?;
        let candidate = Reflect::get(&parsed, &"candidate".into()).ok().and_then(|c| c.as_string()).unwrap_or_default();
        let init = RtcIceCandidateInit::new(&candidate);
        if let Some(mid) = Reflect::get(&parsed, &"sdpMid".into()).ok().and_then(|m| m.as_string()) {
            init.set_sdp_mid(Some(&mid));
        }
        if let Some(index) = Reflect::get(&parsed, &"sdpMLineIndex".into()).ok().and_then(|i| i.as_f64()) {
            init.set_sdp_m_line_index(Some(index as u16));
        }
        // A candidate the browser cannot use is skipped; the others may still connect.
        if let Err(e) = JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))).await {
            tracing::debug!(error = %describe(&e), "skipped a remote ICE candidate");
        }
    }
    Err(SignalingError::Protocol(format!("more than {MAX_REMOTE_CANDIDATES} ICE candidates")))
}

/// Trickles candidates both ways until the peer connection is `connected`, for at most
/// [`TIMEOUT`].
async fn exchange_candidates<S: AsyncRead + AsyncWrite>(
    pc: &RtcPeerConnection,
    local: &mut LocalCandidates,
    reader: &mut ReadHalf<S>,
    writer: &mut WriteHalf<S>,
) -> Result<(), SignalingError> {
    // The signalling stream may end, or be reset, while ICE is still finishing: the other side
    // closes the relayed connection as soon as its own end is connected, which can come first.
    // So a failed trickle only stops the trickle; the connection state (or the timeout) decides.
    let trickle = async {
        let (sent, added) = futures::join!(local.send_all(writer), add_remote_candidates(pc, reader));
        if let Err(e) = added {
            tracing::debug!(error = %e, "no more remote candidates");
        }
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not send every local candidate");
        }
        futures::future::pending::<SignalingError>().await
    };
    let connected = connection::connected(pc).map(|r| r.map_err(SignalingError::Browser));
    let timeout = futures_timer::Delay::new(TIMEOUT);
    futures::select! {
        result = connected.fuse() => result,
        error = trickle.fuse() => Err(error),
        _ = timeout.fuse() => Err(SignalingError::Timeout),
    }
}

fn description(kind: RtcSdpType, sdp: &str) -> RtcSessionDescriptionInit {
    let init = RtcSessionDescriptionInit::new(kind);
    init.set_sdp(sdp);
    init
}

fn sdp_of(value: &JsValue) -> Result<String, SignalingError> {
    Reflect::get(value, &"sdp".into())
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| SignalingError::Browser("a session description without SDP".into()))
}

/// The dialling side: offers, takes the answer, trickles candidates, and returns the connected
/// peer connection as a libp2p connection. The signaling stream is closed either way.
pub(crate) async fn offer<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<Connection, SignalingError> {
    let pc = new_peer_connection()?;
    let mut connection = Connection::new(pc.clone());
    let init = RtcDataChannelInit::new();
    let init_channel = pc.create_data_channel_with_data_channel_dict(INIT_LABEL, &init);
    let mut local = LocalCandidates::watch(&pc);
    let (mut reader, mut writer) = stream.split();
    let result = async {
        let offer = JsFuture::from(pc.create_offer()).await.map_err(browser)?;
        let sdp = sdp_of(&offer)?;
        JsFuture::from(pc.set_local_description(&description(RtcSdpType::Offer, &sdp))).await.map_err(browser)?;
        write_message(&mut writer, Kind::SdpOffer, sdp).await?;
        let (kind, answer) = read_message(&mut reader)
            .await?
            .ok_or_else(|| SignalingError::Protocol("the stream ended before the answer".into()))?;
        if kind != Kind::SdpAnswer {
            return Err(SignalingError::Protocol(format!("expected an SDP answer, got {kind:?}")));
        }
        JsFuture::from(pc.set_remote_description(&description(RtcSdpType::Answer, &answer))).await.map_err(browser)?;
        exchange_candidates(&pc, &mut local, &mut reader, &mut writer).await
    }
    .await;
    init_channel.close();
    let _ = writer.close().await;
    result.map(|()| {
        connection.watch_sctp();
        connection
    })
}

/// The listening side: takes the offer, answers, trickles candidates, and returns the connected
/// peer connection as a libp2p connection. The signaling stream is closed either way.
pub(crate) async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Result<Connection, SignalingError> {
    let pc = new_peer_connection()?;
    let mut connection = Connection::new(pc.clone());
    let mut local = LocalCandidates::watch(&pc);
    let (mut reader, mut writer) = stream.split();
    let result = async {
        let (kind, offer) = read_message(&mut reader)
            .await?
            .ok_or_else(|| SignalingError::Protocol("the stream ended before the offer".into()))?;
        if kind != Kind::SdpOffer {
            return Err(SignalingError::Protocol(format!("expected an SDP offer, got {kind:?}")));
        }
        JsFuture::from(pc.set_remote_description(&description(RtcSdpType::Offer, &offer))).await.map_err(browser)?;
        let answer = JsFuture::from(pc.create_answer()).await.map_err(browser)?;
        let sdp = sdp_of(&answer)?;
        JsFuture::from(pc.set_local_description(&description(RtcSdpType::Answer, &sdp))).await.map_err(browser)?;
        write_message(&mut writer, Kind::SdpAnswer, sdp).await?;
        exchange_candidates(&pc, &mut local, &mut reader, &mut writer).await
    }
    .await;
    let _ = writer.close().await;
    result.map(|()| {
        connection.watch_sctp();
        connection
    })
}

#[cfg(test)]
mod tests {
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    async fn messages_round_trip_and_oversize_is_refused() {
        let mut buf = Vec::new();
        write_message(&mut buf, Kind::SdpOffer, "v=0".into()).await.unwrap();
        let (kind, data) = read_message(&mut buf.as_slice()).await.unwrap().unwrap();
        assert_eq!((kind, data.as_str()), (Kind::SdpOffer, "v=0"));
        assert!(read_message(&mut [].as_slice()).await.unwrap().is_none());

        // A length prefix past the limit is refused before anything is allocated.
        let mut huge = Vec::new();
        huge.extend_from_slice(&varint(MAX_MESSAGE + 1));
        assert!(matches!(read_message(&mut huge.as_slice()).await, Err(SignalingError::Protocol(_))));
        assert!(write_message(&mut Vec::new(), Kind::SdpAnswer, "x".repeat(MAX_MESSAGE)).await.is_err());
        // A message with an unknown type is refused.
        let body = prost::Message::encode_to_vec(&Message { kind: Some(9), data: None });
        let mut framed = vec![body.len() as u8];
        framed.extend(body);
        assert!(matches!(read_message(&mut framed.as_slice()).await, Err(SignalingError::Protocol(_))));
    }
}
