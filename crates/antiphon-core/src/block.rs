//! CIDs, blocks and verification.
//!
//! A [`Block`] can only be built from bytes that hash to its CID, so holding one is proof that
//! it was verified. CIDv0 and CIDv1 are accepted; the hash functions verified are listed in
//! [`HashFn`]. Anything else, and digests too short to mean anything, are refused with a typed
//! error rather than trusted.

use std::fmt;

use bytes::Bytes;
use sha2::Digest;

use crate::limits::{MAX_BLOCK_BYTES, MAX_IDENTITY_DIGEST_BYTES, MIN_DIGEST_BYTES};

/// A CID whose digest may be up to [`MAX_IDENTITY_DIGEST_BYTES`] long (identity CIDs).
pub type Cid = cid::CidGeneric<MAX_IDENTITY_DIGEST_BYTES>;
/// A multihash as carried by [`Cid`].
pub type Multihash = multihash::Multihash<MAX_IDENTITY_DIGEST_BYTES>;

/// Multicodec code of raw binary blocks.
pub const RAW: u64 = 0x55;
/// Multicodec code of dag-pb (UnixFS) blocks.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of dag-cbor blocks.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// The hash functions Antiphon verifies, by multihash code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashFn {
    /// `identity` (0x00): the digest is the data itself.
    Identity,
    /// `sha2-256` (0x12), the IPFS default.
    Sha2_256,
    /// `sha2-512` (0x13).
    Sha2_512,
    /// `sha3-512` (0x14).
    Sha3_512,
    /// `blake2b-256` (0xb220), used by Filecoin.
    Blake2b256,
    /// `blake3` (0x1e) with its default 32-byte output.
    Blake3,
}

impl HashFn {
    /// Every supported function.
    pub const ALL: [HashFn; 6] =
        [HashFn::Identity, HashFn::Sha2_256, HashFn::Sha2_512, HashFn::Sha3_512, HashFn::Blake2b256, HashFn::Blake3];

    /// The function with multihash code `code`, if supported.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.code() == code)
    }

    /// The multihash code.
    pub const fn code(self) -> u64 {
        match self {
            HashFn::Identity => 0x00,
            HashFn::Sha2_256 => SHA2_256,
            HashFn::Sha2_512 => 0x13,
            HashFn::Sha3_512 => 0x14,
            HashFn::Blake2b256 => 0xb220,
            HashFn::Blake3 => 0x1e,
        }
    }

    /// The multihash table name.
    pub const fn name(self) -> &'static str {
        match self {
            HashFn::Identity => "identity",
            HashFn::Sha2_256 => "sha2-256",
            HashFn::Sha2_512 => "sha2-512",
            HashFn::Sha3_512 => "sha3-512",
            HashFn::Blake2b256 => "blake2b-256",
            HashFn::Blake3 => "blake3",
        }
    }

    /// Length of the full digest in bytes (for identity, the most accepted).
    pub const fn output_len(self) -> usize {
        match self {
            HashFn::Identity => MAX_IDENTITY_DIGEST_BYTES,
            HashFn::Sha2_256 | HashFn::Blake2b256 | HashFn::Blake3 => 32,
            HashFn::Sha2_512 | HashFn::Sha3_512 => 64,
        }
    }

    /// The full multihash of `data`. For identity, `data` must be at most
    /// [`MAX_IDENTITY_DIGEST_BYTES`] long.
    pub fn digest(self, data: &[u8]) -> Result<Multihash, VerifyError> {
        let wrap = |d: &[u8]| Multihash::wrap(self.code(), d).expect("digest fits the multihash");
        Ok(match self {
            HashFn::Identity => {
                if data.len() > MAX_IDENTITY_DIGEST_BYTES {
                    return Err(VerifyError::TooLarge { len: data.len(), max: MAX_IDENTITY_DIGEST_BYTES });
                }
                wrap(data)
            }
            HashFn::Sha2_256 => wrap(&sha2::Sha256::digest(data)),
            HashFn::Sha2_512 => wrap(&sha2::Sha512::digest(data)),
            HashFn::Sha3_512 => wrap(&sha3::Sha3_512::digest(data)),
            HashFn::Blake2b256 => wrap(&blake2::Blake2b::<blake2::digest::consts::U32>::digest(data)),
            HashFn::Blake3 => wrap(blake3::hash(data).as_bytes()),
        })
    }
}

