//! The ledger of signed receipts (`docs/receipts.md`): which peer served how many bytes of this
//! node's tracks to listeners who signed for them.
//!
//! `antiphon_core::receipt::open` checks a receipt's signature and signer; the ledger checks
//! what only the node knows, in one redb write transaction per batch:
//! - the block is one this node stores, and the receipt's size is the block's;
//! - the track is one this node stores;
//! - the receipt was signed within [`Limits::window`] (and not in the future);
//! - its `seq` is above every earlier one of its listener's session (no replay).
//!
//! What a peer can make the node store is bounded: one row per listener session (at most
//! [`Limits::max_sessions`]; rows idle past the window are dropped to make room, which opens no
//! replay because their receipts are too old to be taken anyway) and one row per server credited
//! (at most [`Limits::max_servers`]).

use std::time::Duration;

use antiphon_core::Cid;
use antiphon_core::receipt::{OpenedReceipt, ReceiptError, open};
use libp2p::PeerId;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;

use crate::store::{Store, StoreError};

/// (listener peer ID bytes ++ session, big-endian) -> (highest seq taken, its `at` in ms).
const SESSIONS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("receipt_sessions");
/// Server peer ID bytes -> (bytes, blocks, receipts) credited.
const SERVERS: TableDefinition<&[u8], (u64, u64, u64)> = TableDefinition::new("receipt_servers");

/// What the ledger accepts and keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How old a receipt may be when it arrives.
    pub window: Duration,
    /// How far ahead of this node's clock a receipt may be dated.
    pub ahead: Duration,
    /// Most listener sessions remembered.
    pub max_sessions: u64,
    /// Most servers credited.
    pub max_servers: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10 * 60),
            ahead: Duration::from_secs(60),
            max_sessions: 100_000,
            max_servers: 100_000,
        }
    }
}

/// Why the ledger refused one receipt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// The envelope did not open: bad encoding, bad signature, foreign signer, bad fields.
    #[error(transparent)]
    Invalid(#[from] ReceiptError),
    /// This node does not store the block.
    #[error("this node does not store {0}")]
    UnknownBlock(Cid),
    /// The receipt's size is not the block's.
    #[error("{cid} has {actual} bytes, not {claimed}")]
    WrongSize {
        /// The block.
        cid: Cid,
        /// What the receipt says.
        claimed: u64,
        /// What the block has.
        actual: u64,
    },
    /// This node does not store the track.
    #[error("this node does not store the track {0}")]
    UnknownTrack(Cid),
    /// Signed too long ago, or dated ahead of this node's clock.
    #[error("dated {at} ms, outside the window this node accepts")]
    OutOfWindow {
        /// The receipt's time.
        at: u64,
    },
    /// Its sequence number was taken already (a replay, or a receipt out of order).
    #[error("seq {seq} of this session is not above {last}, the highest taken")]
    Replayed {
        /// The receipt's.
        seq: u64,
        /// The highest taken.
        last: u64,
    },
    /// The ledger holds as many sessions or servers as it may.
    #[error("the ledger is full ({0})")]
    Full(&'static str),
}

impl Refusal {
    /// A short name for the kind of refusal, for `/metrics` and answers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(ReceiptError::BadSignature) => "bad_signature",
            Self::Invalid(ReceiptError::ForeignSigner { .. }) => "foreign_signer",
            Self::Invalid(_) => "invalid",
            Self::UnknownBlock(_) | Self::WrongSize { .. } | Self::UnknownTrack(_) => "unknown_content",
            Self::OutOfWindow { .. } => "out_of_window",
            Self::Replayed { .. } => "replayed",
            Self::Full(_) => "full",
        }
    }
}

/// Every kind [`Refusal::kind`] names, for `/metrics`.
pub const REFUSAL_KINDS: [&str; 7] =
    ["bad_signature", "foreign_signer", "invalid", "unknown_content", "out_of_window", "replayed", "full"];

