//! Fetching a UnixFS file from the network, whatever the network is: the caller supplies an
//! async `get` for one verified block, and [`fetch_file`] keeps a few blocks in flight ahead
//! of the reader, pushes them through [`FileReader`] in order, and hands each piece of the
//! file to a sink as soon as it is known.

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeBounds;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::exporter::{ExportError, FileReader};
use crate::block::{Block, Cid};

/// Why fetching a file failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError<E, S = E> {
    /// A block could not be fetched.
    #[error("could not fetch block {cid}")]
    Get {
        /// The block.
        cid: Cid,
        /// Why.
        #[source]
        source: E,
    },
    /// The blocks do not form a valid file.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Nothing was in flight while the reader still needed a block (a bug, reported rather
    /// than panicking).
    #[error("fetching stalled before {0}")]
    Stalled(Cid),
    /// The sink refused the bytes.
    #[error("the output refused the file's bytes")]
    Sink(#[source] S),
    /// The root declares a size other than the one expected; nothing under it was fetched.
    #[error("{root} declares {actual} bytes; {expected} were expected")]
    Size {
        /// The file.
        root: Cid,
        /// The size the caller expected (a manifest's).
        expected: u64,
        /// The size the root declares.
        actual: u64,
    },
}

/// Fetches the bytes of `root` within `range`, with up to `window` blocks requested at once,
/// passing every block fetched and the file bytes it holds (possibly none) to `sink`, in file
/// order. Returns the number of file bytes produced.
pub async fn fetch_file<G, Fut, E, S>(
    root: Cid,
    range: impl RangeBounds<u64>,
    window: usize,
    get: G,
    sink: impl FnMut(&Block, Bytes) -> Result<(), S>,
) -> Result<u64, FetchError<E, S>>
where
    G: FnMut(Cid) -> Fut,
    Fut: Future<Output = Result<Block, E>>,
{
    fetch(FileReader::new(root, range), None, window, get, sink).await
}

/// Fetches the whole of `root`, which must be a file of exactly `size` bytes: the root's
/// declared size is checked as soon as the root arrives, before any block under it is asked
/// for, and no byte past `size` is ever asked for. For files whose size someone else declared
/// (a track manifest's segments), so that a lying root costs one block.
pub async fn fetch_file_of_size<G, Fut, E, S>(
    root: Cid,
    size: u64,
    window: usize,
    get: G,
    sink: impl FnMut(&Block, Bytes) -> Result<(), S>,
) -> Result<u64, FetchError<E, S>>
where
    G: FnMut(Cid) -> Fut,
    Fut: Future<Output = Result<Block, E>>,
{
    fetch(FileReader::new(root, ..size), Some(size), window, get, sink).await
}

