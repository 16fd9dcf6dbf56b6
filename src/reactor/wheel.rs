//! A coarse timer wheel for per-connection deadlines (timeouts, user timers, close linger).
//!
//! One slot per [`RESOLUTION_MS`], [`SLOTS`] slots in a ring. A connection has at most one live
//! entry, in the slot of its nearest deadline; arming costs a `Vec::push`, and there is no system
//! call per timer. Nothing is ever removed from a slot: when a slot comes due, each entry is
//! checked against its connection (`Conn::wheel_at` must still name this tick, else the entry is
//! stale and skipped), and the connection's deadlines are computed afresh. So moving a deadline
//! later — an idle timeout pushed back by every read — costs no more than the store of a time
//! stamp: the entry fires at the old time, finds the new deadline, and re-inserts itself once.
//! A deadline beyond the ring's span is parked in the ring's last slot and re-inserted the same
//! way (glommio#44 and the tokio timer RFC show what a timer per read costs).
//!
//! Deadlines round *up* to a tick, so nothing fires early; it fires at most one tick late.

use crate::id::ConnId;

/// Milliseconds per slot.
pub(crate) const RESOLUTION_MS: u64 = 10;
/// Slots in the ring (a span of 10.24 s).
const SLOTS: u64 = 1024;

pub(crate) struct Wheel {
    slots: Vec<Vec<ConnId>>,
    /// Bit `i` set: slot `i` is not empty (so finding the next deadline scans 16 words).
    occupied: [u64; (SLOTS / 64) as usize],
    /// The next tick to process; every entry is at a tick `>= cursor`.
    cursor: u64,
    len: usize,
}

impl Wheel {
    pub(crate) fn new(now_ms: u64) -> Wheel {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; (SLOTS / 64) as usize],
            cursor: now_ms / RESOLUTION_MS + 1,
            len: 0,
        }
    }

    /// The tick an entry for `deadline_ms` goes to (rounded up, within the ring's span).
    ///
    /// Never a tick whose low 32 bits are 0: a connection keeps only those bits of its
    /// entry's tick, 0 meaning none. Once in 497 days such a tick is moved one earlier (safe:
    /// a due entry re-checks its deadline and files itself again) or, at the cursor, one later
    /// (a timer then fires two ticks late instead of one).
    pub(crate) fn tick_for(&self, deadline_ms: u64) -> u64 {
        let tick = deadline_ms
            .div_ceil(RESOLUTION_MS)
            .clamp(self.cursor, self.cursor + SLOTS - 1);
        match (tick as u32 == 0, tick > self.cursor) {
            (false, _) => tick,
            (true, true) => tick - 1,
            (true, false) => tick + 1,
        }
    }

    /// Adds an entry for `id` at `tick` (from [`tick_for`](Self::tick_for)).
    pub(crate) fn insert(&mut self, id: ConnId, tick: u64) {
        let i = (tick % SLOTS) as usize;
        self.slots[i].push(id);
        self.occupied[i / 64] |= 1 << (i % 64);
        self.len += 1;
    }

    /// Moves every entry due at `now_ms` into `due`, with the tick it was filed under.
    pub(crate) fn expire(&mut self, now_ms: u64, due: &mut Vec<(ConnId, u64)>) {
        let now_tick = now_ms / RESOLUTION_MS;
        if self.len == 0 {
            self.cursor = self.cursor.max(now_tick + 1);
            return;
        }
        // After a long sleep every slot may be due, but each is visited once.
        let last = now_tick.min(self.cursor + SLOTS - 1);
        while self.cursor <= last {
            let tick = self.cursor;
            let i = (tick % SLOTS) as usize;
            if self.occupied[i / 64] & (1 << (i % 64)) != 0 {
                self.occupied[i / 64] &= !(1 << (i % 64));
                let slot = &mut self.slots[i];
                self.len -= slot.len();
                due.extend(slot.drain(..).map(|id| (id, tick)));
                if slot.capacity() > 64 {
                    slot.shrink_to(64);
                }
            }
            self.cursor += 1;
        }
        self.cursor = self.cursor.max(now_tick + 1);
    }

    /// When the nearest entry comes due, in milliseconds, if there is any entry.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let words = self.occupied.len();
        let start = (self.cursor % SLOTS) as usize;
        // Scan the ring from the cursor's slot, one 64-slot word at a time.
        for step in 0..=words {
            let w = (start / 64 + step) % words;
            let mut bits = self.occupied[w];
            if step == 0 {
                bits &= !0u64 << (start % 64);
            } else if step == words {
                bits &= !(!0u64 << (start % 64));
            }
            if bits != 0 {
                let i = (w * 64 + bits.trailing_zeros() as usize) as u64;
                let offset = (i + SLOTS - start as u64) % SLOTS;
                return Some((self.cursor + offset) * RESOLUTION_MS);
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ConnId {
        ConnId::new(0, n, 1)
    }

    #[test]
    fn fires_at_the_deadline_never_early() {
        let mut w = Wheel::new(1000);
        let t = w.tick_for(1055);
        w.insert(id(1), t);
        assert_eq!(w.next_due_ms(), Some(1060));
        let mut due = Vec::new();
        w.expire(1059, &mut due);
        assert!(due.is_empty());
        w.expire(1060, &mut due);
        assert_eq!(due, [(id(1), t)]);
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_due_ms(), None);
    }

    #[test]
    fn far_deadlines_park_in_the_last_slot() {
        let mut w = Wheel::new(0);
        let t = w.tick_for(60_000);
        w.insert(id(1), t);
        let due_at = w.next_due_ms().unwrap();
        assert!((10_000..60_000).contains(&due_at), "{due_at}");
        let mut due = Vec::new();
        w.expire(due_at, &mut due);
        assert_eq!(due.len(), 1);
    }

    #[test]
    fn next_due_wraps_around_the_ring() {
        let mut w = Wheel::new(0);
        let mut due = Vec::new();
        w.expire(9_000, &mut due); // cursor near the ring's end
        let t = w.tick_for(12_000); // wraps to the ring's start
        w.insert(id(2), t);
        assert_eq!(w.next_due_ms(), Some(12_000));
        let t2 = w.tick_for(9_500);
        w.insert(id(3), t2);
        assert_eq!(w.next_due_ms(), Some(9_500));
        w.expire(20_000, &mut due);
        assert_eq!(due.len(), 2);
    }

    #[test]
    fn a_long_sleep_visits_each_slot_once() {
        let mut w = Wheel::new(0);
        for n in 0..100 {
            let t = w.tick_for(n * 37);
            w.insert(id(n as u32), t);
        }
        let mut due = Vec::new();
        w.expire(1_000_000, &mut due);
        assert_eq!(due.len(), 100);
        assert_eq!(w.len(), 0);
    }
}
