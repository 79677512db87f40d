//! Reading UnixFS files: a root CID and a byte range in, verified bytes out, one block at a
//! time.
//!
//! [`FileReader`] is a state machine with no I/O: it says which block it needs next, the
//! caller fetches it from wherever (a blockstore, Bitswap, a CAR), and [`FileReader::push`]
//! verifies it against its CID, checks it against what its parent declared, and returns the
//! bytes of the range it holds. Blocks outside the range are never asked for, and no more than
//! one block is held at a time, so a file of any size streams in bounded memory.

use std::ops::{Bound, RangeBounds};

use bytes::Bytes;

use super::data::{DataType, UnixFsData, UnixFsDataError};
use crate::block::{Block, Cid, DAG_PB, RAW, VerifyError, verify};
use crate::dag_pb::{DagPbError, PbNode};
use crate::limits::MAX_DAG_DEPTH;
use crate::store::{Blockstore, BlockstoreError};

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A block does not hash to its CID.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A dag-pb block does not decode.
    #[error("{cid}: {source}")]
    DagPb {
        /// The block.
        cid: Cid,
        /// What is wrong with it.
        source: DagPbError,
    },
    /// A dag-pb node's UnixFS `Data` does not decode.
    #[error("{cid}: {source}")]
    UnixFs {
        /// The block.
        cid: Cid,
        /// What is wrong with it.
        source: UnixFsDataError,
    },
    /// The CID names something other than a file (a directory, a symlink, dag-cbor...).
    #[error("{cid} is not a UnixFS file: it is {what}")]
    NotAFile {
        /// The CID.
        cid: Cid,
        /// What it is instead.
        what: String,
    },
    /// A node's sizes contradict its parent's or its own (`filesize`, `blocksizes`).
    #[error("{cid}: {detail}")]
    Inconsistent {
        /// The node.
        cid: Cid,
        /// What does not add up.
        detail: String,
    },
    /// The tree is deeper than [`MAX_DAG_DEPTH`].
    #[error("{cid} is more than {MAX_DAG_DEPTH} levels deep")]
    TooDeep {
        /// The node at which the limit was reached.
        cid: Cid,
    },
    /// The range starts past the end of the file.
    #[error("range starts at byte {start} but the file has {size} bytes")]
    RangeNotSatisfiable {
        /// First byte asked for.
        start: u64,
        /// Size of the file.
        size: u64,
    },
    /// A block other than the one asked for was pushed.
    #[error("expected block {expected}, got {got}")]
    UnexpectedBlock {
        /// The block the reader asked for.
        expected: Cid,
        /// The block it got.
        got: Cid,
    },
    /// A block was pushed after the whole range had been read.
    #[error("got block {got} after the file was complete")]
    Finished {
        /// The block pushed.
        got: Cid,
    },
    /// A block the file needs is not in the store.
    #[error("block {0} is missing")]
    Missing(Cid),
    /// The blockstore failed.
    #[error(transparent)]
    Store(#[from] BlockstoreError),
    /// Writing the output failed.
    #[error("writing the file's bytes failed")]
    Write(#[source] std::io::Error),
}

impl ExportError {
    /// The CID of the block at fault, when one is.
    pub fn cid(&self) -> Option<Cid> {
        match self {
            ExportError::Verify(VerifyError::Mismatch { cid, .. }) => Some(*cid),
            ExportError::DagPb { cid, .. }
            | ExportError::UnixFs { cid, .. }
            | ExportError::NotAFile { cid, .. }
            | ExportError::Inconsistent { cid, .. }
            | ExportError::TooDeep { cid }
            | ExportError::UnexpectedBlock { got: cid, .. }
            | ExportError::Missing(cid) => Some(*cid),
            _ => None,
        }
    }
}

/// A block the reader still needs, and what its parent said about it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    cid: Cid,
    /// File offset of the first byte under this block.
    offset: u64,
    /// File bytes under it, as its parent's `blocksizes` declared (unknown for the root).
    size: Option<u64>,
    depth: usize,
}

/// Streams one UnixFS file (or a byte range of it), verifying every block.
#[derive(Debug)]
pub struct FileReader {
    /// Blocks still needed, the next one last.
    stack: Vec<Pending>,
    start: u64,
    end: Option<u64>,
    size: Option<u64>,
}

impl FileReader {
    /// A reader of the bytes of `root` within `range` (clamped to the file's size).
    pub fn new(root: Cid, range: impl RangeBounds<u64>) -> Self {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        let end = end.map(|e| e.max(start));
        Self { stack: vec![Pending { cid: root, offset: 0, size: None, depth: 0 }], start, end, size: None }
    }

    /// The block to push next, or `None` once the range has been read.
    pub fn next_cid(&self) -> Option<&Cid> {
        self.stack.last().map(|p| &p.cid)
    }

    /// The blocks known to be needed, in the order they will be asked for (for prefetching).
    pub fn upcoming(&self) -> impl Iterator<Item = &Cid> {
        self.stack.iter().rev().map(|p| &p.cid)
    }

