//! `AsyncRead` + `AsyncWrite` over one `RTCDataChannel`: the byte pipe under a libp2p WebRTC
//! stream (`libp2p_webrtc_utils::Stream` adds the spec's protobuf framing and half-close).
//!
//! Reads are fed by the channel's `message` events into a buffer bounded by
//! [`MAX_READ_BUFFER`]; a remote that outruns it has the channel closed on it. Writes wait
//! while the browser holds more than [`MAX_BUFFERED`] bytes unsent.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use futures::{AsyncRead, AsyncWrite};
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType};

/// Bytes received and not yet read that one channel may hold. A libp2p WebRTC message is at
/// most 16 KiB and the reader drains promptly, so only a remote ignoring the protocol fills it.
const MAX_READ_BUFFER: usize = 4 * 1024 * 1024;
/// Unsent bytes the browser may hold for one channel before writes wait.
const MAX_BUFFERED: u32 = 1024 * 1024;
/// Writes resume when the unsent bytes fall to this.
const LOW_WATER: u32 = 256 * 1024;

#[derive(Default)]
struct State {
    read: BytesMut,
    /// The remote sent more than [`MAX_READ_BUFFER`] unread.
    overflowed: bool,
    closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Single-threaded: a poisoned lock only means a panic already happened elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The event handlers set on the channel; dropping them unsets them and closes the channel.
struct Handlers {
    channel: RtcDataChannel,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut()>,
    _on_low: Closure<dyn FnMut()>,
}

impl Drop for Handlers {
    fn drop(&mut self) {
        self.channel.set_onopen(None);
        self.channel.set_onmessage(None);
        self.channel.set_onclose(None);
        self.channel.set_onerror(None);
        self.channel.set_onbufferedamountlow(None);
        self.channel.close();
    }
}

/// One data channel as a byte pipe. Clones share the channel; it is closed when the last clone
/// is dropped, if nothing closed it before.
#[derive(Clone)]
pub(crate) struct DataChannelIo {
    shared: Arc<Shared>,
    channel: SendWrapper<RtcDataChannel>,
    _handlers: Arc<SendWrapper<Handlers>>,
}

impl DataChannelIo {
    /// Takes over `channel`'s event handlers.
    pub(crate) fn new(channel: RtcDataChannel) -> Self {
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_buffered_amount_low_threshold(LOW_WATER);
        let shared = Arc::new(Shared { state: Mutex::new(State::default()) });

        let wake_writer = |weak: Weak<Shared>| {
            move || {
                if let Some(shared) = weak.upgrade()
                    && let Some(waker) = shared.lock().write_waker.take()
                {
                    waker.wake();
                }
            }
        };
        let on_open = Closure::<dyn FnMut()>::new(wake_writer(Arc::downgrade(&shared)));
        let on_low = Closure::<dyn FnMut()>::new(wake_writer(Arc::downgrade(&shared)));

        let weak = Arc::downgrade(&shared);
        let on_close = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                let mut state = shared.lock();
                state.closed = true;
                if let Some(waker) = state.read_waker.take() {
                    waker.wake();
                }
                if let Some(waker) = state.write_waker.take() {
                    waker.wake();
                }
            }
        });

        let weak = Arc::downgrade(&shared);
        let for_overflow = channel.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(shared) = weak.upgrade() else { return };
            let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() else {
                tracing::debug!("ignored a non-binary data channel message");
                return;
            };
            let bytes = js_sys::Uint8Array::new(&buffer);
            let mut state = shared.lock();
            if state.overflowed || state.read.len() + bytes.length() as usize > MAX_READ_BUFFER {
                state.overflowed = true;
                for_overflow.close();
            } else {
                let at = state.read.len();
                state.read.resize(at + bytes.length() as usize, 0);
                bytes.copy_to(&mut state.read[at..]);
            }
            if let Some(waker) = state.read_waker.take() {
                waker.wake();
            }
        });

        channel.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        channel.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        channel.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        channel.set_onerror(Some(on_close.as_ref().unchecked_ref()));
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        if channel.ready_state() == RtcDataChannelState::Closed {
            shared.lock().closed = true;
        }

        let handlers = Handlers {
            channel: channel.clone(),
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
            _on_low: on_low,
        };
        Self { shared, channel: SendWrapper::new(channel), _handlers: Arc::new(SendWrapper::new(handlers)) }
    }
}

impl AsyncRead for DataChannelIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        if state.overflowed {
            return Poll::Ready(Err(io::Error::other("the remote overran the data channel's read buffer")));
        }
        if !state.read.is_empty() {
            let n = buf.len().min(state.read.len());
            buf[..n].copy_from_slice(&state.read[..n]);
            state.read.advance(n);
            return Poll::Ready(Ok(n));
        }
        if state.closed {
            return Poll::Ready(Ok(0));
        }
        state.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for DataChannelIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        match self.channel.ready_state() {
            RtcDataChannelState::Connecting => {
                state.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            RtcDataChannelState::Open if !state.closed => {}
            _ => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
        if self.channel.buffered_amount() >= MAX_BUFFERED {
            state.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        drop(state);
        match self.channel.send_with_u8_array(buf) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(e) => Poll::Ready(Err(io::Error::other(crate::js::describe(&e)))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The browser sends what it was given; there is nothing to push.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.channel.close();
        Poll::Ready(Ok(()))
    }
}