async fn fetch<G, Fut, E, S>(
    mut reader: FileReader,
    expected: Option<u64>,
    window: usize,
    mut get: G,
    mut sink: impl FnMut(&Block, Bytes) -> Result<(), S>,
) -> Result<u64, FetchError<E, S>>
where
    G: FnMut(Cid) -> Fut,
    Fut: Future<Output = Result<Block, E>>,
{
    let window = window.max(1);
    let mut ready: HashMap<Cid, Block> = HashMap::new();
    let mut inflight = FuturesUnordered::new();
    let mut requested: Vec<Cid> = Vec::new();
    let mut produced = 0u64;
    while let Some(&next) = reader.next_cid() {
        if let Some(block) = ready.get(&next).cloned() {
            let bytes = reader.push_block(&block)?;
            if let (Some(expected), Some(actual)) = (expected, reader.file_size())
                && actual != expected
            {
                return Err(FetchError::Size { root: *block.cid(), expected, actual });
            }
            // Repeated content links the same block several times in a row: keep it while it
            // is needed again next. (Looking further ahead would cost a scan of the reader's
            // whole stack per block; a repeat further away is simply fetched again.)
            if reader.next_cid() != Some(&next) {
                ready.remove(&next);
            }
            produced += bytes.len() as u64;
            sink(&block, bytes).map_err(FetchError::Sink)?;
            continue;
        }
        let mut wanted: Vec<Cid> = Vec::new();
        // Look a bounded way ahead: a node may hold tens of thousands of links, and scanning
        // them all for every block would be quadratic in what a peer sends.
        for c in reader.upcoming().take(window * 8) {
            if wanted.len() + requested.len() >= window {
                break;
            }
            if !ready.contains_key(c) && !requested.contains(c) && !wanted.contains(c) {
                wanted.push(*c);
            }
        }
        for cid in wanted {
            requested.push(cid);
            let fut = get(cid);
            inflight.push(async move { (cid, fut.await) });
        }
        let Some((cid, result)) = inflight.next().await else {
            return Err(FetchError::Stalled(next));
        };
        requested.retain(|c| *c != cid);
        let block = result.map_err(|source| FetchError::Get { cid, source })?;
        ready.insert(cid, block);
    }
    Ok(produced)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::store::{Blockstore, MemoryBlockstore};
    use crate::unixfs::CHUNK_BYTES;
    use crate::unixfs::importer::import_bytes;

    #[test]
    fn fetches_in_order_with_a_bounded_window() {
        let data: Vec<u8> = (0..5 * CHUNK_BYTES + 3).map(|i| (i % 253) as u8).collect();
        let (file, blocks) = import_bytes(&data);
        let store = MemoryBlockstore::new(usize::MAX);
        blocks.iter().for_each(|b| store.put(b).unwrap());
        let in_flight = std::cell::Cell::new(0usize);
        let most = std::cell::Cell::new(0usize);
        let mut out = Vec::new();
        let get = |cid: Cid| {
            in_flight.set(in_flight.get() + 1);
            most.set(most.get().max(in_flight.get()));
            let store = store.clone();
            let in_flight = &in_flight;
            async move {
                futures::future::ready(()).await;
                in_flight.set(in_flight.get() - 1);
                let data = store.get(&cid).unwrap().ok_or("missing")?;
                Block::new(cid, data).map_err(|_| "corrupt")
            }
        };
        let n = futures::executor::block_on(fetch_file(file.root, .., 3, get, |_, bytes| {
            out.extend_from_slice(&bytes);
            Ok::<(), &str>(())
        }))
        .unwrap();
        assert_eq!((n, out), (data.len() as u64, data));
        assert!(most.get() <= 3, "{} in flight", most.get());
    }

    #[test]
    fn a_block_linked_many_times_is_fetched_once() {
        let data = vec![7u8; 6 * CHUNK_BYTES + 1];
        let (file, blocks) = import_bytes(&data);
        let store = MemoryBlockstore::new(usize::MAX);
        blocks.iter().for_each(|b| store.put(b).unwrap());
        let gets = std::cell::RefCell::new(Vec::new());
        let get = |cid: Cid| {
            gets.borrow_mut().push(cid);
            let data = store.get(&cid).unwrap().unwrap();
            async move { Block::new(cid, data).map_err(|_| "corrupt") }
        };
        let mut out = Vec::new();
        futures::executor::block_on(fetch_file(file.root, .., 8, get, |_, b| {
            out.extend_from_slice(&b);
            Ok::<(), &str>(())
        }))
        .unwrap();
        assert_eq!(out, data);
        // The root, the repeated full chunk once, the short last chunk.
        assert_eq!(gets.borrow().len(), 3, "{:?}", gets.borrow());
    }

    #[test]
    fn a_root_declaring_another_size_costs_one_block() {
        let data = vec![3u8; 4 * CHUNK_BYTES];
        let (file, blocks) = import_bytes(&data);
        let store = MemoryBlockstore::new(usize::MAX);
        blocks.iter().for_each(|b| store.put(b).unwrap());
        let gets = std::cell::RefCell::new(Vec::new());
        let get = |cid: Cid| {
            gets.borrow_mut().push(cid);
            let data = store.get(&cid).unwrap().unwrap();
            async move { Block::new(cid, data).map_err(|_| "corrupt") }
        };
        // A manifest that says the file is one chunk long: refused after its root alone.
        let err = futures::executor::block_on(fetch_file_of_size(file.root, CHUNK_BYTES as u64, 1, get, |_, _| {
            Ok::<(), &str>(())
        }))
        .unwrap_err();
        assert!(matches!(err, FetchError::Size { actual, .. } if actual == data.len() as u64), "{err}");
        assert_eq!(gets.borrow().as_slice(), &[file.root]);
        // The right size fetches it all.
        let get = |cid: Cid| {
            let data = store.get(&cid).unwrap().unwrap();
            async move { Block::new(cid, data).map_err(|_| "corrupt") }
        };
        let n = futures::executor::block_on(fetch_file_of_size(file.root, data.len() as u64, 4, get, |_, _| {
            Ok::<(), &str>(())
        }))
        .unwrap();
        assert_eq!(n, data.len() as u64);
    }

    #[test]
    fn a_missing_block_names_itself() {
        let data = vec![1u8; 2 * CHUNK_BYTES];
        let (file, _) = import_bytes(&data);
        let get = |_cid: Cid| async { Err::<Block, _>("nobody has it") };
        let err =
            futures::executor::block_on(fetch_file(file.root, .., 4, get, |_, _| Ok::<(), &str>(()))).unwrap_err();
        assert!(matches!(err, FetchError::Get { cid, .. } if cid == file.root));
    }
}