/// Why bytes were refused as the content of a CID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes hash to something other than the CID's digest: the sender sent bad data.
    #[error("block {cid} failed verification: its bytes hash to {computed}")]
    Mismatch {
        /// The CID the bytes were supposed to have.
        cid: Cid,
        /// The CID the bytes actually have.
        computed: Cid,
    },
    /// The CID uses a hash function this build cannot verify.
    #[error("block {cid} uses multihash code {code:#x}, which Antiphon does not verify")]
    UnsupportedHash {
        /// The CID in question.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
    /// The CID's digest is truncated below [`MIN_DIGEST_BYTES`]: too weak to identify content.
    #[error("block {cid} has a {len}-byte digest; at least {MIN_DIGEST_BYTES} bytes are required")]
    DigestTooShort {
        /// The CID in question.
        cid: Cid,
        /// Length of its digest.
        len: usize,
    },
    /// The CID's digest is longer than its hash function produces.
    #[error("block {cid} has a {len}-byte digest but {function} produces {max}")]
    DigestTooLong {
        /// The CID in question.
        cid: Cid,
        /// Length of its digest.
        len: usize,
        /// Name of the hash function.
        function: &'static str,
        /// Length of that function's digest.
        max: usize,
    },
    /// The block is larger than any block Antiphon accepts.
    #[error("block of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the block.
        len: usize,
        /// The limit, [`MAX_BLOCK_BYTES`].
        max: usize,
    },
}

/// Hashes `data` with sha2-256 into a multihash.
pub fn sha2_256(data: &[u8]) -> Multihash {
    let digest = sha2::Sha256::digest(data);
    Multihash::wrap(SHA2_256, &digest).expect("a 32-byte digest fits")
}

/// The CIDv1 (sha2-256) of `data` under `codec`.
pub fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, sha2_256(data))
}

/// Checks that `data` is the content of `cid`.
///
/// Truncated digests are compared as prefixes of the full digest, as the multihash spec
/// allows, but only down to [`MIN_DIGEST_BYTES`]. Identity CIDs must carry `data` itself.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), VerifyError> {
    if data.len() > MAX_BLOCK_BYTES {
        return Err(VerifyError::TooLarge { len: data.len(), max: MAX_BLOCK_BYTES });
    }
    let hash = cid.hash();
    let function =
        HashFn::from_code(hash.code()).ok_or(VerifyError::UnsupportedHash { cid: *cid, code: hash.code() })?;
    let expected = hash.digest();
    if function == HashFn::Identity {
        if expected == data {
            return Ok(());
        }
        let computed = function.digest(data).map(|mh| Cid::new_v1(cid.codec(), mh)).unwrap_or(*cid);
        return Err(VerifyError::Mismatch { cid: *cid, computed });
    }
    if expected.len() < MIN_DIGEST_BYTES {
        return Err(VerifyError::DigestTooShort { cid: *cid, len: expected.len() });
    }
    if expected.len() > function.output_len() {
        return Err(VerifyError::DigestTooLong {
            cid: *cid,
            len: expected.len(),
            function: function.name(),
            max: function.output_len(),
        });
    }
    let computed = function.digest(data)?;
    if &computed.digest()[..expected.len()] == expected {
        Ok(())
    } else {
        let computed = match cid.version() {
            cid::Version::V0 => Cid::new_v0(computed).unwrap_or_else(|_| Cid::new_v1(cid.codec(), computed)),
            cid::Version::V1 => Cid::new_v1(cid.codec(), computed),
        };
        Err(VerifyError::Mismatch { cid: *cid, computed })
    }
}

