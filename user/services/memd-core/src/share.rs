//! Shared regions: the negotiation of a region between the two ends of a
//! connection, and the life of its pages (issue 10; `docs/shared-memory.md`).
//!
//! Two tasks connected by connection X each ask for a region of the same
//! length on X ([`Memd::share_request`]). The first request waits as an
//! offer; the second, from the other end of X, is the approval: memd then
//! reserves the region in both tasks and both are answered with where it
//! is. A region is a [`Home`] of its own: its pages belong to the share,
//! not to either task, so one frame backs the page in both tasks, the clock
//! evicts it from both at once, and a fault in either brings it back for
//! both. Each task keeps its mapping until it releases it or ends; the
//! pages go back when both have.
//!
//! This module owns the offers, the shares and their answers. It must never
//! decide who is an end of a connection (the daemon asks the kernel and
//! passes the answer in), and never free a share's page while a task still
//! maps it.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use alux_abi::TaskId;

use crate::memd::{place, Home, Page, Parked, Region, Store};
use crate::types::*;
use crate::Memd;

/// Names a shared region for memd's lifetime (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId(pub u64);

/// One end of a connection: a thread of a task (raw kernel IDs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct End {
    /// The task.
    pub task: TaskId,
    /// The thread (its raw `ThreadId`).
    pub thread: u64,
}

/// The two ends of a live connection, as the kernel's `ConnectionQuery`
/// reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnEnds {
    /// The end that connected: side 0 of a region shared on it.
    pub client: End,
    /// The end whose port was taken: side 1.
    pub server: End,
}

/// A request for a shared region ([`Memd::share_request`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareAsk {
    /// The daemon's name for the request, given back in its answer.
    pub token: u64,
    /// The daemon's name for the connection to memd that carried the
    /// request (a thread may have several): a withdrawal must come on the
    /// same one, and its closing drops the request.
    pub client: u64,
    /// Who asks: the thread whose connection to memd carried the request.
    pub from: End,
    /// The connection the region is for.
    pub conn: u64,
    /// Its length in bytes (nonzero; rounded up to pages).
    pub len: u64,
    /// When a request still waiting for the other end is answered
    /// `TimedOut`, in the daemon's clock ([`Memd::share_expire`]).
    pub deadline: u64,
}

/// Where a granted region is in one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The task it is mapped in.
    pub task: TaskId,
    /// The region's first byte in the task (page aligned).
    pub addr: u64,
    /// Its length (the request's, rounded up to pages).
    pub len: u64,
    /// The task's side: 0 for the end that connected, 1 for the other.
    pub side: u8,
    /// The share.
    pub share: ShareId,
}

/// The answer to one share request, for the daemon to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareAnswer {
    /// The request's token.
    pub token: u64,
    /// The region, or why not.
    pub result: Result<Granted, Error>,
}

/// The result of [`Memd::share_withdraw`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withdrawal {
    /// The request with this token was waiting and is gone; it gets no
    /// other answer.
    Withdrawn(u64),
    /// The request had been granted already: here is the region again.
    TooLate(Granted),
}

/// A request waiting for the other end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Offer {
    pub(crate) ask: ShareAsk,
    pub(crate) side: u8,
    pub(crate) peer: End,
}

/// One task's mapping of a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Side {
    pub(crate) task: TaskId,
    /// The thread that asked (its end of the connection).
    pub(crate) thread: u64,
    /// The first page of the range in the task.
    pub(crate) start: u64,
}

/// A shared region.
#[derive(Clone, Debug)]
pub(crate) struct Share {
    /// The connection it was negotiated on.
    pub(crate) conn: u64,
    /// Its length in pages.
    pub(crate) pages: u64,
    pub(crate) store: Store,
    /// The mappings: `None` once that side released it or ended.
    pub(crate) sides: [Option<Side>; 2],
}

