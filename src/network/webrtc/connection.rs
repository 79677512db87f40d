//! A browser-to-browser `RTCPeerConnection` as a libp2p connection: every libp2p stream is
//! one data channel, framed as libp2p/specs `webrtc/README.md` says (by
//! [`super::stream`]).
//!
//! Unlike the WebRTC-direct muxer of `libp2p-webrtc-websys`, this one watches the peer
//! connection's state: when it fails or closes, the muxer reports an error, so the swarm
//! closes the connection instead of keeping a dead one.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit, RtcPeerConnection, RtcPeerConnectionState};

use super::stream::{ChannelHold, Stream};

/// Inbound data channels waiting to be taken as streams.
const INBOUND_QUEUE: usize = 16;
/// Streams one connection may have open at once; data channels past it are closed at once.
/// A peer needs a handful (Bitswap both ways, ping, identify); 32 bounds what one remote can
/// make this page buffer to 32 channels' read buffers.
const MAX_STREAMS: usize = 32;

/// A libp2p stream over a data channel.
pub(crate) type Substream = Stream;

/// The muxer's error: the peer connection failed or was closed.
#[derive(Debug, thiserror::Error)]
#[error("WebRTC connection {0}")]
pub(crate) struct ConnectionError(String);

#[derive(Default)]
struct Watch {
    /// `failed` or `closed`, once seen.
    ended: Option<String>,
    waker: Option<Waker>,
}

/// A connected `RTCPeerConnection`, closed when dropped.
pub(crate) struct Connection {
    pc: SendWrapper<RtcPeerConnection>,
    inbound: mpsc::Receiver<SendWrapper<RtcDataChannel>>,
    /// Streams open, or dropped and still closing their channel.
    live: Arc<std::sync::atomic::AtomicUsize>,
    watch: Arc<Mutex<Watch>>,
    _on_channel: SendWrapper<Closure<dyn FnMut(RtcDataChannelEvent)>>,
    _on_state: SendWrapper<Closure<dyn FnMut()>>,
    _on_sctp: Option<SendWrapper<Closure<dyn FnMut()>>>,
    /// WebRTC-direct's Noise channel (id 0), kept open while the connection lives: closing it
    /// lets the browser give id 0 to the next stream's channel, which the node takes for the
    /// handshake channel again.
    _handshake: Option<ChannelHold>,
}

impl Connection {
    /// Takes over `pc`'s `datachannel` and `connectionstatechange` handlers.
    pub(crate) fn new(pc: RtcPeerConnection) -> Self {
        let (mut tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let on_channel = Closure::<dyn FnMut(RtcDataChannelEvent)>::new(move |event: RtcDataChannelEvent| {
            let channel = event.channel();
            if let Err(e) = tx.try_send(SendWrapper::new(channel.clone())) {
                tracing::warn!(full = e.is_full(), "refused an inbound data channel");
                channel.close();
            }
        });
        pc.set_ondatachannel(Some(on_channel.as_ref().unchecked_ref()));

        let watch = Arc::new(Mutex::new(Watch::default()));
        let (weak, state_of) = (Arc::downgrade(&watch), pc.clone());
        let on_state = Closure::<dyn FnMut()>::new(move || {
            let state = state_of.connection_state();
            if matches!(state, RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed)
                && let Some(watch) = weak.upgrade()
            {
                let mut watch = watch.lock().unwrap_or_else(|e| e.into_inner());
                watch.ended = Some(format!("{state:?}").to_lowercase());
                if let Some(waker) = watch.waker.take() {
                    waker.wake();
                }
            }
        });
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));

