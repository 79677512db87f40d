//! The tracks this node holds, in memory: every manifest decoded once when the node starts or
//! the track arrives, which files belong to which track, and which replicas confirmed each.
//!
//! Routing answers, `GET /tracks`, `/metrics`, provide claims and the replicator read it
//! instead of scanning and decoding every manifest in the store per request; nothing here
//! touches the disk, so it can be read on the swarm task and on async HTTP workers. The store
//! stays the truth: writers update the store first (off those tasks), then the catalog.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use antiphon_core::{Cid, TrackManifest};
use libp2p::PeerId;

use crate::store::{Store, StoreError};

/// One track as the catalog knows it.
#[derive(Debug, Clone)]
pub struct Track {
    /// Unix time it was added here.
    pub added_unix: u64,
    /// Its decoded manifest.
    pub manifest: Arc<TrackManifest>,
    /// Replicas that confirmed it, with when (unix time).
    pub replicas: BTreeMap<PeerId, u64>,
}

#[derive(Default)]
struct Inner {
    tracks: HashMap<Cid, Track>,
    /// Each segment and cover CID, and each track CID itself, to the tracks it belongs to.
    members: HashMap<Cid, Vec<Cid>>,
}

/// The in-memory catalog of tracks (see the module documentation).
#[derive(Default)]
pub struct Catalog {
    inner: RwLock<Inner>,
}

/// The CIDs a track is made of: itself, its segments and its cover.
fn files_of(track: &Cid, manifest: &TrackManifest) -> impl Iterator<Item = Cid> {
    std::iter::once(*track).chain(manifest.segments.iter().map(|s| s.cid)).chain(manifest.cover.as_ref().map(|c| c.cid))
}

