//! Content-addressed archives: CARv1 read and write, CARv2 read.
//!
//! Both directions stream: the reader holds one section at a time and the writer none. Every
//! length read from the file is checked against a bound ([`MAX_CAR_HEADER_BYTES`],
//! [`MAX_CAR_SECTION_BYTES`]) before anything is allocated, and every block is verified against
//! its CID, so a corrupt or hostile archive gives a typed error and never a large allocation.

use std::io::{self, Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::block::{Block, Cid, VerifyError};
use crate::limits::{MAX_CAR_HEADER_BYTES, MAX_CAR_ROOTS, MAX_CAR_SECTION_BYTES};

/// The 11 bytes that open a CARv2 file: a CARv1-style header `{version: 2}`.
pub const CARV2_PRAGMA: [u8; 11] = [0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];

/// Size of the fixed CARv2 header that follows the pragma.
const CARV2_HEADER_BYTES: u64 = 40;

/// Why an archive could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CarError {
    /// Reading or writing failed.
    #[error("CAR I/O failed")]
    Io(#[from] io::Error),
    /// The file ended inside a header or a section.
    #[error("CAR truncated at byte {0}")]
    Truncated(u64),
    /// A length prefix is not a valid varint.
    #[error("CAR has a malformed varint at byte {0}")]
    Varint(u64),
    /// The header is longer than [`MAX_CAR_HEADER_BYTES`] (or empty).
    #[error("CAR header of {0} bytes is out of bounds (1 to {MAX_CAR_HEADER_BYTES})")]
    HeaderLength(u64),
    /// The header is not the dag-cbor map it should be.
    #[error("CAR header does not decode")]
    HeaderDecode(#[source] serde_ipld_dagcbor::DecodeError<std::convert::Infallible>),
    /// The header decodes but lacks its roots or has too many.
    #[error("CAR header: {0}")]
    Header(&'static str),
    /// A version other than 1 or 2.
    #[error("CAR version {0} is not supported (1 and 2 are)")]
    UnsupportedVersion(u64),
    /// The CARv2 header is inconsistent.
    #[error("CARv2 header: {0}")]
    V2Header(String),
    /// A section is longer than [`MAX_CAR_SECTION_BYTES`].
    #[error("CAR section of {len} bytes at byte {offset} exceeds the {MAX_CAR_SECTION_BYTES}-byte limit")]
    SectionTooLarge {
        /// Declared length.
        len: u64,
        /// Where the section starts.
        offset: u64,
    },
    /// A section of length zero, which cannot hold a CID.
    #[error("CAR has a zero-length section at byte {0}")]
    ZeroLengthSection(u64),
    /// A section does not start with a valid CID.
    #[error("CAR section at byte {0} does not start with a valid CID")]
    Cid(u64),
    /// A block does not hash to its CID.
    #[error("CAR section at byte {offset}: {source}")]
    Verify {
        /// Where the section starts.
        offset: u64,
        /// The verification failure.
        source: VerifyError,
    },
    /// The header could not be encoded.
    #[error("CAR header could not be encoded")]
    Encode(#[source] serde_ipld_dagcbor::EncodeError<std::collections::TryReserveError>),
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    roots: Option<Vec<Cid>>,
    version: u64,
}

/// A [`Read`] that counts the bytes it has read, for error positions and CARv2 bounds.
struct Counting<R> {
    inner: R,
    pos: u64,
    /// Position at which the readable data ends (the CARv2 data size), if any.
    limit: Option<u64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let buf = match self.limit {
            Some(limit) => {
                let left = limit.saturating_sub(self.pos);
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                &mut buf[..n]
            }
            None => buf,
        };
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads the blocks of a CARv1 or CARv2 archive in order.
pub struct CarReader<R> {
    input: Counting<R>,
    version: u64,
    roots: Vec<Cid>,
}

impl<R: Read> CarReader<R> {
    /// Reads the header (and, for CARv2, skips to the data) and checks it.
    pub fn new(inner: R) -> Result<Self, CarError> {
        let mut input = Counting { inner, pos: 0, limit: None };
        let header = read_header(&mut input)?;
        match header.version {
            1 => {
                let roots = header.roots.ok_or(CarError::Header("a CARv1 header needs roots"))?;
                Ok(Self { input, version: 1, roots })
            }
            2 => {
                if input.pos != CARV2_PRAGMA.len() as u64 {
                    return Err(CarError::V2Header("the pragma is not canonical".into()));
                }
                let mut fixed = [0u8; CARV2_HEADER_BYTES as usize];
                read_exact(&mut input, &mut fixed)?;
                let word = |i: usize| u64::from_le_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
                let (data_offset, data_size) = (word(16), word(24));
                let header_end = CARV2_PRAGMA.len() as u64 + CARV2_HEADER_BYTES;
                if data_offset < header_end {
                    return Err(CarError::V2Header(format!("data offset {data_offset} is inside the header")));
                }
                let skip = data_offset - header_end;
                let skipped = io::copy(&mut (&mut input).take(skip), &mut io::sink())?;
                if skipped != skip {
                    return Err(CarError::Truncated(input.pos));
                }
                let end = data_offset
                    .checked_add(data_size)
                    .ok_or_else(|| CarError::V2Header("data size overflows".into()))?;
                input.limit = Some(end);
                let inner = read_header(&mut input)?;
                if inner.version != 1 {
                    return Err(CarError::V2Header(format!("inner CAR has version {}", inner.version)));
                }
                let roots = inner.roots.ok_or(CarError::Header("the inner CARv1 header needs roots"))?;
                Ok(Self { input, version: 2, roots })
            }
            other => Err(CarError::UnsupportedVersion(other)),
        }
    }

    /// The archive's version, 1 or 2.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The root CIDs the header declares.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next verified block, or `None` at the end of the data.
    pub fn next_block(&mut self) -> Result<Option<Block>, CarError> {
        let offset = self.input.pos;
        let Some(len) = read_varint(&mut self.input)? else { return Ok(None) };
        if len == 0 {
            return Err(CarError::ZeroLengthSection(offset));
        }
        if len > MAX_CAR_SECTION_BYTES as u64 {
            return Err(CarError::SectionTooLarge { len, offset });
        }
        let mut section = vec![0u8; len as usize];
        read_exact(&mut self.input, &mut section)?;
        let mut cursor = io::Cursor::new(&section[..]);
        let cid = Cid::read_bytes(&mut cursor).map_err(|_| CarError::Cid(offset))?;
        let start = cursor.position() as usize;
        let data = Bytes::from(section).slice(start..);
        Block::new(cid, data).map(Some).map_err(|source| CarError::Verify { offset, source })
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_block().transpose()
    }
}

fn read_header<R: Read>(input: &mut Counting<R>) -> Result<Header, CarError> {
    let at = input.pos;
    let len = read_varint(input)?.ok_or(CarError::Truncated(at))?;
    if len == 0 || len > MAX_CAR_HEADER_BYTES as u64 {
        return Err(CarError::HeaderLength(len));
    }
    let mut bytes = vec![0u8; len as usize];
    read_exact(input, &mut bytes)?;
    let header: Header = serde_ipld_dagcbor::from_slice(&bytes).map_err(CarError::HeaderDecode)?;
    if header.roots.as_ref().is_some_and(|r| r.len() > MAX_CAR_ROOTS) {
        return Err(CarError::Header("more roots than MAX_CAR_ROOTS"));
    }
    Ok(header)
}

fn read_exact<R: Read>(input: &mut Counting<R>, buf: &mut [u8]) -> Result<(), CarError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => CarError::Truncated(input.pos),
        _ => CarError::Io(e),
    })
}

/// Reads an unsigned varint; `None` on a clean end of input before its first byte.
fn read_varint<R: Read>(input: &mut Counting<R>) -> Result<Option<u64>, CarError> {
    let at = input.pos;
    let mut buf = [0u8; 10];
    for i in 0..buf.len() {
        let mut byte = [0u8; 1];
        if input.read(&mut byte)? == 0 {
            return if i == 0 { Ok(None) } else { Err(CarError::Truncated(input.pos)) };
        }
        buf[i] = byte[0];
        if byte[0] & 0x80 == 0 {
            let (v, _) = unsigned_varint::decode::u64(&buf[..=i]).map_err(|_| CarError::Varint(at))?;
            return Ok(Some(v));
        }
    }
    Err(CarError::Varint(at))
}

/// Writes a CARv1 archive: the header on creation, then one section per block.
pub struct CarWriter<W> {
    out: W,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header naming `roots`.
    pub fn new(mut out: W, roots: &[Cid]) -> Result<Self, CarError> {
        let header = Header { roots: Some(roots.to_vec()), version: 1 };
        let bytes = serde_ipld_dagcbor::to_vec(&header).map_err(CarError::Encode)?;
        write_varint(&mut out, bytes.len() as u64)?;
        out.write_all(&bytes)?;
        Ok(Self { out })
    }

    /// Appends a block.
    pub fn write_block(&mut self, block: &Block) -> Result<(), CarError> {
        Ok(write_section(&mut self.out, block.cid(), block.data())?)
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<W, CarError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes one CARv1 section (varint length, CID, bytes): what streaming writers that send the
/// header separately need. The caller vouches that `data` hashes to `cid`.
pub fn write_section(out: &mut impl Write, cid: &Cid, data: &[u8]) -> io::Result<()> {
    let cid = cid.to_bytes();
    write_varint(out, (cid.len() + data.len()) as u64)?;
    out.write_all(&cid)?;
    out.write_all(data)
}

fn write_varint(out: &mut impl Write, v: u64) -> io::Result<()> {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.write_all(unsigned_varint::encode::u64(v, &mut buf))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::block::RAW;

    #[test]
    fn write_then_read() {
        let blocks: Vec<Block> = (0..3u8).map(|i| Block::from_data(RAW, vec![i; 100]).unwrap()).collect();
        let mut w = CarWriter::new(Vec::new(), &[*blocks[0].cid()]).unwrap();
        for b in &blocks {
            w.write_block(b).unwrap();
        }
        let bytes = w.finish().unwrap();
        let reader = CarReader::new(&bytes[..]).unwrap();
        assert_eq!((reader.version(), reader.roots()), (1, &[*blocks[0].cid()][..]));
        let read: Vec<Block> = reader.map(Result::unwrap).collect();
        assert_eq!(read, blocks);
    }

    #[test]
    fn huge_declared_lengths_are_refused_before_allocating() {
        // A header claiming 2^62 bytes.
        let err = CarReader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40][..]).err().unwrap();
        assert!(matches!(err, CarError::HeaderLength(_)), "{err}");
        let mut w = CarWriter::new(Vec::new(), &[]).unwrap();
        w.write_block(&Block::from_data(RAW, vec![1]).unwrap()).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        let err = CarReader::new(&bytes[..]).unwrap().try_for_each(|r| r.map(|_| ()));
        assert!(matches!(err, Err(CarError::SectionTooLarge { .. })));
    }

    #[test]
    fn a_flipped_byte_is_a_verification_error() {
        let block = Block::from_data(RAW, vec![5u8; 64]).unwrap();
        let mut w = CarWriter::new(Vec::new(), &[*block.cid()]).unwrap();
        w.write_block(&block).unwrap();
        let mut bytes = w.finish().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let mut reader = CarReader::new(&bytes[..]).unwrap();
        assert!(matches!(reader.next_block(), Err(CarError::Verify { .. })));
    }
}
