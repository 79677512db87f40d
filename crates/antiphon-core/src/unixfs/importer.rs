//! Bytes to a UnixFS file, the way `ipfs add --cid-version=1` lays it out in Kubo: fixed
//! 256 KiB chunks stored as raw leaves, CIDv1 sha2-256, a balanced tree of at most 174 links
//! per node, and a file of one chunk (or none) being that raw leaf itself.
//!
//! The importer streams: it holds at most one chunk of input and, per tree level, the links
//! of the one node being filled, so memory stays bounded whatever the file size.

use std::io::Read;

use bytes::Bytes;

use super::data::UnixFsData;
use super::{CHUNK_BYTES, MAX_LINKS_PER_NODE};
use crate::block::{Block, Cid, DAG_PB, RAW};
use crate::dag_pb::{PbLink, PbNode};

/// A finished import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedFile {
    /// The root CID: a raw leaf for files of at most one chunk, otherwise a dag-pb node.
    pub root: Cid,
    /// Size of the file's content in bytes.
    pub file_size: u64,
    /// Bytes of all the file's blocks together (the `Tsize` a parent would link it with).
    pub dag_size: u64,
    /// Number of blocks written.
    pub blocks: u64,
}

/// A child waiting for its parent node.
#[derive(Debug, Clone, Copy)]
struct Child {
    cid: Cid,
    dag_size: u64,
    file_size: u64,
}

/// Streaming importer: feed bytes with [`write`](Self::write), then [`finish`](Self::finish);
/// every block is handed to the `emit` callback as soon as it is complete, children before
/// their parents.
#[derive(Debug)]
pub struct FileImporter {
    chunk: Vec<u8>,
    /// `levels[0]` holds leaves, `levels[i]` nodes of height `i`, each waiting for a parent.
    levels: Vec<Vec<Child>>,
    leaves: u64,
    blocks: u64,
}

impl Default for FileImporter {
    fn default() -> Self {
        Self::new()
    }
}

impl FileImporter {
    /// An importer with nothing written.
    pub fn new() -> Self {
        Self { chunk: Vec::with_capacity(CHUNK_BYTES), levels: vec![Vec::new()], leaves: 0, blocks: 0 }
    }

    /// Adds bytes to the file.
    pub fn write(&mut self, mut data: &[u8], emit: &mut dyn FnMut(Block)) {
        while !data.is_empty() {
            let take = (CHUNK_BYTES - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == CHUNK_BYTES {
                self.flush_leaf(emit);
            }
        }
    }

    /// Writes the last leaf and the nodes above it, and returns the root.
    pub fn finish(mut self, emit: &mut dyn FnMut(Block)) -> ImportedFile {
        if !self.chunk.is_empty() || self.leaves == 0 {
            self.flush_leaf(emit);
        }
        let mut height = 0;
        loop {
            let is_top = self.levels[height + 1..].iter().all(Vec::is_empty);
            if is_top && self.levels[height].len() == 1 {
                let root = self.levels[height][0];
                return ImportedFile {
                    root: root.cid,
                    file_size: root.file_size,
                    dag_size: root.dag_size,
                    blocks: self.blocks,
                };
            }
            if !self.levels[height].is_empty() {
                self.flush_node(height, emit);
            }
            height += 1;
        }
    }

    fn flush_leaf(&mut self, emit: &mut dyn FnMut(Block)) {
        let data = Bytes::from(std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES)));
        let len = data.len() as u64;
        let block = Block::from_data(RAW, data).expect("a chunk is smaller than the block limit");
        self.leaves += 1;
        self.push(0, Child { cid: *block.cid(), dag_size: len, file_size: len }, emit);
        self.blocks += 1;
        emit(block);
    }

    /// Adds a child at `height`, and builds its parent once the level holds a full node.
    fn push(&mut self, height: usize, child: Child, emit: &mut dyn FnMut(Block)) {
        self.levels[height].push(child);
        if self.levels[height].len() == MAX_LINKS_PER_NODE {
            self.flush_node(height, emit);
        }
    }

    /// Builds the node over the children waiting at `height` and passes it up a level.
    fn flush_node(&mut self, height: usize, emit: &mut dyn FnMut(Block)) {
        if self.levels.len() == height + 1 {
            self.levels.push(Vec::new());
        }
        let children = std::mem::take(&mut self.levels[height]);
        let (block, child) = file_node(&children);
        self.blocks += 1;
        emit(block);
        self.push(height + 1, child, emit);
    }
}

