//! Framing of Bitswap messages on a stream: an unsigned-varint length, then the protobuf.
//!
//! The declared length is checked against [`MAX_MESSAGE_BYTES`] before a single byte of the
//! message is read or allocated.

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

use crate::limits::MAX_MESSAGE_BYTES;

/// The protocol name Antiphon speaks and advertises.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

/// The previous version, accepted inbound: its messages are 1.2.0 messages without want types
/// and presences, so the same decoder reads them. Replies always go out over 1.2.0.
pub const PROTOCOL_1_1_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("bitswap stream I/O failed")]
    Io(#[from] std::io::Error),
    /// The length prefix is not a valid varint.
    #[error("invalid length prefix on bitswap stream")]
    BadLength,
    /// The declared length exceeds the limit; nothing was read.
    #[error("peer declared a {declared}-byte message, the limit is {MAX_MESSAGE_BYTES}")]
    TooLarge {
        /// What the peer declared.
        declared: u64,
    },
}

/// What a frame's buffer starts at; it grows with what actually arrives.
const FIRST_READ_BYTES: usize = 16 * 1024;

/// Reads one frame. Returns `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<Bytes>, FrameError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match io.read(&mut byte).await? {
            0 if i == 0 => return Ok(None),
            0 => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            _ => {}
        }
        len |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            if len > MAX_MESSAGE_BYTES as u64 {
                return Err(FrameError::TooLarge { declared: len });
            }
            // The buffer grows as bytes arrive: a peer that declares 4 MiB and sends nothing
            // costs a small allocation, not the declared one.
            let mut buf = Vec::with_capacity((len as usize).min(FIRST_READ_BYTES));
            (&mut *io).take(len).read_to_end(&mut buf).await?;
            if buf.len() as u64 != len {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            return Ok(Some(Bytes::from(buf)));
        }
        // Stop early once the value can no longer fit under the limit.
        if len > MAX_MESSAGE_BYTES as u64 {
            return Err(FrameError::TooLarge { declared: len });
        }
    }
    Err(FrameError::BadLength)
}

/// Writes one frame (length prefix and payload) and flushes it.
///
/// The frame goes down in a single `write_all` of one buffer. libp2p-webrtc 0.10 coalesces a
/// short write (such as a bare length prefix) with the following 16 KiB chunk into one SCTP
/// message larger than the 16384-byte maximum, which fails the stream; one buffer avoids that.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, payload: &[u8]) -> Result<(), FrameError> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge { declared: payload.len() as u64 });
    }
    let mut buf = unsigned_varint::encode::usize_buffer();
    let prefix = unsigned_varint::encode::usize(payload.len(), &mut buf);
    let mut frame = Vec::with_capacity(prefix.len() + payload.len());
    frame.extend_from_slice(prefix);
    frame.extend_from_slice(payload);
    write_framed(io, &frame).await
}

/// Writes bytes that already carry their length prefix, in one `write_all`, and flushes.
pub async fn write_framed<W: AsyncWrite + Unpin>(io: &mut W, frame: &[u8]) -> Result<(), FrameError> {
    io.write_all(frame).await?;
    io.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use futures::io::Cursor;

    #[test]
    fn round_trip_and_eof() {
        futures::executor::block_on(async {
            let mut out = Cursor::new(Vec::new());
            write_frame(&mut out, b"abc").await.unwrap();
            write_frame(&mut out, b"").await.unwrap();
            let mut input = Cursor::new(out.into_inner());
            assert_eq!(read_frame(&mut input).await.unwrap().unwrap(), &b"abc"[..]);
            assert_eq!(read_frame(&mut input).await.unwrap().unwrap(), &b""[..]);
            assert!(read_frame(&mut input).await.unwrap().is_none());
        });
    }

    #[test]
    fn a_declared_length_is_not_allocated_before_it_arrives() {
        futures::executor::block_on(async {
            // 4 MiB declared (within the limit), 10 bytes sent, then the stream ends.
            let mut buf = unsigned_varint::encode::u64_buffer();
            let mut input = unsigned_varint::encode::u64(4 * 1024 * 1024, &mut buf).to_vec();
            input.extend_from_slice(&[7; 10]);
            let err = read_frame(&mut Cursor::new(input)).await.unwrap_err();
            assert!(matches!(err, FrameError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof), "{err}");
        });
    }

    #[test]
    fn huge_declared_length_is_refused_before_reading() {
        futures::executor::block_on(async {
            // 1 GiB declared, no body at all: must fail on the length alone.
            let mut buf = unsigned_varint::encode::u64_buffer();
            let prefix = unsigned_varint::encode::u64(1 << 30, &mut buf).to_vec();
            let err = read_frame(&mut Cursor::new(prefix)).await.unwrap_err();
            assert!(matches!(err, FrameError::TooLarge { .. }));
            let err = read_frame(&mut Cursor::new(vec![0xff; 11])).await.unwrap_err();
            assert!(matches!(err, FrameError::TooLarge { .. } | FrameError::BadLength));
        });
    }
}
