//! The Bitswap `NetworkBehaviour`: client requests and server ledgers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::block::Cid;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use futures_timer::Delay;
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use web_time::Instant;

use super::handler::{FromBehaviour, Handler, InboundError, ToBehaviour};
use super::message::{CidPrefix, Message, Presence, ReceivedBlock, WantEntry, WantType};
use super::upload::{Admission, UploadBudget, Uploads};
use crate::block::{Block, VerifyError};
use crate::limits::{MAX_BLOCK_BYTES, MAX_CID_BYTES, MAX_MESSAGE_BYTES, MAX_WANTLIST_ENTRIES};
use crate::store::{Blockstore, BlockstoreError, Lookup, LookupFuture};

/// Settings of the Bitswap behaviour.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// How long a request waits for its block before it fails with [`RequestError::Timeout`].
    pub request_timeout: Duration,
    /// Most client requests in flight at once.
    pub max_requests: usize,
    /// Bytes of blocks sent to one peer and not yet written to its stream past which no new
    /// reply is built for it (a reply under way may overshoot by one block).
    pub max_outstanding_bytes_per_peer: usize,
    /// How long writing one message to a peer may take; past it the message fails (its bytes
    /// leave the budgets above) and the stream is dropped.
    pub write_timeout: Duration,
    /// The same across every peer: once this many bytes of replies are on their way, no new
    /// reply is built for anyone until some are written (or their writes time out).
    pub max_outstanding_bytes: usize,
    /// Hand sha2-256 blocks to the caller to hash ([`Event::HashNeeded`], answered with
    /// [`Behaviour::deliver_hashed`]) instead of hashing them here. The browser uses this to
    /// hash with WebCrypto, which is several times faster than sha2 compiled to wasm.
    pub external_sha2_256: bool,
    /// Limits on what this peer uploads ([`UploadBudget`]); `None` (the default, a creator
    /// node's) serves every peer as fast as the budgets above allow.
    pub upload: Option<UploadBudget>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_requests: 1024,
            max_outstanding_bytes_per_peer: 8 * 1024 * 1024,
            max_outstanding_bytes: 128 * 1024 * 1024,
            write_timeout: super::handler::WRITE_TIMEOUT,
            external_sha2_256: false,
            upload: None,
        }
    }
}

impl Config {
    /// Sets [`Config::request_timeout`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`Config::external_sha2_256`].
    pub fn with_external_sha2_256(mut self, external: bool) -> Self {
        self.external_sha2_256 = external;
        self
    }

    /// Sets [`Config::max_outstanding_bytes_per_peer`] and [`Config::max_outstanding_bytes`].
    pub fn with_max_outstanding_bytes(mut self, per_peer: usize, total: usize) -> Self {
        self.max_outstanding_bytes_per_peer = per_peer;
        self.max_outstanding_bytes = total;
        self
    }

    /// Sets [`Config::upload`].
    pub fn with_upload_budget(mut self, budget: Option<UploadBudget>) -> Self {
        self.upload = budget;
        self
    }

    /// Sets [`Config::write_timeout`].
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`Config::max_requests`].
    pub fn with_max_requests(mut self, max: usize) -> Self {
        self.max_requests = max;
        self
    }
}

/// How a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WantMode {
    /// want-block to every peer asked: the fastest when the peers are known to have it.
    #[default]
    Block,
    /// want-have to every peer asked, then want-block to the first that answers HAVE (small
    /// blocks come back inlined in the HAVE answer): no peer sends a block nobody will use.
    HaveFirst,
}

/// Counters of what the behaviour has moved, for metrics and peer scoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Wanted blocks received and verified.
    pub blocks_received: u64,
    /// Bytes of those blocks.
    pub bytes_received: u64,
    /// Blocks received that verified but nobody wanted; dropped.
    pub unwanted_blocks: u64,
    /// Blocks received whose bytes matched no CID wanted from their sender; dropped.
    pub corrupt_blocks: u64,
    /// Blocks sent to peers.
    pub blocks_sent: u64,
    /// Bytes of those blocks.
    pub bytes_sent: u64,
    /// HAVE answers received.
    pub haves_received: u64,
    /// DONT_HAVE answers received.
    pub dont_haves_received: u64,
}

/// Whom a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Only these peers (they must be connected).
    Peers(Vec<PeerId>),
    /// Every peer connected when the request is made.
    AnyConnected,
}

/// Identifies a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

/// Why a request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// None of the requested peers is connected.
    #[error("no connected peer to ask")]
    NoPeers,
    /// Every peer asked answered DONT_HAVE, disconnected or could not be reached.
    #[error("no peer asked has the block")]
    NotFound,
    /// No block arrived in time.
    #[error("no block arrived within the request timeout")]
    Timeout,
    /// Too many requests are in flight.
    #[error("too many bitswap requests in flight")]
    TooManyRequests,
    /// The peer sent bytes for this CID that do not hash to it.
    #[error("peer {peer} sent a corrupt block: {error}")]
    Corrupt {
        /// The sender.
        peer: PeerId,
        /// What the verification found.
        error: VerifyError,
    },
}

