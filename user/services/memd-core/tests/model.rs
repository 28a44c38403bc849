//! Model-based property test: random tasks (with two threads each) spawn
//! with image pages, reserve, write, read, execute and release pages, make
//! bad accesses and end, share regions with each other (negotiated over a
//! fake connection, released by either side), under a tiny pool (4 to 8 frames, many more
//! pages), with fault-around off or at 3 pages, with a fake MMU and a
//! fake disk that completes requests in random order and sometimes fails.
//! A simple model (the last value written to each page) predicts every
//! read:
//! - a read never sees anything but the last value written (or zeros, or
//!   the image bytes);
//! - every fault is answered exactly once (resumed or killed), none is
//!   lost, and a kill always has a reason the test can justify;
//! - `audit()` and the fake MMU's cross-check hold after every step;
//! - at the end, with every task gone and the disk drained, every frame and
//!   slot is free again.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use alux_memd_core::*;
use common::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const MAX_TASKS: usize = 3;
const THREADS: usize = 2;
const IMAGE_BASE: u64 = 0x40_0000;

#[derive(Clone, Debug)]
enum Op {
    Spawn {
        quota: u64,
        image: u64,
    },
    Reserve {
        task: usize,
        pages: u64,
        write: bool,
    },
    Release {
        task: usize,
        region: usize,
        part: u8,
    },
    Touch {
        task: usize,
        thread: usize,
        region: usize,
        page: usize,
        kind: u8,
        value: u64,
    },
    Disk {
        pick: usize,
        ok: bool,
    },
    Busy {
        pick: usize,
    },
    Bad {
        task: usize,
        kind: u8,
    },
    Exit {
        task: usize,
    },
    Reap,
    /// Tasks `a` and `b` share a region of `pages` (`a == b`: two threads
    /// of one task).
    Share {
        a: usize,
        b: usize,
        pages: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0..MAX_TASKS;
    prop_oneof![
        3 => (8u64..40, 0u64..4).prop_map(|(quota, image)| Op::Spawn { quota, image }),
        4 => (t.clone(), 1u64..6, any::<bool>())
            .prop_map(|(task, pages, write)| Op::Reserve { task, pages, write }),
        1 => (t.clone(), 0..8usize, 0..3u8)
            .prop_map(|(task, region, part)| Op::Release { task, region, part }),
        24 => (t.clone(), 0..THREADS, 0..8usize, 0..8usize, 0..3u8, any::<u64>()).prop_map(
            |(task, thread, region, page, kind, value)| Op::Touch {
                task, thread, region, page, kind, value
            }
        ),
        10 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(pick, ok)| Op::Disk { pick, ok }),
        1 => any::<usize>().prop_map(|pick| Op::Busy { pick }),
        1 => (t.clone(), 0..4u8).prop_map(|(task, kind)| Op::Bad { task, kind }),
        1 => t.clone().prop_map(|task| Op::Exit { task }),
        1 => Just(Op::Reap),
        2 => (t.clone(), t.clone(), 1u64..4).prop_map(|(a, b, pages)| Op::Share { a, b, pages }),
    ]
}

#[derive(Clone, Debug)]
struct MRegion {
    addr: u64,
    writable: bool,
    /// Image pages: read-only and executable, content given at spawn.
    image: bool,
    /// The last value written to each page (`None`: never written, zeros;
    /// image pages start with their image value). A shared region's
    /// values are the same cell in both tasks.
    values: Rc<RefCell<Vec<Option<u64>>>>,
    shared: bool,
}

impl MRegion {
    fn pages(&self) -> usize {
        self.values.borrow().len()
    }
    fn end(&self) -> u64 {
        self.addr + self.pages() as u64 * PAGE_SIZE
    }
}

fn values(v: Vec<Option<u64>>) -> Rc<RefCell<Vec<Option<u64>>>> {
    Rc::new(RefCell::new(v))
}

#[derive(Clone, Copy, Debug)]
struct Blocked {
    fault: FaultId,
    va: u64,
    access: Access,
    value: Option<u64>,
}

