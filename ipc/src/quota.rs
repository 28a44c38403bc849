//! Per-uid shares of a global pool, with a reserve for privileged tasks.
//!
//! A [`Pool`] counts one kind of kernel object (IPC ends here; threads,
//! tasks and memory pages in the kernel) against three bounds:
//!
//! - the whole pool, `total`, which only privileged charges may fill;
//! - the unprivileged part, `total - reserve`, shared by every
//!   unprivileged charge together, so `reserve` objects always remain for
//!   privileged tasks (init, services, drivers);
//! - each uid's share, `per_uid`, for its unprivileged charges, so one uid
//!   cannot take the whole unprivileged part.
//!
//! Privileged charges count only against `total`. This module owns that
//! arithmetic and the per-uid counters. It must never decide who is
//! privileged nor what an object costs: callers charge what they create and
//! release what they free, with the same uid and privilege. Its only
//! allocation (a uid's first counter) is fallible: `OutOfMemory`, never a
//! panic.

use alloc::vec::Vec;

use alux_abi::{Error, Uid};

/// The bounds of a pool. `reserve` and `per_uid` are clamped to `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    /// Objects the pool holds at most.
    pub total: usize,
    /// Objects only privileged charges may use.
    pub reserve: usize,
    /// Objects one uid's unprivileged charges may hold together.
    pub per_uid: usize,
}

impl Shares {
    /// The pool's usual split: a quarter reserved, and an eighth per uid.
    /// So at least six uids together fill the unprivileged part, and
    /// `total / 4` objects always remain for privileged tasks.
    pub const fn split(total: usize) -> Shares {
        Shares { total, reserve: total / 4, per_uid: total / 8 }
    }

    /// Objects unprivileged charges may hold together.
    pub const fn unprivileged(&self) -> usize {
        self.total.saturating_sub(self.reserve)
    }
}

/// Counts of one pool: total, unprivileged and per uid.
#[derive(Debug)]
pub struct Pool {
    shares: Shares,
    used: usize,
    unprivileged: usize,
    /// Unprivileged use per uid, sorted by uid, no zero counts. At most one
    /// entry per uid holding something, so it is bounded by the objects
    /// that can carry a uid; it shrinks with `crate::slab::shrink`.
    uids: Vec<(Uid, usize)>,
}

impl Pool {
    /// An empty pool.
    pub const fn new(shares: Shares) -> Pool {
        Pool { shares, used: 0, unprivileged: 0, uids: Vec::new() }
    }

    /// Its bounds.
    pub fn shares(&self) -> Shares {
        self.shares
    }

    /// Whether `n` more objects fit for `uid` (`LimitReached` if not),
    /// without charging them.
    pub fn check(&self, uid: Uid, privileged: bool, n: usize) -> Result<(), Error> {
        let s = self.shares;
        if self.used + n > s.total {
            return Err(Error::LimitReached);
        }
        if !privileged
            && (self.unprivileged + n > s.unprivileged()
                || self.uid_used(uid) + n > s.per_uid.min(s.total))
        {
            return Err(Error::LimitReached);
        }
        Ok(())
    }

    /// Charges `n` objects to `uid`: `LimitReached` if they do not fit,
    /// `OutOfMemory` if the uid's counter cannot be allocated. Nothing is
    /// charged on an error.
    pub fn charge(&mut self, uid: Uid, privileged: bool, n: usize) -> Result<(), Error> {
        self.check(uid, privileged, n)?;
        if n == 0 {
            return Ok(());
        }
        if !privileged {
            match self.uids.binary_search_by_key(&uid, |&(u, _)| u) {
                Ok(i) => self.uids[i].1 += n,
                Err(i) => {
                    self.uids.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
                    self.uids.insert(i, (uid, n));
                }
            }
            self.unprivileged += n;
        }
        self.used += n;
        Ok(())
    }

    /// Gives back `n` objects charged to `uid` with the same privilege.
    /// Releasing more than was charged is a caller bug; the counts then
    /// stop at zero.
    pub fn release(&mut self, uid: Uid, privileged: bool, n: usize) {
        debug_assert!(n <= self.used);
        self.used = self.used.saturating_sub(n);
        if privileged || n == 0 {
            return;
        }
        self.unprivileged = self.unprivileged.saturating_sub(n);
        if let Ok(i) = self.uids.binary_search_by_key(&uid, |&(u, _)| u) {
            debug_assert!(n <= self.uids[i].1);
            let left = self.uids[i].1.saturating_sub(n);
            if left == 0 {
                self.uids.remove(i);
                crate::slab::shrink(&mut self.uids);
            } else {
                self.uids[i].1 = left;
            }
        } else {
            debug_assert!(false, "release for a uid that holds nothing");
        }
    }

    /// Objects charged in all.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Objects charged by unprivileged callers.
    pub fn unprivileged_used(&self) -> usize {
        self.unprivileged
    }

    /// Objects `uid`'s unprivileged charges hold.
    pub fn uid_used(&self, uid: Uid) -> usize {
        match self.uids.binary_search_by_key(&uid, |&(u, _)| u) {
            Ok(i) => self.uids[i].1,
            Err(_) => 0,
        }
    }

