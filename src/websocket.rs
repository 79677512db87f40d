//! A flush that does not wait for the browser's WebSocket send buffer to drain.
//!
//! libp2p-websocket-websys 0.6 answers `poll_flush` with `Pending` while the socket's
//! `bufferedAmount` is above zero, and checks again only on a 100 ms interval. Noise and yamux
//! flush after every frame they write, and `WebSocket.send()` hands bytes to the browser
//! asynchronously, so nearly every flush found something buffered and a small want waited up to
//! 100 ms before anything else was written (measured: the manifest of a warm load arrived after
//! ~100 ms over WebSocket against ~40 ms over WebRTC-direct). Bytes passed to `send()` are the
//! browser's to deliver; nothing more can be pushed, just as a native flush ends once the kernel
//! has the bytes. Back-pressure is unchanged: `poll_write` still refuses bytes past the
//! transport's 1 MiB buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// A connection whose flush is done once its bytes are handed over (see the module docs).
pub(crate) struct PromptFlush<C>(pub(crate) C);

impl<C: AsyncRead + Unpin> AsyncRead for PromptFlush<C> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for PromptFlush<C> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Errors still surface; only the wait for the send buffer to drain is skipped.
        match Pin::new(&mut self.0).poll_flush(cx) {
            Poll::Pending => Poll::Ready(Ok(())),
            done => done,
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing does wait, so that the last bytes leave before the socket closes.
        Pin::new(&mut self.0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that behaves like the WebSocket transport with bytes still in its buffer.
    struct Draining {
        written: Vec<u8>,
        broken: bool,
    }

    impl AsyncWrite for Draining {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.broken { Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())) } else { Poll::Pending }
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    fn poll<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let waker = futures::task::noop_waker();
        f(&mut Context::from_waker(&waker))
    }

    #[test]
    fn flush_is_done_once_the_bytes_are_handed_over() {
        let mut conn = PromptFlush(Draining { written: Vec::new(), broken: false });
        assert!(matches!(poll(|cx| Pin::new(&mut conn).poll_write(cx, b"want")), Poll::Ready(Ok(4))));
        assert!(matches!(poll(|cx| Pin::new(&mut conn).poll_flush(cx)), Poll::Ready(Ok(()))));
        assert_eq!(conn.0.written, b"want");
        assert!(poll(|cx| Pin::new(&mut conn).poll_close(cx)).is_pending(), "closing still waits");
    }

    #[test]
    fn a_failed_socket_still_fails_the_flush() {
        let mut conn = PromptFlush(Draining { written: Vec::new(), broken: true });
        assert!(matches!(poll(|cx| Pin::new(&mut conn).poll_flush(cx)), Poll::Ready(Err(_))));
    }
}
