//! The invariant checker behind [`crate::Memd::audit`].
//!
//! This module owns only read-only consistency checks of memd's state, run
//! by the tests after every step and available to the daemon's debug
//! builds. It must never change state.

use alloc::collections::BTreeSet;
use alloc::vec;

use crate::memd::{Home, Page, Store, Use};
use crate::types::{IoKind, Slot, PAGE_SIZE, USER_END};
use crate::Memd;

fn check(ok: bool, what: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(what)
    }
}

/// Checks every invariant of `m`.
pub(crate) fn audit(m: &Memd) -> Result<(), &'static str> {
    let n = m.frames.len();
    check(n == m.cfg.pool_frames as usize, "pool size changed")?;
    check(m.hand < m.cfg.pool_frames, "clock hand outside the pool")?;
    // The free list holds exactly the free frames, once each.
    let mut on_free = vec![false; n];
    for &f in &m.free {
        let seen = on_free.get_mut(f as usize).ok_or("free list names no frame")?;
        check(!*seen, "frame twice on the free list")?;
        *seen = true;
        check(m.frames[f as usize] == Use::Free, "free-listed frame in use")?;
    }
    let free_uses = m.frames.iter().filter(|u| **u == Use::Free).count();
    check(free_uses == m.free.len(), "free frame not on the free list")?;
    // Each used frame points to a page that points back, in the state its
    // request says; orphans hold a request.
    let mut slots = BTreeSet::new();
    let (mut io, mut writes) = (0u32, 0u32);
    for (f, u) in m.frames.iter().enumerate() {
        match *u {
            Use::Free => {}
            Use::Orphan { io: r } => {
                io += 1;
                writes += (r.kind == IoKind::Write) as u32;
                check(r.tag.frame().0 as usize == f, "tag names another frame")?;
                check(slots.insert(r.slot), "slot referenced twice")?;
            }
            Use::Page { home, n: vpn, io: r } => {
                let st = m.store(home).ok_or("frame owned by an unknown home")?;
                let page = st.pages.get(&vpn).ok_or("frame owned by a page without content")?;
                check(
                    page.frame().map(|x| x.0 as usize) == Some(f),
                    "frame's page points elsewhere",
                )?;
                match (r, page) {
                    (None, Page::Resident { .. }) => {}
                    (Some(r), Page::Out { slot, .. }) if r.kind == IoKind::Write => {
                        check(r.slot == *slot, "write targets another slot")?;
                    }
                    (Some(r), Page::In { slot, .. }) if r.kind == IoKind::Read => {
                        check(r.slot == *slot, "read targets another slot")?;
                    }
                    _ => return Err("frame's request and page state disagree"),
                }
                if let Some(r) = r {
                    io += 1;
                    writes += (r.kind == IoKind::Write) as u32;
                    check(r.tag.frame().0 as usize == f, "tag names another frame")?;
                }
            }
        }
    }
    check(io == m.io_in_flight, "requests in flight miscounted")?;
    check(m.submitted <= m.cfg.max_io, "more requests at the disk than max_io")?;
    check(m.submitted as usize + m.queued.len() == io as usize, "requests at the disk miscounted")?;
    for (i, r) in m.queued.iter().enumerate() {
        check(m.request(r.tag) == Some(*r), "queued request not owned")?;
        check(!m.queued.iter().skip(i + 1).any(|x| x.tag == r.tag), "request queued twice")?;
    }
    check(writes == m.writes_in_flight, "writes in flight miscounted")?;
    // Tasks: ranges, pages and per-task accounting.
    for (id, t) in &m.tasks {
        let mut reserved = 0;
        let mut prev_end = 1;
        for (&s, r) in &t.regions {
            check(s >= prev_end && r.end > s, "ranges overlap or are empty")?;
            check(r.end <= USER_END / PAGE_SIZE, "range past the user half")?;
            check(r.perms.bits() != 3, "range both writable and executable")?;
            prev_end = r.end;
            reserved += r.end - s;
        }
        check(reserved == t.reserved, "reserved pages miscounted")?;
        check(t.reserved <= t.quota, "quota exceeded")?;
        check_store(m, Home::Task(*id), &t.store, &mut slots)?;
        for &vpn in t.store.pages.keys() {
            check(t.region(vpn).is_some(), "page outside every range")?;
        }
    }
    for (&id, s) in &m.shares {
        check_store(m, Home::Share(id), &s.store, &mut slots)?;
    }
    crate::share::audit_shares(m)?;
    // Slots taken are exactly the slots referenced.
    check(slots.len() == m.slots.used() as usize, "slots used != slots referenced")?;
    check(slots.iter().all(|&s| m.slots.is_used(s)), "referenced slot is free")?;
    check(
        m.slots.iter_used().all(|s: Slot| slots.contains(&s)),
        "taken slot referenced by nothing",
    )?;
    // Waiting faults: known tasks, and never while a frame is free.
    for w in &m.waiters {
        check(m.tasks.contains_key(&w.task), "waiter of an unknown task")?;
    }
    check(m.waiters.is_empty() || m.free.is_empty(), "fault waits while a frame is free")?;
    // Counters agree with the state.
    let c = m.counters();
    check(c.frames_total == n as u64, "frames_total wrong")?;
    check(c.frames_free + (n - m.free.len()) as u64 == n as u64, "frame counters wrong")?;
    check(c.slots_used == slots.len() as u64, "slots_used wrong")?;
    check(c.slots_total == m.slots.total() as u64, "slots_total wrong")?;
    let resident: u64 = m.tasks.values().map(|t| t.store.resident).sum::<u64>()
        + m.shares.values().map(|s| s.store.resident).sum::<u64>();
    let orphans = m.frames.iter().filter(|u| matches!(u, Use::Orphan { .. })).count() as u64;
    check(resident + orphans + c.frames_free == n as u64, "frames leak")?;
    Ok(())
}

/// Checks one home's pages: each frame owned back, each slot once, the
/// counts right.
fn check_store(
    m: &Memd,
    home: Home,
    st: &Store,
    slots: &mut BTreeSet<Slot>,
) -> Result<(), &'static str> {
    let (mut resident, mut swapped) = (0, 0);
    for (&n, p) in &st.pages {
        if let Some(f) = p.frame() {
            resident += 1;
            let back = m.frames.get(f.0 as usize).ok_or("page names no frame")?;
            let ok = matches!(*back, Use::Page { home: h, n: v, .. } if h == home && v == n);
            check(ok, "page's frame owned by another")?;
        }
        if let Some(s) = p.slot() {
            swapped += 1;
            check(slots.insert(s), "slot referenced twice")?;
        }
    }
    check(resident == st.resident, "resident pages miscounted")?;
    check(swapped == st.swapped, "swapped pages miscounted")?;
    Ok(())
}