impl Catalog {
    /// Reads every track, its manifest and its confirmations from the store (blocking: call it
    /// before serving starts or on a blocking thread). A track whose manifest is missing or
    /// unreadable is left out, with a warning.
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let catalog = Self::default();
        for (cid, added_unix) in store.tracks()? {
            let manifest = match store.block(&cid)?.map(|bytes| TrackManifest::decode(&bytes)) {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(%cid, error = %e, "a stored track's manifest does not decode; not served as a track");
                    continue;
                }
                None => {
                    tracing::warn!(%cid, "a stored track has no manifest block; not served as a track");
                    continue;
                }
            };
            catalog.add(cid, manifest, added_unix);
            for (peer, unix) in store.replicas_of(&cid)? {
                if let Ok(peer) = PeerId::from_bytes(&peer) {
                    catalog.confirm(&cid, peer, unix);
                }
            }
        }
        Ok(catalog)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // Every write leaves the maps consistent before it can panic, so a poisoned lock is
        // used as is.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a track the store now holds.
    pub fn add(&self, track: Cid, manifest: TrackManifest, added_unix: u64) {
        let mut inner = self.write();
        if inner.tracks.contains_key(&track) {
            return;
        }
        for file in files_of(&track, &manifest) {
            let tracks = inner.members.entry(file).or_default();
            if !tracks.contains(&track) {
                tracks.push(track);
            }
        }
        inner.tracks.insert(track, Track { added_unix, manifest: Arc::new(manifest), replicas: BTreeMap::new() });
    }

    /// Records that `peer` confirmed holding `track`.
    pub fn confirm(&self, track: &Cid, peer: PeerId, unix: u64) {
        if let Some(t) = self.write().tracks.get_mut(track) {
            t.replicas.insert(peer, unix);
        }
    }

    /// One track.
    pub fn get(&self, track: &Cid) -> Option<Track> {
        self.read().tracks.get(track).cloned()
    }

    /// Whether `track` is one of the tracks held.
    pub fn has_track(&self, track: &Cid) -> bool {
        self.read().tracks.contains_key(track)
    }

    /// Whether `cid` is a track held here or a file (segment, cover) of one.
    pub fn holds(&self, cid: &Cid) -> bool {
        self.read().members.contains_key(cid)
    }

    /// Every track, oldest first.
    pub fn list(&self) -> Vec<(Cid, Track)> {
        let mut out: Vec<(Cid, Track)> = self.read().tracks.iter().map(|(c, t)| (*c, t.clone())).collect();
        out.sort_by_key(|(cid, t)| (t.added_unix, cid.to_bytes()));
        out
    }

    /// Number of tracks.
    pub fn len(&self) -> usize {
        self.read().tracks.len()
    }

    /// Whether no track is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tracks confirmed by at least `replicas` replicas (0 counts none).
    pub fn fully_replicated(&self, replicas: usize) -> u64 {
        if replicas == 0 {
            return 0;
        }
        self.read().tracks.values().filter(|t| t.replicas.len() >= replicas).count() as u64
    }

    /// Replicas that confirmed a track `cid` belongs to (the track itself, a segment, its cover).
    pub fn holders(&self, cid: &Cid) -> Vec<PeerId> {
        let inner = self.read();
        let mut out: Vec<PeerId> = Vec::new();
        for track in inner.members.get(cid).into_iter().flatten() {
            for peer in inner.tracks.get(track).into_iter().flat_map(|t| t.replicas.keys()) {
                if !out.contains(peer) {
                    out.push(*peer);
                }
            }
        }
        out
    }

    /// Up to `max` tracks `replica` has not confirmed, oldest first, leaving out those `skip`
    /// names.
    pub fn unconfirmed(&self, replica: &PeerId, max: usize, skip: impl Fn(&Cid) -> bool) -> Vec<Cid> {
        self.list()
            .into_iter()
            .filter(|(cid, t)| !t.replicas.contains_key(replica) && !skip(cid))
            .map(|(cid, _)| cid)
            .take(max)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antiphon_core::SegmentRef;
    use antiphon_core::block::{RAW, cid_v1};

    fn manifest(segments: &[u8]) -> TrackManifest {
        TrackManifest {
            version: 1,
            codec: "audio/mpeg".into(),
            sample_rate: 44_100,
            channels: 2,
            total_samples: 44_100 * segments.len() as u64,
            segments: segments
                .iter()
                .map(|i| SegmentRef { cid: cid_v1(RAW, &[*i]), bytes: 1, samples: 44_100 })
                .collect(),
            title: None,
            artist: None,
            album: None,
            cover: None,
        }
    }

    #[test]
    fn files_lead_to_their_tracks_and_their_confirmed_replicas() {
        let catalog = Catalog::default();
        let (t1, t2) = (cid_v1(0x71, b"one"), cid_v1(0x71, b"two"));
        catalog.add(t1, manifest(&[1, 2]), 10);
        catalog.add(t2, manifest(&[2, 3]), 5);
        assert!(catalog.holds(&t1) && catalog.holds(&cid_v1(RAW, &[3])));
        assert!(!catalog.holds(&cid_v1(RAW, &[4])));
        let (b, c) = (PeerId::random(), PeerId::random());
        catalog.confirm(&t1, b, 11);
        catalog.confirm(&t2, c, 12);
        // Segment 2 is in both tracks: both replicas hold it; segment 1 only the first's.
        let mut shared = catalog.holders(&cid_v1(RAW, &[2]));
        shared.sort();
        let mut both = vec![b, c];
        both.sort();
        assert_eq!(shared, both);
        assert_eq!(catalog.holders(&cid_v1(RAW, &[1])), vec![b]);
        assert_eq!(catalog.list().iter().map(|(c, _)| *c).collect::<Vec<_>>(), vec![t2, t1], "oldest first");
        assert_eq!(catalog.unconfirmed(&b, 10, |_| false), vec![t2]);
        assert_eq!(catalog.unconfirmed(&b, 10, |c| *c == t2), Vec::<Cid>::new());
        assert_eq!(catalog.fully_replicated(1), 2);
        assert_eq!(catalog.fully_replicated(2), 0);
    }
}