/// What the behaviour reports.
#[derive(Debug)]
pub enum Event {
    /// A wanted block arrived and verified.
    Block {
        /// The request it answers.
        request: RequestId,
        /// The verified block.
        block: Block,
        /// Who sent it.
        peer: PeerId,
        /// Time from the want to the block.
        latency: Duration,
    },
    /// A request failed.
    Failed {
        /// The request.
        request: RequestId,
        /// The CID it wanted.
        cid: Cid,
        /// Why.
        error: RequestError,
    },
    /// A reply carrying blocks was queued for a peer (the server side's accounting).
    Served {
        /// To whom.
        peer: PeerId,
        /// Blocks in the reply.
        blocks: usize,
        /// Their bytes.
        bytes: u64,
    },
    /// A peer answered HAVE.
    Have {
        /// Who.
        peer: PeerId,
        /// For what.
        cid: Cid,
    },
    /// A peer answered DONT_HAVE.
    DontHave {
        /// Who.
        peer: PeerId,
        /// For what.
        cid: Cid,
    },
    /// A peer sent a block matching none of the CIDs wanted from it: score it down.
    CorruptBlock {
        /// The sender.
        peer: PeerId,
        /// Size of the bad block.
        bytes: usize,
    },
    /// With [`Config::external_sha2_256`]: a block arrived whose sha2-256 digest the caller
    /// must compute and hand back with [`Behaviour::deliver_hashed`]. Nothing about it is
    /// trusted until then.
    HashNeeded {
        /// The sender.
        peer: PeerId,
        /// The block as received.
        block: ReceivedBlock,
    },
    /// A peer sent a block nobody asked for; it was dropped.
    UnwantedBlock {
        /// The sender.
        peer: PeerId,
        /// The block's CID.
        cid: Cid,
    },
    /// A peer's stream carried something unreadable and was reset.
    ProtocolViolation {
        /// The peer.
        peer: PeerId,
        /// What was wrong.
        error: InboundError,
    },
}

struct Request {
    cid: Cid,
    mode: WantMode,
    /// Peers asked that have not yet said DONT_HAVE.
    asked: Vec<PeerId>,
    /// In [`WantMode::HaveFirst`], the peer a want-block went to, once one answered HAVE.
    block_from: Option<PeerId>,
    /// In [`WantMode::HaveFirst`], peers that answered HAVE, in order.
    haves: Vec<PeerId>,
    started: Instant,
}

/// A corrupt block from `peer` that could be the answer to one of `candidates`: once all but
/// one of them arrive intact, the remaining one is the CID the corrupt block claimed to be.
struct Suspicion {
    peer: PeerId,
    candidates: Vec<Cid>,
    error: VerifyError,
}

const MAX_SUSPICIONS: usize = 64;

/// Wantlist entries one batch of lookups takes at most from one peer: read at once (on the
/// store's own threads for a disk store), then sent as one or a few replies.
const LOOKUPS_PER_BATCH: usize = 4;

/// Batches being read at once, every peer's together (at most one per peer).
const MAX_BATCHES: usize = 8;

/// Replies waiting for their connection past which no new lookup starts.
const MAX_OUTBOX_WHILE_SERVING: usize = 8;

/// A batch of lookups for one peer: each entry with what the store found for it.
type Batch = futures::future::BoxFuture<'static, (PeerId, Vec<(WantEntry, Result<Lookup, BlockstoreError>)>)>;

/// Blocks handed out for external hashing at once (at most 2 MiB each).
const MAX_PENDING_HASHES: usize = 16;

/// Deliveries remembered to recognise duplicates.
const MAX_RECENT: usize = 256;

/// Blocks up to this size are sent in answer to a want-have instead of a HAVE (the spec's
/// suggestion: a HAVE would cost about as much).
pub const INLINE_HAVE_BYTES: usize = 1024;

/// A reply stops taking blocks once it holds this many bytes. The block that crosses the mark
/// is still included (it was already read), so a reply holds at most this plus one block plus
/// a full wantlist's worth of presences, which stays under the message limit:
const REPLY_TARGET_BYTES: usize = 1024 * 1024;
const _: () =
    assert!(REPLY_TARGET_BYTES + MAX_BLOCK_BYTES + MAX_WANTLIST_ENTRIES * (MAX_CID_BYTES + 16) < MAX_MESSAGE_BYTES);

/// What one remote peer wants from us, in arrival order, and what we owe it.
///
/// A cancel costs O(1): it only forgets the CID in `wanted`; the entry left behind in `wants`
/// is skipped when it comes up (its generation no longer matches), and `wants` is compacted
/// once such leftovers make up half of it, so a flood of want/cancel pairs cannot grow it or
/// make any one entry cost more than a constant amount of work on average.
#[derive(Default)]
struct Ledger {
    /// Entries in arrival order, each with the generation it was wanted under.
    wants: VecDeque<(WantEntry, u64)>,
    /// The CIDs wanted now, with their live entry's generation.
    wanted: HashMap<Cid, u64>,
    next_generation: u64,
    outstanding: usize,
    /// want-haves without send_dont_have for blocks we lacked: answered HAVE when the block
    /// arrives ([`Behaviour::block_added`]), as long as the peer does not cancel them.
    waiting: HashSet<Cid>,
    /// Queue entries looked at so far, to show what a flood costs.
    #[cfg(test)]
    steps: usize,
}

