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