impl Memd {
    /// A request from `ask.from` for a region of `ask.len` bytes shared
    /// with the other end of connection `ask.conn`, whose ends the kernel
    /// reported as `ends` (`None`: no such live connection). Answers go to
    /// [`Memd::take_answers`]: none while the request waits for the other
    /// end; when the other end asks too, both are answered.
    ///
    /// Refused (answered at once, nothing changes): `InvalidArgument` (zero
    /// or too long; or both ends are the asking thread), `NoSuchTask` or
    /// `Dying` (memd does not serve the asker), `NoSuchConnection`,
    /// `NotAnEnd` (the asking thread is not an end of the connection),
    /// `PeerNotServed` (the other end is not a task memd serves),
    /// `AlreadyShared` (this end still maps a region shared on it),
    /// `AlreadyAsked` (this end's earlier request still waits). When the
    /// other end's request is there: `SizeMismatch` to both if the lengths
    /// differ; `OutOfMemory` (past the quota) or `NoSpace` to the task
    /// that cannot take the region and `PeerFailed` to the other.
    pub fn share_request(&mut self, ask: ShareAsk, ends: Option<ConnEnds>) {
        let r = self.check_request(&ask, ends);
        let (side, peer) = match r {
            Ok(x) => x,
            Err(e) => return self.answer(ask.token, Err(e)),
        };
        let waiting = self.offers.iter().position(|o| o.ask.conn == ask.conn && o.side == 1 - side);
        let Some(i) = waiting else {
            self.offers.push(Offer { ask, side, peer });
            return;
        };
        let other = self.offers.remove(i);
        if other.ask.len != ask.len {
            self.answer(other.ask.token, Err(Error::SizeMismatch));
            return self.answer(ask.token, Err(Error::SizeMismatch));
        }
        let pages = ask.len.div_ceil(PAGE_SIZE);
        let id = ShareId(self.next_share);
        let mut sides = [None, None];
        sides[side as usize] = Some(ask);
        sides[other.side as usize] = Some(other.ask);
        let mut placed = [0u64; 2];
        for s in 0..2 {
            let a = sides[s].expect("both sides asked");
            match self.map_side(a.from.task, pages, id, s as u8) {
                Ok(start) => placed[s] = start,
                Err(e) => {
                    // Undo the side already placed; the other end failed.
                    if s == 1 {
                        self.unplace(sides[0].expect("both").from.task, placed[0], pages);
                    }
                    self.answer(a.token, Err(e));
                    let b = sides[1 - s].expect("both");
                    return self.answer(b.token, Err(Error::PeerFailed));
                }
            }
        }
        self.next_share += 1;
        let side_of = |s: usize| {
            let a = sides[s].expect("both sides asked");
            Some(Side { task: a.from.task, thread: a.from.thread, start: placed[s] })
        };
        self.by_conn.insert((ask.conn, id));
        self.shares.insert(
            id,
            Share {
                conn: ask.conn,
                pages,
                store: Store::default(),
                sides: [side_of(0), side_of(1)],
            },
        );
        for (s, a) in sides.iter().enumerate() {
            let a = a.expect("both sides asked");
            let g = Granted {
                task: a.from.task,
                addr: placed[s] * PAGE_SIZE,
                len: pages * PAGE_SIZE,
                side: s as u8,
                share: id,
            };
            self.answer(a.token, Ok(g));
        }
    }

