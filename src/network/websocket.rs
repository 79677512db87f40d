//! WebSocket dials from the browser, on `web_sys::WebSocket`: the byte pipe that Noise and
//! Yamux run over to reach a creator node's `/ws` listener.
//!
//! Ours rather than libp2p-websocket-websys 0.6 for two reasons measured on it:
//! - a socket that fails before opening (a refused port) sets a flag that nothing polls, so
//!   the dial waited out the whole dial timeout (10 s) although the browser knew at once; here
//!   `error` and `close` wake the dial, which fails with the close code;
//! - its flush waited until the socket's `bufferedAmount` was zero, checked on a 100 ms
//!   interval, and Noise and Yamux flush after every frame, so a small want could wait 100 ms.
//!   Here a flush is done once the bytes are handed to `send()` (they are the browser's to
//!   deliver, as a native flush ends once the kernel has them); back-pressure is kept by
//!   refusing writes while more than [`MAX_BUFFERED`] bytes are unsent.
//!
//! Every handler is unset when the connection is dropped, so the browser never calls into a
//! dropped closure.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// Unread bytes one connection may hold; a remote that outruns the reader past it has the
/// connection closed on it (Yamux windows keep an honest one far below).
const MAX_READ_BUFFER: usize = 4 * 1024 * 1024;
/// Unsent bytes the browser may hold before writes wait.
const MAX_BUFFERED: u32 = 1024 * 1024;
/// How often a write waiting for the send buffer to drain looks again (WebSocket has no
/// event for it).
const DRAIN_CHECK: Duration = Duration::from_millis(10);

/// Why a WebSocket failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    /// The browser refused the URL.
    #[error("WebSocket to {url}: {reason}")]
    Refused {
        /// The URL.
        url: String,
        /// The browser's words.
        reason: String,
    },
    /// The socket closed before it opened: refused, unreachable, or not a WebSocket server.
    #[error("WebSocket to {url} closed before opening (code {code})")]
    NotOpened {
        /// The URL.
        url: String,
        /// The close code the browser reported (1006: no connection).
        code: u16,
    },
}

#[derive(Default)]
struct State {
    read: BytesMut,
    open: bool,
    /// The close code, once closed.
    closed: Option<u16>,
    /// The remote sent more than [`MAX_READ_BUFFER`] unread bytes.
    overflowed: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl State {
    fn wake_all(&mut self) {
        for waker in [self.read_waker.take(), self.write_waker.take()].into_iter().flatten() {
            waker.wake();
        }
    }
}

/// The handlers set on the socket; dropping them unsets them and closes the socket.
struct Handlers {
    socket: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_error: Closure<dyn FnMut()>,
}

impl Drop for Handlers {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        self.socket.set_onerror(None);
        if matches!(self.socket.ready_state(), WebSocket::CONNECTING | WebSocket::OPEN) {
            let _ = self.socket.close_with_code(1000);
        }
    }
}

/// One WebSocket as a byte pipe.
pub(crate) struct Connection {
    inner: SendWrapper<Inner>,
}

struct Inner {
    state: Rc<RefCell<State>>,
    handlers: Handlers,
    drain: Option<futures_timer::Delay>,
}

