//! Which blocks a trustless-gateway request names: the blocks along a content path, then the
//! blocks of the `dag-scope` at its end, in depth-first order without duplicates.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;

use antiphon_core::Cid;
use antiphon_core::bitswap::{Blockstore, BlockstoreError};
use antiphon_core::block::{DAG_CBOR, DAG_PB, RAW, verify};
use antiphon_core::dag::{self, DagError};
use antiphon_core::dag_pb::PbNode;
use antiphon_core::unixfs::data::{DataType, UnixFsData};
use antiphon_core::unixfs::exporter::FileReader;
use bytes::Bytes;
use ipld_core::ipld::Ipld;

/// The `dag-scope` of a CAR request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DagScope {
    /// Only the block at the end of the path.
    Block,
    /// What is needed to read the entity there: a whole file, a directory's own blocks, a
    /// dag-cbor document without what it links to.
    Entity,
    /// The whole DAG under the end of the path.
    All,
}

impl DagScope {
    /// Parses a `dag-scope` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "block" => Some(Self::Block),
            "entity" => Some(Self::Entity),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// An `entity-bytes=from:to` range; negative values count from the end, `to` may be `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityBytes {
    from: i64,
    to: Option<i64>,
}

impl EntityBytes {
    /// Parses `from:to`.
    pub fn parse(s: &str) -> Option<Self> {
        let (from, to) = s.split_once(':')?;
        let from = from.parse().ok()?;
        let to = if to == "*" { None } else { Some(to.parse().ok()?) };
        if let Some(to) = to
            && from >= 0
            && to >= 0
            && to < from
        {
            return None;
        }
        Some(Self { from, to })
    }

    /// The byte range of a file of `size` bytes, `None` if it is empty.
    fn resolve(self, size: u64) -> Option<RangeInclusive<u64>> {
        let at = |v: i64| if v < 0 { size.saturating_sub(v.unsigned_abs()) } else { v as u64 };
        let from = at(self.from);
        let to = self.to.map_or(size.saturating_sub(1), |t| at(t).min(size.saturating_sub(1)));
        (size > 0 && from <= to).then_some(from..=to)
    }
}

/// Why a request's blocks could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum TraversalError {
    /// A block the request needs is not stored here.
    #[error("block {0} is not stored here")]
    Missing(Cid),
    /// A path segment names nothing.
    #[error("{segment:?} not found under {parent}")]
    NoSuchPath {
        /// The segment.
        segment: String,
        /// The block it was looked up in.
        parent: Cid,
    },
    /// A block does not hash to its CID, or does not decode.
    #[error("{cid} is malformed")]
    Malformed {
        /// The block.
        cid: Cid,
        /// What is wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A block's links could not be read.
    #[error(transparent)]
    Dag(DagError),
    /// The DAG under the request holds more blocks or bytes than one answer may carry.
    #[error(
        "the answer for {0} would exceed what one response carries ({MAX_DFS_BLOCKS} blocks, {MAX_CAR_BYTES} bytes, duplicates no more than the distinct blocks); ask with dups=n or a narrower dag-scope"
    )]
    TooLarge(Cid),
    /// The store failed.
    #[error("store read failed")]
    Store(#[source] BlockstoreError),
}

impl From<DagError> for TraversalError {
    fn from(e: DagError) -> Self {
        match e {
            DagError::Missing(cid) => Self::Missing(cid),
            other => Self::Dag(other),
        }
    }
}

/// Whether `cid` is an identity CID: its bytes are its digest, never stored or sent as a block.
pub fn is_identity(cid: &Cid) -> bool {
    cid.hash().code() == 0x00
}

/// A block's stored bytes as they are (an identity CID's bytes from the CID itself), for
/// callers that verified them moments ago.
pub fn read(store: &dyn Blockstore, cid: &Cid) -> Result<Bytes, TraversalError> {
    if is_identity(cid) {
        return Ok(Bytes::copy_from_slice(cid.hash().digest()));
    }
    store.get(cid).map_err(TraversalError::Store)?.ok_or(TraversalError::Missing(*cid))
}

/// A block from the store, verified against its CID.
pub fn get(store: &dyn Blockstore, cid: &Cid) -> Result<Bytes, TraversalError> {
    let data = read(store, cid)?;
    if !is_identity(cid) {
        verify(cid, &data).map_err(malformed(*cid))?;
    }
    Ok(data)
}

fn malformed<E: Into<Box<dyn std::error::Error + Send + Sync>>>(cid: Cid) -> impl FnOnce(E) -> TraversalError {
    move |e| TraversalError::Malformed { cid, source: e.into() }
}

/// A dag-pb node and its UnixFS data (absent for dag-pb that is not UnixFS).
fn unixfs(cid: Cid, data: &[u8]) -> Result<(PbNode, Option<UnixFsData>), TraversalError> {
    let node = PbNode::decode(data).map_err(malformed(cid))?;
    let fs = node.data.as_deref().and_then(|d| UnixFsData::decode(d).ok());
    Ok((node, fs))
}

