//! The node's block and track store, in one redb database file.
//!
//! Blocks are keyed by CID bytes. A track is written with all its blocks in one transaction,
//! so an ingest that fails or is interrupted leaves nothing half-stored.

use std::path::Path;
use std::sync::Arc;

use antiphon_core::bitswap::{Blockstore, BlockstoreError, LookupFuture, lookup_now};
use antiphon_core::{Block, Cid};
use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// Track manifest CID -> unix time (seconds) the track was added.
const TRACKS: TableDefinition<&[u8], u64> = TableDefinition::new("tracks");

/// (track manifest CID bytes ++ replica peer ID bytes) -> unix time the replica confirmed it.
const REPLICAS: TableDefinition<&[u8], u64> = TableDefinition::new("replicas");

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb could not open the database.
    #[error("could not open the store {path}")]
    Open {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: redb::DatabaseError,
    },
    /// A transaction failed.
    #[error("store transaction failed")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("store table failed")]
    Table(#[from] redb::TableError),
    /// Reading or writing failed.
    #[error("store I/O failed")]
    Storage(#[from] redb::StorageError),
    /// Committing failed.
    #[error("store commit failed")]
    Commit(#[from] redb::CommitError),
    /// A read-only command found no store.
    #[error("no store at {path} (ingest or import something first, or pass --data)")]
    Missing {
        /// The database file looked for.
        path: String,
    },
    /// A stored key is not a CID.
    #[error("stored key is not a CID")]
    BadKey(#[from] cid::Error),
}

/// A cheaply cloneable handle to the store.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: Arc<std::path::PathBuf>,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let db =
            Database::create(&path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let txn = db.begin_write()?;
        txn.open_table(BLOCKS)?;
        txn.open_table(TRACKS)?;
        txn.open_table(REPLICAS)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db), path: Arc::new(path) })
    }

    /// Opens the store in `data_dir`, refusing to create one (for commands that only read).
    pub fn open_existing(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Missing { path: path.display().to_string() });
        }
        Self::open(data_dir)
    }

    /// Bytes the database file takes on disk now (0 if it cannot be read).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(self.path.as_ref()).map(|m| m.len()).unwrap_or(0)
    }

    /// Starts a batch of writes that land together on [`Batch::commit`], or not at all.
    pub fn batch(&self) -> Result<Batch, StoreError> {
        Ok(Batch { txn: self.db.begin_write()?, blocks: 0, bytes: 0 })
    }

    /// Stores a track's blocks and records its manifest CID as a track, in one transaction.
    pub fn put_track(&self, manifest: &Block, blocks: &[Block], added_unix: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(BLOCKS)?;
            for block in blocks.iter().chain(std::iter::once(manifest)) {
                table.insert(block.cid().to_bytes().as_slice(), block.data().as_ref())?;
            }
            let mut tracks = txn.open_table(TRACKS)?;
            tracks.insert(manifest.cid().to_bytes().as_slice(), added_unix)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// The tracks stored, oldest first, with the unix time each was added.
    pub fn tracks(&self) -> Result<Vec<(Cid, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TRACKS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((Cid::try_from(k.value())?, v.value()));
        }
        out.sort_by_key(|(cid, added)| (*added, cid.to_bytes()));
        Ok(out)
    }

    /// Whether `track` is one of the stored tracks.
    pub fn has_track(&self, track: &Cid) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(TRACKS)?.get(track.to_bytes().as_slice())?.is_some())
    }

    /// Records that the replica `peer` (its peer ID bytes) holds `track`.
    pub fn confirm_replica(&self, track: &Cid, peer: &[u8], unix: u64) -> Result<(), StoreError> {
        let mut key = track.to_bytes();
        key.extend_from_slice(peer);
        let txn = self.db.begin_write()?;
        txn.open_table(REPLICAS)?.insert(key.as_slice(), unix)?;
        txn.commit()?;
        Ok(())
    }

    /// The replicas (peer ID bytes) that confirmed `track`, with when.
    pub fn replicas_of(&self, track: &Cid) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        let prefix = track.to_bytes();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REPLICAS)?;
        let mut out = Vec::new();
        for entry in table.range(prefix.as_slice()..)? {
            let (k, v) = entry?;
            let Some(peer) = k.value().strip_prefix(prefix.as_slice()) else { break };
            out.push((peer.to_vec(), v.value()));
        }
        Ok(out)
    }

    /// The stored bytes of `cid`.
    pub fn block(&self, cid: &Cid) -> Result<Option<Bytes>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOCKS)?;
        Ok(table.get(cid.to_bytes().as_slice())?.map(|v| Bytes::copy_from_slice(v.value())))
    }

    /// The database, for other tables of the node's (`crate::receipts`).
    pub(crate) fn database(&self) -> &Database {
        &self.db
    }

    /// The length of the stored block `cid`, read inside `txn`.
    pub(crate) fn block_len_in(&self, txn: &redb::WriteTransaction, cid: &Cid) -> Result<Option<u64>, StoreError> {
        Ok(txn.open_table(BLOCKS)?.get(cid.to_bytes().as_slice())?.map(|v| v.value().len() as u64))
    }

    /// Whether `track` is stored, read inside `txn`.
    pub(crate) fn has_track_in(&self, txn: &redb::WriteTransaction, track: &Cid) -> Result<bool, StoreError> {
        Ok(txn.open_table(TRACKS)?.get(track.to_bytes().as_slice())?.is_some())
    }

    /// Number of blocks stored.
    pub fn block_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(BLOCKS)?.len()?)
    }

    /// Fault injection for tests (feature `fault-injection`): flips one bit of the stored bytes of `cid` without changing
    /// its key, so the store now serves bytes that do not match their CID.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn corrupt_block(&self, cid: &Cid, offset: usize) -> Result<bool, StoreError> {
        let Some(data) = self.block(cid)? else { return Ok(false) };
        let mut data = data.to_vec();
        let i = offset.min(data.len().saturating_sub(1));
        if let Some(byte) = data.get_mut(i) {
            *byte ^= 0x01;
        }
        let txn = self.db.begin_write()?;
        txn.open_table(BLOCKS)?.insert(cid.to_bytes().as_slice(), data.as_slice())?;
        txn.commit()?;
        Ok(true)
    }
}