impl Ledger {
    fn clear(&mut self) {
        self.wants.clear();
        self.wanted.clear();
        self.waiting.clear();
    }

    /// Entries wanted now.
    fn len(&self) -> usize {
        self.wanted.len()
    }

    fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Applies one wantlist entry, keeping at most [`MAX_WANTLIST_ENTRIES`].
    fn apply(&mut self, entry: &WantEntry) {
        if entry.cancel {
            self.wanted.remove(&entry.cid);
            self.waiting.remove(&entry.cid);
        } else if self.wanted.contains_key(&entry.cid) || self.wanted.len() < MAX_WANTLIST_ENTRIES {
            // A later entry for a CID replaces the earlier one (a want-block after a want-have,
            // say): the earlier one's queue element is left behind as stale.
            let generation = self.next_generation;
            self.next_generation += 1;
            self.wanted.insert(entry.cid, generation);
            self.wants.push_back((entry.clone(), generation));
            if self.wants.len() > 2 * MAX_WANTLIST_ENTRIES {
                #[cfg(test)]
                {
                    self.steps += self.wants.len();
                }
                let wanted = &self.wanted;
                self.wants.retain(|(e, g)| wanted.get(&e.cid) == Some(g));
            }
        }
    }

    fn pop(&mut self) -> Option<WantEntry> {
        while let Some((entry, generation)) = self.wants.pop_front() {
            #[cfg(test)]
            {
                self.steps += 1;
            }
            if self.wanted.get(&entry.cid) == Some(&generation) {
                self.wanted.remove(&entry.cid);
                return Some(entry);
            }
        }
        None
    }
}

/// The Bitswap behaviour; see the [module documentation](super).
pub struct Behaviour<S: Blockstore> {
    config: Config,
    store: S,
    connections: HashMap<PeerId, HashSet<ConnectionId>>,
    next_request: u64,
    requests: HashMap<RequestId, Request>,
    by_cid: HashMap<Cid, Vec<RequestId>>,
    suspicions: VecDeque<Suspicion>,
    ledgers: HashMap<PeerId, Ledger>,
    serve_order: VecDeque<PeerId>,
    /// Batches of lookups being read, and the peers they are for.
    reading: FuturesUnordered<Batch>,
    reading_for: HashSet<PeerId>,
    outbox: VecDeque<(PeerId, Message)>,
    events: VecDeque<Event>,
    timer: Option<Delay>,
    stats: Stats,
    /// Blocks recently delivered, by sender: a second copy of one is a duplicate, not a
    /// corrupt answer to another request.
    recent: VecDeque<(PeerId, Cid)>,
    /// [`Event::HashNeeded`] emitted and not yet answered with [`Behaviour::deliver_hashed`].
    pending_hashes: usize,
    /// Bytes of replies handed to connections and not yet written, every peer's together.
    outstanding: usize,
    /// The upload budget's state, when there is one.
    uploads: Option<Uploads>,
    /// CIDs each peer is asked to say HAVE for when it gets them ([`Behaviour::watch`]).
    watching: HashMap<PeerId, HashSet<Cid>>,
    /// Wakes the behaviour when a peer's upload budget lets it be served again: the earliest
    /// such moment, and its timer.
    upload_wake: Option<(Instant, Delay)>,
}

impl<S: Blockstore> Behaviour<S> {
    /// A behaviour serving from and fetching for `store`.
    pub fn new(store: S, config: Config) -> Self {
        Self {
            config: config.clone(),
            store,
            connections: HashMap::new(),
            next_request: 0,
            requests: HashMap::new(),
            by_cid: HashMap::new(),
            suspicions: VecDeque::new(),
            ledgers: HashMap::new(),
            serve_order: VecDeque::new(),
            reading: FuturesUnordered::new(),
            reading_for: HashSet::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            timer: None,
            stats: Stats::default(),
            recent: VecDeque::new(),
            pending_hashes: 0,
            outstanding: 0,
            uploads: config.upload.map(Uploads::new),
            watching: HashMap::new(),
            upload_wake: None,
        }
    }

    /// The blockstore.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Number of client requests in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// What has moved so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Entries of every peer's wantlist held here, in all.
    pub fn peer_wants(&self) -> usize {
        self.ledgers.values().map(Ledger::len).sum()
    }

    /// Entries of `peer`'s wantlist held here (at most [`MAX_WANTLIST_ENTRIES`]).
    pub fn wantlist_len(&self, peer: &PeerId) -> usize {
        self.ledgers.get(peer).map_or(0, Ledger::len)
    }

    /// Bytes of blocks handed to connections and not yet written, for every peer.
    pub fn outstanding_bytes(&self) -> usize {
        self.outstanding
    }