        Self {
            pc: SendWrapper::new(pc),
            inbound,
            live: Arc::default(),
            watch,
            _on_channel: SendWrapper::new(on_channel),
            _on_state: SendWrapper::new(on_state),
            _on_sctp: None,
            _handshake: None,
        }
    }

    /// Once connected: watches the SCTP association, which ends at once when the remote closes
    /// its peer connection (the peer connection itself stays `connected` until ICE gives up,
    /// tens of seconds later).
    pub(crate) fn watch_sctp(&mut self) {
        let Ok(sctp) = js_sys::Reflect::get(&self.pc, &"sctp".into()) else { return };
        if !sctp.is_object() {
            return;
        }
        let (weak, transport) = (Arc::downgrade(&self.watch), sctp.clone());
        let on_sctp = Closure::<dyn FnMut()>::new(move || {
            let state = js_sys::Reflect::get(&transport, &"state".into()).ok().and_then(|s| s.as_string());
            if state.as_deref() == Some("closed")
                && let Some(watch) = weak.upgrade()
            {
                let mut watch = watch.lock().unwrap_or_else(|e| e.into_inner());
                watch.ended = Some("closed by the remote".into());
                if let Some(waker) = watch.waker.take() {
                    waker.wake();
                }
            }
        });
        let _ = js_sys::Reflect::set(&sctp, &"onstatechange".into(), on_sctp.as_ref());
        self._on_sctp = Some(SendWrapper::new(on_sctp));
    }

    /// Keeps the channel under `listener` (WebRTC-direct's handshake channel) open until the
    /// connection closes.
    pub(crate) fn keep_open(&mut self, channel: Option<ChannelHold>) {
        self._handshake = channel;
    }

    fn ended(&self, cx: &mut Context<'_>) -> Option<String> {
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if watch.ended.is_none() {
            watch.waker = Some(cx.waker().clone());
        }
        watch.ended.clone()
    }

    fn stream(&mut self, channel: RtcDataChannel) -> Substream {
        Stream::new(channel).counted(self.live.clone())
    }

    fn close_now(&self) {
        if let Ok(sctp) = js_sys::Reflect::get(&self.pc, &"sctp".into())
            && sctp.is_object()
        {
            let _ = js_sys::Reflect::set(&sctp, &"onstatechange".into(), &JsValue::NULL);
        }
        self.pc.set_ondatachannel(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close_now();
    }
}

impl StreamMuxer for Connection {
    type Substream = Substream;
    type Error = ConnectionError;

    fn poll_inbound(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Substream, ConnectionError>> {
        if let Some(state) = self.ended(cx) {
            return Poll::Ready(Err(ConnectionError(state)));
        }
        loop {
            match self.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(channel)) => {
                    let channel = channel.take();
                    if self.live.load(std::sync::atomic::Ordering::Relaxed) >= MAX_STREAMS {
                        tracing::warn!("refused a data channel past {MAX_STREAMS} streams");
                        channel.close();
                        continue;
                    }
                    return Poll::Ready(Ok(self.stream(channel)));
                }
                Poll::Ready(None) => return Poll::Ready(Err(ConnectionError("closed".into()))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_outbound(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Substream, ConnectionError>> {
        if let Some(state) = self.ended(cx) {
            return Poll::Ready(Err(ConnectionError(state)));
        }
        let init = RtcDataChannelInit::new();
        init.set_ordered(true);
        let channel = self.pc.create_data_channel_with_data_channel_dict("", &init);
        Poll::Ready(Ok(self.stream(channel)))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectionError>> {
        self.close_now();
        Poll::Ready(Ok(()))
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<StreamMuxerEvent, ConnectionError>> {
        if let Some(state) = self.ended(cx) {
            return Poll::Ready(Err(ConnectionError(state)));
        }
        // Streams close their own channels (see `super::stream`): nothing to drive here.
        Poll::Pending
    }
}

/// Resolves once `pc` is `connected`; fails if it reaches `failed` or `closed` first.
pub(crate) async fn connected(pc: &RtcPeerConnection) -> Result<(), String> {
    loop {
        match pc.connection_state() {
            RtcPeerConnectionState::Connected => return Ok(()),
            RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed => {
                return Err(format!("peer connection {:?}", pc.connection_state()).to_lowercase());
            }
            _ => {}
        }
        crate::js::next_event(pc.unchecked_ref(), "connectionstatechange", None).map(|_| ()).await;
    }
}