/// Digits of a HAMT link-name prefix for `fanout` (2 for the usual 256).
fn hamt_prefix_len(fanout: Option<u64>) -> usize {
    let fanout = fanout.unwrap_or(256).max(2);
    format!("{:X}", fanout - 1).len()
}

/// Finds `name` in the HAMT under `shard`; returns the shards passed through below `shard`
/// and the entry's CID. Searches every sub-shard (no hashing needed, all blocks are local),
/// but returns only the branch that holds the entry.
fn hamt_find(
    store: &dyn Blockstore,
    shard: Cid,
    node: &PbNode,
    prefix: usize,
    name: &str,
    depth: usize,
) -> Result<Option<(Vec<Cid>, Cid)>, TraversalError> {
    if depth > antiphon_core::limits::MAX_DAG_DEPTH {
        return Err(malformed::<&str>(shard)("HAMT deeper than the depth limit"));
    }
    for link in &node.links {
        let Some(link_name) = link.name.as_deref() else { continue };
        if link_name.len() < prefix || !link_name.is_char_boundary(prefix) {
            continue;
        }
        let rest = &link_name[prefix..];
        if rest == name {
            return Ok(Some((Vec::new(), link.hash)));
        }
        if rest.is_empty() {
            let data = get(store, &link.hash)?;
            let (child, fs) = unixfs(link.hash, &data)?;
            let child_prefix = hamt_prefix_len(fs.and_then(|f| f.fanout));
            if let Some((mut shards, cid)) = hamt_find(store, link.hash, &child, child_prefix, name, depth + 1)? {
                shards.insert(0, link.hash);
                return Ok(Some((shards, cid)));
            }
        }
    }
    Ok(None)
}

/// Follows `segments` from `root`; returns the blocks passed through (root first) and the CID
/// at the end of the path.
pub fn resolve(store: &dyn Blockstore, root: Cid, segments: &[String]) -> Result<(Vec<Cid>, Cid), TraversalError> {
    let mut path = vec![root];
    let mut current = root;
    let mut i = 0;
    while i < segments.len() {
        let data = get(store, &current)?;
        let segment = &segments[i];
        let not_found = || TraversalError::NoSuchPath { segment: segment.clone(), parent: current };
        match current.codec() {
            DAG_PB => {
                let (node, fs) = unixfs(current, &data)?;
                let next = match fs.as_ref().map(|f| f.kind) {
                    Some(DataType::HamtShard) => {
                        let prefix = hamt_prefix_len(fs.and_then(|f| f.fanout));
                        let (shards, cid) =
                            hamt_find(store, current, &node, prefix, segment, 0)?.ok_or_else(not_found)?;
                        path.extend(shards);
                        cid
                    }
                    Some(DataType::Directory) | None => node
                        .links
                        .iter()
                        .find(|l| l.name.as_deref() == Some(segment.as_str()))
                        .map(|l| l.hash)
                        .ok_or_else(not_found)?,
                    Some(_) => return Err(not_found()),
                };
                path.push(next);
                current = next;
                i += 1;
            }
            DAG_CBOR => {
                let mut value: Ipld = serde_ipld_dagcbor::from_slice(&data).map_err(malformed(current))?;
                // Walk inside the document until a link is reached or the path ends.
                loop {
                    if let Ipld::Link(link) = &value {
                        let next = Cid::read_bytes(link.to_bytes().as_slice()).map_err(malformed(current))?;
                        path.push(next);
                        current = next;
                        break;
                    }
                    let Some(segment) = segments.get(i) else { break };
                    let child = match &value {
                        Ipld::Map(map) => map.get(segment.as_str()).cloned(),
                        Ipld::List(list) => segment.parse::<usize>().ok().and_then(|n| list.get(n).cloned()),
                        _ => None,
                    };
                    value = child
                        .ok_or_else(|| TraversalError::NoSuchPath { segment: segment.clone(), parent: current })?;
                    i += 1;
                }
            }
            _ => return Err(not_found()),
        }
    }
    Ok((dedup(path), current))
}

fn dedup(cids: Vec<Cid>) -> Vec<Cid> {
    let mut seen = HashSet::new();
    cids.into_iter().filter(|c| seen.insert(*c)).collect()
}

/// The blocks of `scope` at `terminus`, in the order a CAR carries them.
pub fn scope_blocks(
    store: &dyn Blockstore,
    terminus: Cid,
    scope: DagScope,
    entity_bytes: Option<EntityBytes>,
    dups: bool,
) -> Result<Vec<Cid>, TraversalError> {
    let whole = |store: &dyn Blockstore| dfs(store, terminus, dups);
    match scope {
        DagScope::Block => {
            get(store, &terminus)?;
            Ok(vec![terminus])
        }
        DagScope::All => whole(store),
        DagScope::Entity => {
            let data = get(store, &terminus)?;
            match terminus.codec() {
                RAW => Ok(vec![terminus]),
                DAG_PB => {
                    let (node, fs) = unixfs(terminus, &data)?;
                    match fs.as_ref().map(|f| f.kind) {
                        Some(DataType::File | DataType::Raw) => match entity_bytes {
                            None => whole(store),
                            Some(range) => file_range_blocks(store, terminus, range),
                        },
                        Some(DataType::HamtShard) => {
                            let prefix = hamt_prefix_len(fs.and_then(|f| f.fanout));
                            let mut out = vec![terminus];
                            hamt_shards(store, terminus, &node, prefix, &mut out, 0)?;
                            Ok(out)
                        }
                        _ => Ok(vec![terminus]),
                    }
                }
                _ => Ok(vec![terminus]),
            }
        }
    }
}