    /// Size of the whole file, known once the root has been pushed.
    pub fn file_size(&self) -> Option<u64> {
        self.size
    }

    /// Whether every byte of the range has been returned.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty()
    }

    /// Verifies and consumes the block [`next_cid`](Self::next_cid) asked for, returning the
    /// bytes of the range it holds (possibly none: inner nodes usually hold no file bytes).
    pub fn push(&mut self, cid: &Cid, data: Bytes) -> Result<Bytes, ExportError> {
        self.expect(cid)?;
        verify(cid, &data)?;
        self.consume(cid, data)
    }

    /// Like [`push`](Self::push) for a block already verified (a [`Block`] is proof of that).
    pub fn push_block(&mut self, block: &Block) -> Result<Bytes, ExportError> {
        self.expect(block.cid())?;
        self.consume(block.cid(), block.data().clone())
    }

    fn expect(&self, cid: &Cid) -> Result<(), ExportError> {
        match self.stack.last() {
            Some(pending) if pending.cid == *cid => Ok(()),
            Some(pending) => Err(ExportError::UnexpectedBlock { expected: pending.cid, got: *cid }),
            None => Err(ExportError::Finished { got: *cid }),
        }
    }

    fn consume(&mut self, cid: &Cid, data: Bytes) -> Result<Bytes, ExportError> {
        let pending = *self.stack.last().expect("checked by expect");
        let out = match cid.codec() {
            RAW => {
                self.check_size(&pending, data.len() as u64)?;
                self.stack.pop();
                data
            }
            DAG_PB => self.push_node(&pending, &data)?,
            other => {
                return Err(ExportError::NotAFile { cid: *cid, what: format!("a block of codec {other:#x}") });
            }
        };
        Ok(self.clip(pending.offset, out))
    }

    fn push_node(&mut self, pending: &Pending, data: &[u8]) -> Result<Bytes, ExportError> {
        let cid = pending.cid;
        let node = PbNode::decode(data).map_err(|source| ExportError::DagPb { cid, source })?;
        let raw_data = node
            .data
            .as_deref()
            .ok_or_else(|| ExportError::NotAFile { cid, what: "a dag-pb node without UnixFS data".into() })?;
        let unixfs = UnixFsData::decode(raw_data).map_err(|source| ExportError::UnixFs { cid, source })?;
        match unixfs.kind {
            DataType::File | DataType::Raw => {}
            other => return Err(ExportError::NotAFile { cid, what: format!("a UnixFS {other:?}") }),
        }
        let inconsistent = |detail: String| ExportError::Inconsistent { cid, detail };
        if !node.links.is_empty() && node.links.len() != unixfs.blocksizes.len() {
            return Err(inconsistent(format!("{} links but {} blocksizes", node.links.len(), unixfs.blocksizes.len())));
        }
        if node.links.is_empty() && !unixfs.blocksizes.is_empty() {
            return Err(inconsistent("blocksizes without links".into()));
        }
        let own = unixfs.data.as_ref().map_or(0, Vec::len) as u64;
        let total = unixfs
            .blocksizes
            .iter()
            .try_fold(own, |acc, &s| acc.checked_add(s))
            .ok_or_else(|| inconsistent("blocksizes overflow".into()))?;
        if let Some(filesize) = unixfs.filesize
            && filesize != total
        {
            return Err(inconsistent(format!("filesize {filesize} but its parts add up to {total}")));
        }
        self.check_size(pending, total)?;
        if !node.links.is_empty() && pending.depth >= MAX_DAG_DEPTH {
            return Err(ExportError::TooDeep { cid });
        }
        self.stack.pop();
        // Children in reverse, so that the first one is on top; only those overlapping the range.
        let mut child_end = pending.offset + total;
        for (link, &size) in node.links.iter().zip(&unixfs.blocksizes).rev() {
            let child_start = child_end - size;
            if self.overlaps(child_start, child_end) {
                self.stack.push(Pending {
                    cid: link.hash,
                    offset: child_start,
                    size: Some(size),
                    depth: pending.depth + 1,
                });
            }
            child_end = child_start;
        }
        Ok(Bytes::from(unixfs.data.unwrap_or_default()))
    }

    /// Checks a block's size against its parent's claim; for the root, learns the file size.
    fn check_size(&mut self, pending: &Pending, actual: u64) -> Result<(), ExportError> {
        match pending.size {
            Some(expected) if expected != actual => Err(ExportError::Inconsistent {
                cid: pending.cid,
                detail: format!("holds {actual} file bytes but its parent declared {expected}"),
            }),
            Some(_) => Ok(()),
            None => {
                self.size = Some(actual);
                if self.start > actual {
                    self.stack.clear();
                    return Err(ExportError::RangeNotSatisfiable { start: self.start, size: actual });
                }
                Ok(())
            }
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        let range_end = self.end.unwrap_or(u64::MAX);
        start < range_end && end > self.start && start < end
    }

    /// The part of `bytes` (starting at file offset `offset`) inside the range.
    fn clip(&self, offset: u64, bytes: Bytes) -> Bytes {
        let len = bytes.len() as u64;
        let from = self.start.saturating_sub(offset).min(len);
        let to = self.end.map_or(len, |e| e.saturating_sub(offset).min(len)).max(from);
        bytes.slice(from as usize..to as usize)
    }
}

