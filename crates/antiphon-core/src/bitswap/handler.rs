//! One connection's Bitswap streams.
//!
//! Outbound messages go over one long-lived stream that is reopened if it fails; inbound, the
//! remote may open several streams (Helia opens its own to answer), each read frame by frame.
//! A remote may close a stream we left idle (Helia resets an incoming Bitswap stream after 10 s
//! without a message), so a message that fails on a stream that had been waiting is written
//! once more on a new stream; a failure on a stream opened for the message is final.
//! On a connection we dialled, the outbound stream is opened as soon as the connection is
//! established, so that the first want does not wait for a stream and protocol negotiation.
//! The listening side opens its stream once the remote has opened one (the remote is then
//! taking streams), or when it first has something to send, whichever comes first: so a
//! browser's first want is answered on a stream that is already negotiated, instead of waiting
//! for multistream-select's round trip. A creator node that opens streams the moment a
//! WebRTC-direct connection comes up loses them (the browser's libp2p-webrtc-websys is not yet
//! taking data channels, and the open times out after 10 s).
//! The same can happen the other way: the native side of a WebRTC-direct connection takes data
//! channels only once its Noise handshake has returned, so a browser's eager stream can be
//! lost when the node is slow to get there. An open that times out is therefore asked for once
//! more, with what was queued kept for it, and each open gets `STREAM_OPEN_TIMEOUT` (half of
//! libp2p's default 10 s, so a remote that never answers costs the same as before).

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, SelectAll};
use futures::{FutureExt, StreamExt};
use libp2p::core::upgrade::{ReadyUpgrade, SelectUpgrade};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound};
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamProtocol, StreamUpgradeError, SubstreamProtocol,
};

use super::message::{Message, MessageError};
use super::protocol::{FrameError, PROTOCOL, PROTOCOL_1_1_0, read_frame, write_framed};
use crate::limits::MAX_MESSAGE_BYTES;

/// Most messages waiting to be written on one connection.
const MAX_QUEUED_MESSAGES: usize = 64;
/// Most inbound Bitswap streams read at once on one connection.
const MAX_INBOUND_STREAMS: usize = 8;
/// How long opening the outbound stream (and agreeing on the protocol) may take.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing one message may take unless the behaviour says otherwise: a remote that
/// stops reading must not hold its reply (and the server's byte budget) for ever.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Commands from the behaviour to a connection.
#[derive(Debug)]
pub enum FromBehaviour {
    /// Queue a message for the remote.
    Send(Message),
}

/// Events from a connection to the behaviour.
#[derive(Debug)]
pub enum ToBehaviour {
    /// A message arrived.
    Received(Message),
    /// An inbound stream sent something unreadable and was dropped.
    InboundError(InboundError),
    /// A message was written; it carried this many bytes of blocks.
    Sent {
        /// Bytes of block data in it.
        block_bytes: usize,
    },
    /// A message could not be sent (the queue was full or the stream failed).
    SendFailed(Message),
}

/// Why an inbound stream was dropped.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The framing was broken or the declared length too large.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The message did not decode.
    #[error(transparent)]
    Message(#[from] MessageError),
}

enum Outbound {
    None,
    Requested,
    /// Open and not writing; `true` once the stream has been waiting (it carried a message,
    /// or was opened with nothing queued), so that the remote may have closed it meanwhile.
    Idle(Stream, bool),
    /// A write in progress; `true` when the stream had been waiting, so a failure gets the
    /// message a second try on a new stream.
    Busy(BoxFuture<'static, (Result<Stream, FrameError>, Message)>, bool),
}

/// One connection's Bitswap streams (see the module documentation).
pub struct Handler {
    inbound: SelectAll<BoxStream<'static, Result<Message, InboundError>>>,
    queue: VecDeque<Message>,
    outbound: Outbound,
    /// Ask for the outbound stream at the first poll, before anything is queued.
    eager: bool,
    /// Whether the last open timed out or broke (the next failure is final).
    open_failed: bool,
    /// How long one message's write may take.
    write_timeout: Duration,
    events: VecDeque<ToBehaviour>,
}

impl Handler {
    /// A handler; `eager` opens the outbound stream at once (see the module documentation);
    /// a message not written within `write_timeout` fails and its stream is dropped.
    pub(crate) fn new(eager: bool, write_timeout: Duration) -> Self {
        Self {
            inbound: SelectAll::new(),
            queue: VecDeque::new(),
            outbound: Outbound::None,
            eager,
            open_failed: false,
            write_timeout,
            events: VecDeque::new(),
        }
    }

