//! Where a Bitswap server finds blocks: redb on the node, memory in the browser.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::block::Cid;
use bytes::Bytes;

use crate::block::Block;

/// Why the blockstore failed.
#[derive(Debug, thiserror::Error)]
#[error("blockstore failed")]
pub struct BlockstoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// What a Bitswap server found for one wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The block's bytes: for a want-block, or a want-have of a block small enough to inline.
    Block(Bytes),
    /// Only that the block is there: a want-have of a larger block.
    Have,
    /// Not stored.
    Missing,
}

/// A lookup on its way: ready at once for a memory store, on a blocking thread for a disk one.
pub type LookupFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Lookup, BlockstoreError>> + Send>>;

/// Answers one wantlist entry from `store` now: the block for a want-block; for a want-have
/// (`inline_up_to` set), the block when it is at most that many bytes, else only its presence.
pub fn lookup_now<S: Blockstore + ?Sized>(
    store: &S,
    cid: &Cid,
    inline_up_to: Option<usize>,
) -> Result<Lookup, BlockstoreError> {
    let found = match inline_up_to {
        None => store.get(cid)?.map(Lookup::Block),
        Some(max) => match store.size(cid)? {
            Some(n) if n <= max => store.get(cid)?.map(Lookup::Block),
            Some(_) => Some(Lookup::Have),
            None => None,
        },
    };
    Ok(found.unwrap_or(Lookup::Missing))
}

/// A store of blocks keyed by CID.
///
/// Implementations return bytes as stored: a server sends them without re-hashing, and the
/// receiver verifies them.
pub trait Blockstore: 'static {
    /// The bytes of `cid`, if stored.
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockstoreError>;
    /// Whether `cid` is stored.
    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        Ok(self.size(cid)?.is_some())
    }
    /// The size of the stored bytes of `cid`, if stored. Stores that can tell without reading
    /// the block should override this: a want-have is answered from it.
    fn size(&self, cid: &Cid) -> Result<Option<usize>, BlockstoreError> {
        Ok(self.get(cid)?.map(|b| b.len()))
    }
    /// Stores a verified block.
    fn put(&self, block: &Block) -> Result<(), BlockstoreError>;
    /// What the Bitswap server sends for one wantlist entry (see [`lookup_now`]), as a future
    /// the server polls without waiting: stores that read a disk override this to read on a
    /// thread of their own, so that no read ever blocks the task that runs the network.
    fn lookup(&self, cid: &Cid, inline_up_to: Option<usize>) -> LookupFuture {
        Box::pin(futures::future::ready(lookup_now(self, cid, inline_up_to)))
    }
}

/// A bounded in-memory blockstore that forgets its oldest blocks first.
#[derive(Debug, Clone)]
pub struct MemoryBlockstore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    blocks: HashMap<Cid, Bytes>,
    order: VecDeque<Cid>,
    bytes: usize,
    max_bytes: usize,
}

impl MemoryBlockstore {
    /// A store holding at most `max_bytes` of block data.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner { blocks: HashMap::new(), order: VecDeque::new(), bytes: 0, max_bytes })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent with each other in a
        // way that matters for a cache, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bytes of block data held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Number of blocks held.
    pub fn len(&self) -> usize {
        self.lock().blocks.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Blockstore for MemoryBlockstore {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockstoreError> {
        Ok(self.lock().blocks.get(cid).cloned())
    }

    fn put(&self, block: &Block) -> Result<(), BlockstoreError> {
        let mut inner = self.lock();
        if inner.blocks.contains_key(block.cid()) || block.data().len() > inner.max_bytes {
            return Ok(());
        }
        while inner.bytes + block.data().len() > inner.max_bytes {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(data) = inner.blocks.remove(&old) {
                inner.bytes -= data.len();
            }
        }
        inner.bytes += block.data().len();
        inner.order.push_back(*block.cid());
        inner.blocks.insert(*block.cid(), block.data().clone());
        Ok(())
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
    fn evicts_oldest_within_bound() {
        let store = MemoryBlockstore::new(250);
        let blocks: Vec<Block> = (0..3u8).map(|i| Block::from_data(RAW, vec![i; 100]).unwrap()).collect();
        for b in &blocks {
            store.put(b).unwrap();
        }
        assert_eq!(store.len(), 2);
        assert!(store.bytes() <= 250);
        assert!(store.get(blocks[0].cid()).unwrap().is_none());
        assert!(store.has(blocks[2].cid()).unwrap());
    }
}
