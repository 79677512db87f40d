//! CIDs, blocks and verification.
//!
//! A [`Block`] can only be built from bytes that hash to its CID, so holding one is proof that
//! it was verified. The supported hash function is sha2-256; anything else is refused with a
//! typed error rather than trusted.

use std::fmt;

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};

use crate::limits::MAX_BLOCK_BYTES;

/// Multicodec code of raw binary blocks.
pub const RAW: u64 = 0x55;
/// Multicodec code of dag-pb (UnixFS) blocks.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of dag-cbor blocks.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

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
pub fn sha2_256(data: &[u8]) -> Multihash<64> {
    let digest = Sha256::digest(data);
    Multihash::wrap(SHA2_256, &digest).expect("a 32-byte digest fits in 64 bytes")
}

/// The CIDv1 (sha2-256) of `data` under `codec`.
pub fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    Cid::new_v1(codec, sha2_256(data))
}

/// Checks that `data` is the content of `cid`.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), VerifyError> {
    if data.len() > MAX_BLOCK_BYTES {
        return Err(VerifyError::TooLarge { len: data.len(), max: MAX_BLOCK_BYTES });
    }
    let code = cid.hash().code();
    if code != SHA2_256 {
        return Err(VerifyError::UnsupportedHash { cid: *cid, code });
    }
    let computed = sha2_256(data);
    if computed.digest() == cid.hash().digest() {
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
        let mh = Multihash::<64>::wrap(0x13, &[0u8; 64]).unwrap();
        let cid = Cid::new_v1(RAW, mh);
        assert!(matches!(verify(&cid, b"x"), Err(VerifyError::UnsupportedHash { code: 0x13, .. })));
    }

    #[test]
    fn oversized_block_is_refused() {
        let data = vec![0u8; MAX_BLOCK_BYTES + 1];
        assert!(matches!(Block::from_data(RAW, data), Err(VerifyError::TooLarge { .. })));
    }
}