    /// Heap bytes of the per-uid counters.
    pub fn heap_bytes(&self) -> usize {
        self.uids.capacity() * core::mem::size_of::<(Uid, usize)>()
    }

    /// Checks the counters' invariants; returns what is broken.
    pub fn audit(&self) -> Result<(), &'static str> {
        let sum: usize = self.uids.iter().map(|&(_, n)| n).sum();
        if sum != self.unprivileged {
            return Err("pool: per-uid counts do not add up");
        }
        if self.uids.iter().any(|&(_, n)| n == 0 || n > self.shares.per_uid) {
            return Err("pool: a uid holds nothing or more than its share");
        }
        if self.uids.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("pool: uid counters not sorted");
        }
        if self.unprivileged > self.used
            || self.used > self.shares.total
            || self.unprivileged > self.shares.unprivileged()
        {
            return Err("pool: over a bound");
        }
        if !crate::slab::tight(self.uids.len(), self.uids.capacity()) {
            return Err("pool: uid counters not shrunk");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn pool() -> Pool {
        Pool::new(Shares { total: 16, reserve: 4, per_uid: 5 })
    }

    #[test]
    fn a_uid_stops_at_its_share_and_others_go_on() {
        let mut p = pool();
        p.charge(1, false, 5).unwrap();
        assert_eq!(p.charge(1, false, 1), Err(Error::LimitReached));
        p.charge(2, false, 5).unwrap();
        assert_eq!(p.uid_used(1), 5);
        assert_eq!(p.uid_used(3), 0);
        p.audit().unwrap();
    }

    #[test]
    fn the_reserve_is_for_privileged_charges_only() {
        let mut p = pool();
        p.charge(1, false, 5).unwrap();
        p.charge(2, false, 5).unwrap();
        p.charge(3, false, 2).unwrap();
        // The unprivileged part (12) is full: uid 4 fails below its share.
        assert_eq!(p.charge(4, false, 1), Err(Error::LimitReached));
        assert_eq!(p.unprivileged_used(), 12);
        // Privileged charges still get the reserve, whatever their uid.
        p.charge(4, true, 3).unwrap();
        p.charge(1, true, 1).unwrap();
        assert_eq!(p.charge(0, true, 1), Err(Error::LimitReached), "the pool is full");
        assert_eq!(p.used(), 16);
        p.release(2, false, 5);
        assert_eq!(p.uid_used(2), 0);
        // A freed unprivileged object goes back to the unprivileged part.
        p.charge(4, false, 4).unwrap();
        p.audit().unwrap();
    }

    #[test]
    fn releases_restore_everything_and_free_the_counters() {
        let mut p = pool();
        for uid in 0..3 {
            p.charge(uid, false, 3).unwrap();
        }
        p.charge(9, true, 2).unwrap();
        assert!(p.heap_bytes() > 0);
        for uid in 0..3 {
            p.release(uid, false, 3);
        }
        p.release(9, true, 2);
        assert_eq!((p.used(), p.unprivileged_used(), p.heap_bytes()), (0, 0, 0));
        p.audit().unwrap();
    }

    #[test]
    fn a_failed_charge_changes_nothing() {
        let mut p = pool();
        p.charge(1, false, 4).unwrap();
        assert_eq!(p.charge(1, false, 2), Err(Error::LimitReached));
        assert_eq!((p.used(), p.uid_used(1)), (4, 4));
        assert_eq!(p.check(1, false, 1), Ok(()));
        assert_eq!(p.check(1, false, 2), Err(Error::LimitReached));
    }

    #[test]
    fn split_keeps_a_quarter() {
        let s = Shares::split(2048);
        assert_eq!((s.reserve, s.per_uid, s.unprivileged()), (512, 256, 1536));
    }

    proptest::proptest! {
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u16..4, proptest::bool::ANY, 0usize..4, proptest::bool::ANY), 0..200)) {
            let shares = Shares { total: 20, reserve: 6, per_uid: 5 };
            let mut p = Pool::new(shares);
            // (uid, privileged, n) of every live charge.
            let mut live: alloc::vec::Vec<(Uid, bool, usize)> = vec![];
            for (uid, privileged, n, release) in ops {
                if release && !live.is_empty() {
                    let (u, pr, m) = live.remove(usize::from(uid) % live.len());
                    p.release(u, pr, m);
                } else {
                    let used: usize = live.iter().map(|c| c.2).sum();
                    let unpriv: usize = live.iter().filter(|c| !c.1).map(|c| c.2).sum();
                    let mine: usize = live.iter().filter(|c| !c.1 && c.0 == uid).map(|c| c.2).sum();
                    let fits = used + n <= 20 && (privileged || (unpriv + n <= 14 && mine + n <= 5));
                    match p.charge(uid, privileged, n) {
                        Ok(()) => {
                            proptest::prop_assert!(fits);
                            live.push((uid, privileged, n));
                        }
                        Err(e) => {
                            proptest::prop_assert!(!fits);
                            proptest::prop_assert_eq!(e, Error::LimitReached);
                        }
                    }
                }
                proptest::prop_assert_eq!(p.audit(), Ok(()));
                proptest::prop_assert_eq!(p.used(), live.iter().map(|c| c.2).sum::<usize>());
            }
        }
    }
}