    /// The remote opened a Bitswap stream, so it is taking streams on this connection: ours is
    /// opened now if it is not open or opening, rather than when the first reply is ready.
    fn remote_opened_a_stream(&mut self) {
        if matches!(self.outbound, Outbound::None) {
            self.eager = true;
        }
    }

    /// Queues a message, merging it into the last queued one while their sum stays under the
    /// message limit: the queue is bounded in messages, so a burst of small messages (one want
    /// per CID, one DONT_HAVE per miss) must not fill it.
    fn enqueue(&mut self, msg: Message) {
        if let Some(last) = self.queue.back_mut()
            && !last.full_wantlist
            && !msg.full_wantlist
            && last.size_bound() + msg.size_bound() <= MAX_MESSAGE_BYTES
        {
            last.merge(msg);
        } else if self.queue.len() >= MAX_QUEUED_MESSAGES {
            self.events.push_back(ToBehaviour::SendFailed(msg));
        } else {
            self.queue.push_back(msg);
        }
    }
}

fn read_messages(stream: Stream) -> BoxStream<'static, Result<Message, InboundError>> {
    futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match read_frame(&mut stream).await {
            Ok(Some(bytes)) => match Message::decode(bytes) {
                Ok(msg) => Some((Ok(msg), Some(stream))),
                // A malformed message resets the stream: nothing more is read from it.
                Err(e) => Some((Err(e.into()), None)),
            },
            Ok(None) => None,
            Err(e) => Some((Err(e.into()), None)),
        }
    })
    .boxed()
}

async fn send(mut stream: Stream, msg: Message, timeout: Duration) -> (Result<Stream, FrameError>, Message) {
    let frame = match msg.encode_framed() {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, "dropping a bitswap message that cannot be encoded");
            return (Ok(stream), msg);
        }
    };
    let result = {
        let write = write_framed(&mut stream, &frame);
        let deadline = futures_timer::Delay::new(timeout);
        futures::pin_mut!(write);
        match futures::future::select(write, deadline).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(((), _)) => Err(FrameError::Io(std::io::ErrorKind::TimedOut.into())),
        }
    };
    (result.map(|()| stream), msg)
}

