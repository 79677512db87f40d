//! Signed receipts of who served what (`docs/receipts.md`).
//!
//! A listener that verified a block another peer sent signs a [`Receipt`] with its libp2p key
//! and wraps it in a libp2p signed envelope (RFC 0002). Receipts travel to a creator node in a
//! [`ReceiptBatch`]; the node opens each envelope with [`open`], which checks the signature, that
//! the signer is the listener the receipt names, and the receipt's own bounds. What only the node
//! can check (the block's size, the time, replays) is the node's.

use libp2p::PeerId;
use libp2p::core::SignedEnvelope;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};

use crate::block::Cid;
use crate::limits::MAX_BLOCK_BYTES;

/// The domain separation string of a receipt's signature: no other libp2p signature can be
/// passed off as a receipt.
pub const DOMAIN: &str = "antiphon-receipt";
/// The envelope's payload type.
pub const PAYLOAD_TYPE: &[u8] = b"/antiphon/receipt/1";
/// The batch format version this build writes and reads.
pub const BATCH_VERSION: u64 = 1;
/// Most receipts in one batch.
pub const MAX_RECEIPTS_PER_BATCH: usize = 256;
/// Longest signed envelope accepted: an ed25519 receipt takes about 250 bytes.
pub const MAX_ENVELOPE_BYTES: usize = 512;
/// Longest encoded batch accepted.
pub const MAX_BATCH_BYTES: usize = 16 + MAX_RECEIPTS_PER_BATCH * (MAX_ENVELOPE_BYTES + 3);

/// One verified block one peer sent another: what the listener signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The block's CID.
    pub block: Cid,
    /// The block's length in bytes.
    pub bytes: u64,
    /// The peer ID of the peer that sent it (its multihash bytes).
    #[serde(with = "serde_bytes")]
    pub server: Vec<u8>,
    /// The peer ID of the listener that verified it and signs this receipt.
    #[serde(with = "serde_bytes")]
    pub listener: Vec<u8>,
    /// The track the block was fetched for (its manifest CID).
    pub track: Cid,
    /// When the block was verified, in milliseconds since the Unix epoch.
    pub at: u64,
    /// A random number the listener draws once per session.
    pub session: u64,
    /// The receipt's number in its session: 1, 2, 3... Each is used once.
    pub seq: u64,
}

/// A batch of signed receipts, as a listener sends them (dag-cbor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBatch {
    /// [`BATCH_VERSION`].
    pub version: u64,
    /// Signed envelopes (protobuf, RFC 0002), each holding one dag-cbor [`Receipt`].
    pub receipts: Vec<serde_bytes::ByteBuf>,
}

/// Why a receipt or a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    /// The encoded batch is longer than [`MAX_BATCH_BYTES`].
    #[error("batch too large: {bytes} bytes, more than {MAX_BATCH_BYTES}")]
    BatchTooLarge {
        /// Its length.
        bytes: usize,
    },
    /// The batch holds more than [`MAX_RECEIPTS_PER_BATCH`] receipts.
    #[error("batch too large: {count} receipts, more than {MAX_RECEIPTS_PER_BATCH}")]
    TooManyReceipts {
        /// How many it holds.
        count: usize,
    },
    /// The batch is of another format version.
    #[error("batch version {version}, this build reads {BATCH_VERSION}")]
    WrongVersion {
        /// The batch's version.
        version: u64,
    },
    /// The batch is not dag-cbor of the expected shape (the decoder's message).
    #[error("not a receipt batch: {0}")]
    BadBatch(String),
    /// The envelope is longer than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope too large: {bytes} bytes, more than {MAX_ENVELOPE_BYTES}")]
    EnvelopeTooLarge {
        /// Its length.
        bytes: usize,
    },
    /// The envelope is not a signed envelope (the decoder's message).
    #[error("not a signed envelope: {0}")]
    BadEnvelope(String),
    /// The signature does not verify, or the envelope is not a receipt.
    #[error("the signature does not verify")]
    BadSignature,
    /// The payload is not a receipt, or a peer ID in it is not one (the decoder's message).
    #[error("not a receipt: {0}")]
    BadReceipt(String),
    /// The receipt's size is not one a block can have.
    #[error("{bytes} bytes is not a block's size")]
    ImpossibleSize {
        /// The size it claims.
        bytes: u64,
    },
    /// The receipt's `seq` is 0; sequences start at 1.
    #[error("seq starts at 1")]
    SeqZero,
    /// This peer could not sign or encode (its own fault, not the input's).
    #[error("could not sign: {0}")]
    Signing(String),
    /// The key that signed is not the listener the receipt names.
    #[error("signed by {signer}, not by the listener {listener}")]
    ForeignSigner {
        /// Who signed.
        signer: String,
        /// Who the receipt says listened.
        listener: String,
    },
    /// The listener names itself as the server.
    #[error("the listener names itself as the server")]
    SelfServed,
}

