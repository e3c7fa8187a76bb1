//! What this process has handed out of each endpoint's outbox cursor and
//! not yet recorded.
//!
//! The database keeps one number per endpoint, `outbox_position`: every
//! message up to it has been sent to the endpoint or has a delivery row.
//! Deliveries finish out of order, so between claims the process keeps the
//! rest here: how far it has read, and which messages are out (with their
//! leases). The stored position moves to just before the oldest message
//! still out. If the process dies, what it kept here is lost and the next
//! reader starts from the stored position: messages after it may be sent
//! twice, none is skipped.
//!
//! Memory is only trusted while the database still holds the position it
//! last read or wrote there; if another process moved it (an endpoint
//! disabled and enabled again, say) or a write of ours did not commit, the
//! cursor starts over from the database.

use std::collections::{BTreeMap, HashMap};

use endusers_core::Timestamp;

#[derive(Debug, Default)]
pub(super) struct Cursors {
    endpoints: HashMap<String, Cursor>,
}

impl Cursors {
    /// The endpoint's cursor, started over from `stored` unless memory
    /// agrees with it.
    pub(super) fn at(&mut self, endpoint: &str, stored: i64) -> &mut Cursor {
        let cursor = self
            .endpoints
            .entry(endpoint.to_owned())
            .or_insert_with(|| Cursor::new(stored));
        if cursor.stored != stored {
            *cursor = Cursor::new(stored);
        }
        cursor
    }

    pub(super) fn get_mut(&mut self, endpoint: &str) -> Option<&mut Cursor> {
        self.endpoints.get_mut(endpoint)
    }

    /// Drops what is known of one endpoint: the next claim reads its
    /// position from the database.
    pub(super) fn forget(&mut self, endpoint: &str) {
        self.endpoints.remove(endpoint);
    }

    /// Drops everything: after a write that did not commit, memory may be
    /// ahead of the database.
    pub(super) fn clear(&mut self) {
        self.endpoints.clear();
    }

    /// Keeps only the endpoints `keep` names (the enabled ones).
    pub(super) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        if self.endpoints.keys().any(|id| !keep(id)) {
            self.endpoints.retain(|id, _| keep(id));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    /// The position in the database, as this process last read or wrote it.
    stored: i64,
    /// Every message up to here has been handed out or passed over.
    read: i64,
    /// Handed out and not yet recorded: sequence number → end of lease.
    out: BTreeMap<i64, Timestamp>,
}

impl Cursor {
    fn new(stored: i64) -> Self {
        Self {
            stored,
            read: stored,
            out: BTreeMap::new(),
        }
    }

    /// Where the next read of the outbox starts (after this number).
    pub(super) fn read(&self) -> i64 {
        self.read
    }

    /// Messages out whose lease has run out, oldest first, at most `limit`:
    /// they are handed out again.
    pub(super) fn lapsed(&self, now: Timestamp, limit: usize) -> Vec<i64> {
        self.out
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(seq, _)| *seq)
            .take(limit)
            .collect()
    }

    /// `seq` was read: handed out until `until`, or passed over (`None`)
    /// because the endpoint does not want it.
    pub(super) fn pass(&mut self, seq: i64, until: Option<Timestamp>) {
        self.read = self.read.max(seq);
        match until {
            Some(until) => {
                self.out.insert(seq, until);
            }
            None => {
                self.out.remove(&seq);
            }
        }
    }

    /// `seq`'s attempt is recorded (or its message is gone).
    pub(super) fn finish(&mut self, seq: i64) {
        self.out.remove(&seq);
    }

    /// The stored position's new value, if it can move: just before the
    /// oldest message out, or as far as read when none is. The caller
    /// writes it and then calls [`Self::stored_at`].
    pub(super) fn advance(&self) -> Option<(i64, i64)> {
        let settled = self
            .out
            .keys()
            .next()
            .map_or(self.read, |oldest| oldest.saturating_sub(1));
        (settled > self.stored).then_some((self.stored, settled))
    }

    /// The database now holds `position`.
    pub(super) fn stored_at(&mut self, position: i64) {
        self.stored = position;
    }

    /// Messages out, oldest first.
    pub(super) fn out(&self) -> impl Iterator<Item = i64> + '_ {
        self.out.keys().copied()
    }

    /// Messages out with the ends of their leases, oldest first.
    pub(super) fn out_until(&self) -> impl Iterator<Item = (i64, Timestamp)> + '_ {
        self.out.iter().map(|(seq, until)| (*seq, *until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_micros(1_000);
    const T1: Timestamp = Timestamp::from_micros(2_000);

    #[test]
    fn the_position_waits_for_the_oldest_message_out() {
        let mut cursors = Cursors::default();
        let c = cursors.at("ep", 10);
        assert_eq!((c.read(), c.advance()), (10, None));
        c.pass(11, Some(T1));
        c.pass(12, None); // not wanted
        c.pass(14, Some(T1));
        assert_eq!(c.read(), 14);
        assert_eq!(c.advance(), None, "11 is still out");
        c.finish(14);
        assert_eq!(c.advance(), None, "11 is still out");
        c.finish(11);
        assert_eq!(c.advance(), Some((10, 14)));
        c.stored_at(14);
        assert_eq!(c.advance(), None);
    }

    #[test]
    fn finishing_out_of_order_moves_up_to_the_next_one_out() {
        let mut cursors = Cursors::default();
        let c = cursors.at("ep", 0);
        for seq in 1..=5 {
            c.pass(seq, Some(T1));
        }
        c.finish(1);
        c.finish(2);
        c.finish(4);
        assert_eq!(c.advance(), Some((0, 2)));
        c.stored_at(2);
        assert_eq!(c.out().collect::<Vec<_>>(), [3, 5]);
    }

    #[test]
    fn lapsed_leases_are_offered_again_oldest_first() {
        let mut cursors = Cursors::default();
        let c = cursors.at("ep", 0);
        c.pass(1, Some(T1));
        c.pass(2, Some(T0));
        c.pass(3, Some(T0));
        assert_eq!(c.lapsed(T0, 10), [2, 3]);
        assert_eq!(c.lapsed(T0, 1), [2]);
        assert_eq!(c.lapsed(T1, 10), [1, 2, 3]);
        // Handed out again: the new lease replaces the old.
        c.pass(2, Some(T1));
        assert_eq!(c.lapsed(T0, 10), [3]);
        assert_eq!(c.read(), 3, "reading again does not move back");
    }

    #[test]
    fn memory_starts_over_when_the_database_disagrees() {
        let mut cursors = Cursors::default();
        cursors.at("ep", 5).pass(6, Some(T1));
        assert_eq!(cursors.at("ep", 5).read(), 6, "kept while it agrees");
        let moved = cursors.at("ep", 9);
        assert_eq!((moved.read(), moved.out().count()), (9, 0));
        if let Some(c) = cursors.get_mut("ep") {
            c.pass(10, Some(T1));
        }
        cursors.forget("ep");
        assert_eq!(cursors.at("ep", 9).read(), 9);
        cursors.at("other", 1);
        cursors.retain(|id| id == "other");
        assert!(cursors.get_mut("ep").is_none());
        cursors.clear();
        assert!(cursors.get_mut("other").is_none());
    }
}