/// Writes that commit together; dropping a batch without committing discards them.
pub struct Batch {
    txn: redb::WriteTransaction,
    blocks: u64,
    bytes: u64,
}

impl Batch {
    /// Adds a verified block.
    pub fn put(&mut self, block: &Block) -> Result<(), StoreError> {
        self.txn.open_table(BLOCKS)?.insert(block.cid().to_bytes().as_slice(), block.data().as_ref())?;
        self.blocks += 1;
        self.bytes += block.data().len() as u64;
        Ok(())
    }

    /// Records `manifest` as a track added at `added_unix`.
    pub fn add_track(&mut self, manifest: &Cid, added_unix: u64) -> Result<(), StoreError> {
        self.txn.open_table(TRACKS)?.insert(manifest.to_bytes().as_slice(), added_unix)?;
        Ok(())
    }

    /// Blocks and bytes added so far.
    pub fn added(&self) -> (u64, u64) {
        (self.blocks, self.bytes)
    }

    /// Commits every write of the batch at once.
    pub fn commit(self) -> Result<(), StoreError> {
        self.txn.commit()?;
        Ok(())
    }
}

impl Blockstore for Store {
    fn get(&self, cid: &Cid) -> Result<Option<Bytes>, BlockstoreError> {
        self.block(cid).map_err(|e| BlockstoreError(Box::new(e)))
    }

    fn size(&self, cid: &Cid) -> Result<Option<usize>, BlockstoreError> {
        let read = || -> Result<Option<usize>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(BLOCKS)?;
            Ok(table.get(cid.to_bytes().as_slice())?.map(|v| v.value().len()))
        };
        read().map_err(|e| BlockstoreError(Box::new(e)))
    }

    fn put(&self, block: &Block) -> Result<(), BlockstoreError> {
        let write = || -> Result<(), StoreError> {
            let txn = self.db.begin_write()?;
            txn.open_table(BLOCKS)?.insert(block.cid().to_bytes().as_slice(), block.data().as_ref())?;
            txn.commit()?;
            Ok(())
        };
        write().map_err(|e| BlockstoreError(Box::new(e)))
    }

    /// Bitswap's lookups run on tokio's blocking threads: the swarm task never waits on redb.
    fn lookup(&self, cid: &Cid, inline_up_to: Option<usize>) -> LookupFuture {
        let (store, cid) = (self.clone(), *cid);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || lookup_now(&store, &cid, inline_up_to))
                .await
                .map_err(|e| BlockstoreError(Box::new(e)))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antiphon_core::block::{DAG_CBOR, RAW};

    #[test]
    fn track_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Block::from_data(RAW, vec![1u8; 100]).unwrap();
        let manifest = Block::from_data(DAG_CBOR, vec![0xa0]).unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_track(&manifest, std::slice::from_ref(&seg), 42).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tracks().unwrap(), vec![(*manifest.cid(), 42)]);
        assert_eq!(store.block(seg.cid()).unwrap().unwrap(), seg.data());
        assert_eq!(store.block_count().unwrap(), 2);
        assert!(store.corrupt_block(seg.cid(), 10).unwrap());
        assert_ne!(store.block(seg.cid()).unwrap().unwrap(), seg.data());
    }
}
