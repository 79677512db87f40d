//! What a WebRTC-direct connection shares between the socket's driver task and the swarm: the
//! streams' framing state, opened and accepted channels, and the libp2p [`StreamMuxer`] and
//! stream handles over them.
//!
//! The driver owns the `str0m::Rtc`; handles never touch it. A handle changes the shared state
//! under its lock and marks the connection dirty; the driver then hands queued messages to the
//! channels, opens and closes channels, and wakes the handles when data or room arrives.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use antiphon_core::datachannel::{DataChannelStream, WriteHalf};
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

use super::driver::Counters;

/// Bytes received and not read that one stream may hold; a remote past it has the stream reset.
/// One whole message of the largest the node's protocols take (a Bitswap message, 4 MiB) must
/// fit: a reader that lags while a peer sends one is slow, not attacked (at 1 MiB, Helia's
/// Bitswap replies were reset).
pub(crate) const MAX_READ_BUFFER: usize = antiphon_core::limits::MAX_MESSAGE_BYTES;
/// Bytes received and not read that all of one connection's streams may hold together; past
/// it, the stream that received them is reset.
pub(crate) const MAX_CONNECTION_UNREAD: usize = 2 * MAX_READ_BUFFER;
/// Framed bytes one stream may queue before its writes wait for the driver to send them.
pub(crate) const MAX_QUEUED: usize = 64 * 1024;
/// Streams one connection may hold open at once, both directions together.
pub(crate) const MAX_STREAMS: usize = 256;
/// Streams the remote opened that the swarm has not accepted yet.
pub(crate) const MAX_PENDING_INBOUND: usize = 32;
/// The stream key of the Noise handshake on negotiated channel 0.
pub(crate) const HANDSHAKE: u64 = 0;