    /// Asks `peer` to say HAVE for each of `cids` it holds, now or whenever it gets one later
    /// (want-have without send_dont_have, which a Bitswap 1.2 peer keeps in its wantlist).
    /// The answers come as [`Event::Have`]. At most [`MAX_WANTLIST_ENTRIES`] CIDs are watched
    /// per peer; the watch ends when the peer disconnects or this peer gets the block.
    pub fn watch(&mut self, peer: PeerId, cids: &[Cid]) {
        if !self.connections.contains_key(&peer) {
            return;
        }
        let watched = self.watching.entry(peer).or_default();
        let mut msg = Message::default();
        for cid in cids {
            if watched.len() >= MAX_WANTLIST_ENTRIES {
                break;
            }
            if watched.insert(*cid) {
                msg.wantlist.push(watch_entry(*cid));
            }
        }
        if !msg.wantlist.is_empty() {
            self.outbox.push_back((peer, msg));
        }
    }

    /// `cid` was added to the store: peers that asked to hear of it (want-have without
    /// send_dont_have, when it was missing) are told HAVE, and nobody is watched for it any
    /// more.
    pub fn block_added(&mut self, cid: &Cid) {
        for (peer, ledger) in &mut self.ledgers {
            if ledger.waiting.remove(cid) {
                let msg = Message { presences: vec![Presence { cid: *cid, have: true }], ..Message::default() };
                self.outbox.push_back((*peer, msg));
            }
        }
        for (peer, watched) in &mut self.watching {
            if watched.remove(cid) {
                self.outbox.push_back((*peer, want(*cid, 0, true)));
            }
        }
    }

    /// What replaces a want for `cid` at `peer` once the request is over: back to watching
    /// it when it is watched, otherwise a cancel.
    fn withdraw(&mut self, peer: PeerId, cid: Cid) {
        let watched = self.watching.get(&peer).is_some_and(|w| w.contains(&cid));
        let msg = if watched {
            Message { wantlist: vec![watch_entry(cid)], ..Message::default() }
        } else {
            want(cid, 0, true)
        };
        self.outbox.push_back((peer, msg));
    }

    /// Asks `source` for the block `cid` with a want-block. The answer comes as an
    /// [`Event::Block`] or [`Event::Failed`] carrying the returned id.
    pub fn get(&mut self, cid: Cid, source: Source) -> RequestId {
        self.get_with(cid, source, WantMode::Block)
    }

