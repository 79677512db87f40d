//! libp2p streams over WebRTC data channels (libp2p/specs `webrtc/README.md`), sans-IO: the
//! message framing and the half-close state machine, with `FIN_ACK`.
//!
//! A data channel carries messages `Message { flag?, message? }` (protobuf), each prefixed with
//! its length as an unsigned varint and at most [`MAX_MESSAGE_BYTES`] in all. `FIN` closes
//! the sender's write half, `STOP_SENDING` its read half, `RESET_STREAM` both, and `FIN_ACK`
//! acknowledges a `FIN`: a writer knows all it sent arrived once the `FIN_ACK` is in. A channel
//! may be closed once a `FIN` and a `FIN_ACK` have been received (or the wait for the `FIN_ACK`
//! timed out, for peers that never send it: rust-libp2p's libp2p-webrtc-utils 0.5 and
//! earlier).
//!
//! [`DataChannelStream`] holds one side's state. The caller feeds it the channel's bytes
//! ([`DataChannelStream::receive`]), takes the messages it has to send
//! ([`DataChannelStream::poll_transmit`]), and passes the time in where a timeout matters
//! (any monotonic clock, as a [`Duration`] since a point of the caller's choosing).

use std::collections::VecDeque;
use std::time::Duration;

/// The largest message on the channel, length prefix included (the spec's limit, for every
/// major browser).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// The most payload one message carries: the limit less the length prefix (2 bytes below
/// 16 KiB), the flag (2) and the payload's tag and length (1 + 2).
pub const MAX_PAYLOAD_BYTES: usize = MAX_MESSAGE_BYTES - 7;
/// How long a writer that sent `FIN` waits for the `FIN_ACK` before it closes the channel
/// anyway.
pub const FIN_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A message's flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum Flag {
    /// The sender will send nothing more.
    Fin = 0,
    /// The sender will read nothing more; data sent to it is discarded.
    StopSending = 1,
    /// The sender abandons the stream, both ways.
    ResetStream = 2,
    /// The sender received the `FIN`.
    FinAck = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Message {
    #[prost(enumeration = "Flag", optional, tag = "1")]
    flag: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "2")]
    message: Option<Vec<u8>>,
}

/// What the remote sent that the framing does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A length prefix past [`MAX_MESSAGE_BYTES`] (or longer than 3 bytes).
    #[error("a {0}-byte message is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLong(usize),
    /// The protobuf did not decode.
    #[error("undecodable message: {0}")]
    Undecodable(String),
    /// A flag this implementation does not know.
    #[error("unknown flag {0}")]
    UnknownFlag(i32),
    /// More unread data than the reader allows.
    #[error("more than {0} bytes received and not read")]
    ReadBufferFull(usize),
}

/// Why a write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// This side closed its write half (`FIN` queued or sent).
    #[error("the stream is closed for writing")]
    Closed,
    /// The remote said it reads nothing more (`STOP_SENDING`).
    #[error("the remote stopped reading")]
    Stopped,
    /// The stream was reset, by either side.
    #[error("the stream was reset")]
    Reset,
}

/// The read half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadHalf {
    /// Data may arrive.
    Open,
    /// The remote sent `FIN`: what is buffered is the rest.
    Finished,
    /// This side sent `STOP_SENDING`: data that arrives is dropped.
    Stopped,
    /// The stream was reset.
    Reset,
}

/// The write half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteHalf {
    /// Writes are taken.
    Open,
    /// `FIN` is queued or sent; waiting for the `FIN_ACK` until `deadline`.
    FinSent {
        /// When the wait ends.
        deadline: Duration,
    },
    /// Closed: `acked` when the remote acknowledged the `FIN`, not when the wait timed out.
    Closed {
        /// The remote acknowledged the `FIN`.
        acked: bool,
    },
    /// The remote sent `STOP_SENDING`.
    Stopped,
    /// The stream was reset.
    Reset,
}