impl Receipt {
    /// The server's peer ID.
    pub fn server_id(&self) -> Result<PeerId, ReceiptError> {
        PeerId::from_bytes(&self.server).map_err(|e| ReceiptError::BadReceipt(format!("server: {e}")))
    }

    /// The listener's peer ID.
    pub fn listener_id(&self) -> Result<PeerId, ReceiptError> {
        PeerId::from_bytes(&self.listener).map_err(|e| ReceiptError::BadReceipt(format!("listener: {e}")))
    }

    /// Signs the receipt with `key`, the listener's, into an encoded envelope.
    pub fn sign(&self, key: &Keypair) -> Result<Vec<u8>, ReceiptError> {
        let payload = serde_ipld_dagcbor::to_vec(self).map_err(|e| ReceiptError::Signing(e.to_string()))?;
        let envelope = SignedEnvelope::new(key, DOMAIN.into(), PAYLOAD_TYPE.to_vec(), payload)
            .map_err(|e| ReceiptError::Signing(e.to_string()))?;
        Ok(envelope.into_protobuf_encoding())
    }
}

/// A receipt whose signature verified and whose signer is its listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Its server.
    pub server: PeerId,
    /// Its listener, who signed it.
    pub listener: PeerId,
}

/// Opens one encoded envelope: decodes it, verifies the signature and checks that the signer is
/// the receipt's listener, that the listener is not the server, and that the size is one a
/// block can have.
pub fn open(envelope: &[u8]) -> Result<OpenedReceipt, ReceiptError> {
    if envelope.len() > MAX_ENVELOPE_BYTES {
        return Err(ReceiptError::EnvelopeTooLarge { bytes: envelope.len() });
    }
    let envelope =
        SignedEnvelope::from_protobuf_encoding(envelope).map_err(|e| ReceiptError::BadEnvelope(e.to_string()))?;
    let (payload, key) =
        envelope.payload_and_signing_key(DOMAIN.into(), PAYLOAD_TYPE).map_err(|_| ReceiptError::BadSignature)?;
    let receipt: Receipt =
        serde_ipld_dagcbor::from_slice(payload).map_err(|e| ReceiptError::BadReceipt(e.to_string()))?;
    let listener = receipt.listener_id()?;
    let signer = key.to_peer_id();
    if signer != listener {
        return Err(ReceiptError::ForeignSigner { signer: signer.to_string(), listener: listener.to_string() });
    }
    let server = receipt.server_id()?;
    if server == listener {
        return Err(ReceiptError::SelfServed);
    }
    if receipt.bytes == 0 || receipt.bytes > MAX_BLOCK_BYTES as u64 {
        return Err(ReceiptError::ImpossibleSize { bytes: receipt.bytes });
    }
    if receipt.seq == 0 {
        return Err(ReceiptError::SeqZero);
    }
    Ok(OpenedReceipt { receipt, server, listener })
}

impl ReceiptBatch {
    /// A batch of encoded envelopes.
    pub fn new(receipts: Vec<Vec<u8>>) -> Self {
        Self { version: BATCH_VERSION, receipts: receipts.into_iter().map(serde_bytes::ByteBuf::from).collect() }
    }

    /// Encodes the batch as dag-cbor.
    pub fn encode(&self) -> Result<Vec<u8>, ReceiptError> {
        serde_ipld_dagcbor::to_vec(self).map_err(|e| ReceiptError::Signing(e.to_string()))
    }