/// The dag-pb node over `children` and the link to it.
fn file_node(children: &[Child]) -> (Block, Child) {
    let data = UnixFsData::file(children.iter().map(|c| c.file_size).collect());
    let node = PbNode {
        links: children.iter().map(|c| PbLink::unnamed(c.cid, c.dag_size)).collect(),
        data: Some(data.encode()),
    };
    let bytes = node.encode();
    let dag_size = bytes.len() as u64 + children.iter().map(|c| c.dag_size).sum::<u64>();
    let file_size = children.iter().map(|c| c.file_size).sum();
    let block = Block::from_data(DAG_PB, bytes).expect("174 links fit in a block");
    let cid = *block.cid();
    (block, Child { cid, dag_size, file_size })
}

/// Imports all of `reader`, handing each block to `emit`.
pub fn import_reader(mut reader: impl Read, emit: &mut dyn FnMut(Block)) -> std::io::Result<ImportedFile> {
    let mut importer = FileImporter::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => importer.write(&buf[..n], emit),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(importer.finish(emit))
}

/// Imports `data`, returning the file and all its blocks (for small inputs and tests).
pub fn import_bytes(data: &[u8]) -> (ImportedFile, Vec<Block>) {
    let mut blocks = Vec::new();
    let mut importer = FileImporter::new();
    importer.write(data, &mut |b| blocks.push(b));
    let file = importer.finish(&mut |b| blocks.push(b));
    (file, blocks)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn empty_and_single_chunk_files_are_their_raw_leaf() {
        let (empty, blocks) = import_bytes(b"");
        assert_eq!(empty.root.to_string(), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku");
        assert_eq!((empty.file_size, blocks.len()), (0, 1));
        let (one, blocks) = import_bytes(&vec![1u8; CHUNK_BYTES]);
        assert_eq!(one.root.codec(), RAW);
        assert_eq!((one.file_size, one.dag_size, blocks.len()), (CHUNK_BYTES as u64, CHUNK_BYTES as u64, 1));
    }

    #[test]
    fn two_chunks_make_one_node() {
        let (file, blocks) = import_bytes(&vec![2u8; CHUNK_BYTES + 1]);
        assert_eq!(file.root.codec(), DAG_PB);
        assert_eq!(blocks.len(), 3);
        let root = blocks.last().unwrap();
        assert_eq!(root.cid(), &file.root);
        let node = PbNode::decode(root.data()).unwrap();
        assert_eq!(node.links.len(), 2);
        let data = UnixFsData::decode(node.data.as_deref().unwrap()).unwrap();
        assert_eq!(data.blocksizes, [CHUNK_BYTES as u64, 1]);
        assert_eq!(file.dag_size, root.data().len() as u64 + CHUNK_BYTES as u64 + 1);
    }

    #[test]
    fn a_full_node_then_one_more_leaf_adds_a_level() {
        let mut importer = FileImporter::new();
        let mut blocks = Vec::new();
        importer.write(&vec![0u8; CHUNK_BYTES * MAX_LINKS_PER_NODE + 1], &mut |b| blocks.push(b));
        let file = importer.finish(&mut |b| blocks.push(b));
        // 175 leaves (all but the last identical, so one CID), two nodes of height 1, a root.
        assert_eq!(file.blocks, 175 + 2 + 1);
        let root = PbNode::decode(blocks.last().unwrap().data()).unwrap();
        assert_eq!(root.links.len(), 2);
        let right = blocks.iter().find(|b| b.cid() == &root.links[1].hash).unwrap();
        assert_eq!(PbNode::decode(right.data()).unwrap().links.len(), 1);
    }
}
