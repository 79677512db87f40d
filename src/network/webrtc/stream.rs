//! A libp2p stream on one `RTCDataChannel`: `antiphon_core::datachannel` (the spec's framing
//! and half-close, with `FIN_ACK`) driven by the channel's own events.
//!
//! The `message` handler feeds what arrives to the state machine and sends what it owes at
//! once (a `FIN_ACK` goes out when the `FIN` arrives, whether or not anything reads the stream:
//! js-libp2p waits for it before it reads on). Reads take from the state machine; writes are
//! framed into it and handed to the channel while the browser holds less than
//! [`MAX_BUFFERED`] unsent bytes (`bufferedamountlow` resumes them).
//!
//! `close()` returns once the `FIN` is handed to the channel. The channel stays open until the
//! remote acknowledged it (or [`FIN_ACK_TIMEOUT`] passed), so nothing in flight is lost; that
//! wait, and the `RESET_STREAM` of a stream dropped without a close, happen once the stream is
//! dropped. Every handler is unset when the last handle lets go of the channel.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use antiphon_core::datachannel::{DataChannelStream, FIN_ACK_TIMEOUT, WriteHalf};
use futures::{AsyncRead, AsyncWrite, FutureExt};
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, RtcDataChannel, RtcDataChannelState, RtcDataChannelType};

/// Bytes received and not yet read that one stream may hold. A libp2p WebRTC message is at
/// most 16 KiB and readers drain promptly, so only a remote ignoring the protocol fills it; it
/// then has the stream reset.
pub(crate) const MAX_READ_BUFFER: usize = 4 * 1024 * 1024;
/// Unsent bytes the browser may hold for one channel before writes wait.
const MAX_BUFFERED: u32 = 1024 * 1024;
/// Writes resume when the unsent bytes fall to this.
const LOW_WATER: u32 = 256 * 1024;

struct State {
    framing: DataChannelStream,
    /// The channel closed (either side, or the connection).
    closed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// The task finishing a dropped stream.
    close_waker: Option<Waker>,
}