    /// Asks `source` for the block `cid` the way `mode` says.
    pub fn get_with(&mut self, cid: Cid, source: Source, mode: WantMode) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        if self.requests.len() >= self.config.max_requests {
            self.events.push_back(Event::Failed { request: id, cid, error: RequestError::TooManyRequests });
            return id;
        }
        let asked: Vec<PeerId> = match source {
            Source::Peers(peers) => peers.into_iter().filter(|p| self.connections.contains_key(p)).collect(),
            Source::AnyConnected => self.connections.keys().copied().collect(),
        };
        if asked.is_empty() {
            self.events.push_back(Event::Failed { request: id, cid, error: RequestError::NoPeers });
            return id;
        }
        let priority = i32::MAX - (id.0 % i32::MAX as u64) as i32;
        let want_type = match mode {
            WantMode::Block => WantType::Block,
            WantMode::HaveFirst => WantType::Have,
        };
        for peer in &asked {
            self.outbox.push_back((*peer, want_of(cid, priority, want_type)));
        }
        let request = Request { cid, mode, asked, block_from: None, haves: Vec::new(), started: Instant::now() };
        self.requests.insert(id, request);
        self.by_cid.entry(cid).or_default().push(id);
        id
    }

    /// Withdraws a request; peers asked receive a cancel.
    pub fn cancel(&mut self, id: RequestId) {
        if let Some(req) = self.remove_request(id) {
            for peer in req.asked {
                self.withdraw(peer, req.cid);
            }
        }
    }

    fn remove_request(&mut self, id: RequestId) -> Option<Request> {
        let req = self.requests.remove(&id)?;
        if let Some(ids) = self.by_cid.get_mut(&req.cid) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_cid.remove(&req.cid);
            }
        }
        Some(req)
    }

    fn fail(&mut self, id: RequestId, error: RequestError) {
        if let Some(req) = self.remove_request(id) {
            for peer in &req.asked {
                self.withdraw(*peer, req.cid);
            }
            self.events.push_back(Event::Failed { request: id, cid: req.cid, error });
        }
    }

    /// Drops `peer` from the request; fails it when nobody is left to ask.
    fn peer_gave_up(&mut self, id: RequestId, peer: PeerId) {
        let Some(req) = self.requests.get_mut(&id) else { return };
        req.asked.retain(|p| *p != peer);
        let cid = req.cid;
        // Its answer ended the want; a watched CID is watched again.
        if self.watching.get(&peer).is_some_and(|w| w.contains(&cid)) {
            self.withdraw(peer, cid);
        }
        let Some(req) = self.requests.get_mut(&id) else { return };
        if req.asked.is_empty() {
            self.fail(id, RequestError::NotFound);
        }
    }

    fn on_message(&mut self, peer: PeerId, msg: Message) {
        self.on_wantlist(peer, &msg);
        for block in msg.blocks {
            self.on_block(peer, block);
        }
        for presence in msg.presences {
            self.on_presence(peer, presence);
        }
    }

    fn on_wantlist(&mut self, peer: PeerId, msg: &Message) {
        if msg.wantlist.is_empty() && !msg.full_wantlist {
            return;
        }
        let ledger = self.ledgers.entry(peer).or_default();
        if msg.full_wantlist {
            ledger.clear();
        }
        for entry in &msg.wantlist {
            ledger.apply(entry);
        }
        if !ledger.is_empty() && !self.serve_order.contains(&peer) {
            self.serve_order.push_back(peer);
        }
    }

    fn on_block(&mut self, peer: PeerId, received: ReceivedBlock) {
        // Only a block that could answer a request of ours goes out to be hashed, and only up
        // to MAX_PENDING_HASHES at once: a peer flooding unasked blocks cannot grow that queue,
        // and whatever is not handed out is hashed here as usual.
        if self.config.external_sha2_256
            && received.prefix.mh_code == crate::block::SHA2_256
            && self.pending_hashes < MAX_PENDING_HASHES
            && self.requests.values().any(|r| r.asked.contains(&peer) && CidPrefix::of(&r.cid) == received.prefix)
        {
            self.pending_hashes += 1;
            self.events.push_back(Event::HashNeeded { peer, block: received });
            return;
        }
        let prefix = received.prefix;
        let len = received.data.len();
        let outcome = received.into_block();
        self.on_hashed(peer, prefix, len, outcome);
    }

    /// Completes an [`Event::HashNeeded`]: `digest` is the sha2-256 of `block.data`, or `None`
    /// to have it hashed here after all.
    pub fn deliver_hashed(&mut self, peer: PeerId, block: ReceivedBlock, digest: Option<[u8; 32]>) {
        self.pending_hashes = self.pending_hashes.saturating_sub(1);
        let prefix = block.prefix;
        let len = block.data.len();
        let outcome = match digest {
            Some(d) => block.into_block_with_sha2_256(&d),
            None => block.into_block(),
        };
        self.on_hashed(peer, prefix, len, outcome);
    }

    fn on_hashed(&mut self, peer: PeerId, prefix: CidPrefix, len: usize, outcome: Result<Block, VerifyError>) {
        if let Ok(block) = &outcome {
            let matching: Vec<RequestId> = self
                .by_cid
                .get(block.cid())
                .into_iter()
                .flatten()
                .copied()
                .filter(|id| self.requests.get(id).is_some_and(|r| r.asked.contains(&peer)))
                .collect();
            if !matching.is_empty() {
                for id in matching {
                    if let Some(req) = self.remove_request(id) {
                        for other in req.asked.iter().filter(|p| **p != peer) {
                            self.outbox.push_back((*other, want(req.cid, 0, true)));
                        }
                        self.stats.blocks_received += 1;
                        self.stats.bytes_received += block.data().len() as u64;
                        self.events.push_back(Event::Block {
                            request: id,
                            block: block.clone(),
                            peer,
                            latency: req.started.elapsed(),
                        });
                    }
                }
                if self.recent.len() >= MAX_RECENT {
                    self.recent.pop_front();
                }
                self.recent.push_back((peer, *block.cid()));
                self.resolve_suspicions(peer, *block.cid());
                return;
            }
            if self.recent.contains(&(peer, *block.cid())) {
                // A second copy of a block already delivered (we asked twice, or the peer
                // answered twice): harmless.
                self.stats.unwanted_blocks += 1;
                self.events.push_back(Event::UnwantedBlock { peer, cid: *block.cid() });
                return;
            }
        }
        // Not a wanted block. If it carries the prefix of CIDs we asked this peer for, it is a
        // corrupt answer to one of them.
        let candidates: Vec<Cid> = self
            .requests
            .values()
            .filter(|r| r.asked.contains(&peer) && CidPrefix::of(&r.cid) == prefix)
            .map(|r| r.cid)
            .collect();
        match outcome {
            Ok(block) if candidates.is_empty() => {
                self.stats.unwanted_blocks += 1;
                self.events.push_back(Event::UnwantedBlock { peer, cid: *block.cid() });
            }
            _ => {
                self.stats.corrupt_blocks += 1;
                self.events.push_back(Event::CorruptBlock { peer, bytes: len });
                if candidates.is_empty() {
                    return;
                }
                let error = match outcome {
                    Ok(block) => VerifyError::Mismatch { cid: candidates[0], computed: *block.cid() },
                    Err(e) => e,
                };
                if self.suspicions.len() >= MAX_SUSPICIONS {
                    self.suspicions.pop_front();
                }
                self.suspicions.push_back(Suspicion { peer, candidates, error });
                self.settle_suspicions();
            }
        }
    }

    fn resolve_suspicions(&mut self, peer: PeerId, cid: Cid) {
        for s in self.suspicions.iter_mut().filter(|s| s.peer == peer) {
            s.candidates.retain(|c| *c != cid);
        }
        self.settle_suspicions();
    }

    /// Fails the request named by every suspicion narrowed down to a single CID.
    fn settle_suspicions(&mut self) {
        let mut settled = Vec::new();
        self.suspicions.retain(|s| match s.candidates.as_slice() {
            [cid] => {
                settled.push((s.peer, *cid, s.error.clone()));
                false
            }
            [] => false,
            _ => true,
        });
        for (peer, cid, error) in settled {
            let error = match error {
                VerifyError::Mismatch { computed, .. } => VerifyError::Mismatch { cid, computed },
                other => other,
            };
            let ids: Vec<RequestId> = self.by_cid.get(&cid).into_iter().flatten().copied().collect();
            for id in ids {
                if self.requests.get(&id).is_some_and(|r| r.asked.contains(&peer)) {
                    self.fail(id, RequestError::Corrupt { peer, error: error.clone() });
                }
            }
        }
    }

    fn on_presence(&mut self, peer: PeerId, presence: Presence) {
        let ids: Vec<RequestId> = self.by_cid.get(&presence.cid).into_iter().flatten().copied().collect();
        if presence.have {
            self.stats.haves_received += 1;
            self.events.push_back(Event::Have { peer, cid: presence.cid });
            for id in ids {
                let Some(req) = self.requests.get_mut(&id) else { continue };
                if req.mode != WantMode::HaveFirst || !req.asked.contains(&peer) || req.haves.contains(&peer) {
                    continue;
                }
                req.haves.push(peer);
                if req.block_from.is_none() {
                    req.block_from = Some(peer);
                    self.outbox.push_back((peer, want(req.cid, i32::MAX, false)));
                }
            }
            return;
        }
        self.stats.dont_haves_received += 1;
        self.events.push_back(Event::DontHave { peer, cid: presence.cid });
        for id in ids {
            // A peer that said HAVE and then DONT_HAVE to the want-block lost the block: ask
            // the next peer that said HAVE.
            if let Some(req) = self.requests.get_mut(&id)
                && req.block_from == Some(peer)
            {
                req.haves.retain(|p| *p != peer);
                req.block_from = req.haves.first().copied();
                if let Some(next) = req.block_from {
                    self.outbox.push_back((next, want(req.cid, i32::MAX, false)));
                }
            }
            self.peer_gave_up(id, peer);
        }
    }

    /// `bytes` of replies to `peer` are no longer on their way (written, or failed).
    fn settled(&mut self, peer: &PeerId, bytes: usize) {
        if let Some(ledger) = self.ledgers.get_mut(peer) {
            let bytes = bytes.min(ledger.outstanding);
            ledger.outstanding -= bytes;
            self.outstanding = self.outstanding.saturating_sub(bytes);
        }
    }

    fn on_send_failed(&mut self, peer: PeerId, msg: Message) {
        self.settled(&peer, msg.block_bytes());
        for entry in msg.wantlist.iter().filter(|e| !e.cancel) {
            let ids: Vec<RequestId> = self.by_cid.get(&entry.cid).into_iter().flatten().copied().collect();
            for id in ids {
                self.peer_gave_up(id, peer);
            }
        }
    }

    /// Starts lookups for the next peers in round-robin order that have wants pending, no
    /// batch being read, and room under their outstanding-bytes budget (and the total's).
    fn start_reads(&mut self) {
        let max_out = self.config.max_outstanding_bytes_per_peer;
        let now = Instant::now();
        let mut busy: Vec<(PeerId, Vec<WantEntry>)> = Vec::new();
        let mut wake: Option<Duration> = None;
        for _ in 0..self.serve_order.len() {
            if self.reading.len() >= MAX_BATCHES || self.outstanding >= self.config.max_outstanding_bytes {
                return;
            }
            let Some(peer) = self.serve_order.pop_front() else { return };
            let Some(ledger) = self.ledgers.get_mut(&peer) else { continue };
            if self.reading_for.contains(&peer) || ledger.outstanding >= max_out {
                self.serve_order.push_back(peer);
                continue;
            }
            let admission = self.uploads.as_mut().map_or(Admission::Serve, |u| u.admit(peer, now));
            if let Admission::Wait(after) = admission {
                self.serve_order.push_back(peer);
                wake = Some(wake.map_or(after, |w| w.min(after)));
                continue;
            }
            let mut entries: Vec<WantEntry> = std::iter::from_fn(|| ledger.pop()).take(LOOKUPS_PER_BATCH).collect();
            if admission == Admission::Busy {
                // Its blocks are refused at once, so that it asks elsewhere; its want-haves cost
                // no upload and are answered.
                let (blocks, haves) = entries.into_iter().partition(|e| e.want_type == WantType::Block);
                busy.push((peer, blocks));
                entries = haves;
            } else if let Some(uploads) = self.uploads.as_mut()
                && entries.iter().any(|e| e.want_type == WantType::Block)
            {
                uploads.reserve(peer, now);
            }
            if !ledger.is_empty() {
                self.serve_order.push_back(peer);
            }
            if entries.is_empty() {
                continue;
            }
            // A want-have is answered from the block's size; only a small block is read, to be
            // inlined in place of the HAVE.
            let lookups: Vec<LookupFuture> = entries
                .iter()
                .map(|e| {
                    let inline = (e.want_type == WantType::Have).then_some(INLINE_HAVE_BYTES);
                    self.store.lookup(&e.cid, inline)
                })
                .collect();
            self.reading_for.insert(peer);
            self.reading.push(Box::pin(async move {
                let found = futures::future::join_all(lookups).await;
                (peer, entries.into_iter().zip(found).collect())
            }));
        }
        for (peer, entries) in busy {
            let presences =
                entries.iter().filter(|e| e.send_dont_have).map(|e| Presence { cid: e.cid, have: false }).collect();
            self.send_reply(peer, Message { presences, ..Message::default() });
        }
        // One timer, for the earliest peer to come out of debt: a later one keeps an earlier
        // timer, an earlier one replaces it.
        if let Some(after) = wake {
            let at = now + after;
            if self.upload_wake.as_ref().is_none_or(|(armed, _)| at < *armed) {
                self.upload_wake = Some((at, Delay::new(after)));
            }
        }
    }

    /// Turns what a batch found into replies: a reply stops taking blocks once it holds
    /// [`REPLY_TARGET_BYTES`], and the rest go into the next.
    fn on_read(&mut self, peer: PeerId, found: Vec<(WantEntry, Result<Lookup, BlockstoreError>)>) {
        self.reading_for.remove(&peer);
        if !self.ledgers.contains_key(&peer) {
            // The peer went away while its blocks were read.
            return;
        }
        let mut reply = Message::default();
        let mut size = 0usize;
        for (entry, result) in found {
            if size >= REPLY_TARGET_BYTES {
                self.send_reply(peer, std::mem::take(&mut reply));
                size = 0;
            }
            let found = result.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "blockstore read failed while serving");
                Lookup::Missing
            });
            match found {
                Lookup::Block(data) => {
                    size += data.len() + MAX_CID_BYTES;
                    reply.blocks.push(ReceivedBlock { prefix: CidPrefix::of(&entry.cid), data });
                }
                Lookup::Have => {
                    size += MAX_CID_BYTES;
                    reply.presences.push(Presence { cid: entry.cid, have: true });
                }
                Lookup::Missing if entry.send_dont_have => {
                    size += MAX_CID_BYTES;
                    reply.presences.push(Presence { cid: entry.cid, have: false });
                }
                Lookup::Missing if entry.want_type == WantType::Have => {
                    // Told HAVE when it arrives, unless cancelled first.
                    if let Some(ledger) = self.ledgers.get_mut(&peer)
                        && ledger.waiting.len() < MAX_WANTLIST_ENTRIES
                    {
                        ledger.waiting.insert(entry.cid);
                    }
                }
                Lookup::Missing => {}
            }
        }
        self.send_reply(peer, reply);
    }

    /// Queues a reply for `peer`, counting its blocks against the budgets.
    fn send_reply(&mut self, peer: PeerId, reply: Message) {
        if reply.is_empty() {
            return;
        }
        let bytes = reply.block_bytes();
        if let Some(ledger) = self.ledgers.get_mut(&peer) {
            ledger.outstanding += bytes;
        }
        self.outstanding += bytes;
        if let Some(uploads) = self.uploads.as_mut()
            && bytes > 0
        {
            uploads.sent(peer, bytes, Instant::now());
        }
        self.stats.blocks_sent += reply.blocks.len() as u64;
        self.stats.bytes_sent += bytes as u64;
        if !reply.blocks.is_empty() {
            self.events.push_back(Event::Served { peer, blocks: reply.blocks.len(), bytes: bytes as u64 });
        }
        self.outbox.push_back((peer, reply));
    }

    /// Starts lookups while there is room and takes in the batches that are read.
    fn serve(&mut self, cx: &mut Context<'_>) {
        loop {
            if let Some((_, wake)) = self.upload_wake.as_mut()
                && wake.poll_unpin(cx).is_ready()
            {
                self.upload_wake = None;
            }
            if self.outbox.len() < MAX_OUTBOX_WHILE_SERVING {
                self.start_reads();
            }
            if let Some((_, wake)) = self.upload_wake.as_mut() {
                let _ = wake.poll_unpin(cx);
            }
            match self.reading.poll_next_unpin(cx) {
                Poll::Ready(Some((peer, found))) => self.on_read(peer, found),
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
    }

    fn check_timeouts(&mut self) {
        let timeout = self.config.request_timeout;
        let expired: Vec<RequestId> =
            self.requests.iter().filter(|(_, r)| r.started.elapsed() >= timeout).map(|(id, _)| *id).collect();
        for id in expired {
            self.fail(id, RequestError::Timeout);
        }
    }
}

fn want(cid: Cid, priority: i32, cancel: bool) -> Message {
    Message {
        wantlist: vec![WantEntry { cid, priority, cancel, want_type: WantType::Block, send_dont_have: true }],
        ..Message::default()
    }
}

/// A want-have without send_dont_have: "say HAVE when you have it".
fn watch_entry(cid: Cid) -> WantEntry {
    WantEntry { cid, priority: i32::MIN, cancel: false, want_type: WantType::Have, send_dont_have: false }
}

fn want_of(cid: Cid, priority: i32, want_type: WantType) -> Message {
    Message {
        wantlist: vec![WantEntry { cid, priority, cancel: false, want_type, send_dont_have: true }],
        ..Message::default()
    }
}

impl<S: Blockstore> NetworkBehaviour for Behaviour<S> {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(false, self.config.write_timeout))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The side that dialled is the side about to ask: its stream opens at once.
        Ok(Handler::new(true, self.config.write_timeout))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections.entry(e.peer_id).or_default().insert(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                let Some(conns) = self.connections.get_mut(&e.peer_id) else { return };
                conns.remove(&e.connection_id);
                if conns.is_empty() {
                    self.connections.remove(&e.peer_id);
                    if let Some(ledger) = self.ledgers.remove(&e.peer_id) {
                        self.outstanding = self.outstanding.saturating_sub(ledger.outstanding);
                    }
                    if let Some(uploads) = self.uploads.as_mut() {
                        uploads.forget(&e.peer_id);
                    }
                    self.watching.remove(&e.peer_id);
                    self.serve_order.retain(|p| *p != e.peer_id);
                    self.suspicions.retain(|s| s.peer != e.peer_id);
                    let ids: Vec<RequestId> =
                        self.requests.iter().filter(|(_, r)| r.asked.contains(&e.peer_id)).map(|(id, _)| *id).collect();
                    for id in ids {
                        self.peer_gave_up(id, e.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, peer: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {
            ToBehaviour::Received(msg) => self.on_message(peer, msg),
            ToBehaviour::Sent { block_bytes } => self.settled(&peer, block_bytes),
            ToBehaviour::SendFailed(msg) => self.on_send_failed(peer, msg),
            ToBehaviour::InboundError(e) => {
                self.events.push_back(Event::ProtocolViolation { peer, error: e });
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        if let Some(timer) = self.timer.as_mut()
            && timer.poll_unpin(cx).is_ready()
        {
            self.timer = None;
            self.check_timeouts();
        }
        if self.timer.is_none() && !self.requests.is_empty() {
            let mut timer = Delay::new(Duration::from_millis(250));
            let _ = timer.poll_unpin(cx);
            self.timer = Some(timer);
        }
        self.serve(cx);
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(event));
        }
        if let Some((peer_id, msg)) = self.outbox.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::Any,
                event: FromBehaviour::Send(msg),
            });
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    // The same tests run natively and, under wasm-bindgen-test, in headless Chromium.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::block::{RAW, cid_v1};

    fn entry(i: u32, cancel: bool) -> WantEntry {
        WantEntry {
            cid: cid_v1(RAW, &i.to_be_bytes()),
            priority: 1,
            cancel,
            want_type: WantType::Block,
            send_dont_have: false,
        }
    }

    #[test]
    fn ledger_keeps_at_most_the_limit_and_honours_cancels() {
        let mut ledger = Ledger::default();
        for i in 0..5000 {
            ledger.apply(&entry(i, false));
        }
        assert_eq!(ledger.len(), MAX_WANTLIST_ENTRIES);
        // A repeated want does not duplicate.
        ledger.apply(&entry(0, false));
        assert_eq!(ledger.len(), MAX_WANTLIST_ENTRIES);
        ledger.apply(&entry(3, true));
        assert_eq!(ledger.len(), MAX_WANTLIST_ENTRIES - 1);
        assert!(!ledger.wanted.contains_key(&entry(3, false).cid));
        // A full-wantlist replacement is capped as well.
        ledger.clear();
        for i in 10_000..16_000 {
            ledger.apply(&entry(i, false));
        }
        assert_eq!(ledger.len(), MAX_WANTLIST_ENTRIES);
        assert_eq!(ledger.pop().unwrap().cid, entry(10_000, false).cid);
        assert_eq!(ledger.len(), MAX_WANTLIST_ENTRIES - 1);
    }

    /// A 4 MiB message's worth of want/cancel pairs against a full wantlist: the queue behind
    /// the wantlist stays bounded, costs a few steps per pair (a cancel that scans the wantlist
    /// costs a thousand), and what is left is served once each, in arrival order.
    #[test]
    fn a_flood_of_want_cancel_pairs_leaves_the_ledger_bounded_and_in_order() {
        let mut ledger = Ledger::default();
        for i in 0..MAX_WANTLIST_ENTRIES as u32 - 1 {
            ledger.apply(&entry(i, false));
        }
        // About 80 bytes per pair on the wire: some 50 000 pairs in 4 MiB.
        for round in 0..50_000u32 {
            let cid = 1_000_000 + round % 7;
            ledger.apply(&entry(cid, false));
            ledger.apply(&entry(cid, true));
            assert!(ledger.wants.len() <= 2 * MAX_WANTLIST_ENTRIES + 1, "{} queued", ledger.wants.len());
        }
        assert!(ledger.steps <= 4 * 50_000, "{} queue entries looked at for 50 000 pairs", ledger.steps);
        // Cancel one in the middle and want it again: it moves to the back, served once.
        ledger.apply(&entry(5, true));
        ledger.apply(&entry(5, false));
        let mut served = Vec::new();
        while let Some(e) = ledger.pop() {
            served.push(e.cid);
        }
        let mut expected: Vec<Cid> =
            (0..MAX_WANTLIST_ENTRIES as u32 - 1).filter(|i| *i != 5).map(|i| entry(i, false).cid).collect();
        expected.push(entry(5, false).cid);
        assert_eq!(served, expected);
        assert!(ledger.is_empty());
    }
}
