//! Walking DAGs of blocks: the links a block holds, and every block reachable from a root.

use std::collections::HashSet;

use ipld_core::ipld::Ipld;

use crate::block::{Block, Cid, DAG_CBOR, DAG_PB, RAW, VerifyError};
use crate::dag_pb::{DagPbError, PbNode};
use crate::store::{Blockstore, BlockstoreError};

/// Why a block's links could not be read, or a DAG not walked.
#[derive(Debug, thiserror::Error)]
pub enum DagError {
    /// A codec other than raw, dag-pb and dag-cbor.
    #[error("{cid} has codec {codec:#x}; only raw, dag-pb and dag-cbor are walked")]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
    /// A dag-pb block does not decode.
    #[error("{cid}: {source}")]
    DagPb {
        /// The block.
        cid: Cid,
        /// The decoding error.
        source: DagPbError,
    },
    /// A dag-cbor block does not decode.
    #[error("{cid} is not valid dag-cbor")]
    DagCbor {
        /// The block.
        cid: Cid,
        /// The decoding error.
        #[source]
        source: serde_ipld_dagcbor::DecodeError<std::convert::Infallible>,
    },
    /// A link's digest is longer than this build accepts.
    #[error("{0} links to a CID this build cannot hold")]
    BadLink(Cid),
    /// A reachable block is not in the store.
    #[error("block {0} is missing")]
    Missing(Cid),
    /// A stored block does not hash to its CID.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The blockstore failed.
    #[error(transparent)]
    Store(#[from] BlockstoreError),
}

/// The CIDs `block` links to, in order.
pub fn links(block: &Block) -> Result<Vec<Cid>, DagError> {
    links_of(block.cid(), block.data())
}

/// The CIDs the block `cid` with bytes `data` links to, in order. For callers that already
/// verified the bytes and should not hash them again.
pub fn links_of(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, DagError> {
    let cid = *cid;
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => {
            let node = PbNode::decode(data).map_err(|source| DagError::DagPb { cid, source })?;
            Ok(node.links.into_iter().map(|l| l.hash).collect())
        }
        DAG_CBOR => {
            let value: Ipld =
                serde_ipld_dagcbor::from_slice(data).map_err(|source| DagError::DagCbor { cid, source })?;
            let mut out = Vec::new();
            let mut stack = vec![&value];
            while let Some(v) = stack.pop() {
                match v {
                    Ipld::Link(l) => {
                        out.push(Cid::read_bytes(l.to_bytes().as_slice()).map_err(|_| DagError::BadLink(cid))?)
                    }
                    Ipld::List(items) => stack.extend(items.iter().rev()),
                    Ipld::Map(map) => stack.extend(map.values().rev()),
                    _ => {}
                }
            }
            Ok(out)
        }
        codec => Err(DagError::UnsupportedCodec { cid, codec }),
    }
}

/// Visits every block reachable from `root` once, depth first in link order, verifying each.
pub fn walk(store: &dyn Blockstore, root: Cid, visit: &mut dyn FnMut(&Block)) -> Result<u64, DagError> {
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    let mut count = 0;
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = store.get(&cid)?.ok_or(DagError::Missing(cid))?;
        let block = Block::new(cid, data)?;
        visit(&block);
        count += 1;
        stack.extend(links(&block)?.into_iter().rev());
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::manifest::tests::sample;
    use crate::store::MemoryBlockstore;
    use crate::unixfs::importer::import_bytes;

    #[test]
    fn a_manifest_links_its_segments_and_a_walk_finds_every_block() {
        let store = MemoryBlockstore::new(usize::MAX);
        let mut m = sample();
        for (i, seg) in m.segments.iter_mut().enumerate() {
            let data: Vec<u8> = (0..300_000 * i + 1).map(|j| (j % 251) as u8 ^ i as u8).collect();
            let (file, blocks) = import_bytes(&data);
            blocks.iter().for_each(|b| store.put(b).unwrap());
            seg.cid = file.root;
            seg.bytes = file.file_size;
        }
        let manifest = m.to_block().unwrap();
        store.put(&manifest).unwrap();
        let cids = links(&manifest).unwrap();
        assert_eq!(cids, m.segments.iter().map(|s| s.cid).collect::<Vec<_>>());
        let mut seen = Vec::new();
        // 1 manifest + 1 leaf + (root + 2 leaves) + (root + 3 leaves).
        assert_eq!(walk(&store, *manifest.cid(), &mut |b| seen.push(*b.cid())).unwrap(), 1 + 1 + 3 + 4);
        assert_eq!(seen[0], *manifest.cid());
    }
}