/// Whether a failed write ran out of time (the remote stopped reading): never retried.
fn timed_out(e: &FrameError) -> bool {
    matches!(e, FrameError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

impl ConnectionHandler for Handler {
    type FromBehaviour = FromBehaviour;
    type ToBehaviour = ToBehaviour;
    type InboundProtocol = SelectUpgrade<ReadyUpgrade<StreamProtocol>, ReadyUpgrade<StreamProtocol>>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(SelectUpgrade::new(ReadyUpgrade::new(PROTOCOL), ReadyUpgrade::new(PROTOCOL_1_1_0)), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.queue.is_empty() || matches!(self.outbound, Outbound::Requested | Outbound::Busy(..))
    }

    fn on_behaviour_event(&mut self, event: FromBehaviour) {
        let FromBehaviour::Send(msg) = event;
        self.enqueue(msg);
    }

    fn on_connection_event(&mut self, event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, .. }) => {
                let stream = protocol.into_inner();
                if self.inbound.len() >= MAX_INBOUND_STREAMS {
                    tracing::debug!("dropping an inbound bitswap stream: too many open");
                    drop(stream);
                } else {
                    self.inbound.push(read_messages(stream));
                    self.remote_opened_a_stream();
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol: stream, .. }) => {
                // Opened for queued messages: the first of them is its first use.
                self.outbound = Outbound::Idle(stream, self.queue.is_empty());
                self.open_failed = false;
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.outbound = Outbound::None;
                let lost = matches!(error, StreamUpgradeError::Timeout | StreamUpgradeError::Io(_));
                if lost && !std::mem::replace(&mut self.open_failed, true) {
                    // The stream may have been lost on its way (see the module documentation):
                    // ask again at the next poll, with or without anything queued.
                    tracing::debug!(%error, "opening a bitswap stream failed; trying once more");
                    self.eager = true;
                    return;
                }
                tracing::debug!(%error, "could not open a bitswap stream");
                // The remote does not speak Bitswap (or the connection is failing): everything
                // queued for it fails.
                self.events.extend(self.queue.drain(..).map(ToBehaviour::SendFailed));
            }
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
            }
            match std::mem::replace(&mut self.outbound, Outbound::None) {
                Outbound::Busy(mut fut, may_retry) => match fut.poll_unpin(cx) {
                    Poll::Ready((Ok(stream), msg)) => {
                        self.outbound = Outbound::Idle(stream, true);
                        self.events.push_back(ToBehaviour::Sent { block_bytes: msg.block_bytes() });
                        continue;
                    }
                    Poll::Ready((Err(e), msg)) if may_retry && !timed_out(&e) => {
                        // At most one over the bound: the message was taken from the queue.
                        tracing::debug!(error = ?e, "bitswap stream closed while idle; retrying on a new one");
                        self.queue.push_front(msg);
                        continue;
                    }
                    Poll::Ready((Err(e), msg)) => {
                        tracing::debug!(error = ?e, "bitswap send failed on a new stream");
                        self.events.push_back(ToBehaviour::SendFailed(msg));
                        continue;
                    }
                    Poll::Pending => self.outbound = Outbound::Busy(fut, may_retry),
                },
                Outbound::Idle(stream, waited) => match self.queue.pop_front() {
                    Some(msg) => {
                        self.outbound = Outbound::Busy(send(stream, msg, self.write_timeout).boxed(), waited);
                        continue;
                    }
                    None => self.outbound = Outbound::Idle(stream, waited),
                },
                Outbound::None if self.eager || !self.queue.is_empty() => {
                    self.eager = false;
                    self.outbound = Outbound::Requested;
                    return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                        protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
                            .with_timeout(STREAM_OPEN_TIMEOUT),
                    });
                }
                other => self.outbound = other,
            }
            match self.inbound.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(msg))) => {
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::Received(msg)));
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(ToBehaviour::InboundError(e)));
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::bitswap::message::{WantEntry, WantType};
    use crate::block::{RAW, cid_v1};

    fn want(i: u32) -> Message {
        Message {
            wantlist: vec![WantEntry {
                cid: cid_v1(RAW, &i.to_be_bytes()),
                priority: 1,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: true,
            }],
            ..Message::default()
        }
    }

    #[test]
    fn small_messages_merge_instead_of_filling_the_queue() {
        let mut handler = Handler::new(false, WRITE_TIMEOUT);
        for i in 0..5000 {
            handler.on_behaviour_event(FromBehaviour::Send(want(i)));
        }
        assert!(handler.events.is_empty(), "nothing was refused");
        assert!(handler.queue.len() < MAX_QUEUED_MESSAGES);
        assert_eq!(handler.queue.iter().map(|m| m.wantlist.len()).sum::<usize>(), 5000);
        assert!(handler.queue.iter().all(|m| m.encode().is_ok()), "every merged message stays under the limit");
    }

    #[test]
    fn a_dialler_asks_for_its_outbound_stream_once_before_anything_is_queued() {
        let mut handler = Handler::new(true, WRITE_TIMEOUT);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let first = handler.poll(&mut cx);
        assert!(matches!(first, Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { .. })));
        assert!(handler.connection_keep_alive(), "the connection stays up while the stream opens");
        // The stream could not be opened (the remote does not speak Bitswap): not asked again
        // until there is something to send.
        handler.outbound = Outbound::None;
        assert!(handler.poll(&mut cx).is_pending());
        handler.on_behaviour_event(FromBehaviour::Send(want(1)));
        assert!(matches!(handler.poll(&mut cx), Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { .. })));
    }

    #[test]
    fn a_listener_opens_its_stream_only_to_send() {
        let mut handler = Handler::new(false, WRITE_TIMEOUT);
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(handler.poll(&mut cx).is_pending());
        assert!(!handler.connection_keep_alive());
        handler.on_behaviour_event(FromBehaviour::Send(want(1)));
        assert!(matches!(handler.poll(&mut cx), Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { .. })));
    }

    fn open_failed(handler: &mut Handler, error: StreamUpgradeError<std::convert::Infallible>) {
        handler.on_connection_event(ConnectionEvent::DialUpgradeError(DialUpgradeError { info: (), error }));
    }

    fn asks_for_a_stream(handler: &mut Handler, cx: &mut Context<'_>) -> bool {
        match handler.poll(cx) {
            Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest { protocol }) => {
                assert_eq!(*protocol.timeout(), STREAM_OPEN_TIMEOUT);
                true
            }
            _ => false,
        }
    }

    #[test]
    fn an_open_that_times_out_is_asked_for_once_more_and_keeps_the_queue() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        // A dialler's eager stream, with a want queued while it opens.
        let mut handler = Handler::new(true, WRITE_TIMEOUT);
        assert!(asks_for_a_stream(&mut handler, &mut cx));
        handler.on_behaviour_event(FromBehaviour::Send(want(1)));
        open_failed(&mut handler, StreamUpgradeError::Timeout);
        assert!(handler.events.is_empty(), "the want is kept for the second try");
        assert!(asks_for_a_stream(&mut handler, &mut cx));
        // The second failure is final: the want fails.
        open_failed(&mut handler, StreamUpgradeError::Timeout);
        assert!(matches!(handler.events.pop_front(), Some(ToBehaviour::SendFailed(_))));
        assert!(handler.queue.is_empty());

        // An eager open lost with nothing queued is asked for again all the same.
        let mut handler = Handler::new(true, WRITE_TIMEOUT);
        assert!(asks_for_a_stream(&mut handler, &mut cx));
        open_failed(&mut handler, StreamUpgradeError::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert!(asks_for_a_stream(&mut handler, &mut cx));

        // A remote that does not speak Bitswap is not asked twice.
        let mut handler = Handler::new(false, WRITE_TIMEOUT);
        handler.on_behaviour_event(FromBehaviour::Send(want(1)));
        assert!(asks_for_a_stream(&mut handler, &mut cx));
        open_failed(&mut handler, StreamUpgradeError::NegotiationFailed);
        assert!(matches!(handler.events.pop_front(), Some(ToBehaviour::SendFailed(_))));
        assert!(handler.poll(&mut cx).is_pending());
    }

    #[test]
    fn a_listener_opens_its_stream_once_the_remote_has_opened_one() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut handler = Handler::new(false, WRITE_TIMEOUT);
        // Nothing to send and no sign that the remote takes streams yet: nothing is opened.
        assert!(handler.poll(&mut cx).is_pending());
        handler.remote_opened_a_stream();
        assert!(asks_for_a_stream(&mut handler, &mut cx));
        // A second stream from the remote while ours opens does not ask for another.
        handler.remote_opened_a_stream();
        assert!(handler.poll(&mut cx).is_pending());
    }

    #[test]
    fn large_messages_are_refused_once_the_queue_is_full() {
        let mut handler = Handler::new(false, WRITE_TIMEOUT);
        let big = crate::Block::from_data(RAW, vec![1u8; 2 * 1024 * 1024]).unwrap();
        for _ in 0..MAX_QUEUED_MESSAGES + 3 {
            let mut msg = Message::default();
            msg.push_block(&big);
            handler.on_behaviour_event(FromBehaviour::Send(msg));
        }
        // Two 2 MiB blocks exceed one message, so each stays alone; the overflow is refused.
        assert_eq!(handler.queue.len(), MAX_QUEUED_MESSAGES);
        assert_eq!(handler.events.len(), 3);
    }
}