/// Every block under `root`, depth first in link order; with `dups`, a block linked twice is
/// listed twice. Each distinct block is read and verified once, however often it is linked.
/// Bounded by [`MAX_DFS_BLOCKS`] and by bytes: [`MAX_CAR_BYTES`] in all, and duplicates may
/// add no more than the distinct blocks weigh (a DAG that links one block a thousand times
/// does not become a thousand copies from one request).
fn dfs(store: &dyn Blockstore, root: Cid, dups: bool) -> Result<Vec<Cid>, TraversalError> {
    let mut out = Vec::new();
    // Each distinct block's links and size, from its one verified read.
    let mut known: HashMap<Cid, (Vec<Cid>, u64)> = HashMap::new();
    let (mut distinct_bytes, mut duplicate_bytes) = (0u64, 0u64);
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        let links = match known.get(&cid) {
            Some(_) if !dups => continue,
            Some((links, size)) => {
                duplicate_bytes += size;
                links.clone()
            }
            None => {
                let data = get(store, &cid)?;
                let links = dag::links_of(&cid, &data)?;
                distinct_bytes += data.len() as u64;
                known.insert(cid, (links.clone(), data.len() as u64));
                links
            }
        };
        if out.len() >= MAX_DFS_BLOCKS
            || distinct_bytes + duplicate_bytes > MAX_CAR_BYTES
            || duplicate_bytes > distinct_bytes
        {
            return Err(TraversalError::TooLarge(root));
        }
        out.push(cid);
        stack.extend(links.into_iter().rev());
    }
    Ok(out)
}

/// Most blocks one CAR response lists (a whole 32 MiB segment is ~130).
pub const MAX_DFS_BLOCKS: usize = 1 << 20;

/// Most bytes of blocks one CAR response carries: the largest track a replica takes.
pub const MAX_CAR_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Appends every sub-shard of a HAMT (not the entries' own blocks), depth first.
fn hamt_shards(
    store: &dyn Blockstore,
    shard: Cid,
    node: &PbNode,
    prefix: usize,
    out: &mut Vec<Cid>,
    depth: usize,
) -> Result<(), TraversalError> {
    if depth > antiphon_core::limits::MAX_DAG_DEPTH {
        return Err(TraversalError::Malformed { cid: shard, source: "HAMT deeper than the depth limit".into() });
    }
    for link in &node.links {
        if link.name.as_deref().is_some_and(|n| n.len() == prefix) {
            let data = get(store, &link.hash)?;
            let (child, fs) = unixfs(link.hash, &data)?;
            out.push(link.hash);
            hamt_shards(store, link.hash, &child, hamt_prefix_len(fs.and_then(|f| f.fanout)), out, depth + 1)?;
        }
    }
    Ok(())
}

/// The size of the UnixFS file `root` as its root block declares it (one block read).
pub fn file_size(store: &dyn Blockstore, root: Cid) -> Result<u64, TraversalError> {
    let data = get(store, &root)?;
    Ok(match root.codec() {
        DAG_PB => {
            let (_, fs) = unixfs(root, &data)?;
            let fs = fs.ok_or_else(|| malformed::<&str>(root)("dag-pb without UnixFS data"))?;
            fs.filesize
                .unwrap_or_else(|| fs.data.as_ref().map_or(0, |d| d.len() as u64) + fs.blocksizes.iter().sum::<u64>())
        }
        _ => data.len() as u64,
    })
}

/// The blocks needed to read `range` of the file `root`: the ones the exporter asks for.
fn file_range_blocks(store: &dyn Blockstore, root: Cid, range: EntityBytes) -> Result<Vec<Cid>, TraversalError> {
    // The size comes from the root; negative offsets need it.
    let size = file_size(store, root)?;
    let Some(bytes) = range.resolve(size) else { return Ok(vec![root]) };
    let mut reader = FileReader::new(root, bytes);
    let mut out = Vec::new();
    while let Some(&cid) = reader.next_cid() {
        let data = get(store, &cid)?;
        reader.push(&cid, data).map_err(malformed(cid))?;
        out.push(cid);
    }
    Ok(dedup(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_bytes_ranges() {
        let r = |s: &str, size| EntityBytes::parse(s).and_then(|e| e.resolve(size));
        assert_eq!(r("0:1000", 3000), Some(0..=1000));
        assert_eq!(r("0:*", 3000), Some(0..=2999));
        assert_eq!(r("-100:*", 3000), Some(2900..=2999));
        assert_eq!(r("10:5000", 3000), Some(10..=2999));
        assert_eq!(r("0:*", 0), None);
        assert!(EntityBytes::parse("5:1").is_none());
        assert!(EntityBytes::parse("a:b").is_none());
        assert!(EntityBytes::parse("12").is_none());
    }
}