impl State {
    fn wake_all(&mut self) {
        for waker in [self.read_waker.take(), self.write_waker.take(), self.close_waker.take()].into_iter().flatten() {
            waker.wake();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    channel: SendWrapper<RtcDataChannel>,
    epoch: web_time::Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Single-threaded: a poisoned lock only means a panic already happened elsewhere.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands queued messages to the channel while it is open and not holding too much.
    fn flush(&self, state: &mut State) -> io::Result<()> {
        if self.channel.ready_state() != RtcDataChannelState::Open {
            return Ok(());
        }
        while self.channel.buffered_amount() < MAX_BUFFERED
            && let Some(message) = state.framing.poll_transmit()
        {
            self.channel.send_with_u8_array(&message).map_err(|e| io::Error::other(crate::js::describe(&e)))?;
        }
        Ok(())
    }

    fn now(&self) -> std::time::Duration {
        self.epoch.elapsed()
    }
}

/// The channel's event handlers; dropping them unsets them and closes the channel.
pub(crate) struct Handlers {
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

/// Keeps a channel open while held (the channel closes when the last holder lets go).
pub(crate) type ChannelHold = Arc<SendWrapper<Handlers>>;

/// Counts a stream in its connection's live streams until its channel is let go of.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One libp2p stream; see the module documentation.
pub(crate) struct Stream {
    shared: Arc<Shared>,
    handlers: Option<ChannelHold>,
    counted: Option<Counted>,
}

impl Stream {
    /// Takes over `channel`'s event handlers.
    pub(crate) fn new(channel: RtcDataChannel) -> Self {
        channel.set_binary_type(RtcDataChannelType::Arraybuffer);
        channel.set_buffered_amount_low_threshold(LOW_WATER);
        let closed = channel.ready_state() == RtcDataChannelState::Closed;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                framing: DataChannelStream::new(MAX_READ_BUFFER),
                closed,
                read_waker: None,
                write_waker: None,
                close_waker: None,
            }),
            channel: SendWrapper::new(channel.clone()),
            epoch: web_time::Instant::now(),
        });
        // Open, or room in the send buffer again: send what waits, wake the writer.
        let resume = |weak: Weak<Shared>| {
            move || {
                if let Some(shared) = weak.upgrade() {
                    let mut state = shared.lock();
                    let _ = shared.flush(&mut state);
                    if let Some(waker) = state.write_waker.take() {
                        waker.wake();
                    }
                }
            }
        };
        let on_open = Closure::<dyn FnMut()>::new(resume(Arc::downgrade(&shared)));
        let on_low = Closure::<dyn FnMut()>::new(resume(Arc::downgrade(&shared)));
        let weak = Arc::downgrade(&shared);
        let on_close = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                let mut state = shared.lock();
                state.closed = true;
                state.wake_all();
            }
        });
        let weak = Arc::downgrade(&shared);
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let Some(shared) = weak.upgrade() else { return };
            let Ok(buffer) = event.data().dyn_into::<js_sys::ArrayBuffer>() else {
                tracing::debug!("ignored a non-binary data channel message");
                return;
            };
            let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
            let mut state = shared.lock();
            if let Err(e) = state.framing.receive(&bytes) {
                tracing::debug!(error = %e, "closing a data channel whose remote broke the framing");
                shared.channel.close();
            }
            // A FIN is acknowledged now, whether or not anything reads the stream.
            let _ = shared.flush(&mut state);
            state.wake_all();
        });
        channel.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        channel.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
        channel.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        channel.set_onerror(Some(on_close.as_ref().unchecked_ref()));
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let handlers =
            Handlers { channel, _on_open: on_open, _on_message: on_message, _on_close: on_close, _on_low: on_low };
        Self { shared, handlers: Some(Arc::new(SendWrapper::new(handlers))), counted: None }
    }

    /// Counted in `live` until the stream is dropped and its channel let go of.
    pub(crate) fn counted(mut self, live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        self.counted = Some(Counted(live));
        self
    }

    /// A hold that keeps the channel open after the stream is dropped.
    pub(crate) fn hold_channel(&self) -> Option<ChannelHold> {
        self.handlers.clone()
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        match state.framing.read(buf).into_io(state.closed) {
            Some(result) => Poll::Ready(result),
            None => {
                state.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        shared.flush(&mut state)?;
        // Back-pressure: a new message only once the earlier ones are with the browser.
        if shared.channel.ready_state() == RtcDataChannelState::Connecting || state.framing.has_outgoing() {
            state.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = state.framing.write(buf)?;
        shared.flush(&mut state)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.lock();
        self.shared.flush(&mut state)?;
        if state.framing.has_outgoing() && !state.closed {
            state.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let now = self.shared.now();
            let mut state = self.shared.lock();
            state.framing.close_write(now);
        }
        self.poll_flush(cx)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let Some(hold) = self.handlers.take() else { return };
        {
            let mut state = self.shared.lock();
            match state.framing.write_half() {
                // Dropped without a close: abandoned both ways.
                WriteHalf::Open => state.framing.reset(),
                // Closed: what is still to come from the remote is not wanted.
                _ => state.framing.stop_reading(),
            }
            let _ = self.shared.flush(&mut state);
        }
        let (shared, counted) = (self.shared.clone(), self.counted.take());
        wasm_bindgen_futures::spawn_local(async move {
            finish(&shared).await;
            drop(hold);
            drop(counted);
        });
    }
}

/// After a stream is dropped: waits (at most [`FIN_ACK_TIMEOUT`]) until what it owes is sent
/// and its FIN is acknowledged, or the channel closed.
async fn finish(shared: &Shared) {
    let give_up = futures_timer::Delay::new(FIN_ACK_TIMEOUT).fuse();
    futures::pin_mut!(give_up);
    let done = futures::future::poll_fn(|cx| {
        let mut state = shared.lock();
        let _ = shared.flush(&mut state);
        let settled =
            matches!(state.framing.write_half(), WriteHalf::Closed { .. } | WriteHalf::Reset | WriteHalf::Stopped);
        if state.closed || (settled && !state.framing.has_outgoing()) {
            return Poll::Ready(());
        }
        state.close_waker = Some(cx.waker().clone());
        Poll::Pending
    });
    futures::select! {
        () = done.fuse() => {}
        () = give_up => {}
    }
}