/// What [`DataChannelStream::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were copied.
    Data(usize),
    /// Nothing buffered and nothing more will come.
    Eof,
    /// The stream was reset.
    Reset,
    /// Nothing buffered yet.
    Pending,
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        let kind = match e {
            WriteError::Closed | WriteError::Stopped => std::io::ErrorKind::BrokenPipe,
            WriteError::Reset => std::io::ErrorKind::ConnectionReset,
        };
        std::io::Error::new(kind, e)
    }
}

impl Read {
    /// The read as `AsyncRead::poll_read` reports it, `None` meaning "wait". A channel that
    /// closed without a `FIN` (`channel_closed`) ends the stream as a `FIN` would.
    pub fn into_io(self, channel_closed: bool) -> Option<std::io::Result<usize>> {
        match self {
            Read::Data(n) => Some(Ok(n)),
            Read::Eof => Some(Ok(0)),
            Read::Reset => Some(Err(std::io::ErrorKind::ConnectionReset.into())),
            Read::Pending if channel_closed => Some(Ok(0)),
            Read::Pending => None,
        }
    }
}

/// Encoded messages in order, with their total size kept (writers ask for it on every write).
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl Outbox {
    fn push_back(&mut self, message: Vec<u8>) {
        self.bytes += message.len();
        self.queue.push_back(message);
    }

    fn push_front(&mut self, message: Vec<u8>) {
        self.bytes += message.len();
        self.queue.push_front(message);
    }

    fn pop_front(&mut self) -> Option<Vec<u8>> {
        let message = self.queue.pop_front()?;
        self.bytes -= message.len();
        Some(message)
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// One side of a libp2p stream on a data channel; see the module documentation.
#[derive(Debug)]
pub struct DataChannelStream {
    /// Bytes of a message not complete yet (at most one message).
    partial: Vec<u8>,
    /// Received data not read yet.
    unread: VecDeque<u8>,
    max_unread: usize,
    read: ReadHalf,
    write: WriteHalf,
    /// Encoded messages waiting to be handed to the channel, in order.
    outbox: Outbox,
    fin_ack_sent: bool,
}

impl DataChannelStream {
    /// A new, open stream that holds at most `max_unread` bytes received and not read.
    pub fn new(max_unread: usize) -> Self {
        Self {
            partial: Vec::new(),
            unread: VecDeque::new(),
            max_unread,
            read: ReadHalf::Open,
            write: WriteHalf::Open,
            outbox: Outbox::default(),
            fin_ack_sent: false,
        }
    }

    /// The read half's state.
    pub fn read_half(&self) -> ReadHalf {
        self.read
    }

    /// The write half's state.
    pub fn write_half(&self) -> WriteHalf {
        self.write
    }

    /// Bytes received and not read yet.
    pub fn unread_bytes(&self) -> usize {
        self.unread.len()
    }

    /// Takes bytes the channel delivered: whole messages, or parts of one. Flags take effect
    /// at once; data waits for [`read`](Self::read). An error leaves the stream reset (the
    /// caller should close the channel).
    pub fn receive(&mut self, mut bytes: &[u8]) -> Result<(), FramingError> {
        while !bytes.is_empty() {
            // Complete the message in progress; while its length prefix is incomplete, one
            // byte at a time.
            let take = match message_length(&self.partial) {
                Some(Ok((prefix, len))) => (prefix + len - self.partial.len()).min(bytes.len()),
                Some(Err(e)) => return Err(self.fail(e)),
                None => 1,
            };
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            match message_length(&self.partial) {
                Some(Err(e)) => return Err(self.fail(e)),
                Some(Ok((prefix, len))) if self.partial.len() == prefix + len => {
                    let message = std::mem::take(&mut self.partial);
                    self.on_message(&message[prefix..])?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.read = ReadHalf::Reset;
        self.write = WriteHalf::Reset;
        self.unread.clear();
        e
    }

    fn on_message(&mut self, body: &[u8]) -> Result<(), FramingError> {
        let message = <Message as prost::Message>::decode(body)
            .map_err(|e| FramingError::Undecodable(e.to_string()))
            .map_err(|e| self.fail(e))?;
        let flag = match message.flag {
            None => None,
            Some(f) => Some(Flag::try_from(f).map_err(|_| self.fail(FramingError::UnknownFlag(f)))?),
        };
        // Data first, then the flag that ends it.
        if let Some(data) = message.message.filter(|d| !d.is_empty())
            && self.read == ReadHalf::Open
        {
            if self.unread.len() + data.len() > self.max_unread {
                return Err(self.fail(FramingError::ReadBufferFull(self.max_unread)));
            }
            self.unread.extend(data);
        }
        match flag {
            None => {}
            Some(Flag::Fin) => {
                if self.read == ReadHalf::Open || self.read == ReadHalf::Stopped {
                    self.read = ReadHalf::Finished;
                }
                if !self.fin_ack_sent && self.read != ReadHalf::Reset {
                    self.fin_ack_sent = true;
                    self.outbox.push_back(encode(Some(Flag::FinAck), &[]));
                }
            }
            Some(Flag::StopSending) => {
                if matches!(self.write, WriteHalf::Open) {
                    self.write = WriteHalf::Stopped;
                }
            }
            Some(Flag::ResetStream) => {
                self.read = ReadHalf::Reset;
                self.write = WriteHalf::Reset;
                self.unread.clear();
                self.outbox.clear();
            }
            Some(Flag::FinAck) => {
                if matches!(self.write, WriteHalf::FinSent { .. }) {
                    self.write = WriteHalf::Closed { acked: true };
                }
            }
        }
        Ok(())
    }

    /// Copies received data into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> Read {
        if !self.unread.is_empty() && !buf.is_empty() {
            // Every byte of every stream passes here: copy slices, not bytes.
            let (front, back) = self.unread.as_slices();
            let a = front.len().min(buf.len());
            buf[..a].copy_from_slice(&front[..a]);
            let b = back.len().min(buf.len() - a);
            buf[a..a + b].copy_from_slice(&back[..b]);
            self.unread.drain(..a + b);
            return Read::Data(a + b);
        }
        match self.read {
            ReadHalf::Open => Read::Pending,
            ReadHalf::Finished | ReadHalf::Stopped => Read::Eof,
            ReadHalf::Reset => Read::Reset,
        }
    }

    /// Queues up to [`MAX_PAYLOAD_BYTES`] of `data` as one message; returns how many bytes
    /// were taken.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        match self.write {
            WriteHalf::Open => {}
            WriteHalf::FinSent { .. } | WriteHalf::Closed { .. } => return Err(WriteError::Closed),
            WriteHalf::Stopped => return Err(WriteError::Stopped),
            WriteHalf::Reset => return Err(WriteError::Reset),
        }
        let n = data.len().min(MAX_PAYLOAD_BYTES);
        self.outbox.push_back(encode(None, &data[..n]));
        Ok(n)
    }

    /// Closes the write half: queues `FIN` and waits for the `FIN_ACK` until
    /// `now + FIN_ACK_TIMEOUT`. Closing again does nothing.
    pub fn close_write(&mut self, now: Duration) {
        if matches!(self.write, WriteHalf::Open | WriteHalf::Stopped) {
            self.outbox.push_back(encode(Some(Flag::Fin), &[]));
            self.write = WriteHalf::FinSent { deadline: now + FIN_ACK_TIMEOUT };
        }
    }

    /// Closes the read half: queues `STOP_SENDING`; data that arrives later is dropped.
    pub fn stop_reading(&mut self) {
        if self.read == ReadHalf::Open {
            self.outbox.push_back(encode(Some(Flag::StopSending), &[]));
            self.read = ReadHalf::Stopped;
            self.unread.clear();
        }
    }

    /// Abandons the stream both ways: queues `RESET_STREAM` in place of anything unsent.
    pub fn reset(&mut self) {
        if self.read == ReadHalf::Reset && self.write == WriteHalf::Reset {
            return;
        }
        self.outbox.clear();
        self.outbox.push_back(encode(Some(Flag::ResetStream), &[]));
        self.read = ReadHalf::Reset;
        self.write = WriteHalf::Reset;
        self.unread.clear();
    }

    /// The next message to hand to the channel, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Puts back a message the channel could not take yet, to be sent first.
    pub fn unsend(&mut self, message: Vec<u8>) {
        self.outbox.push_front(message);
    }

    /// Whether messages are waiting to be sent.
    pub fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Bytes of the messages waiting to be sent (a writer's back-pressure measure).
    pub fn outgoing_bytes(&self) -> usize {
        self.outbox.bytes
    }

    /// When [`on_timeout`](Self::on_timeout) should be called next, if ever.
    pub fn deadline(&self) -> Option<Duration> {
        match self.write {
            WriteHalf::FinSent { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Ends the wait for a `FIN_ACK` that is past its deadline.
    pub fn on_timeout(&mut self, now: Duration) {
        if let WriteHalf::FinSent { deadline } = self.write
            && now >= deadline
        {
            self.write = WriteHalf::Closed { acked: false };
        }
    }

    /// Whether the channel may be closed without losing anything: nothing left to send, the
    /// remote's `FIN` received (or the stream reset), and this side's `FIN` acknowledged (or
    /// the wait timed out).
    pub fn may_close_channel(&self) -> bool {
        self.outbox.is_empty()
            && matches!(
                (self.read, self.write),
                (ReadHalf::Reset, _) | (_, WriteHalf::Reset) | (ReadHalf::Finished, WriteHalf::Closed { .. })
            )
    }
}

/// `Some(Ok((prefix length, message length)))` once `bytes` holds the whole length prefix.
fn message_length(bytes: &[u8]) -> Option<Result<(usize, usize), FramingError>> {
    // A message of at most 16 KiB needs at most 2 prefix bytes; 3 are allowed.
    let head = &bytes[..bytes.len().min(3)];
    match unsigned_varint::decode::usize(head) {
        Ok((len, rest)) => {
            let prefix = head.len() - rest.len();
            Some(if prefix + len > MAX_MESSAGE_BYTES {
                Err(FramingError::TooLong(prefix + len))
            } else {
                Ok((prefix, len))
            })
        }
        Err(unsigned_varint::decode::Error::Insufficient) if head.len() < 3 => None,
        Err(_) => Some(Err(FramingError::TooLong(usize::MAX))),
    }
}

/// One message on the wire: the length prefix, then the protobuf.
pub fn encode(flag: Option<Flag>, payload: &[u8]) -> Vec<u8> {
    let message = Message { flag: flag.map(|f| f as i32), message: (!payload.is_empty()).then(|| payload.to_vec()) };
    let body = prost::Message::encode_to_vec(&message);
    let mut prefix = unsigned_varint::encode::usize_buffer();
    let prefix = unsigned_varint::encode::usize(body.len(), &mut prefix);
    let mut out = Vec::with_capacity(prefix.len() + body.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const T0: Duration = Duration::ZERO;

    /// Moves every queued message from `from` to `to`.
    fn deliver(from: &mut DataChannelStream, to: &mut DataChannelStream) {
        while let Some(m) = from.poll_transmit() {
            to.receive(&m).unwrap();
        }
    }

    fn read_all(s: &mut DataChannelStream) -> (Vec<u8>, Read) {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match s.read(&mut buf) {
                Read::Data(n) => out.extend_from_slice(&buf[..n]),
                end => return (out, end),
            }
        }
    }

    #[test]
    fn the_largest_message_fits_the_limit() {
        let m = encode(Some(Flag::Fin), &[7; MAX_PAYLOAD_BYTES]);
        assert!(m.len() <= MAX_MESSAGE_BYTES, "{} bytes", m.len());
        let mut s = DataChannelStream::new(1 << 20);
        assert_eq!(s.write(&[1; 3 * MAX_PAYLOAD_BYTES]), Ok(MAX_PAYLOAD_BYTES));
        assert!(s.poll_transmit().unwrap().len() <= MAX_MESSAGE_BYTES);
    }

    /// The spec's example: A writes and closes, B acknowledges, writes and closes, A
    /// acknowledges; each may then close the channel, and nothing is lost.
    #[test]
    fn half_close_both_ways_with_fin_ack() {
        let (mut a, mut b) = (DataChannelStream::new(1 << 20), DataChannelStream::new(1 << 20));
        a.write(b"request").unwrap();
        a.close_write(T0);
        assert_eq!(a.write(b"more"), Err(WriteError::Closed));
        deliver(&mut a, &mut b);
        assert_eq!(read_all(&mut b), (b"request".to_vec(), Read::Eof));
        assert!(b.has_outgoing(), "B owes A a FIN_ACK");
        assert!(!b.may_close_channel(), "B has not closed its own write half");
        b.write(b"response").unwrap();
        b.close_write(T0);
        deliver(&mut b, &mut a);
        assert_eq!(a.write_half(), WriteHalf::Closed { acked: true });
        assert_eq!(read_all(&mut a), (b"response".to_vec(), Read::Eof));
        deliver(&mut a, &mut b);
        assert_eq!(b.write_half(), WriteHalf::Closed { acked: true });
        assert!(a.may_close_channel() && b.may_close_channel());
    }

    /// A remote that never sends FIN_ACK (libp2p-webrtc-utils 0.5): the wait ends at the
    /// deadline, not before, and the channel may then be closed.
    #[test]
    fn a_peer_that_never_acknowledges_times_out() {
        let mut a = DataChannelStream::new(1024);
        a.close_write(Duration::from_secs(1));
        assert_eq!(a.deadline(), Some(Duration::from_secs(1) + FIN_ACK_TIMEOUT));
        let fin = a.poll_transmit().unwrap();
        assert_eq!(fin, encode(Some(Flag::Fin), &[]));
        // The old peer answers with its own FIN, no FIN_ACK.
        a.receive(&encode(Some(Flag::Fin), &[])).unwrap();
        assert_eq!(a.poll_transmit(), Some(encode(Some(Flag::FinAck), &[])), "its FIN is acknowledged");
        a.on_timeout(Duration::from_secs(5));
        assert!(matches!(a.write_half(), WriteHalf::FinSent { .. }), "still waiting before the deadline");
        assert!(!a.may_close_channel());
        a.on_timeout(Duration::from_secs(1) + FIN_ACK_TIMEOUT);
        assert_eq!(a.write_half(), WriteHalf::Closed { acked: false });
        assert!(a.may_close_channel());
    }

    #[test]
    fn fin_is_acknowledged_once() {
        let mut b = DataChannelStream::new(1024);
        b.receive(&encode(Some(Flag::Fin), &[])).unwrap();
        b.receive(&encode(Some(Flag::Fin), &[])).unwrap();
        assert_eq!(b.poll_transmit(), Some(encode(Some(Flag::FinAck), &[])));
        assert_eq!(b.poll_transmit(), None);
    }

    #[test]
    fn stop_sending_and_reset() {
        let (mut a, mut b) = (DataChannelStream::new(1024), DataChannelStream::new(1024));
        b.stop_reading();
        deliver(&mut b, &mut a);
        assert_eq!(a.write(b"x"), Err(WriteError::Stopped));
        // B drops what arrives after STOP_SENDING but still acts on flags.
        b.receive(&encode(None, b"ignored")).unwrap();
        assert_eq!(b.read(&mut [0; 8]), Read::Eof);
        a.close_write(T0);
        deliver(&mut a, &mut b);
        deliver(&mut b, &mut a);
        assert_eq!(a.write_half(), WriteHalf::Closed { acked: true });

        let (mut c, mut d) = (DataChannelStream::new(1024), DataChannelStream::new(1024));
        c.write(b"lost").unwrap();
        c.reset();
        deliver(&mut c, &mut d);
        assert_eq!(d.read(&mut [0; 8]), Read::Reset);
        assert_eq!(d.write(b"x"), Err(WriteError::Reset));
        assert!(c.may_close_channel() && d.may_close_channel());
    }

    #[test]
    fn hostile_input_is_refused_with_a_typed_error() {
        let mut s = DataChannelStream::new(16);
        assert_eq!(s.receive(&[0xff, 0xff, 0x7f]), Err(FramingError::TooLong(0x1f_ffff + 3)));
        assert_eq!(s.read_half(), ReadHalf::Reset);
        let mut s = DataChannelStream::new(16);
        assert_eq!(s.receive(&[0x80, 0x80, 0x80]), Err(FramingError::TooLong(usize::MAX)));
        let mut s = DataChannelStream::new(16);
        assert!(matches!(s.receive(&[2, 0x08, 0x09]), Err(FramingError::UnknownFlag(9))));
        let mut s = DataChannelStream::new(16);
        assert!(matches!(s.receive(&[2, 0xff, 0xff]), Err(FramingError::Undecodable(_))));
        let mut s = DataChannelStream::new(16);
        assert_eq!(s.receive(&encode(None, &[0; 17])), Err(FramingError::ReadBufferFull(16)));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// However the channel splits the bytes, the reader gets every byte written, in
        /// order, then the end; and the writer gets its FIN_ACK.
        #[test]
        fn bytes_arrive_whole_however_the_channel_splits_them(
            writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40_000), 0..6),
            cuts in proptest::collection::vec(1usize..20_000, 1..50),
        ) {
            let (mut a, mut b) = (DataChannelStream::new(1 << 20), DataChannelStream::new(1 << 20));
            let mut sent = Vec::new();
            for w in &writes {
                let mut rest = &w[..];
                while !rest.is_empty() {
                    let n = a.write(rest).unwrap();
                    sent.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                }
            }
            a.close_write(Duration::ZERO);
            let mut wire = Vec::new();
            while let Some(m) = a.poll_transmit() {
                prop_assert!(m.len() <= MAX_MESSAGE_BYTES);
                wire.extend_from_slice(&m);
            }
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at >= wire.len() { break; }
                let end = (at + cut).min(wire.len());
                b.receive(&wire[at..end]).unwrap();
                at = end;
            }
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match b.read(&mut buf) {
                    Read::Data(n) => got.extend_from_slice(&buf[..n]),
                    end => { prop_assert_eq!(end, Read::Eof); break; }
                }
            }
            prop_assert_eq!(got, sent);
            while let Some(m) = b.poll_transmit() { a.receive(&m).unwrap(); }
            prop_assert_eq!(a.write_half(), WriteHalf::Closed { acked: true });
        }

        /// No sequence of flags and data from the remote panics or breaks the invariants:
        /// a closed or reset half never opens again, and unread data stays under its bound.
        #[test]
        fn any_message_sequence_keeps_the_state_machine_sound(
            messages in proptest::collection::vec((proptest::option::of(0i32..4), proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
        ) {
            let mut s = DataChannelStream::new(256);
            let mut was_reset = false;
            let mut read_ended = false;
            for (flag, data) in messages {
                let flag = flag.map(|f| Flag::try_from(f).unwrap());
                let _ = s.receive(&encode(flag, &data));
                prop_assert!(s.unread.len() <= 256);
                if was_reset {
                    prop_assert_eq!(s.read_half(), ReadHalf::Reset);
                    prop_assert_eq!(s.write_half(), WriteHalf::Reset);
                }
                if read_ended {
                    prop_assert_ne!(s.read_half(), ReadHalf::Open);
                }
                was_reset |= s.read_half() == ReadHalf::Reset;
                read_ended |= s.read_half() != ReadHalf::Open;
            }
        }

        /// The kept count of queued bytes is always the queue's size, whatever this side and
        /// the remote do.
        #[test]
        fn the_outgoing_byte_count_matches_the_queue(
            ops in proptest::collection::vec((0u8..7, proptest::collection::vec(any::<u8>(), 0..100)), 0..60),
        ) {
            let mut s = DataChannelStream::new(1 << 20);
            let mut held = Vec::new();
            for (op, data) in ops {
                match op {
                    0 => { let _ = s.write(&data); }
                    1 => s.close_write(Duration::ZERO),
                    2 => s.stop_reading(),
                    3 => s.reset(),
                    4 => held.extend(s.poll_transmit()),
                    5 => if let Some(m) = held.pop() { s.unsend(m) },
                    _ => { let _ = s.receive(&encode(Some(Flag::Fin), &data)); }
                }
                prop_assert_eq!(s.outgoing_bytes(), s.outbox.queue.iter().map(Vec::len).sum::<usize>());
            }
        }
    }
}