/// What one server has been credited with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTotal {
    /// The server's peer ID.
    pub peer_id: String,
    /// Bytes of verified blocks.
    pub bytes: u64,
    /// Blocks.
    pub blocks: u64,
    /// Receipts (a block fetched twice counts twice).
    pub receipts: u64,
}

/// The receipts ledger, in the node's store.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    limits: Limits,
    /// Write transactions committed and session-table scans made, to show what a batch costs.
    #[cfg(test)]
    work: std::sync::Arc<Work>,
}

/// What the ledger has done so far (tests only).
#[cfg(test)]
#[derive(Default)]
struct Work {
    commits: std::sync::atomic::AtomicUsize,
    prunes: std::sync::atomic::AtomicUsize,
}

impl Ledger {
    /// Opens the ledger's tables in `store`.
    pub fn open(store: Store, limits: Limits) -> Result<Self, StoreError> {
        let txn = store.database().begin_write()?;
        txn.open_table(SESSIONS)?;
        txn.open_table(SERVERS)?;
        txn.commit()?;
        Ok(Self {
            store,
            limits,
            #[cfg(test)]
            work: Default::default(),
        })
    }

    /// Checks and records a batch of encoded envelopes at `now_ms` (Unix milliseconds): one
    /// result per envelope, in order. CPU- and disk-bound: call it off the async workers.
    ///
    /// Anyone may post a batch, so what one costs is bounded: a batch in which no envelope
    /// opens never touches the database, one that credits nothing commits nothing, and the
    /// session table is scanned for idle rows at most once per batch.
    pub fn record(&self, envelopes: &[&[u8]], now_ms: u64) -> Result<Vec<Result<OpenedReceipt, Refusal>>, StoreError> {
        let opened: Vec<Result<OpenedReceipt, Refusal>> =
            envelopes.iter().map(|e| open(e).map_err(Refusal::from)).collect();
        if opened.iter().all(Result::is_err) {
            return Ok(opened);
        }
        let oldest = now_ms.saturating_sub(self.limits.window.as_millis() as u64);
        let newest = now_ms.saturating_add(self.limits.ahead.as_millis() as u64);
        let txn = self.store.database().begin_write()?;
        let mut out = Vec::with_capacity(opened.len());
        // Whether this transaction changed anything, and whether it has looked for idle rows.
        let (mut changed, mut pruned) = (false, false);
        {
            let mut sessions = txn.open_table(SESSIONS)?;
            let mut servers = txn.open_table(SERVERS)?;
            for result in opened {
                let receipt = match result {
                    Ok(r) => r,
                    Err(e) => {
                        out.push(Err(e));
                        continue;
                    }
                };
                let r = &receipt.receipt;
                if r.at < oldest || r.at > newest {
                    out.push(Err(Refusal::OutOfWindow { at: r.at }));
                    continue;
                }
                match self.store.block_len_in(&txn, &r.block)? {
                    None => {
                        out.push(Err(Refusal::UnknownBlock(r.block)));
                        continue;
                    }
                    Some(actual) if actual != r.bytes => {
                        out.push(Err(Refusal::WrongSize { cid: r.block, claimed: r.bytes, actual }));
                        continue;
                    }
                    Some(_) => {}
                }
                if !self.store.has_track_in(&txn, &r.track)? {
                    out.push(Err(Refusal::UnknownTrack(r.track)));
                    continue;
                }
                let mut key = r.listener.clone();
                key.extend_from_slice(&r.session.to_be_bytes());
                let last = sessions.get(key.as_slice())?.map(|v| v.value());
                if let Some((last, _)) = last
                    && r.seq <= last
                {
                    out.push(Err(Refusal::Replayed { seq: r.seq, last }));
                    continue;
                }
                if last.is_none() && sessions.len()? >= self.limits.max_sessions {
                    if !pruned {
                        pruned = true;
                        #[cfg(test)]
                        self.work.prunes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let before = sessions.len()?;
                        drop_idle_sessions(&mut sessions, oldest)?;
                        changed |= sessions.len()? < before;
                    }
                    if sessions.len()? >= self.limits.max_sessions {
                        out.push(Err(Refusal::Full("listener sessions")));
                        continue;
                    }
                }
                let credited = servers.get(r.server.as_slice())?.map(|v| v.value());
                if credited.is_none() && servers.len()? >= self.limits.max_servers {
                    out.push(Err(Refusal::Full("servers")));
                    continue;
                }
                let (bytes, blocks, receipts) = credited.unwrap_or_default();
                servers.insert(r.server.as_slice(), (bytes + r.bytes, blocks + 1, receipts + 1))?;
                sessions.insert(key.as_slice(), (r.seq, r.at))?;
                changed = true;
                out.push(Ok(receipt));
            }
        }
        if changed {
            txn.commit()?;
            #[cfg(test)]
            self.work.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // Otherwise the transaction is dropped, and aborts: nothing to write, nothing to sync.
        Ok(out)
    }

    /// The servers credited, most bytes first (ties by peer ID bytes), at most `limit`.
    ///
    /// `/metrics` and `GET /receipts` ask for this, and anyone may ask: the table (up to
    /// [`Limits::max_servers`] rows) is read once, keeping only the `limit` best rows, and only
    /// those are turned into peer ID strings.
    pub fn servers(&self, limit: usize) -> Result<Vec<ServerTotal>, StoreError> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let txn = self.store.database().begin_read()?;
        let table = txn.open_table(SERVERS)?;
        // A min-heap of the best rows so far: its top is the worst of them.
        type Row = (Reverse<u64>, Vec<u8>, u64, u64);
        let mut best: BinaryHeap<Row> = BinaryHeap::with_capacity(limit.saturating_add(1).min(1024));
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (bytes, blocks, receipts) = v.value();
            if best.len() == limit
                && best.peek().is_some_and(|worst| (Reverse(bytes), k.value()) >= (worst.0, &worst.1[..]))
            {
                continue;
            }
            best.push((Reverse(bytes), k.value().to_vec(), blocks, receipts));
            if best.len() > limit {
                best.pop();
            }
        }
        Ok(best
            .into_sorted_vec()
            .into_iter()
            .map(|(Reverse(bytes), key, blocks, receipts)| ServerTotal {
                peer_id: PeerId::from_bytes(&key).map(|p| p.to_string()).unwrap_or_default(),
                bytes,
                blocks,
                receipts,
            })
            .collect())
    }

    /// What `server` has been credited with, if anything.
    pub fn server(&self, server: &PeerId) -> Result<Option<ServerTotal>, StoreError> {
        let txn = self.store.database().begin_read()?;
        let table = txn.open_table(SERVERS)?;
        Ok(table.get(server.to_bytes().as_slice())?.map(|v| {
            let (bytes, blocks, receipts) = v.value();
            ServerTotal { peer_id: server.to_string(), bytes, blocks, receipts }
        }))
    }
}

