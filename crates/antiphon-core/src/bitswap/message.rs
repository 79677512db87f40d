//! The Bitswap message: its protobuf schema (written here from the spec) and typed, bounded
//! conversions from and to it.

use crate::block::Cid;
use bytes::Bytes;
use prost::Message as _;

use crate::block::{Block, HashFn, Multihash, SHA2_256, VerifyError};
use crate::limits::{MAX_BLOCK_BYTES, MAX_CID_BYTES, MAX_MESSAGE_BYTES, MIN_DIGEST_BYTES};

/// The protobuf schema of `/ipfs/bitswap/1.2.0`.
pub(crate) mod pb {
    /// A whole message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Message {
        #[prost(message, optional, tag = "1")]
        pub(crate) wantlist: Option<Wantlist>,
        /// Bitswap 1.0.0 blocks (bare data, CIDv0 implied); read, never written.
        #[prost(bytes = "bytes", repeated, tag = "2")]
        pub(crate) blocks: Vec<bytes::Bytes>,
        #[prost(message, repeated, tag = "3")]
        pub(crate) payload: Vec<Payload>,
        #[prost(message, repeated, tag = "4")]
        pub(crate) block_presences: Vec<BlockPresence>,
        #[prost(int32, tag = "5")]
        pub(crate) pending_bytes: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Wantlist {
        #[prost(message, repeated, tag = "1")]
        pub(crate) entries: Vec<Entry>,
        #[prost(bool, tag = "2")]
        pub(crate) full: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Entry {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) block: Vec<u8>,
        #[prost(int32, tag = "2")]
        pub(crate) priority: i32,
        #[prost(bool, tag = "3")]
        pub(crate) cancel: bool,
        #[prost(int32, tag = "4")]
        pub(crate) want_type: i32,
        #[prost(bool, tag = "5")]
        pub(crate) send_dont_have: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Payload {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) prefix: Vec<u8>,
        #[prost(bytes = "bytes", tag = "2")]
        pub(crate) data: bytes::Bytes,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct BlockPresence {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) cid: Vec<u8>,
        #[prost(int32, tag = "2")]
        pub(crate) r#type: i32,
    }
}

/// What a wantlist entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantType {
    /// Send the block.
    Block,
    /// Say whether you have the block.
    Have,
}

/// One wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantEntry {
    /// The wanted CID.
    pub cid: Cid,
    /// Higher is more urgent.
    pub priority: i32,
    /// This entry withdraws an earlier want for the CID.
    pub cancel: bool,
    /// Block or have.
    pub want_type: WantType,
    /// Ask for an explicit DONT_HAVE when the peer lacks the block.
    pub send_dont_have: bool,
}

/// A block presence: the sender has, or does not have, a CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    /// The CID concerned.
    pub cid: Cid,
    /// True for HAVE, false for DONT_HAVE.
    pub have: bool,
}

/// A block as received: the CID prefix the sender claims, and the bytes.
///
/// It is not a [`Block`] until its bytes have been hashed: see [`ReceivedBlock::into_block`].
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedBlock {
    /// The CID prefix (version, codec, hash function, digest length).
    pub prefix: CidPrefix,
    /// The bytes.
    pub data: Bytes,
}

impl std::fmt::Debug for ReceivedBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedBlock").field("prefix", &self.prefix).field("len", &self.data.len()).finish()
    }
}

impl ReceivedBlock {
    /// Hashes the bytes as the prefix says and returns the verified block with the CID they
    /// actually have. Whether that CID was wanted is the caller's question.
    pub fn into_block(self) -> Result<Block, VerifyError> {
        if self.data.len() > MAX_BLOCK_BYTES {
            return Err(VerifyError::TooLarge { len: self.data.len(), max: MAX_BLOCK_BYTES });
        }
        let cid = self.prefix.cid_of(&self.data)?;
        Ok(Block::from_hashed(cid, self.data))
    }

    /// Like [`into_block`](Self::into_block), with the full sha2-256 digest of the bytes
    /// computed by the caller (the browser hands hashing to WebCrypto). The caller must have
    /// hashed exactly [`data`](Self::data).
    pub fn into_block_with_sha2_256(self, digest: &[u8; 32]) -> Result<Block, VerifyError> {
        if self.prefix.mh_code != SHA2_256 || self.data.len() > MAX_BLOCK_BYTES {
            return self.into_block();
        }
        let cid = self.prefix.cid_from_digest(digest)?;
        Ok(Block::from_hashed(cid, self.data))
    }
}