#[derive(Debug)]
struct MTask {
    id: TaskId,
    regions: Vec<MRegion>,
    threads: [Option<Blocked>; THREADS],
    /// memd killed it; the kernel has not reported its end yet.
    killed: bool,
    /// A bad access was made: the kill reason it must get.
    expect: Option<KillReason>,
}

fn image_value(task: TaskId, page: usize) -> u64 {
    (1 << 62) | (task.raw() << 8) | page as u64
}

struct Harness {
    w: World,
    tasks: Vec<Option<MTask>>,
    next_task: u64,
    /// Faults sent to memd and not answered yet.
    open: BTreeSet<FaultId>,
    /// Consecutive failed write completions.
    write_streak: u32,
    /// Tasks that had a swap read fail.
    read_failed: BTreeSet<TaskId>,
    pool: u32,
    ticks: u64,
    next_conn: u64,
}

impl Harness {
    /// A tiny pool (watermarks 1 and 2), with `fault_around` pages mapped
    /// after each zero-fill fault while the pool stays above 2 free frames.
    fn new(pool: u32, slots: u32, max_io: u32, fault_around: u32) -> Harness {
        let mut w = World::small_io(pool, slots, max_io);
        let cfg = Config { fault_around, ..*w.m.config() };
        w = World::new(cfg);
        Harness {
            w,
            tasks: (0..MAX_TASKS).map(|_| None).collect(),
            next_task: 1,
            open: BTreeSet::new(),
            write_streak: 0,
            read_failed: BTreeSet::new(),
            pool,
            ticks: 0,
            next_conn: 1,
        }
    }

    fn check(&self) {
        self.w.m.audit().unwrap();
        self.w.h.check_against(&self.w.m);
    }

    fn slot_of(&self, id: TaskId) -> Option<usize> {
        self.tasks.iter().position(|t| t.as_ref().is_some_and(|t| t.id == id))
    }

    fn swap_full(&self) -> bool {
        let c = self.w.m.counters();
        c.slots_used == c.slots_total
    }

    /// What a read of `va` in task slot `i` must return.
    fn expected(&self, i: usize, va: u64) -> Option<Vec<u8>> {
        let t = self.tasks[i].as_ref()?;
        for r in &t.regions {
            if (r.addr..r.end()).contains(&va) {
                let p = ((va - r.addr) / PAGE_SIZE) as usize;
                return Some(match r.values.borrow()[p] {
                    Some(v) => pattern(v),
                    None => vec![0; PAGE_SIZE as usize],
                });
            }
        }
        None
    }

    /// Applies a successful access to the model (writes) or checks it
    /// (reads).
    fn done(&mut self, i: usize, va: u64, value: Option<u64>, got: Option<Vec<u8>>) {
        match value {
            Some(v) => {
                let t = self.tasks[i].as_mut().unwrap();
                let r = t
                    .regions
                    .iter_mut()
                    .find(|r| (r.addr..r.end()).contains(&va))
                    .expect("a write that succeeded is to a reserved page");
                r.values.borrow_mut()[((va - r.addr) / PAGE_SIZE) as usize] = Some(v);
            }
            None => {
                let want =
                    self.expected(i, va).expect("a read that succeeded is of a reserved page");
                assert!(got.unwrap() == want, "read of {va:#x} is not the last value written");
            }
        }
    }

    /// One attempt of a thread's access; blocks the thread on a fault.
    fn attempt(&mut self, i: usize, th: usize, va: u64, access: Access, value: Option<u64>) {
        let id = self.tasks[i].as_ref().unwrap().id;
        let bytes = value.map(pattern);
        match self.w.h.access(id, va, access, bytes.as_deref()) {
            Ok(got) => self.done(i, va, value, got),
            Err(()) => {
                let f = self.w.fault_id();
                self.open.insert(f);
                self.tasks[i].as_mut().unwrap().threads[th] =
                    Some(Blocked { fault: f, va, access, value });
                let o = self.w.m.fault(&mut self.w.h, id, f, va, access);
                if std::env::var_os("MEMD_DEBUG").is_some() {
                    eprintln!(
                        "fault {f:?} {id} {va:#x} {access:?} -> {o:?} {:?}",
                        self.w.m.counters()
                    );
                }
            }
        }
    }