/// A block whose bytes are known to hash to its CID.
#[derive(Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Verifies `data` against `cid` and wraps them.
    pub fn new(cid: Cid, data: impl Into<Bytes>) -> Result<Self, VerifyError> {
        let data = data.into();
        verify(&cid, &data)?;
        Ok(Self { cid, data })
    }

    /// Wraps bytes whose CID was just computed from them (no second hash).
    pub(crate) fn from_hashed(cid: Cid, data: Bytes) -> Self {
        Self { cid, data }
    }

    /// Builds the CIDv1 (sha2-256) block of `data` under `codec`.
    pub fn from_data(codec: u64, data: impl Into<Bytes>) -> Result<Self, VerifyError> {
        let data = data.into();
        if data.len() > MAX_BLOCK_BYTES {
            return Err(VerifyError::TooLarge { len: data.len(), max: MAX_BLOCK_BYTES });
        }
        Ok(Self { cid: cid_v1(codec, &data), data })
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Splits the block into its CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block").field("cid", &self.cid).field("len", &self.data.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn raw_block_round_trip() {
        let block = Block::from_data(RAW, b"hello world\n".to_vec()).unwrap();
        assert_eq!(block.cid().to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
        assert!(Block::new(*block.cid(), block.data().clone()).is_ok());
    }

    #[test]
    fn flipped_byte_is_refused_naming_both_cids() {
        let block = Block::from_data(RAW, vec![7u8; 1000]).unwrap();
        let mut bad = block.data().to_vec();
        bad[500] ^= 1;
        match Block::new(*block.cid(), bad) {
            Err(VerifyError::Mismatch { cid, computed }) => {
                assert_eq!(cid, *block.cid());
                assert_ne!(computed, cid);
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }

    #[test]
    fn unknown_hash_is_refused() {
        let mh = Multihash::wrap(0x11, &[0u8; 20]).unwrap(); // sha1
        let cid = Cid::new_v1(RAW, mh);
        assert!(matches!(verify(&cid, b"x"), Err(VerifyError::UnsupportedHash { code: 0x11, .. })));
    }

    #[test]
    fn every_supported_function_verifies_and_detects_a_flip() {
        let data = b"antiphon".repeat(16);
        for function in HashFn::ALL {
            let cid = Cid::new_v1(RAW, function.digest(&data).unwrap());
            assert_eq!(verify(&cid, &data), Ok(()), "{}", function.name());
            let mut bad = data.clone();
            bad[3] ^= 0x80;
            assert!(matches!(verify(&cid, &bad), Err(VerifyError::Mismatch { .. })), "{}", function.name());
        }
    }

    #[test]
    fn known_digests() {
        // Reference values from the multihash spec's test vectors and `ipfs add`.
        let hex = |mh: Multihash| mh.to_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>();
        let blake3_empty = hex(HashFn::Blake3.digest(b"").unwrap());
        assert_eq!(blake3_empty, "1e20af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
        let cid = Cid::new_v1(RAW, HashFn::Sha2_256.digest(b"").unwrap());
        assert_eq!(cid.to_string(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
    }

    #[test]
    fn identity_cids_carry_their_data() {
        let data = vec![9u8; MAX_IDENTITY_DIGEST_BYTES];
        let cid = Cid::new_v1(RAW, HashFn::Identity.digest(&data).unwrap());
        assert_eq!(verify(&cid, &data), Ok(()));
        assert!(matches!(verify(&cid, &data[1..]), Err(VerifyError::Mismatch { .. })));
        assert!(HashFn::Identity.digest(&[0u8; MAX_IDENTITY_DIGEST_BYTES + 1]).is_err());
    }

    #[test]
    fn short_and_overlong_digests_are_refused() {
        let full = HashFn::Sha2_256.digest(b"x").unwrap();
        let truncated = Cid::new_v1(RAW, Multihash::wrap(SHA2_256, &full.digest()[..20]).unwrap());
        assert_eq!(verify(&truncated, b"x"), Ok(()));
        let short = Cid::new_v1(RAW, Multihash::wrap(SHA2_256, &full.digest()[..19]).unwrap());
        assert!(matches!(verify(&short, b"x"), Err(VerifyError::DigestTooShort { len: 19, .. })));
        let long = Cid::new_v1(RAW, Multihash::wrap(SHA2_256, &[0u8; 33]).unwrap());
        assert!(matches!(verify(&long, b"x"), Err(VerifyError::DigestTooLong { len: 33, max: 32, .. })));
    }

    #[test]
    fn oversized_block_is_refused() {
        let data = vec![0u8; MAX_BLOCK_BYTES + 1];
        assert!(matches!(Block::from_data(RAW, data), Err(VerifyError::TooLarge { .. })));
    }
}