    fn check_request(&self, ask: &ShareAsk, ends: Option<ConnEnds>) -> Result<(u8, End), Error> {
        let window = (self.cfg.window_end - self.cfg.window_start) / PAGE_SIZE;
        if ask.len == 0 || ask.len.div_ceil(PAGE_SIZE) > window {
            return Err(Error::InvalidArgument);
        }
        match self.tasks.get(&ask.from.task) {
            None => return Err(Error::NoSuchTask),
            Some(t) if t.dying => return Err(Error::Dying),
            Some(_) => {}
        }
        let ends = ends.ok_or(Error::NoSuchConnection)?;
        let (side, peer) = match (ends.client == ask.from, ends.server == ask.from) {
            (true, true) => return Err(Error::InvalidArgument),
            (true, false) => (0u8, ends.server),
            (false, true) => (1u8, ends.client),
            (false, false) => return Err(Error::NotAnEnd),
        };
        if self.tasks.get(&peer.task).is_none_or(|t| t.dying) {
            return Err(Error::PeerNotServed);
        }
        let shared = self
            .shares_on(ask.conn)
            .any(|(_, s)| s.sides[side as usize].is_some_and(|x| x.task == ask.from.task));
        if shared {
            return Err(Error::AlreadyShared);
        }
        if self.offers.iter().any(|o| o.ask.conn == ask.conn && o.side == side) {
            return Err(Error::AlreadyAsked);
        }
        Ok((side, peer))
    }

    /// Reserves `pages` for side `side` of share `id` in `task`: charged to
    /// its quota like any range. Returns the first page.
    fn map_side(&mut self, task: TaskId, pages: u64, id: ShareId, side: u8) -> Result<u64, Error> {
        let window = (self.cfg.window_start / PAGE_SIZE, self.cfg.window_end / PAGE_SIZE);
        let t = self.tasks.get_mut(&task).ok_or(Error::NoSuchTask)?;
        if t.reserved + pages > t.quota {
            return Err(Error::OutOfMemory);
        }
        let start = place(t, pages, window).ok_or(Error::NoSpace)?;
        let r = Region {
            end: start + pages,
            perms: Perms::RW,
            init: Init::Zero,
            share: Some((id, side)),
        };
        t.regions.insert(start, r);
        t.reserved += pages;
        Ok(start)
    }

    fn unplace(&mut self, task: TaskId, start: u64, pages: u64) {
        if let Some(t) = self.tasks.get_mut(&task) {
            if t.regions.remove(&start).is_some() {
                t.reserved -= pages;
            }
        }
    }

    fn answer(&mut self, token: u64, result: Result<Granted, Error>) {
        self.answers.push(ShareAnswer { token, result });
    }

    /// The answers to share requests made since the last call, oldest
    /// first: the daemon sends each to the request its token names.
    pub fn take_answers(&mut self) -> Vec<ShareAnswer> {
        core::mem::take(&mut self.answers)
    }

    /// Withdraws the request of `from` on `conn` that still waits. The
    /// request gets no answer of its own: the withdrawal's answer is the
    /// one (a client's connection to memd holds one message at a time, so
    /// two answers in a row could hide the first). If the request was
    /// granted before the withdrawal came, the withdrawal is answered with
    /// the region ([`Withdrawal::TooLate`]): the answer the client may not
    /// have read yet is never lost. `NotPending` if nothing waits and no
    /// region was granted to `from`'s task on `conn`.
    pub fn share_withdraw(
        &mut self,
        client: u64,
        from: End,
        conn: u64,
    ) -> Result<Withdrawal, Error> {
        let waiting = self
            .offers
            .iter()
            .position(|o| o.ask.conn == conn && o.ask.client == client && o.ask.from == from);
        if let Some(i) = waiting {
            let o = self.offers.remove(i);
            return Ok(Withdrawal::Withdrawn(o.ask.token));
        }
        for (id, s) in self.shares_on(conn) {
            for (i, side) in s.sides.iter().enumerate() {
                if let Some(x) = side.filter(|x| x.task == from.task && x.thread == from.thread) {
                    return Ok(Withdrawal::TooLate(Granted {
                        task: x.task,
                        addr: x.start * PAGE_SIZE,
                        len: s.pages * PAGE_SIZE,
                        side: i as u8,
                        share: id,
                    }));
                }
            }
        }
        Err(Error::NotPending)
    }

    /// Answers `TimedOut` to every request still waiting whose deadline is
    /// at or before `now`.
    pub fn share_expire(&mut self, now: u64) {
        let mut i = 0;
        while i < self.offers.len() {
            if self.offers[i].ask.deadline <= now {
                let o = self.offers.remove(i);
                self.answer(o.ask.token, Err(Error::TimedOut));
            } else {
                i += 1;
            }
        }
    }