/// A decoded Bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wantlist entries.
    pub wantlist: Vec<WantEntry>,
    /// The wantlist replaces the whole previous one.
    pub full_wantlist: bool,
    /// Blocks received (decoding) or to send (encoding).
    pub blocks: Vec<ReceivedBlock>,
    /// HAVE / DONT_HAVE answers.
    pub presences: Vec<Presence>,
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not a protobuf of the Bitswap schema.
    #[error("malformed bitswap message")]
    Protobuf(#[from] prost::DecodeError),
    /// A CID in the message is invalid or too long.
    #[error("invalid CID in bitswap message")]
    Cid(#[source] Option<cid::Error>),
    /// A block exceeds [`MAX_BLOCK_BYTES`].
    #[error("block of {0} bytes exceeds the {MAX_BLOCK_BYTES}-byte limit")]
    BlockTooLarge(usize),
    /// A CID prefix is malformed.
    #[error("invalid CID prefix in bitswap message")]
    Prefix,
    /// The encoded message would exceed [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
}

/// The first four fields of a CID: what a receiver needs to rebuild it from the block's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CidPrefix {
    /// CID version (0 or 1).
    pub version: u64,
    /// Multicodec of the content.
    pub codec: u64,
    /// Multihash function code.
    pub mh_code: u64,
    /// Digest length in bytes.
    pub mh_len: u64,
}

impl CidPrefix {
    /// The prefix of `cid`.
    pub fn of(cid: &Cid) -> Self {
        Self {
            version: u64::from(cid.version()),
            codec: cid.codec(),
            mh_code: cid.hash().code(),
            mh_len: u64::from(cid.hash().size()),
        }
    }

    /// Encodes the prefix as four unsigned varints.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8);
        for v in [self.version, self.codec, self.mh_code, self.mh_len] {
            let mut buf = unsigned_varint::encode::u64_buffer();
            out.extend_from_slice(unsigned_varint::encode::u64(v, &mut buf));
        }
        out
    }

    /// Parses four unsigned varints.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut rest = bytes;
        let mut fields = [0u64; 4];
        for field in &mut fields {
            let (v, r) = unsigned_varint::decode::u64(rest).map_err(|_| MessageError::Prefix)?;
            *field = v;
            rest = r;
        }
        if !rest.is_empty() {
            return Err(MessageError::Prefix);
        }
        let [version, codec, mh_code, mh_len] = fields;
        Ok(Self { version, codec, mh_code, mh_len })
    }

    /// The CID `data` has under this prefix, hashed with the prefix's function (any that
    /// [`HashFn`] lists except identity) and truncated to its length. Other functions, and
    /// lengths under [`MIN_DIGEST_BYTES`], are refused rather than trusted.
    pub fn cid_of(&self, data: &[u8]) -> Result<Cid, VerifyError> {
        // The checks come before the one hash: nothing is hashed for a prefix that is refused.
        let function = match HashFn::from_code(self.mh_code) {
            Some(HashFn::Identity) | None => {
                return Err(VerifyError::UnsupportedHash { cid: self.placeholder(), code: self.mh_code });
            }
            Some(f) => f,
        };
        let len = usize::try_from(self.mh_len).unwrap_or(usize::MAX);
        if len < MIN_DIGEST_BYTES {
            return Err(VerifyError::DigestTooShort { cid: self.placeholder(), len });
        }
        if len > function.output_len() {
            return Err(VerifyError::DigestTooLong {
                cid: self.placeholder(),
                len,
                function: function.name(),
                max: function.output_len(),
            });
        }
        self.cid_from_digest(function.digest(data)?.digest())
    }

    /// A CID naming this prefix's codec and hash function, with no digest: what errors about
    /// bytes that were never hashed carry.
    fn placeholder(&self) -> Cid {
        Cid::new_v1(self.codec, Multihash::wrap(self.mh_code, &[]).unwrap_or_default())
    }

    /// The CID under this prefix of the full digest `digest` computed elsewhere (e.g. by the
    /// browser's WebCrypto), truncated to the prefix's length.
    pub fn cid_from_digest(&self, digest: &[u8]) -> Result<Cid, VerifyError> {
        let len = usize::try_from(self.mh_len).unwrap_or(usize::MAX);
        if len < MIN_DIGEST_BYTES {
            return Err(VerifyError::DigestTooShort { cid: self.placeholder(), len });
        }
        if len > digest.len() {
            return Err(VerifyError::DigestTooLong {
                cid: self.placeholder(),
                len,
                function: "the given",
                max: digest.len(),
            });
        }
        let unsupported = || VerifyError::UnsupportedHash { cid: self.placeholder(), code: self.mh_code };
        let mh = Multihash::wrap(self.mh_code, &digest[..len]).map_err(|_| unsupported())?;
        match self.version {
            0 => Cid::new_v0(mh).map_err(|_| unsupported()),
            _ => Ok(Cid::new_v1(self.codec, mh)),
        }
    }
}