/// Removes the sessions whose last receipt is older than `oldest`: their receipts would be
/// refused as too old anyway.
fn drop_idle_sessions(sessions: &mut redb::Table<&[u8], (u64, u64)>, oldest: u64) -> Result<(), StoreError> {
    sessions.retain(|_, (_, at)| at >= oldest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use antiphon_core::Block;
    use antiphon_core::block::{DAG_CBOR, RAW};
    use antiphon_core::receipt::Receipt;
    use libp2p::identity::Keypair;

    const NOW: u64 = 1_800_000_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        block: Block,
        track: Cid,
        listener: Keypair,
        server: PeerId,
    }

    fn fixture(limits: Limits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let block = Block::from_data(RAW, vec![3u8; 5000]).unwrap();
        let manifest = Block::from_data(DAG_CBOR, vec![0xa0]).unwrap();
        store.put_track(&manifest, std::slice::from_ref(&block), 1).unwrap();
        let ledger = Ledger::open(store, limits).unwrap();
        Fixture {
            _dir: dir,
            ledger,
            block,
            track: *manifest.cid(),
            listener: Keypair::generate_ed25519(),
            server: Keypair::generate_ed25519().public().to_peer_id(),
        }
    }

    impl Fixture {
        fn receipt(&self, session: u64, seq: u64) -> Receipt {
            Receipt {
                block: *self.block.cid(),
                bytes: self.block.data().len() as u64,
                server: self.server.to_bytes(),
                listener: self.listener.public().to_peer_id().to_bytes(),
                track: self.track,
                at: NOW,
                session,
                seq,
            }
        }

        fn record(&self, receipts: &[Receipt]) -> Vec<Result<OpenedReceipt, Refusal>> {
            let signed: Vec<Vec<u8>> = receipts.iter().map(|r| r.sign(&self.listener).unwrap()).collect();
            let refs: Vec<&[u8]> = signed.iter().map(Vec::as_slice).collect();
            self.ledger.record(&refs, NOW).unwrap()
        }
    }

    #[test]
    fn receipts_credit_their_server() {
        let f = fixture(Limits::default());
        let out = f.record(&[f.receipt(1, 1), f.receipt(1, 2), f.receipt(2, 1)]);
        assert!(out.iter().all(Result::is_ok), "{out:?}");
        let total = f.ledger.server(&f.server).unwrap().unwrap();
        assert_eq!((total.bytes, total.blocks, total.receipts), (15_000, 3, 3));
        assert_eq!(f.ledger.servers(10).unwrap(), vec![total]);
    }

    #[test]
    fn the_servers_credited_most_come_first_and_the_list_is_cut_at_the_limit() {
        let f = fixture(Limits::default());
        let servers: Vec<PeerId> = (0..6).map(|_| Keypair::generate_ed25519().public().to_peer_id()).collect();
        // Server i is credited i + 1 receipts of 5000 bytes; servers 4 and 5 tie at 5 receipts.
        let mut receipts = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            for _ in 0..(i + 1).min(5) {
                let mut r = f.receipt(i as u64 + 1, receipts.len() as u64 + 1);
                r.server = server.to_bytes();
                receipts.push(r);
            }
        }
        assert!(f.record(&receipts).iter().all(Result::is_ok));
        let mut tied = [servers[4], servers[5]];
        tied.sort_by_key(|p| p.to_bytes());
        let expected: Vec<(String, u64)> = [tied[0], tied[1], servers[3], servers[2]]
            .iter()
            .zip([25_000, 25_000, 20_000, 15_000])
            .map(|(p, b)| (p.to_string(), b))
            .collect();
        let got: Vec<(String, u64)> = f.ledger.servers(4).unwrap().into_iter().map(|s| (s.peer_id, s.bytes)).collect();
        assert_eq!(got, expected);
        assert_eq!(f.ledger.servers(100).unwrap().len(), 6);
        assert!(f.ledger.servers(0).unwrap().is_empty());
    }

    #[test]
    fn a_replayed_receipt_is_refused_and_not_counted() {
        let f = fixture(Limits::default());
        assert!(f.record(&[f.receipt(1, 5)])[0].is_ok());
        let again = f.record(&[f.receipt(1, 5), f.receipt(1, 4)]);
        assert_eq!(again[0], Err(Refusal::Replayed { seq: 5, last: 5 }));
        assert_eq!(again[1], Err(Refusal::Replayed { seq: 4, last: 5 }));
        assert_eq!(f.ledger.server(&f.server).unwrap().unwrap().receipts, 1);
    }

    #[test]
    fn receipts_for_what_the_node_does_not_hold_are_refused() {
        let f = fixture(Limits::default());
        let mut wrong_size = f.receipt(1, 1);
        wrong_size.bytes += 1;
        let mut unknown_block = f.receipt(1, 2);
        unknown_block.block = *Block::from_data(RAW, vec![9u8; 10]).unwrap().cid();
        let mut unknown_track = f.receipt(1, 3);
        unknown_track.track = *f.block.cid();
        let mut old = f.receipt(1, 4);
        old.at = NOW - 11 * 60 * 1000;
        let mut ahead = f.receipt(1, 5);
        ahead.at = NOW + 5 * 60 * 1000;
        let out = f.record(&[wrong_size, unknown_block, unknown_track, old, ahead]);
        let kinds: Vec<_> = out.iter().map(|r| r.as_ref().unwrap_err().kind()).collect();
        assert_eq!(kinds, ["unknown_content", "unknown_content", "unknown_content", "out_of_window", "out_of_window"]);
        assert_eq!(f.ledger.server(&f.server).unwrap(), None);
    }

    #[test]
    fn what_a_peer_can_make_the_ledger_keep_is_bounded() {
        let f = fixture(Limits { max_sessions: 2, max_servers: 1, ..Limits::default() });
        let out = f.record(&[f.receipt(1, 1), f.receipt(2, 1), f.receipt(3, 1)]);
        assert!(out[0].is_ok() && out[1].is_ok());
        assert_eq!(out[2], Err(Refusal::Full("listener sessions")));
        let mut other_server = f.receipt(1, 2);
        other_server.server = Keypair::generate_ed25519().public().to_peer_id().to_bytes();
        assert_eq!(f.record(&[other_server])[0], Err(Refusal::Full("servers")));
    }

    #[test]
    fn a_batch_that_credits_nothing_writes_nothing() {
        let f = fixture(Limits::default());
        let commits = || f.ledger.work.commits.load(std::sync::atomic::Ordering::Relaxed);
        // Forged: signed by a key that is not the listener's. No envelope opens.
        let forged: Vec<Vec<u8>> =
            (1..=50).map(|seq| f.receipt(1, seq).sign(&Keypair::generate_ed25519()).unwrap()).collect();
        let refs: Vec<&[u8]> = forged.iter().map(Vec::as_slice).collect();
        assert!(f.ledger.record(&refs, NOW).unwrap().iter().all(Result::is_err));
        // Signed, but for a block this node does not hold.
        let mut unknown = f.receipt(1, 1);
        unknown.block = *Block::from_data(RAW, vec![9u8; 10]).unwrap().cid();
        assert!(f.record(&[unknown])[0].is_err());
        assert_eq!(commits(), 0, "refused batches committed a write transaction");
        assert!(f.record(&[f.receipt(1, 1)])[0].is_ok());
        assert_eq!(commits(), 1);
    }

    #[test]
    fn a_full_session_table_is_scanned_once_per_batch() {
        let f = fixture(Limits { max_sessions: 2, ..Limits::default() });
        assert!(f.record(&[f.receipt(1, 1), f.receipt(2, 1)]).iter().all(Result::is_ok));
        // A batch of new sessions while the table is full of live ones: every receipt is
        // refused, and the table is looked through for idle rows once, not once per receipt.
        let out = f.record(&(3..=40).map(|session| f.receipt(session, 1)).collect::<Vec<_>>());
        assert!(out.iter().all(|r| *r == Err(Refusal::Full("listener sessions"))), "{out:?}");
        assert_eq!(f.ledger.work.prunes.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn idle_sessions_make_room() {
        let f = fixture(Limits { max_sessions: 1, ..Limits::default() });
        let mut old = f.receipt(1, 1);
        old.at = NOW - 9 * 60 * 1000;
        assert!(f.record(&[old])[0].is_ok());
        // Ten minutes on, session 1's last receipt is past the window: session 2 takes its row.
        let later = NOW + 2 * 60 * 1000;
        let mut next = f.receipt(2, 1);
        next.at = later;
        let signed = next.sign(&f.listener).unwrap();
        assert!(f.ledger.record(&[signed.as_slice()], later).unwrap()[0].is_ok());
    }
}