    /// The earliest deadline of a waiting request.
    pub fn next_deadline(&self) -> Option<u64> {
        self.offers.iter().map(|o| o.ask.deadline).min()
    }

    /// The connection to memd named `client` closed (its thread ended, or
    /// gave it up): the requests it carried are dropped unanswered (nobody
    /// would read the answer). Regions stay: they belong to the task.
    pub fn share_forget(&mut self, client: u64) {
        self.offers.retain(|o| o.ask.client != client);
    }

    /// The shares negotiated on `conn`.
    fn shares_on(&self, conn: u64) -> impl Iterator<Item = (ShareId, &Share)> + '_ {
        self.by_conn
            .range((conn, ShareId(0))..=(conn, ShareId(u64::MAX)))
            .filter_map(|&(_, id)| Some((id, self.shares.get(&id)?)))
    }

    /// `task` ended: its waiting requests go, and requests waiting for it
    /// are answered `PeerFailed`.
    pub(crate) fn offers_task_gone(&mut self, task: TaskId) {
        self.offers.retain(|o| o.ask.from.task != task);
        let mut i = 0;
        while i < self.offers.len() {
            if self.offers[i].peer.task == task {
                let o = self.offers.remove(i);
                self.answer(o.ask.token, Err(Error::PeerFailed));
            } else {
                i += 1;
            }
        }
    }

    /// Releases the shared region of `task` that starts at `addr` (as
    /// [`Memd::release`] of the whole region). `NotReserved` if no shared
    /// region starts there.
    pub fn share_release<H: Host>(
        &mut self,
        host: &mut H,
        task: TaskId,
        addr: u64,
    ) -> Result<(), Error> {
        if !addr.is_multiple_of(PAGE_SIZE) || addr >= USER_END {
            return Err(Error::NotReserved);
        }
        let t = self.tasks.get(&task).ok_or(Error::NoSuchTask)?;
        let len = match t.regions.get(&(addr / PAGE_SIZE)) {
            Some(r) if r.share.is_some() => (r.end - addr / PAGE_SIZE) * PAGE_SIZE,
            _ => return Err(Error::NotReserved),
        };
        self.release(host, task, addr, len)
    }

    /// Side `side` leaves share `id` (its range is already gone from its
    /// task): its mappings are undone (`unmap`: the task still has its page
    /// tables), and the faults it had parked on the share's pages are
    /// returned. The last side to leave takes the pages with it.
    pub(crate) fn detach<H: Host>(
        &mut self,
        host: &mut H,
        id: ShareId,
        side: u8,
        unmap: bool,
    ) -> Vec<Parked> {
        let Some(sh) = self.shares.get_mut(&id) else { return Vec::new() };
        let Some(me) = sh.sides[side as usize].take() else { return Vec::new() };
        let bit = 1u8 << side;
        let mut parked = Vec::new();
        for (&n, page) in sh.store.pages.iter_mut() {
            match page {
                Page::Resident { maps, dirty, fresh, .. } if *maps & bit != 0 => {
                    // It may have been brought in for this side's thread,
                    // which will never touch it now.
                    *fresh = false;
                    // With its page tables gone, the task's writes through
                    // them cannot be read back: the safe side is dirty.
                    *dirty |= !unmap || host.unmap(me.task, (me.start + n) * PAGE_SIZE).dirty;
                    *maps &= !bit;
                }
                Page::Out { waiters, .. } | Page::In { waiters, .. } => {
                    parked.extend(waiters.iter().filter(|w| w.side == side));
                    waiters.retain(|w| w.side != side);
                }
                _ => {}
            }
        }
        if sh.sides.iter().all(Option::is_none) {
            let pages: Vec<u64> = sh.store.pages.keys().copied().collect();
            for n in pages {
                parked.extend(self.drop_page(host, Home::Share(id), n, false));
            }
            if let Some(s) = self.shares.remove(&id) {
                self.by_conn.remove(&(s.conn, id));
            }
        }
        parked
    }

    /// The shared regions: `(share, connection, pages, [task of side 0,
    /// task of side 1])`, a side `None` once it left.
    pub fn shares(&self) -> impl Iterator<Item = (ShareId, u64, u64, [Option<TaskId>; 2])> + '_ {
        self.shares.iter().map(|(&id, s)| (id, s.conn, s.pages, s.sides.map(|x| x.map(|x| x.task))))
    }

    /// Shared regions, their pages in memory, their pages in swap.
    pub fn share_counts(&self) -> [u64; 3] {
        let resident = self.shares.values().map(|s| s.store.resident).sum();
        let swapped = self.shares.values().map(|s| s.store.swapped).sum();
        [self.shares.len() as u64, resident, swapped]
    }

    /// Requests waiting for the other end.
    pub fn offers_waiting(&self) -> usize {
        self.offers.len()
    }
}