fn parse_cid(bytes: &[u8]) -> Result<Cid, MessageError> {
    if bytes.len() > MAX_CID_BYTES {
        return Err(MessageError::Cid(None));
    }
    Cid::try_from(bytes).map_err(|e| MessageError::Cid(Some(e)))
}

impl Message {
    /// True when the message carries nothing.
    pub fn is_empty(&self) -> bool {
        self.wantlist.is_empty() && self.blocks.is_empty() && self.presences.is_empty() && !self.full_wantlist
    }

    /// Bytes of block data the message carries.
    pub fn block_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.data.len()).sum()
    }

    /// An upper bound of the encoded size, without encoding.
    pub fn size_bound(&self) -> usize {
        // Per entry: a CID (bounded by MAX_CID_BYTES) plus field tags and lengths.
        let per_entry = MAX_CID_BYTES + 16;
        self.blocks.iter().map(|b| b.data.len() + 32).sum::<usize>()
            + (self.wantlist.len() + self.presences.len()) * per_entry
            + 16
    }

    /// Appends `other`'s entries, blocks and presences to this message. Neither may replace the
    /// whole wantlist: a full wantlist cannot be merged without changing its meaning.
    pub fn merge(&mut self, other: Message) {
        debug_assert!(!self.full_wantlist && !other.full_wantlist);
        self.wantlist.extend(other.wantlist);
        self.blocks.extend(other.blocks);
        self.presences.extend(other.presences);
    }

    /// Adds a verified block to send.
    pub fn push_block(&mut self, block: &Block) {
        self.blocks.push(ReceivedBlock { prefix: CidPrefix::of(block.cid()), data: block.data().clone() });
    }

    /// Decodes a message already bounded by the framing. Every CID and block is bounded.
    pub fn decode(bytes: Bytes) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge(bytes.len()));
        }
        let raw = pb::Message::decode(bytes)?;
        let mut msg = Message::default();
        if let Some(wl) = raw.wantlist {
            msg.full_wantlist = wl.full;
            for e in wl.entries {
                msg.wantlist.push(WantEntry {
                    cid: parse_cid(&e.block)?,
                    priority: e.priority,
                    cancel: e.cancel,
                    want_type: if e.want_type == 1 { WantType::Have } else { WantType::Block },
                    send_dont_have: e.send_dont_have,
                });
            }
        }
        for data in raw.blocks {
            if data.len() > MAX_BLOCK_BYTES {
                return Err(MessageError::BlockTooLarge(data.len()));
            }
            let prefix = CidPrefix { version: 0, codec: crate::block::DAG_PB, mh_code: SHA2_256, mh_len: 32 };
            msg.blocks.push(ReceivedBlock { prefix, data });
        }
        for p in raw.payload {
            if p.data.len() > MAX_BLOCK_BYTES {
                return Err(MessageError::BlockTooLarge(p.data.len()));
            }
            msg.blocks.push(ReceivedBlock { prefix: CidPrefix::from_bytes(&p.prefix)?, data: p.data });
        }
        for p in raw.block_presences {
            msg.presences.push(Presence { cid: parse_cid(&p.cid)?, have: p.r#type == 0 });
        }
        Ok(msg)
    }

    /// Encodes the message, refusing one larger than [`MAX_MESSAGE_BYTES`].
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let raw = self.to_pb()?;
        Ok(raw.encode_to_vec())
    }

    /// Encodes the message with its unsigned-varint length prefix, ready for the stream.
    pub fn encode_framed(&self) -> Result<Vec<u8>, MessageError> {
        let raw = self.to_pb()?;
        Ok(raw.encode_length_delimited_to_vec())
    }

    fn to_pb(&self) -> Result<pb::Message, MessageError> {
        let raw = pb::Message {
            wantlist: (!self.wantlist.is_empty() || self.full_wantlist).then(|| pb::Wantlist {
                entries: self
                    .wantlist
                    .iter()
                    .map(|e| pb::Entry {
                        block: e.cid.to_bytes(),
                        priority: e.priority,
                        cancel: e.cancel,
                        want_type: matches!(e.want_type, WantType::Have) as i32,
                        send_dont_have: e.send_dont_have,
                    })
                    .collect(),
                full: self.full_wantlist,
            }),
            blocks: Vec::new(),
            payload: self
                .blocks
                .iter()
                .map(|b| pb::Payload { prefix: b.prefix.to_bytes(), data: b.data.clone() })
                .collect(),
            block_presences: self
                .presences
                .iter()
                .map(|p| pb::BlockPresence { cid: p.cid.to_bytes(), r#type: if p.have { 0 } else { 1 } })
                .collect(),
            pending_bytes: 0,
        };
        let len = raw.encoded_len();
        if len > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge(len));
        }
        Ok(raw)
    }

    /// Bytes a block adds to an encoded message, with generous framing overhead.
    pub fn block_cost(block: &Block) -> usize {
        block.data().len() + 64
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::block::RAW;

    #[test]
    fn round_trip() {
        let block = Block::from_data(RAW, b"segment".to_vec()).unwrap();
        let mut msg = Message {
            wantlist: vec![WantEntry {
                cid: *block.cid(),
                priority: 7,
                cancel: false,
                want_type: WantType::Block,
                send_dont_have: true,
            }],
            full_wantlist: false,
            blocks: Vec::new(),
            presences: vec![Presence { cid: *block.cid(), have: false }],
        };
        msg.push_block(&block);
        let bytes = msg.encode().unwrap();
        let back = Message::decode(bytes.clone().into()).unwrap();
        assert_eq!(back, msg);
        let framed = msg.encode_framed().unwrap();
        assert!(framed.ends_with(&bytes));
        let mut buf = unsigned_varint::encode::usize_buffer();
        assert_eq!(&framed[..framed.len() - bytes.len()], unsigned_varint::encode::usize(bytes.len(), &mut buf));
        assert_eq!(back.blocks[0].clone().into_block().unwrap(), block);
    }

    #[test]
    fn cidv0_prefix() {
        let prefix = CidPrefix::from_bytes(&[0, 0x70, 0x12, 0x20]).unwrap();
        let cid = prefix.cid_of(b"x").unwrap();
        assert_eq!(cid.version(), cid::Version::V0);
        assert_eq!(CidPrefix::of(&cid), prefix);
    }

    #[test]
    fn prefixes_of_every_verified_function_rebuild_their_cid() {
        for function in [HashFn::Sha2_256, HashFn::Sha2_512, HashFn::Sha3_512, HashFn::Blake2b256, HashFn::Blake3] {
            let cid = Cid::new_v1(crate::block::RAW, function.digest(b"data").unwrap());
            assert_eq!(CidPrefix::of(&cid).cid_of(b"data").unwrap(), cid, "{}", function.name());
        }
        let short = CidPrefix { version: 1, codec: 0x55, mh_code: SHA2_256, mh_len: 8 };
        assert!(matches!(short.cid_of(b"x"), Err(VerifyError::DigestTooShort { len: 8, .. })));
        let identity = CidPrefix { version: 1, codec: 0x55, mh_code: 0, mh_len: 1 };
        assert!(matches!(identity.cid_of(b"x"), Err(VerifyError::UnsupportedHash { .. })));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b"\xff\xff\xff"[..], b"\x0a\x05\x0a\x03\x0a\x01", b"\x1a\x04\x0a\x02\xff\xff"] {
            let _ = Message::decode(Bytes::copy_from_slice(bytes));
        }
        assert!(CidPrefix::from_bytes(&[0xff; 12]).is_err());
    }
}
