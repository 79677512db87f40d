//! What a serving browser announces to the creator node that relays for it: the tracks and
//! segments it verified most recently, as long as its block cache still holds them.

use std::collections::VecDeque;
use std::time::Duration;

use antiphon_core::Cid;
use antiphon_core::provide::MAX_CIDS;

/// An unchanged announcement is repeated this often, well within the node's 10-minute TTL.
pub(crate) const REANNOUNCE_EVERY: Duration = Duration::from_secs(240);

/// The announced CIDs, oldest first, at most [`MAX_CIDS`].
#[derive(Default)]
pub(crate) struct Held {
    cids: VecDeque<Cid>,
    /// Something changed since the last announcement.
    dirty: bool,
}

impl Held {
    /// Records that `cid` was verified and is held; the oldest entry goes past [`MAX_CIDS`].
    pub(crate) fn hold(&mut self, cid: Cid) {
        if self.cids.contains(&cid) {
            return;
        }
        self.cids.push_back(cid);
        while self.cids.len() > MAX_CIDS {
            self.cids.pop_front();
        }
        self.dirty = true;
    }

    /// Asks for the next announcement to go out even if nothing changed (it failed, or it is
    /// to go to another node).
    pub(crate) fn resend(&mut self) {
        self.dirty = true;
    }

    /// Drops what the cache no longer `holds`, then returns the list to announce if one is
    /// due `since` the last one: when something changed (an emptied list once, so the node
    /// stops listing this browser), or every [`REANNOUNCE_EVERY`] while not empty.
    pub(crate) fn due(&mut self, since: Duration, holds: impl Fn(&Cid) -> bool) -> Option<Vec<Cid>> {
        let before = self.cids.len();
        self.cids.retain(|cid| holds(cid));
        if self.cids.len() != before {
            self.dirty = true;
        }
        if !self.dirty && (self.cids.is_empty() || since < REANNOUNCE_EVERY) {
            return None;
        }
        self.dirty = false;
        Some(self.cids.iter().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antiphon_core::block::{RAW, cid_v1};

    fn cid(i: u32) -> Cid {
        cid_v1(RAW, &i.to_be_bytes())
    }

    #[test]
    fn nothing_is_announced_until_something_is_held() {
        let mut held = Held::default();
        assert_eq!(held.due(REANNOUNCE_EVERY * 2, |_| true), None);
        held.hold(cid(1));
        assert_eq!(held.due(Duration::ZERO, |_| true), Some(vec![cid(1)]));
        assert_eq!(held.due(Duration::from_secs(2), |_| true), None, "unchanged: not yet due");
        assert_eq!(held.due(REANNOUNCE_EVERY, |_| true), Some(vec![cid(1)]), "repeated within the TTL");
    }

    #[test]
    fn what_the_cache_forgot_is_taken_back_and_an_empty_list_goes_out_once() {
        let mut held = Held::default();
        for i in 0..3 {
            held.hold(cid(i));
        }
        held.due(Duration::ZERO, |_| true);
        let evicted = |c: &Cid| *c != cid(0);
        assert_eq!(held.due(Duration::from_secs(2), evicted), Some(vec![cid(1), cid(2)]));
        assert_eq!(held.due(Duration::from_secs(2), |_| false), Some(vec![]), "cleared at the node");
        assert_eq!(held.due(REANNOUNCE_EVERY * 2, |_| false), None, "and not repeated");
    }

    #[test]
    fn the_list_is_bounded_oldest_first_and_a_resend_is_honoured() {
        let mut held = Held::default();
        for i in 0..(MAX_CIDS as u32 + 5) {
            held.hold(cid(i));
        }
        held.hold(cid(7));
        let list = held.due(Duration::ZERO, |_| true).unwrap();
        assert_eq!(list.len(), MAX_CIDS);
        assert_eq!(list[0], cid(5));
        assert_eq!(held.due(Duration::ZERO, |_| true), None);
        held.resend();
        assert_eq!(held.due(Duration::ZERO, |_| true).map(|l| l.len()), Some(MAX_CIDS));
    }
}