/// Reads `range` of the file `root` from `store` into `out`, returning the bytes written.
pub fn read_file(
    store: &dyn Blockstore,
    root: Cid,
    range: impl RangeBounds<u64>,
    out: &mut dyn std::io::Write,
) -> Result<u64, ExportError> {
    let mut reader = FileReader::new(root, range);
    let mut written = 0;
    while let Some(&cid) = reader.next_cid() {
        let data = store.get(&cid)?.ok_or(ExportError::Missing(cid))?;
        let bytes = reader.push(&cid, data)?;
        out.write_all(&bytes).map_err(ExportError::Write)?;
        written += bytes.len() as u64;
    }
    Ok(written)
}

/// Follows `path` (names separated by `/`) through plain UnixFS directories from `root`.
pub fn resolve_path(store: &dyn Blockstore, root: Cid, path: &str) -> Result<Cid, ExportError> {
    let mut cid = root;
    for name in path.split('/').filter(|s| !s.is_empty()) {
        let data = store.get(&cid)?.ok_or(ExportError::Missing(cid))?;
        verify(&cid, &data)?;
        if cid.codec() != DAG_PB {
            return Err(ExportError::NotAFile { cid, what: format!("not a directory (codec {:#x})", cid.codec()) });
        }
        let node = PbNode::decode(&data).map_err(|source| ExportError::DagPb { cid, source })?;
        let unixfs = UnixFsData::decode(node.data.as_deref().unwrap_or_default())
            .map_err(|source| ExportError::UnixFs { cid, source })?;
        if unixfs.kind != DataType::Directory {
            return Err(ExportError::NotAFile { cid, what: format!("a UnixFS {:?}, not a directory", unixfs.kind) });
        }
        cid = node
            .links
            .iter()
            .find(|l| l.name.as_deref() == Some(name))
            .map(|l| l.hash)
            .ok_or_else(|| ExportError::NotAFile { cid, what: format!("a directory without {name:?}") })?;
    }
    Ok(cid)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::store::MemoryBlockstore;
    use crate::unixfs::CHUNK_BYTES;
    use crate::unixfs::importer::import_bytes;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn stored(data: &[u8]) -> (Cid, MemoryBlockstore) {
        let (file, blocks) = import_bytes(data);
        let store = MemoryBlockstore::new(usize::MAX);
        for b in &blocks {
            store.put(b).unwrap();
        }
        (file.root, store)
    }

    #[test]
    fn whole_files_and_ranges_come_back() {
        let data = pattern(3 * CHUNK_BYTES + 17);
        let (root, store) = stored(&data);
        let ranges = [(0, data.len()), (5, 6), (CHUNK_BYTES - 1, CHUNK_BYTES + 1), (2 * CHUNK_BYTES, data.len())];
        for (a, b) in ranges {
            let mut out = Vec::new();
            read_file(&store, root, a as u64..b as u64, &mut out).unwrap();
            assert_eq!(out, &data[a..b], "range {a}..{b}");
        }
        let mut out = Vec::new();
        read_file(&store, root, .., &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn only_blocks_in_the_range_are_asked_for() {
        let data = pattern(4 * CHUNK_BYTES);
        let (root, store) = stored(&data);
        let mut reader = FileReader::new(root, CHUNK_BYTES as u64..CHUNK_BYTES as u64 + 10);
        let mut fetched = 0;
        while let Some(&cid) = reader.next_cid() {
            reader.push(&cid, store.get(&cid).unwrap().unwrap()).unwrap();
            fetched += 1;
        }
        assert_eq!(fetched, 2, "the root and the second leaf");
    }

    #[test]
    fn a_corrupt_leaf_is_refused() {
        let data = pattern(2 * CHUNK_BYTES);
        let (root, store) = stored(&data);
        let mut reader = FileReader::new(root, ..);
        let cid = *reader.next_cid().unwrap();
        reader.push(&cid, store.get(&cid).unwrap().unwrap()).unwrap();
        let leaf = *reader.next_cid().unwrap();
        let mut bad = store.get(&leaf).unwrap().unwrap().to_vec();
        bad[0] ^= 1;
        assert!(matches!(reader.push(&leaf, bad.into()), Err(ExportError::Verify(VerifyError::Mismatch { .. }))));
    }

    #[test]
    fn range_past_the_end_is_refused_and_empty_range_is_empty() {
        let (root, store) = stored(b"hello");
        let err = read_file(&store, root, 6.., &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ExportError::RangeNotSatisfiable { start: 6, size: 5 }));
        assert_eq!(read_file(&store, root, 5.., &mut Vec::new()).unwrap(), 0);
    }
}
