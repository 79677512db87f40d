//! Bitswap `/ipfs/bitswap/1.2.0` (ipfs/specs `bitswap-protocol.md`) as a libp2p
//! `NetworkBehaviour`, used unchanged by the creator node and the browser.
//!
//! Laid out the rust-libp2p way: [`message`] is the wire format, [`protocol`] the framing,
//! `handler` one connection, [`Behaviour`] the whole peer. It plays both roles:
//!
//! - **client**: [`Behaviour::get`] asks chosen peers (or every connected peer) for a CID with a
//!   want-block; every block that arrives is hashed and only delivered when it matches a wanted
//!   CID; each delivery names the peer that sent it, its size and the latency since the want;
//! - **server**: want-blocks are answered from the [`Blockstore`], in messages of at most
//!   [`MAX_MESSAGE_BYTES`](crate::limits::MAX_MESSAGE_BYTES).
//!
//! A peer that sends a block whose bytes match none of the CIDs wanted from it is reported with
//! [`Event::CorruptBlock`], so the caller can score it down or disconnect.

mod behaviour;
mod handler;
pub mod message;
pub mod protocol;
pub mod upload;

pub use crate::store::{Blockstore, BlockstoreError, Lookup, LookupFuture, MemoryBlockstore, lookup_now};
pub use behaviour::{Behaviour, Config, Event, INLINE_HAVE_BYTES, RequestError, RequestId, Source, Stats, WantMode};
pub use handler::{FromBehaviour, Handler, InboundError, ToBehaviour};
pub use libp2p::PeerId;
pub use protocol::{PROTOCOL, PROTOCOL_1_1_0};
pub use upload::UploadBudget;