/// Why a connection ended.
#[derive(Debug, Clone, thiserror::Error)]
#[error("WebRTC-direct connection closed: {0}")]
pub struct Closed(pub(crate) &'static str);

/// One stream's framing state and the wakers of its handle.
pub(crate) struct Slot {
    pub(crate) framing: DataChannelStream,
    /// The channel is gone (closed by either side or with the connection).
    pub(crate) channel_closed: bool,
    /// The handle was dropped; the driver closes the channel once what it owes is sent.
    pub(crate) dropped: bool,
    /// Keep the channel open after the handle is dropped (channel 0).
    pub(crate) hold: bool,
    /// The remote opened the channel: the remote closes it too (see the driver).
    pub(crate) inbound: bool,
    /// When a finished stream's channel is closed by this side if the remote has not.
    pub(crate) close_by: Option<std::time::Duration>,
    /// How this side's close ended is counted already.
    pub(crate) close_counted: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl Slot {
    pub(crate) fn new() -> Self {
        Self {
            framing: DataChannelStream::new(MAX_READ_BUFFER),
            channel_closed: false,
            dropped: false,
            hold: false,
            inbound: false,
            close_by: None,
            close_counted: false,
            read_waker: None,
            write_waker: None,
        }
    }

    pub(crate) fn wake(&mut self) {
        for waker in [self.read_waker.take(), self.write_waker.take()].into_iter().flatten() {
            waker.wake();
        }
    }

    /// Wakes a writer waiting for room (or for its queue to empty, in a flush).
    pub(crate) fn wake_writer(&mut self) {
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    /// Whether a dropped stream has nothing left to do on its channel.
    pub(crate) fn finished(&self) -> bool {
        let settled =
            matches!(self.framing.write_half(), WriteHalf::Closed { .. } | WriteHalf::Reset | WriteHalf::Stopped);
        self.channel_closed || (settled && !self.framing.has_outgoing())
    }
}

/// The state a connection's handles and its driver share.
pub(crate) struct State {
    pub(crate) streams: HashMap<u64, Slot>,
    next_key: u64,
    /// Streams the remote opened, waiting for `poll_inbound`.
    pub(crate) inbound: VecDeque<u64>,
    /// Streams this side opened, waiting for the driver to create their channels.
    pub(crate) opening: VecDeque<u64>,
    /// The remote's DTLS certificate fingerprint, once DTLS is up.
    pub(crate) remote_fingerprint: Option<[u8; 32]>,
    /// The Noise handshake succeeded and the swarm has the connection.
    pub(crate) established: bool,
    /// Set when the connection is gone; every handle then fails.
    pub(crate) closed: Option<&'static str>,
    /// The muxer (or the upgrade before it) was dropped or closed: the driver closes the
    /// connection.
    pub(crate) close_requested: bool,
    /// Woken by a new inbound stream, DTLS coming up, or the connection closing.
    connection_waker: Option<Waker>,
}

impl State {
    /// Whether the streams hold more unread bytes together than a connection may.
    pub(crate) fn over_unread_budget(&self) -> bool {
        self.streams.values().map(|s| s.framing.unread_bytes()).sum::<usize>() > MAX_CONNECTION_UNREAD
    }

    pub(crate) fn new_key(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    pub(crate) fn wake_connection(&mut self) {
        if let Some(waker) = self.connection_waker.take() {
            waker.wake();
        }
    }

    /// Marks the connection gone and wakes everything waiting on it.
    pub(crate) fn close(&mut self, why: &'static str) {
        if self.closed.is_none() {
            self.closed = Some(why);
        }
        for slot in self.streams.values_mut() {
            slot.channel_closed = true;
            slot.wake();
        }
        self.wake_connection();
    }
}

/// Tells a socket's driver which connections need it, each listed once until the driver
/// looks at it ([`Shared::mark_dirty`]), so the list is never longer than the connections.
pub(crate) struct DriverWake {
    dirty: Mutex<Vec<SocketAddr>>,
    notify: tokio::sync::Notify,
}

impl DriverWake {
    pub(crate) fn new() -> Self {
        Self { dirty: Mutex::new(Vec::new()), notify: tokio::sync::Notify::new() }
    }

    fn mark(&self, addr: SocketAddr) {
        lock(&self.dirty).push(addr);
        self.notify.notify_one();
    }

    /// The connections marked since the last call.
    pub(crate) fn take(&self) -> Vec<SocketAddr> {
        std::mem::take(&mut *lock(&self.dirty))
    }

    /// Resolves once a connection is marked.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere already; the state is still consistent enough
    // to close.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection's shared half.
pub(crate) struct Shared {
    state: Mutex<State>,
    wake: Arc<DriverWake>,
    /// In the driver's dirty list already: a connection is listed once however often its
    /// handles write between two turns of the driver.
    queued: AtomicBool,
    /// The remote's address: the driver's key for the connection.
    pub(crate) remote: SocketAddr,
    epoch: Instant,
    /// The socket's counters (stream closes are counted here).
    pub(crate) counters: Arc<Counters>,
}

impl Shared {
    pub(crate) fn new(remote: SocketAddr, wake: Arc<DriverWake>, epoch: Instant, counters: Arc<Counters>) -> Arc<Self> {
        let mut streams = HashMap::new();
        let mut handshake = Slot::new();
        handshake.hold = true;
        streams.insert(HANDSHAKE, handshake);
        Arc::new(Self {
            state: Mutex::new(State {
                streams,
                next_key: HANDSHAKE,
                inbound: VecDeque::new(),
                opening: VecDeque::new(),
                remote_fingerprint: None,
                established: false,
                closed: None,
                close_requested: false,
                connection_waker: None,
            }),
            wake,
            queued: AtomicBool::new(false),
            remote,
            epoch,
            counters,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Asks the driver to look at this connection.
    pub(crate) fn mark_dirty(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.wake.mark(self.remote);
        }
    }

    /// The driver is about to look at the connection: later changes list it again.
    pub(crate) fn unqueue(&self) {
        self.queued.store(false, Ordering::Release);
    }

    /// The Noise handshake succeeded: the driver stops counting the connection as handshaking.
    pub(crate) fn set_established(&self) {
        self.lock().established = true;
        self.mark_dirty();
    }

    /// Time as the framing state machines count it.
    pub(crate) fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant a framing deadline names.
    pub(crate) fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    /// Waits until DTLS is up; returns the remote's certificate fingerprint.
    pub(crate) fn poll_dtls(&self, cx: &mut Context<'_>) -> Poll<Result<[u8; 32], Closed>> {
        let mut state = self.lock();
        if let Some(why) = state.closed {
            return Poll::Ready(Err(Closed(why)));
        }
        match state.remote_fingerprint {
            Some(fingerprint) => Poll::Ready(Ok(fingerprint)),
            None => {
                state.connection_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Asks the driver to close the connection.
    pub(crate) fn request_close(&self) {
        self.lock().close_requested = true;
        self.mark_dirty();
    }
}

/// A stream: one data channel with the spec's framing.
pub struct Substream {
    shared: Arc<Shared>,
    key: u64,
}

impl Substream {
    pub(crate) fn new(shared: Arc<Shared>, key: u64) -> Self {
        Self { shared, key }
    }
}

impl AsyncRead for Substream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        let Some(slot) = state.streams.get_mut(&self.key) else {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        };
        match slot.framing.read(buf).into_io(slot.channel_closed) {
            Some(result) => Poll::Ready(result),
            None => {
                slot.read_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Substream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut state = self.shared.lock();
        let Some(slot) = state.streams.get_mut(&self.key) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        if slot.channel_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if slot.framing.outgoing_bytes() >= MAX_QUEUED {
            slot.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = slot.framing.write(buf)?;
        drop(state);
        self.shared.mark_dirty();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.shared.lock();
        let Some(slot) = state.streams.get_mut(&self.key) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        if slot.framing.has_outgoing() && !slot.channel_closed {
            slot.write_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let now = self.shared.now();
        if let Some(slot) = self.shared.lock().streams.get_mut(&self.key)
            && matches!(slot.framing.write_half(), WriteHalf::Open)
        {
            slot.framing.close_write(now);
            Counters::add(&self.shared.counters.fins_sent, 1);
        }
        self.shared.mark_dirty();
        self.poll_flush(cx)
    }
}

impl Drop for Substream {
    fn drop(&mut self) {
        if let Some(slot) = self.shared.lock().streams.get_mut(&self.key) {
            match slot.framing.write_half() {
                // Dropped without a close: abandoned both ways.
                WriteHalf::Open => slot.framing.reset(),
                // Closed: what the remote still sends is not wanted.
                _ => slot.framing.stop_reading(),
            }
            slot.dropped = true;
        }
        self.shared.mark_dirty();
    }
}

/// A WebRTC-direct connection as the swarm sees it.
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl StreamMuxer for Connection {
    type Substream = Substream;
    type Error = Closed;

    fn poll_inbound(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Substream, Closed>> {
        let mut state = self.shared.lock();
        if let Some(why) = state.closed {
            return Poll::Ready(Err(Closed(why)));
        }
        match state.inbound.pop_front() {
            Some(key) => Poll::Ready(Ok(Substream::new(self.shared.clone(), key))),
            None => {
                state.connection_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn poll_outbound(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<Substream, Closed>> {
        let mut state = self.shared.lock();
        if let Some(why) = state.closed {
            return Poll::Ready(Err(Closed(why)));
        }
        if state.streams.len() >= MAX_STREAMS {
            return Poll::Ready(Err(Closed("too many streams")));
        }
        let key = state.new_key();
        state.streams.insert(key, Slot::new());
        state.opening.push_back(key);
        drop(state);
        self.shared.mark_dirty();
        Poll::Ready(Ok(Substream::new(self.shared.clone(), key)))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Closed>> {
        self.shared.request_close();
        Poll::Ready(Ok(()))
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<StreamMuxerEvent, Closed>> {
        let mut state = self.shared.lock();
        if let Some(why) = state.closed {
            return Poll::Ready(Err(Closed(why)));
        }
        state.connection_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.request_close();
    }
}

#[cfg(test)]
mod tests {
    use antiphon_core::datachannel::{MAX_PAYLOAD_BYTES, encode};

    use super::*;

    /// `n` bytes of data messages, as a remote sends them on one channel.
    fn fill(slot: &mut Slot, n: usize) {
        let message = encode(None, &vec![7; MAX_PAYLOAD_BYTES]);
        for _ in 0..n / MAX_PAYLOAD_BYTES {
            slot.framing.receive(&message).expect("within the stream's bound");
        }
    }

    #[test]
    fn a_connection_holds_at_most_its_unread_budget_over_all_streams() {
        let shared =
            Shared::new("127.0.0.1:9".parse().unwrap(), Arc::new(DriverWake::new()), Instant::now(), Arc::default());
        let mut state = shared.lock();
        // Each stream just under its own bound: two fit the connection's budget, three do not.
        for key in 1..=3 {
            let mut slot = Slot::new();
            fill(&mut slot, MAX_READ_BUFFER - MAX_PAYLOAD_BYTES);
            state.streams.insert(key, slot);
            assert_eq!(state.over_unread_budget(), key == 3, "{key} streams");
        }
    }
}