/// Checks of the shares for the audit.
pub(crate) fn audit_shares(m: &Memd) -> Result<(), &'static str> {
    let mut seen: BTreeMap<(u64, u8), ()> = BTreeMap::new();
    for o in &m.offers {
        if seen.insert((o.ask.conn, o.side), ()).is_some() {
            return Err("two requests wait for one end");
        }
        if !m.tasks.contains_key(&o.ask.from.task) {
            return Err("request of an unknown task");
        }
    }
    if m.by_conn.len() != m.shares.len()
        || m.by_conn.iter().any(|(c, id)| m.shares.get(id).is_none_or(|s| s.conn != *c))
    {
        return Err("share index disagrees with the shares");
    }
    for (&id, s) in &m.shares {
        if s.sides.iter().all(Option::is_none) {
            return Err("share with no side left");
        }
        for (i, side) in s.sides.iter().enumerate() {
            let Some(side) = side else { continue };
            let t = m.tasks.get(&side.task).ok_or("share side of an unknown task")?;
            match t.regions.get(&side.start) {
                Some(r) if r.share == Some((id, i as u8)) && r.end - side.start == s.pages => {}
                _ => return Err("share side without its range"),
            }
        }
        for (&n, p) in &s.store.pages {
            if n >= s.pages {
                return Err("share page past its end");
            }
            if let Page::Resident { maps, .. } = p {
                for i in 0..2 {
                    if maps & (1 << i) != 0 && s.sides[i].is_none() {
                        return Err("share page mapped by a side that left");
                    }
                }
            }
            if let Page::Out { waiters, .. } | Page::In { waiters, .. } = p {
                for w in waiters {
                    let side = s.sides.get(w.side as usize).copied().flatten();
                    if side.is_none_or(|x| x.task != w.task) {
                        return Err("fault parked for a side that left");
                    }
                }
            }
        }
    }
    for (&task, t) in &m.tasks {
        for (&start, r) in &t.regions {
            if let Some((id, side)) = r.share {
                let s = m.shares.get(&id).ok_or("range of a share that is gone")?;
                if s.sides[side as usize].is_none_or(|x| x.task != task || x.start != start) {
                    return Err("range and share disagree");
                }
                if r.perms != Perms::RW || r.init != Init::Zero {
                    return Err("shared range not read-write zero-filled");
                }
            }
        }
        if t.store.pages.keys().any(|&vpn| t.region(vpn).is_some_and(|r| r.share.is_some())) {
            return Err("private page inside a shared range");
        }
        for p in t.store.pages.values() {
            match p {
                Page::Resident { maps, .. } if maps & !1 != 0 => {
                    return Err("private page with a second mapping")
                }
                Page::Out { waiters, .. } | Page::In { waiters, .. }
                    if waiters.iter().any(|w| w.task != task || w.side != 0) =>
                {
                    return Err("fault of another task parked on a private page")
                }
                _ => {}
            }
        }
    }
    Ok(())
}