    /// Decodes a batch, refusing one too large before decoding it, and one with too many
    /// receipts or of another version. The envelopes are not opened.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > MAX_BATCH_BYTES {
            return Err(ReceiptError::BatchTooLarge { bytes: bytes.len() });
        }
        let batch: Self = serde_ipld_dagcbor::from_slice(bytes).map_err(|e| ReceiptError::BadBatch(e.to_string()))?;
        if batch.version != BATCH_VERSION {
            return Err(ReceiptError::WrongVersion { version: batch.version });
        }
        if batch.receipts.len() > MAX_RECEIPTS_PER_BATCH {
            return Err(ReceiptError::TooManyReceipts { count: batch.receipts.len() });
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::block::{Block, RAW};

    fn receipt(listener: &Keypair, server: PeerId, seq: u64) -> Receipt {
        let block = Block::from_data(RAW, vec![7u8; 1000]).unwrap();
        Receipt {
            block: *block.cid(),
            bytes: 1000,
            server: server.to_bytes(),
            listener: listener.public().to_peer_id().to_bytes(),
            track: *block.cid(),
            at: 1_800_000_000_000,
            session: 42,
            seq,
        }
    }

    #[test]
    fn a_signed_receipt_opens_to_itself() {
        let (listener, server) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let r = receipt(&listener, server.public().to_peer_id(), 1);
        let envelope = r.sign(&listener).unwrap();
        assert!(envelope.len() <= MAX_ENVELOPE_BYTES, "{} bytes", envelope.len());
        let opened = open(&envelope).unwrap();
        assert_eq!(opened.receipt, r);
        assert_eq!(opened.server, server.public().to_peer_id());
        assert_eq!(opened.listener, listener.public().to_peer_id());
    }

    #[test]
    fn a_forged_receipt_is_refused() {
        let (listener, server) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let mut envelope = receipt(&listener, server.public().to_peer_id(), 1).sign(&listener).unwrap();
        // The payload's last byte (the seq, just before the 64-byte signature and its two-byte
        // tag and length) changed, as a forger raising its count would.
        let at = envelope.len() - 67;
        envelope[at] += 1;
        assert_eq!(open(&envelope), Err(ReceiptError::BadSignature));
    }

    #[test]
    fn a_receipt_signed_by_someone_else_is_refused() {
        let (listener, server, other) =
            (Keypair::generate_ed25519(), Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let envelope = receipt(&listener, server.public().to_peer_id(), 1).sign(&other).unwrap();
        assert!(matches!(open(&envelope), Err(ReceiptError::ForeignSigner { .. })));
    }

    #[test]
    fn a_listener_cannot_credit_itself() {
        let listener = Keypair::generate_ed25519();
        let envelope = receipt(&listener, listener.public().to_peer_id(), 1).sign(&listener).unwrap();
        assert_eq!(open(&envelope), Err(ReceiptError::SelfServed));
    }

    #[test]
    fn impossible_sizes_are_refused() {
        let (listener, server) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        for bytes in [0, MAX_BLOCK_BYTES as u64 + 1] {
            let mut r = receipt(&listener, server.public().to_peer_id(), 1);
            r.bytes = bytes;
            assert_eq!(open(&r.sign(&listener).unwrap()), Err(ReceiptError::ImpossibleSize { bytes }));
        }
    }

    #[test]
    fn batches_round_trip_and_are_bounded() {
        let (listener, server) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let envelopes: Vec<_> =
            (1..=3).map(|seq| receipt(&listener, server.public().to_peer_id(), seq).sign(&listener).unwrap()).collect();
        let batch = ReceiptBatch::new(envelopes.clone());
        let decoded = ReceiptBatch::decode(&batch.encode().unwrap()).unwrap();
        assert_eq!(decoded, batch);
        let full = ReceiptBatch::new(vec![envelopes[0].clone(); MAX_RECEIPTS_PER_BATCH]).encode().unwrap();
        assert!(full.len() <= MAX_BATCH_BYTES, "{} bytes", full.len());
        let over = ReceiptBatch::new(vec![vec![0u8; 8]; MAX_RECEIPTS_PER_BATCH + 1]).encode().unwrap();
        assert_eq!(
            ReceiptBatch::decode(&over),
            Err(ReceiptError::TooManyReceipts { count: MAX_RECEIPTS_PER_BATCH + 1 })
        );
        assert_eq!(
            ReceiptBatch::decode(&vec![0u8; MAX_BATCH_BYTES + 1]),
            Err(ReceiptError::BatchTooLarge { bytes: MAX_BATCH_BYTES + 1 })
        );
        assert!(matches!(ReceiptBatch::decode(b"\xa0"), Err(ReceiptError::BadBatch(_))));
    }
}