impl Connection {
    fn new(socket: WebSocket) -> Self {
        socket.set_binary_type(BinaryType::Arraybuffer);
        let state = Rc::new(RefCell::new(State::default()));
        let on_open = {
            let state = Rc::downgrade(&state);
            Closure::<dyn FnMut()>::new(move || {
                if let Some(state) = state.upgrade() {
                    let mut state = state.borrow_mut();
                    state.open = true;
                    state.wake_all();
                }
            })
        };
        let on_message = {
            let state = Rc::downgrade(&state);
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(state) = state.upgrade() else { return };
                let mut state = state.borrow_mut();
                let Ok(data) = event.data().dyn_into::<js_sys::ArrayBuffer>() else { return };
                let data = js_sys::Uint8Array::new(&data);
                if state.read.len() + data.length() as usize > MAX_READ_BUFFER {
                    state.overflowed = true;
                } else {
                    let start = state.read.len();
                    state.read.resize(start + data.length() as usize, 0);
                    data.copy_to(&mut state.read[start..]);
                }
                state.wake_all();
            })
        };
        let on_close = {
            let state = Rc::downgrade(&state);
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                if let Some(state) = state.upgrade() {
                    let mut state = state.borrow_mut();
                    state.closed = Some(event.code());
                    state.wake_all();
                }
            })
        };
        // An error is followed by `close`, which carries the code; the error wakes too, and
        // the socket's state already says it is closed.
        let on_error = {
            let state = Rc::downgrade(&state);
            Closure::<dyn FnMut()>::new(move || {
                if let Some(state) = state.upgrade() {
                    state.borrow_mut().wake_all();
                }
            })
        };
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        socket.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let handlers =
            Handlers { socket, _on_open: on_open, _on_message: on_message, _on_close: on_close, _on_error: on_error };
        Self { inner: SendWrapper::new(Inner { state, handlers, drain: None }) }
    }

    /// Resolves once the socket is open; fails with the close code if it closes first.
    fn poll_open(&mut self, cx: &mut Context<'_>, url: &str) -> Poll<Result<(), WsError>> {
        let mut state = self.inner.state.borrow_mut();
        if state.open {
            return Poll::Ready(Ok(()));
        }
        if let Some(code) = state.closed.or_else(|| {
            // `error` without a `close` event yet: the socket says it is closing.
            matches!(self.inner.handlers.socket.ready_state(), WebSocket::CLOSING | WebSocket::CLOSED).then_some(1006)
        }) {
            return Poll::Ready(Err(WsError::NotOpened { url: url.to_owned(), code }));
        }
        state.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what.to_owned())
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut state = self.inner.state.borrow_mut();
        if state.overflowed {
            drop(state);
            let _ = self.inner.handlers.socket.close_with_code(1000);
            return Poll::Ready(Err(io::Error::other("the remote sent more than the read buffer holds")));
        }
        if !state.read.is_empty() {
            let n = buf.len().min(state.read.len());
            buf[..n].copy_from_slice(&state.read[..n]);
            state.read.advance(n);
            return Poll::Ready(Ok(n));
        }
        if state.closed.is_some() {
            return Poll::Ready(Ok(0));
        }
        state.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let inner = &mut *self.inner;
        {
            let mut state = inner.state.borrow_mut();
            if state.closed.is_some() {
                return Poll::Ready(Err(broken("the WebSocket is closed")));
            }
            if !state.open {
                state.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        while inner.handlers.socket.buffered_amount() > MAX_BUFFERED {
            let drain = inner.drain.get_or_insert_with(|| futures_timer::Delay::new(DRAIN_CHECK));
            if drain.poll_unpin(cx).is_pending() {
                return Poll::Pending;
            }
            inner.drain = None;
        }
        inner.handlers.socket.send_with_u8_array(buf).map_err(|e| broken(&crate::js::describe(&e)))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The bytes are the browser's once `send()` took them (see the module docs).
        if self.inner.state.borrow().closed.is_some() {
            return Poll::Ready(Err(broken("the WebSocket is closed")));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Bytes already passed to send() go out before the closing handshake.
        let _ = self.inner.handlers.socket.close_with_code(1000);
        Poll::Ready(Ok(()))
    }
}

type Dial = BoxFuture<'static, Result<Connection, WsError>>;

/// The WebSocket transport: dials only.
#[derive(Default)]
pub(crate) struct Transport;

impl libp2p::core::Transport for Transport {
    type Output = Connection;
    type Error = WsError;
    type ListenerUpgrade = Dial;
    type Dial = Dial;

    fn listen_on(&mut self, _: ListenerId, addr: Multiaddr) -> Result<(), TransportError<WsError>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _: ListenerId) -> bool {
        false
    }

    fn dial(&mut self, addr: Multiaddr, opts: DialOpts) -> Result<Dial, TransportError<WsError>> {
        if opts.role.is_listener() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let Some(url) = antiphon_core::transport::websocket_url(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let socket = WebSocket::new(&url).map_err(|e| {
            TransportError::Other(WsError::Refused { url: url.clone(), reason: crate::js::describe(&e) })
        })?;
        let mut connection = Some(Connection::new(socket));
        let open = futures::future::poll_fn(move |cx| {
            let Some(mut c) = connection.take() else { return Poll::Pending };
            match c.poll_open(cx, &url) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(c)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    connection = Some(c);
                    Poll::Pending
                }
            }
        });
        // The future holds browser objects; wasm is single-threaded, so it never moves threads.
        Ok(SendWrapper::new(open).boxed())
    }

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<TransportEvent<Dial, WsError>> {
        Poll::Pending
    }
}