    /// Takes memd's answers to faults and plays what follows: resumed
    /// threads retry their access, killed tasks stop.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let killed = self.w.h.take_killed();
            let resumed = self.w.h.take_resumed();
            if killed.is_empty() && resumed.is_empty() {
                // Time passes (the resumed threads ran): the daemon's
                // timeout ticks memd if faults wait with no I/O.
                if self.w.m.needs_tick() {
                    self.ticks += 1;
                    assert!(self.ticks < 100_000, "ticks never end");
                    self.w.m.tick(&mut self.w.h);
                    let answered = !self.w.h.killed.is_empty() || !self.w.h.resumed.is_empty();
                    if answered || !self.w.m.needs_tick() {
                        // Served, or a request started for them.
                        continue;
                    }
                    // Only killed tasks' frames can come back: the kernel
                    // reports their ends.
                    let dead: Vec<usize> = (0..MAX_TASKS)
                        .filter(|&i| self.tasks[i].as_ref().is_some_and(|t| t.killed))
                        .collect();
                    assert!(!dead.is_empty(), "a tick served nothing: faults wait forever");
                    for i in dead {
                        self.end(i);
                    }
                    continue;
                }
                return;
            }
            for (id, f, reason) in killed {
                assert!(self.open.remove(&f), "kill of fault {f:?} not open");
                let i = self.slot_of(id).expect("kill of a task memd was told is gone");
                let t = self.tasks[i].as_ref().unwrap();
                let b = t
                    .threads
                    .iter()
                    .flatten()
                    .find(|b| b.fault == f)
                    .copied()
                    .expect("fault of a thread");
                let ok = match reason {
                    KillReason::TaskDying => t.killed,
                    KillReason::SwapReadFailed => self.read_failed.contains(&id),
                    KillReason::OutOfMemory => self.write_streak >= self.pool || self.swap_full(),
                    KillReason::Unreserved => {
                        t.expect == Some(reason) || self.expected(i, b.va).is_none()
                    }
                    r => t.expect == Some(r),
                };
                assert!(ok, "unjustified kill of {id} ({reason:?}) at {:#x}", b.va);
                let t = self.tasks[i].as_mut().unwrap();
                t.killed = true;
                for th in t.threads.iter_mut() {
                    if th.is_some_and(|b| b.fault == f) {
                        *th = None;
                    }
                }
            }
            for f in resumed {
                assert!(self.open.remove(&f), "resume of fault {f:?} not open");
                let (i, th, b) = self
                    .tasks
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| t.as_ref().map(|t| (i, t)))
                    .find_map(|(i, t)| {
                        t.threads.iter().enumerate().find_map(|(th, b)| match b {
                            Some(b) if b.fault == f => Some((i, th, *b)),
                            _ => None,
                        })
                    })
                    .expect("resumed fault belongs to a blocked thread");
                let t = self.tasks[i].as_mut().unwrap();
                t.threads[th] = None;
                if t.killed {
                    // Another thread's fault killed the task meanwhile.
                    continue;
                }
                self.attempt(i, th, b.va, b.access, b.value);
            }
        }
        panic!("faults keep coming back: livelock");
    }

    fn complete(&mut self, pick: usize, ok: bool) {
        if self.w.h.pending.is_empty() {
            return;
        }
        let i = pick % self.w.h.pending.len();
        let r = self.w.h.pending[i];
        match (r.kind, ok) {
            (IoKind::Write, true) => self.write_streak = 0,
            (IoKind::Write, false) => self.write_streak += 1,
            (IoKind::Read, false) => {
                for (id, _) in self.w.m.owners(r.frame) {
                    self.read_failed.insert(id);
                }
            }
            (IoKind::Read, true) => {}
        }
        self.w.h.complete(&mut self.w.m, i, ok);
        self.pump();
    }

    /// The kernel ends task slot `i` (exit, or after memd killed it).
    fn end(&mut self, i: usize) {
        let Some(t) = self.tasks[i].take() else { return };
        for b in t.threads.iter().flatten() {
            // Its threads are gone: their faults are never answered.
            self.open.remove(&b.fault);
        }
        self.w.h.drop_task(t.id);
        self.w.m.task_gone(&mut self.w.h, t.id).unwrap();
        assert_eq!(self.w.m.task(t.id), None);
        self.pump();
    }

    fn spawn(&mut self, quota: u64, image: u64) {
        let Some(i) = self.tasks.iter().position(|t| t.is_none()) else { return };
        let id = TaskId::new(i as u32, self.next_task);
        self.next_task += 1;
        self.w.m.task_new(id, quota).unwrap();
        let mut regions = Vec::new();
        if image > 0 {
            self.w.m.reserve_at(id, IMAGE_BASE, image * PAGE_SIZE, Perms::RX, Init::Image).unwrap();
            regions.push(MRegion {
                addr: IMAGE_BASE,
                writable: false,
                image: true,
                values: values((0..image as usize).map(|p| Some(image_value(id, p))).collect()),
                shared: false,
            });
        }
        self.tasks[i] =
            Some(MTask { id, regions, threads: [None; THREADS], killed: false, expect: None });
        for p in 0..image {
            let bytes = pattern(image_value(id, p as usize));
            let mut tries = 0;
            loop {
                let r = self.w.m.populate(&mut self.w.h, id, IMAGE_BASE + p * PAGE_SIZE, &bytes);
                self.pump();
                match r {
                    Err(Error::OutOfMemory) => {
                        assert!(self.swap_full(), "spawn refused with swap not full");
                        self.end(i);
                        return;
                    }
                    Err(e) => panic!("populate: {e:?}"),
                    Ok(Populate::Done) => break,
                    Ok(Populate::NoFrame) if self.w.h.pending.is_empty() => {
                        // Time passes: threads run, the kernel reports the
                        // ends of killed tasks (never this one: it has not
                        // started).
                        for k in 0..MAX_TASKS {
                            if k != i && self.tasks[k].as_ref().is_some_and(|t| t.killed) {
                                self.end(k);
                            }
                        }
                        self.w.m.tick(&mut self.w.h);
                        self.pump();
                    }
                    Ok(Populate::NoFrame) => self.complete(0, true),
                }
                self.check();
                tries += 1;
                assert!(tries < 200, "population never gets a frame");
            }
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Spawn { quota, image } => self.spawn(quota, image),
            Op::Reserve { task, pages, write } => {
                let Some(t) = self.tasks[task].as_mut() else { return };
                let perms = if write { Perms::RW } else { Perms::R };
                let before = self.w.m.task(t.id).unwrap();
                match self.w.m.reserve(t.id, pages * PAGE_SIZE, perms) {
                    Ok(addr) => {
                        assert!(!t.killed);
                        assert!(before.reserved + pages <= before.quota);
                        t.regions.push(MRegion {
                            addr,
                            writable: write,
                            image: false,
                            values: values(vec![None; pages as usize]),
                            shared: false,
                        });
                    }
                    Err(Error::OutOfMemory) => assert!(before.reserved + pages > before.quota),
                    Err(Error::Dying) => assert!(t.killed),
                    Err(e) => panic!("reserve: {e:?}"),
                }
            }
            Op::Release { task, region, part } => {
                let Some(t) = self.tasks[task].as_mut() else { return };
                if t.regions.is_empty() {
                    return;
                }
                let ri = region % t.regions.len();
                let r = &t.regions[ri];
                let n = r.pages() as u64;
                let (addr, len) = match part {
                    0 => (r.addr, n),
                    1 => (r.addr, 1),
                    _ => (r.addr + (n - 1) * PAGE_SIZE, 1),
                };
                let res = self.w.m.release(&mut self.w.h, t.id, addr, len * PAGE_SIZE);
                if t.killed {
                    assert_eq!(res, Err(Error::Dying));
                    return;
                }
                if r.shared && len < n {
                    // A shared range goes whole or not at all.
                    assert_eq!(res, Err(Error::InvalidArgument));
                    return;
                }
                res.unwrap();
                // Keep the model's remaining pages as ranges of their own.
                let r = t.regions.remove(ri);
                if len < n {
                    let v = r.values.borrow().clone();
                    let (addr, v) = if addr == r.addr {
                        (r.addr + PAGE_SIZE, v[1..].to_vec())
                    } else {
                        (r.addr, v[..v.len() - 1].to_vec())
                    };
                    t.regions.push(MRegion { addr, values: values(v), ..r });
                }
                self.pump();
            }
            Op::Touch { task, thread, region, page, kind, value } => {
                let Some(t) = self.tasks[task].as_ref() else { return };
                if t.killed || t.threads[thread].is_some() || t.regions.is_empty() {
                    return;
                }
                let r = &t.regions[region % t.regions.len()];
                let va = r.addr + (page % r.pages()) as u64 * PAGE_SIZE + ((value % 4096) & !7);
                let (access, v) = match kind {
                    0 if r.writable => (Access::Write, Some(value)),
                    2 if r.image => (Access::Exec, None),
                    _ => (Access::Read, None),
                };
                self.attempt(task, thread, va, access, v);
                self.pump();
            }
            Op::Disk { pick, ok } => self.complete(pick, ok),
            Op::Busy { pick } => {
                if !self.w.h.pending.is_empty() {
                    let i = pick % self.w.h.pending.len();
                    self.w.busy(i);
                    self.pump();
                }
            }
            Op::Bad { task, kind } => {
                let Some(t) = self.tasks[task].as_mut() else { return };
                if t.killed || t.threads[0].is_some() {
                    return;
                }
                let ro = t.regions.iter().find(|r| !r.writable).map(|r| r.addr);
                let rw = t.regions.iter().find(|r| r.writable).map(|r| r.addr);
                let (va, access, reason) = match (kind, ro, rw) {
                    (0, _, _) => (8, Access::Read, KillReason::NullPage),
                    (1, Some(a), _) => (a, Access::Write, KillReason::WriteReadOnly),
                    (2, _, Some(a)) => (a, Access::Exec, KillReason::ExecNonExec),
                    _ => (0x7000_0000, Access::Read, KillReason::Unreserved),
                };
                t.expect = Some(reason);
                self.attempt(task, 0, va, access, None);
                self.pump();
            }
            Op::Exit { task } => self.end(task),
            Op::Share { a, b, pages } => self.share(a, b, pages),
            Op::Reap => {
                for i in 0..MAX_TASKS {
                    if self.tasks[i].as_ref().is_some_and(|t| t.killed) {
                        self.end(i);
                    }
                }
            }
        }
        self.check();
    }

    /// Tasks in slots `a` and `b` negotiate a region of `pages` on a new
    /// connection between thread 0 of `a` and thread 1 of `b`: `b` asks
    /// first, then `a`. Both get it, or both are refused with reasons the
    /// model can tell.
    fn share(&mut self, a: usize, b: usize, pages: u64) {
        let (Some(ta), Some(tb)) = (self.tasks[a].as_ref(), self.tasks[b].as_ref()) else {
            return;
        };
        let (ia, ib) = (ta.id, tb.id);
        let (ka, kb) = (ta.killed, tb.killed);
        let conn = self.next_conn;
        self.next_conn += 1;
        let ends =
            ConnEnds { client: End { task: ia, thread: 10 }, server: End { task: ib, thread: 11 } };
        let (qa, qb) = (self.w.m.task(ia).unwrap(), self.w.m.task(ib).unwrap());
        let len = pages * PAGE_SIZE;
        let ask = |token, from: End| ShareAsk {
            token,
            client: from.thread,
            from,
            conn,
            len,
            deadline: u64::MAX,
        };
        self.w.m.share_request(ask(2, ends.server), Some(ends));
        self.w.m.share_request(ask(1, ends.client), Some(ends));
        let answers = self.w.m.take_answers();
        if kb {
            // A dying task is refused before it waits, and its peer too.
            let ra = if ka { Error::Dying } else { Error::PeerNotServed };
            let want = [
                ShareAnswer { token: 2, result: Err(Error::Dying) },
                ShareAnswer { token: 1, result: Err(ra) },
            ];
            assert_eq!(answers, want);
            assert_eq!(self.w.m.offers_waiting(), 0);
            return;
        }
        if ka {
            let want = [
                ShareAnswer { token: 2, result: Err(Error::PeerNotServed) },
                ShareAnswer { token: 1, result: Err(Error::Dying) },
            ];
            assert_eq!(answers, want);
            assert_eq!(self.w.m.offers_waiting(), 0);
            return;
        }
        assert_eq!(answers.len(), 2, "{answers:?}");
        let mut got = [None, None];
        for x in &answers {
            got[x.token as usize - 1] = Some(x.result);
        }
        let (ra, rb) = (got[0].unwrap(), got[1].unwrap());
        let need_b = if a == b { 2 * pages } else { pages };
        let fits = |q: TaskCounters, need| q.reserved + need <= q.quota;
        match (ra, rb) {
            (Ok(ga), Ok(gb)) => {
                assert!(fits(qa, pages) && fits(qb, need_b));
                assert_eq!((ga.len, gb.len, ga.side, gb.side), (len, len, 0, 1));
                let v = values(vec![None; pages as usize]);
                for (i, g) in [(a, ga), (b, gb)] {
                    let t = self.tasks[i].as_mut().unwrap();
                    t.regions.push(MRegion {
                        addr: g.addr,
                        writable: true,
                        image: false,
                        values: v.clone(),
                        shared: true,
                    });
                }
            }
            (Err(Error::OutOfMemory), Err(Error::PeerFailed)) => assert!(!fits(qa, pages)),
            (Err(Error::PeerFailed), Err(Error::OutOfMemory)) => {
                assert!(fits(qa, pages) && !fits(qb, need_b))
            }
            other => panic!("share: {other:?}"),
        }
        assert_eq!(self.w.m.offers_waiting(), 0);
    }

    /// Drains the disk; then no live thread may still wait, every page
    /// must read back its last value, and when every task ended, memd is
    /// back to empty.
    fn finish(&mut self) {
        if std::env::var_os("MEMD_MODEL_STATS").is_some() {
            eprintln!("STATS {:?}", self.w.m.counters());
        }
        let mut n = 0;
        while !self.w.h.pending.is_empty() {
            self.complete(0, true);
            self.check();
            n += 1;
            assert!(n < 10_000);
        }
        for t in self.tasks.iter().flatten() {
            if !t.killed {
                assert!(t.threads.iter().all(|b| b.is_none()), "fault lost: {t:?}");
            }
        }
        for i in 0..MAX_TASKS {
            let Some(t) = self.tasks[i].as_ref() else { continue };
            if t.killed {
                continue;
            }
            let vas: Vec<u64> = t
                .regions
                .iter()
                .flat_map(|r| (0..r.pages() as u64).map(move |p| r.addr + p * PAGE_SIZE))
                .collect();
            for va in vas {
                self.attempt(i, 0, va, Access::Read, None);
                let mut k = 0;
                while self.tasks[i].as_ref().is_some_and(|t| t.threads[0].is_some()) {
                    self.pump();
                    self.complete(0, true);
                    k += 1;
                    assert!(k < 1000, "final read never completes");
                }
                self.pump();
            }
        }
        for i in 0..MAX_TASKS {
            self.end(i);
        }
        while !self.w.h.pending.is_empty() {
            self.complete(0, true);
        }
        self.check();
        assert!(self.open.is_empty(), "faults never answered: {:?}", self.open);
        assert!(self.w.h.ptes.is_empty());
        let c = self.w.m.counters();
        assert!(self.w.m.is_idle(), "not back to empty: {c:?}");
        assert_eq!(
            (c.frames_free, c.slots_used, c.frames_io, c.waiting),
            (self.pool as u64, 0, 0, 0)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn memd_never_loses_data_or_faults(
        pool in 4u32..=8,
        max_io in 1u32..=4,
        fault_around in prop::sample::select(vec![0u32, 3]),
        ops in proptest::collection::vec(op(), 1..240),
    ) {
        let mut h = Harness::new(pool, 256, max_io, fault_around);
        for op in &ops {
            h.step(op);
        }
        h.finish();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// The same with a swap area too small for every page: faults and
    /// spawns that can get no frame die `OutOfMemory` (only then), and
    /// everything else still reads back right.
    #[test]
    fn memd_with_a_full_swap_kills_only_who_needs_a_frame(
        pool in 4u32..=6,
        slots in 0u32..12,
        fault_around in prop::sample::select(vec![0u32, 3]),
        ops in proptest::collection::vec(op(), 1..240),
    ) {
        let mut h = Harness::new(pool, slots, 2, fault_around);
        for op in &ops {
            h.step(op);
        }
        h.finish();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 500,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    /// The same with a larger pool, so that fault-around (1 to 7 pages)
    /// often has frames above the watermark to map, and the pages it maps
    /// meet writes, evictions, swap-ins, releases and task ends.
    #[test]
    fn memd_with_fault_around_never_loses_data_or_faults(
        pool in 8u32..=16,
        max_io in 1u32..=4,
        fault_around in 1u32..=7,
        ops in proptest::collection::vec(op(), 1..240),
    ) {
        let mut h = Harness::new(pool, 256, max_io, fault_around);
        for op in &ops {
            h.step(op);
        }
        h.finish();
    }
}

/// Pages written under pressure by several tasks, with failing disks,
/// and a final tally that the counters make sense.
#[test]
fn counters_add_up_after_a_heavy_run() {
    let mut h = Harness::new(4, 256, 16, 3);
    for _ in 0..3 {
        h.spawn(24, 2);
    }
    let mut rng = 12345u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for t in 0..3 {
        h.step(&Op::Reserve { task: t, pages: 5, write: true });
    }
    for _ in 0..3000 {
        let r = next();
        let op = match r % 10 {
            0..=5 => Op::Touch {
                task: (r >> 8) as usize % 3,
                thread: (r >> 12) as usize % 2,
                region: (r >> 16) as usize,
                page: (r >> 20) as usize,
                kind: (r >> 24) as u8 % 3,
                value: next(),
            },
            _ => Op::Disk { pick: (r >> 8) as usize, ok: (r >> 30) % 10 != 0 },
        };
        h.step(&op);
    }
    let c = h.w.m.counters();
    assert!(c.pages_out > 20 && c.pages_in > 50, "{c:?}");
    assert!(c.faults_zero > 0 && c.faults_swap > 0);
    let resident: u64 = (0..3)
        .filter_map(|i| h.tasks[i].as_ref())
        .map(|t| h.w.m.task(t.id).unwrap().resident)
        .sum();
    assert!(resident <= 4);
    assert!(h.tasks.iter().flatten().count() > 0);
    h.finish();
}

/// A past failure: a write that failed while a fault waited for its page
/// maps the page again (on its clock hold) and resumes the fault.
#[test]
fn failed_write_with_a_waiting_fault() {
    let mut h = Harness::new(4, 256, 16, 0);
    let ops = [
        Op::Spawn { quota: 4, image: 2 },
        Op::Spawn { quota: 4, image: 3 },
        Op::Touch { task: 1, thread: 0, region: 0, page: 3, kind: 0, value: 0 },
        Op::Touch { task: 0, thread: 0, region: 0, page: 1, kind: 0, value: 0 },
        Op::Disk { pick: 0, ok: false },
    ];
    for op in &ops {
        h.step(op);
    }
    assert_eq!(h.w.m.counters().write_errors, 1);
    h.finish();
}
