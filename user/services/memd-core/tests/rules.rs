//! One test per rule of memd's policy (see `docs/memory.md`), against the
//! fake MMU, memory and disk of `common`. `audit()` runs after each step
//! that matters.

mod common;

use alux_memd_core::*;
use common::*;

const RW: Perms = Perms::RW;
const ZERO: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

fn va(base: u64, page: u64) -> u64 {
    base + page * PAGE_SIZE
}

#[test]
fn config_is_checked() {
    let ok = Config::new(8, 8);
    assert!(Memd::new(ok).is_ok());
    for bad in [
        Config { pool_frames: 0, ..ok },
        Config { low_water: 0, ..ok },
        Config { low_water: 3, high_water: 2, ..ok },
        Config { high_water: 9, ..ok },
        Config { window_start: 0, ..ok },
        Config { window_start: ok.window_end, ..ok },
        Config { window_end: USER_END + PAGE_SIZE, ..ok },
        Config { window_start: ok.window_start + 1, ..ok },
    ] {
        assert_eq!(Memd::new(bad).err(), Some(Error::InvalidArgument), "{bad:?}");
    }
}

#[test]
fn first_touch_maps_a_zeroed_frame_and_resumes() {
    let mut w = World::small(4, 8);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    assert_eq!(w.m.page(t, a), None, "lazily backed");
    let (f, out) = w.try_access(t, a + 8, Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Resumed);
    assert_eq!(w.h.resumed, vec![f]);
    assert_eq!(w.read(t, a + 8).unwrap(), ZERO.to_vec(), "garbage in the pool never shows");
    assert!(matches!(
        w.m.page(t, a),
        Some(PageView::Resident { mapped: true, dirty: false, slot: None, .. })
    ));
    let c = w.m.counters();
    // Fault-around (7 pages by default) mapped page 1 too, and stopped at
    // the high watermark (2 frames free).
    assert_eq!((c.faults_zero, c.prefaulted, c.frames_free, c.slots_used), (1, 1, 2, 0));
    w.m.audit().unwrap();
}

#[test]
fn bad_accesses_kill_with_their_reason() {
    let mut w = World::small(4, 8);
    let t = w.task(1, 0);
    let rw = w.m.reserve(t, PAGE_SIZE, RW).unwrap();
    let ro = w.m.reserve(t, PAGE_SIZE, Perms::R).unwrap();
    let cases = [
        (0x10, Access::Read, KillReason::NullPage),
        (USER_END, Access::Read, KillReason::KernelAddress),
        (0xffff_8000_0000_0000, Access::Write, KillReason::KernelAddress),
        (rw + 4 * PAGE_SIZE, Access::Read, KillReason::Unreserved),
        (rw - PAGE_SIZE, Access::Read, KillReason::Unreserved),
        (ro, Access::Write, KillReason::WriteReadOnly),
        (rw, Access::Exec, KillReason::ExecNonExec),
    ];
    for (i, (addr, access, reason)) in cases.into_iter().enumerate() {
        let mut w = World::small(4, 8);
        let t = w.task(1, 0);
        assert_eq!(w.m.reserve(t, PAGE_SIZE, RW).unwrap(), rw);
        assert_eq!(w.m.reserve(t, PAGE_SIZE, Perms::R).unwrap(), ro);
        let f = w.fault_id();
        assert_eq!(
            w.m.fault(&mut w.h, t, f, addr, access),
            FaultOutcome::Killed(reason),
            "case {i}"
        );
        assert_eq!(w.h.killed, vec![(t, f, reason)]);
        // The task is dying: its other threads die too, requests are refused.
        let g = w.fault_id();
        assert_eq!(
            w.m.fault(&mut w.h, t, g, rw, Access::Read),
            FaultOutcome::Killed(KillReason::TaskDying)
        );
        assert_eq!(w.m.reserve(t, PAGE_SIZE, RW), Err(Error::Dying));
        assert!(w.m.task(t).unwrap().dying);
        w.m.audit().unwrap();
    }
    // A task memd never heard of.
    let f = w.fault_id();
    assert_eq!(
        w.m.fault(&mut w.h, tid(9), f, rw, Access::Read),
        FaultOutcome::Killed(KillReason::UnknownTask)
    );
    // Other tasks go on.
    let u = w.task(2, 0);
    let b = w.m.reserve(u, PAGE_SIZE, RW).unwrap();
    w.write(u, b, 7).unwrap();
    assert_eq!(w.read(u, b).unwrap(), pattern(7));
    let _ = t;
}

#[test]
fn reserve_places_ranges_with_guard_pages_inside_the_window() {
    let mut cfg = Config::new(4, 0);
    cfg.window_start = 0x10_0000;
    cfg.window_end = 0x10_0000 + 16 * PAGE_SIZE;
    let mut w = World::new(cfg);
    let t = w.task(1, 100);
    let a = w.m.reserve(t, 1, RW).unwrap();
    let b = w.m.reserve(t, 2 * PAGE_SIZE, RW).unwrap();
    assert_eq!(a, 0x10_0000 + PAGE_SIZE, "guard page at the window start");
    assert_eq!(b, a + 2 * PAGE_SIZE, "one guard page between ranges");
    // The guard page faults as unreserved.
    let f = w.fault_id();
    assert_eq!(
        w.m.fault(&mut w.h, t, f, a + PAGE_SIZE, Access::Read),
        FaultOutcome::Killed(KillReason::Unreserved)
    );
    let mut w = World::new(cfg);
    let t = w.task(1, 100);
    // 16 pages: at most 14 usable in one range (a guard on each side).
    assert_eq!(w.m.reserve(t, 15 * PAGE_SIZE, RW), Err(Error::NoSpace));
    let big = w.m.reserve(t, 14 * PAGE_SIZE, RW).unwrap();
    assert_eq!(w.m.reserve(t, 1, RW), Err(Error::NoSpace));
    w.m.release(&mut w.h, t, big + 4 * PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
    // The hole of 2 pages has no room for a guarded page...
    assert_eq!(w.m.reserve(t, 2 * PAGE_SIZE, RW), Err(Error::NoSpace));
    // ...but one page fits between two guards.
    assert_eq!(w.m.reserve(t, PAGE_SIZE, RW), Err(Error::NoSpace));
    w.m.release(&mut w.h, t, big + 6 * PAGE_SIZE, PAGE_SIZE).unwrap();
    assert_eq!(w.m.reserve(t, PAGE_SIZE, RW).unwrap(), big + 5 * PAGE_SIZE);
    assert_eq!(w.m.reserve(t, 0, RW), Err(Error::InvalidArgument));
    assert_eq!(w.m.reserve(t, u64::MAX, RW), Err(Error::InvalidArgument));
    assert_eq!(w.m.reserve(tid(5), 1, RW), Err(Error::NoSuchTask));
    w.m.audit().unwrap();
}

#[test]
fn quota_fails_only_that_task_and_release_gives_it_back() {
    let mut w = World::small(4, 16);
    let t = w.task(1, 4);
    let u = w.task(2, 0);
    assert_eq!(w.m.task(u).unwrap().quota, Config::new(4, 16).default_quota);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    assert_eq!(w.m.reserve(t, 2 * PAGE_SIZE, RW), Err(Error::OutOfMemory));
    assert_eq!(
        w.m.reserve_at(t, 0x4000_0000, 2 * PAGE_SIZE, RW, Init::Zero),
        Err(Error::OutOfMemory)
    );
    let b = w.m.reserve(t, PAGE_SIZE, RW).unwrap();
    assert_eq!(w.m.reserve(t, 1, RW), Err(Error::OutOfMemory));
    // The other task is not affected.
    let c = w.m.reserve(u, 8 * PAGE_SIZE, RW).unwrap();
    w.write(u, c, 1).unwrap();
    // Touching does not count (quota is on reservations).
    w.write(t, a, 2).unwrap();
    w.write(t, b, 3).unwrap();
    w.m.release(&mut w.h, t, a, 3 * PAGE_SIZE).unwrap();
    assert_eq!(w.m.task(t).unwrap().reserved, 1);
    w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.m.audit().unwrap();
}

#[test]
fn reserve_at_checks_alignment_bounds_and_overlap() {
    let mut w = World::small(4, 0);
    let t = w.task(1, 100);
    let r = |w: &mut World, addr, len| w.m.reserve_at(t, addr, len, RW, Init::Zero);
    assert_eq!(r(&mut w, 0, PAGE_SIZE), Err(Error::InvalidArgument), "null page");
    assert_eq!(r(&mut w, 0x1001, PAGE_SIZE), Err(Error::InvalidArgument));
    assert_eq!(r(&mut w, 0x1000, 0), Err(Error::InvalidArgument));
    assert_eq!(r(&mut w, USER_END, PAGE_SIZE), Err(Error::InvalidArgument));
    assert_eq!(r(&mut w, USER_END - PAGE_SIZE, 2 * PAGE_SIZE), Err(Error::InvalidArgument));
    r(&mut w, USER_END - PAGE_SIZE, PAGE_SIZE).unwrap();
    r(&mut w, 0x40_0000, 4 * PAGE_SIZE).unwrap();
    assert_eq!(r(&mut w, 0x40_3000, PAGE_SIZE), Err(Error::Overlap));
    assert_eq!(r(&mut w, 0x3f_f000, 2 * PAGE_SIZE), Err(Error::Overlap));
    r(&mut w, 0x3f_f000, PAGE_SIZE).unwrap();
    r(&mut w, 0x40_4000, PAGE_SIZE).unwrap();
    assert_eq!(w.m.task(t).unwrap().reserved, 7);
    w.m.audit().unwrap();
}

#[test]
fn release_must_cover_reserved_pages_and_may_cut_ranges() {
    let mut w = World::small(8, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 4 * PAGE_SIZE, RW).unwrap();
    for p in 0..4 {
        w.write(t, va(a, p), p).unwrap();
    }
    let before = w.m.counters();
    // Past the end, before the start, unaligned: refused, nothing changes.
    assert_eq!(w.m.release(&mut w.h, t, va(a, 2), 3 * PAGE_SIZE), Err(Error::NotReserved));
    assert_eq!(
        w.m.release(&mut w.h, t, va(a, 0) - PAGE_SIZE, 2 * PAGE_SIZE),
        Err(Error::NotReserved)
    );
    assert_eq!(w.m.release(&mut w.h, t, a + 1, PAGE_SIZE), Err(Error::InvalidArgument));
    assert_eq!(w.m.release(&mut w.h, t, a, 0), Err(Error::InvalidArgument));
    assert_eq!(w.m.counters(), before);
    // The middle two pages: unmapped, frames back; the ends stay.
    w.m.release(&mut w.h, t, va(a, 1), 2 * PAGE_SIZE).unwrap();
    assert_eq!(w.m.counters().frames_free, before.frames_free + 2);
    assert_eq!(w.m.task(t).unwrap().reserved, 2);
    assert!(!w.h.ptes.contains_key(&(t, va(a, 1))));
    assert_eq!(w.read(t, va(a, 0)).unwrap(), pattern(0));
    assert_eq!(w.read(t, va(a, 3)).unwrap(), pattern(3));
    let f = w.fault_id();
    assert_eq!(
        w.m.fault(&mut w.h, t, f, va(a, 2), Access::Read),
        FaultOutcome::Killed(KillReason::Unreserved)
    );
    w.m.audit().unwrap();
    // Across two adjacent ranges placed with reserve_at.
    let u = w.task(2, 0);
    w.m.reserve_at(u, 0x10_0000, 2 * PAGE_SIZE, RW, Init::Zero).unwrap();
    w.m.reserve_at(u, 0x10_2000, 2 * PAGE_SIZE, Perms::R, Init::Zero).unwrap();
    w.m.release(&mut w.h, u, 0x10_1000, 2 * PAGE_SIZE).unwrap();
    assert_eq!(w.m.task(u).unwrap().reserved, 2);
    w.m.audit().unwrap();
}

#[test]
fn dirty_pages_go_to_swap_before_their_frame_is_reused_and_come_back() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 6 * PAGE_SIZE, RW).unwrap();
    for p in 0..6 {
        w.write(t, va(a, p), 100 + p).unwrap();
    }
    let c = w.m.counters();
    assert!(c.pages_out >= 4, "{c:?}");
    assert!(c.evictions >= 4);
    // Every write was of a frame the task could no longer write.
    for p in 0..6 {
        assert_eq!(w.read(t, va(a, p)).unwrap(), pattern(100 + p), "page {p}");
    }
    assert!(w.m.counters().pages_in >= 4);
    assert!(w.m.counters().faults_swap >= 4);
    w.m.audit().unwrap();
}

#[test]
fn clean_pages_with_a_valid_slot_and_untouched_zero_pages_leave_without_io() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 8 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 5).unwrap();
    w.write(t, va(a, 1), 6).unwrap();
    w.write(t, va(a, 2), 7).unwrap();
    // Zero pages push the dirty ones out.
    for p in 3..5 {
        assert_eq!(w.read(t, va(a, p)).unwrap(), ZERO.to_vec());
    }
    w.drain();
    for p in 0..3 {
        assert!(matches!(w.m.page(t, va(a, p)), Some(PageView::Swapped { .. })), "page {p}");
    }
    let writes = |w: &World| w.count(|e| matches!(e, Effect::Submit(r) if r.kind == IoKind::Write));
    let before = writes(&w);
    // Page 0 comes back clean (its slot stays valid); zero pages come and go.
    assert_eq!(w.read(t, va(a, 0)).unwrap(), pattern(5));
    for p in 5..8 {
        assert_eq!(w.read(t, va(a, p)).unwrap(), ZERO.to_vec());
    }
    w.drain();
    assert!(matches!(w.m.page(t, va(a, 0)), Some(PageView::Swapped { .. })));
    assert_eq!(writes(&w), before, "no write for clean or zero pages");
    // A zero page that left comes back as zeros, page 0 from its slot.
    assert_eq!(w.read(t, va(a, 3)).unwrap(), ZERO.to_vec());
    assert_eq!(w.read(t, va(a, 0)).unwrap(), pattern(5));
    w.m.audit().unwrap();
}

#[test]
fn the_clock_gives_accessed_pages_a_second_chance() {
    let mut w = World::small(3, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 4 * PAGE_SIZE, RW).unwrap();
    for p in 0..3 {
        w.write(t, va(a, p), p).unwrap();
    }
    // Let the software reference bits go: sweep with accesses in between.
    // Page 0 is used again and again; page 3's faults must evict others.
    for round in 0..6 {
        w.read(t, va(a, 0)).unwrap();
        w.write(t, va(a, 1 + round % 3), 50 + round).unwrap();
        w.drain();
    }
    let hot_evicted =
        w.h.log.iter().filter(|e| matches!(e, Effect::Unmap(_, x) if *x == va(a, 0))).count();
    let others =
        w.h.log.iter().filter(|e| matches!(e, Effect::Unmap(_, x) if *x != va(a, 0))).count();
    assert!(others > 0);
    assert!(hot_evicted < others, "hot page evicted {hot_evicted} times, others {others}");
    // And the bits were read with clear.
    assert!(w.count(|e| matches!(e, Effect::Bits(_, _, true))) > 0);
    w.m.audit().unwrap();
}

#[test]
fn a_fault_on_a_page_being_written_waits_and_keeps_the_frame() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 1).unwrap();
    w.write(t, va(a, 1), 2).unwrap();
    // Pool full: the next fault waits and starts writing a page out.
    let (f, out) = w.try_access(t, va(a, 2), Access::Write, Some(3)).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting);
    let out_va = match w.h.pending.as_slice() {
        [r] if r.kind == IoKind::Write => w.m.owner(r.frame).unwrap().1,
        p => panic!("expected one write, got {p:?}"),
    };
    // A fault on the page in flight waits for it too.
    let (g, out) = w.try_access(t, out_va, Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting);
    assert!(matches!(w.m.page(t, out_va), Some(PageView::Out { waiters: 1, .. })));
    let reads = w.count(|e| matches!(e, Effect::Submit(r) if r.kind == IoKind::Read));
    w.h.complete(&mut w.m, 0, true);
    // The written page stays (its fault waited), with a valid slot.
    assert!(w.h.resumed.contains(&g));
    assert!(matches!(
        w.m.page(t, out_va),
        Some(PageView::Resident { mapped: true, dirty: false, slot: Some(_), .. })
    ));
    assert_eq!(w.count(|e| matches!(e, Effect::Submit(r) if r.kind == IoKind::Read)), reads);
    w.m.audit().unwrap();
    // The first fault is still served eventually.
    w.drain();
    while !w.h.resumed.contains(&f) {
        assert!(w.h.killed.is_empty());
        w.drain();
        if w.h.pending.is_empty() && !w.h.resumed.contains(&f) {
            panic!("fault {f:?} lost");
        }
    }
    w.write(t, va(a, 2), 3).unwrap();
    for (p, v) in [(0, 1), (1, 2), (2, 3)] {
        assert_eq!(w.read(t, va(a, p)).unwrap(), pattern(v));
    }
}

#[test]
fn one_read_serves_every_fault_waiting_for_the_page() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    for p in 0..3 {
        w.write(t, va(a, p), p).unwrap();
    }
    w.drain();
    let swapped =
        (0..3).find(|&p| matches!(w.m.page(t, va(a, p)), Some(PageView::Swapped { .. }))).unwrap();
    let x = va(a, swapped);
    let faults: Vec<_> =
        (0..5).map(|_| w.try_access(t, x, Access::Read, None).unwrap_err()).collect();
    assert!(faults.iter().all(|(_, o)| *o == FaultOutcome::Waiting));
    // The pool is full: a write (or a tick) first, then the read.
    while !w.h.pending.iter().any(|r| r.kind == IoKind::Read) {
        if w.h.pending.is_empty() {
            w.m.tick(&mut w.h);
        } else {
            w.h.complete(&mut w.m, 0, true);
        }
    }
    let reads: Vec<_> = w.h.pending.iter().filter(|r| r.kind == IoKind::Read).collect();
    assert_eq!(reads.len(), 1, "one read for five faults");
    assert!(matches!(w.m.page(t, x), Some(PageView::In { waiters: 5, .. })));
    w.drain();
    for (f, _) in &faults {
        assert!(w.h.resumed.contains(f));
    }
    assert_eq!(w.read(t, x).unwrap(), pattern(swapped));
    w.m.audit().unwrap();
}

#[test]
fn a_failed_write_keeps_the_page_and_its_data() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 10).unwrap();
    w.write(t, va(a, 1), 11).unwrap();
    let (f, _) = w.try_access(t, va(a, 2), Access::Write, Some(12)).unwrap_err();
    let r = w.h.pending[0];
    assert_eq!(r.kind, IoKind::Write);
    let (_, victim) = w.m.owner(r.frame).unwrap();
    w.h.complete(&mut w.m, 0, false);
    w.m.audit().unwrap();
    assert_eq!(w.m.counters().write_errors, 1);
    // Still resident, dirty, without a slot; the slot is free again.
    assert!(matches!(
        w.m.page(t, victim),
        Some(PageView::Resident { frame, dirty: true, slot: None, .. }) if frame == r.frame
    ));
    // Eviction went on with another page (or retries later); the waiting
    // fault is served once a write succeeds.
    w.drain();
    assert!(w.h.resumed.contains(&f), "fault served after the failure");
    w.write(t, va(a, 2), 12).unwrap();
    for (p, v) in [(0, 10), (1, 11), (2, 12)] {
        assert_eq!(w.read(t, va(a, p)).unwrap(), pattern(v), "page {p}");
    }
    w.m.audit().unwrap();
}

#[test]
fn a_failed_read_kills_only_the_faulting_task() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let u = w.task(2, 0);
    let a = w.m.reserve(t, 2 * PAGE_SIZE, RW).unwrap();
    let b = w.m.reserve(u, 2 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 1).unwrap();
    w.write(t, va(a, 1), 2).unwrap();
    w.write(u, va(b, 0), 3).unwrap();
    w.write(u, va(b, 1), 4).unwrap();
    w.drain();
    let p =
        (0..2).find(|&p| matches!(w.m.page(t, va(a, p)), Some(PageView::Swapped { .. }))).unwrap();
    let (f, out) = w.try_access(t, va(a, p), Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting);
    // The pool is full: writes first, then the read.
    let i = loop {
        match w.h.pending.iter().position(|r| r.kind == IoKind::Read) {
            Some(i) => break i,
            None => w.h.complete(&mut w.m, 0, true),
        };
    };
    w.h.complete(&mut w.m, i, false);
    assert_eq!(w.h.killed, vec![(t, f, KillReason::SwapReadFailed)]);
    assert_eq!(w.m.counters().read_errors, 1);
    w.m.audit().unwrap();
    // The kernel ends the task; everything of it comes back.
    w.drain();
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    w.drain();
    w.m.audit().unwrap();
    assert_eq!(w.read(u, va(b, 0)).unwrap(), pattern(3));
    assert_eq!(w.read(u, va(b, 1)).unwrap(), pattern(4));
}

#[test]
fn a_task_ending_with_pages_swapped_and_in_flight_gives_everything_back() {
    for ok in [true, false] {
        let mut w = World::small(3, 32);
        let t = w.task(1, 0);
        let u = w.task(2, 0);
        let a = w.m.reserve(t, 8 * PAGE_SIZE, RW).unwrap();
        for p in 0..8 {
            w.write(t, va(a, p), p).unwrap();
        }
        w.drain();
        // One page coming in, one going out, some swapped.
        let p = (0..8)
            .find(|&p| matches!(w.m.page(t, va(a, p)), Some(PageView::Swapped { .. })))
            .unwrap();
        let (_, out) = w.try_access(t, va(a, p), Access::Read, None).unwrap_err();
        assert!(matches!(out, FaultOutcome::Waiting | FaultOutcome::Resumed));
        let b = w.m.reserve(u, 4 * PAGE_SIZE, RW).unwrap();
        for q in 0..3 {
            let _ = w.try_access(u, va(b, q), Access::Write, Some(q));
        }
        assert!(!w.h.pending.is_empty());
        w.h.drop_task(t);
        w.m.task_gone(&mut w.h, t).unwrap();
        w.m.audit().unwrap();
        assert_eq!(w.m.task(t), None);
        assert_eq!(w.m.task_gone(&mut w.h, t), Err(Error::NoSuchTask));
        // Completions of the dead task's requests free their frames and slots.
        while !w.h.pending.is_empty() {
            w.h.complete(&mut w.m, 0, ok);
            w.m.audit().unwrap();
        }
        w.h.drop_task(u);
        w.m.task_gone(&mut w.h, u).unwrap();
        w.drain();
        w.m.audit().unwrap();
        assert!(w.m.is_idle(), "{:?}", w.m.counters());
        assert_eq!(w.m.counters().frames_free, 3);
        assert_eq!(w.m.counters().slots_used, 0);
    }
}

#[test]
fn a_fault_on_a_full_pool_waits_for_eviction() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 0).unwrap();
    w.write(t, va(a, 1), 1).unwrap();
    let (f, out) = w.try_access(t, va(a, 2), Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting);
    assert_eq!(w.m.counters().waiting, 1);
    assert_eq!(w.m.counters().frames_free, 0);
    assert!(w.h.pending.iter().any(|r| r.kind == IoKind::Write));
    w.h.complete(&mut w.m, 0, true);
    assert!(w.h.resumed.contains(&f));
    assert_eq!(w.m.counters().waiting, 0);
    w.m.audit().unwrap();
}

#[test]
fn sixteen_threads_faulting_at_once_are_all_served() {
    let mut w = World::small(4, 64);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 16 * PAGE_SIZE, RW).unwrap();
    // Each thread's page holds data first, so serving needs swap I/O.
    for p in 0..16 {
        w.write(t, va(a, p), 1000 + p).unwrap();
    }
    w.drain();
    w.h.take_resumed();
    // Thread p reads page p; all fault at the same moment.
    let mut blocked = std::collections::BTreeMap::new();
    let mut done = vec![false; 16];
    let mut first_wave = 0;
    for p in 0..16u64 {
        match w.try_access(t, va(a, p), Access::Read, None) {
            Ok(r) => {
                assert_eq!(r.unwrap(), pattern(1000 + p));
                done[p as usize] = true;
            }
            Err((f, FaultOutcome::Waiting)) => {
                blocked.insert(f, p);
                first_wave += 1;
            }
            Err((f, FaultOutcome::Resumed)) => {
                blocked.insert(f, p);
            }
            Err(e) => panic!("{e:?}"),
        }
        w.m.audit().unwrap();
    }
    assert!(first_wave >= 10, "most faults wait: {first_wave}");
    // Completions in reverse order; resumed threads run (retry) at once.
    let mut steps = 0;
    while done.iter().any(|d| !d) {
        for f in w.h.take_resumed() {
            let p = blocked.remove(&f).expect("a resume answers a fault of ours");
            match w.try_access(t, va(a, p), Access::Read, None) {
                Ok(r) => {
                    assert_eq!(r.unwrap(), pattern(1000 + p));
                    done[p as usize] = true;
                }
                Err((g, _)) => {
                    blocked.insert(g, p);
                }
            }
        }
        assert!(w.h.killed.is_empty());
        if done.iter().all(|d| *d) {
            break;
        }
        if let Some(i) = w.h.pending.len().checked_sub(1) {
            w.h.complete(&mut w.m, i, true);
        } else if w.h.resumed.is_empty() {
            assert!(w.m.needs_tick(), "faults {blocked:?} lost, done {done:?}");
            w.m.tick(&mut w.h);
        }
        w.m.audit().unwrap();
        steps += 1;
        assert!(steps < 10_000, "livelock");
    }
    assert!(blocked.is_empty());
}

#[test]
fn spawn_population_fills_frames_and_evicts_on_a_tiny_pool() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let img = 0x40_0000;
    w.m.reserve_at(t, img, 5 * PAGE_SIZE, Perms::RX, Init::Image).unwrap();
    w.m.reserve_at(t, 0x50_0000, PAGE_SIZE, RW, Init::Zero).unwrap();
    assert_eq!(
        w.m.populate(&mut w.h, t, 0x50_0000, b"x"),
        Err(Error::InvalidArgument),
        "only image ranges are populated"
    );
    assert_eq!(w.m.populate(&mut w.h, t, 0x60_0000, b"x"), Err(Error::NotReserved));
    assert_eq!(w.m.populate(&mut w.h, t, img + 1, b"x"), Err(Error::InvalidArgument));
    let mut no_frame = 0;
    for p in 0..5 {
        let bytes = if p == 4 { pattern(p)[..100].to_vec() } else { pattern(p) };
        loop {
            match w.m.populate(&mut w.h, t, va(img, p), &bytes).unwrap() {
                Populate::Done => break,
                Populate::NoFrame => {
                    no_frame += 1;
                    assert!(!w.h.pending.is_empty(), "NoFrame with no eviction started");
                    w.h.complete(&mut w.m, 0, true);
                }
            }
            w.m.audit().unwrap();
        }
    }
    assert!(no_frame > 0);
    assert_eq!(w.m.populate(&mut w.h, t, va(img, 4), b"y"), Err(Error::AlreadyPresent));
    for p in 0..4 {
        assert_eq!(w.access(t, va(img, p), Access::Exec, None).unwrap().unwrap(), pattern(p));
    }
    let mut tail = pattern(4)[..100].to_vec();
    tail.resize(PAGE_SIZE as usize, 0);
    assert_eq!(w.read(t, va(img, 4)).unwrap(), tail, "zeros after the given bytes");
    assert_eq!(w.access(t, va(img, 0), Access::Write, Some(1)), Err(KillReason::WriteReadOnly));
}

#[test]
fn unknown_completions_are_refused_without_change() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    for p in 0..2 {
        w.write(t, va(a, p), p).unwrap();
    }
    let _ = w.try_access(t, va(a, 2), Access::Read, None);
    let r = w.h.pending[0];
    let before = w.m.counters();
    for tag in [Tag(0), Tag(r.tag.0 + (1 << 32)), Tag(r.tag.0 ^ 1), Tag(u64::MAX)] {
        assert_eq!(w.m.io_done(&mut w.h, tag, true), Err(Error::UnknownTag));
    }
    assert_eq!(w.m.counters(), before);
    w.h.complete(&mut w.m, 0, true);
    assert_eq!(w.m.io_done(&mut w.h, r.tag, true), Err(Error::UnknownTag), "twice");
    w.m.audit().unwrap();
}

#[test]
fn a_refused_submission_fails_at_once_and_hands_the_frame_back() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 0).unwrap();
    w.write(t, va(a, 1), 1).unwrap();
    w.h.refuse_submit = true;
    // No write can start: the fault cannot get a frame, and is not left
    // waiting forever.
    let (_, out) = w.try_access(t, va(a, 2), Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Killed(KillReason::OutOfMemory));
    assert!(w.m.counters().write_errors > 0);
    assert_eq!(w.m.counters().frames_io, 0);
    w.m.audit().unwrap();
    // The pages kept their data.
    w.h.refuse_submit = false;
    let u = w.task(2, 0);
    let _ = u;
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    assert!(w.m.task(t).is_none());

    // A refused read kills the faulting task.
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    for p in 0..3 {
        w.write(t, va(a, p), p).unwrap();
    }
    w.drain();
    let p =
        (0..3).find(|&p| matches!(w.m.page(t, va(a, p)), Some(PageView::Swapped { .. }))).unwrap();
    // Free a frame so the read can start at once.
    let q =
        (0..3).find(|&q| matches!(w.m.page(t, va(a, q)), Some(PageView::Resident { .. }))).unwrap();
    w.m.release(&mut w.h, t, va(a, q), PAGE_SIZE).unwrap();
    w.h.refuse_submit = true;
    let (_, out) = w.try_access(t, va(a, p), Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Killed(KillReason::SwapReadFailed));
    assert!(matches!(w.m.page(t, va(a, p)), Some(PageView::Swapped { .. })));
    w.m.audit().unwrap();
}

#[test]
fn no_swap_and_a_full_pool_kill_the_fault_instead_of_waiting_forever() {
    let mut w = World::small(2, 0);
    let t = w.task(1, 0);
    let u = w.task(2, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 0).unwrap();
    w.write(t, va(a, 1), 1).unwrap();
    assert_eq!(w.write(t, va(a, 2), 2), Err(KillReason::OutOfMemory));
    w.m.audit().unwrap();
    // Once the task is gone its frames serve others.
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    let b = w.m.reserve(u, 2 * PAGE_SIZE, RW).unwrap();
    w.write(u, va(b, 0), 7).unwrap();
    w.write(u, va(b, 1), 8).unwrap();
    assert_eq!(w.read(u, va(b, 0)).unwrap(), pattern(7));
}

#[test]
fn a_disk_that_always_fails_writes_never_hangs_a_fault() {
    let mut w = World::small(3, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 4 * PAGE_SIZE, RW).unwrap();
    for p in 0..3 {
        w.write(t, va(a, p), p).unwrap();
    }
    let (f, out) = w.try_access(t, va(a, 3), Access::Write, Some(3)).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting);
    let mut steps = 0;
    while !w.h.killed.iter().any(|k| k.1 == f) {
        assert!(!w.h.pending.is_empty(), "fault neither served nor killed");
        w.h.complete(&mut w.m, 0, false);
        w.m.audit().unwrap();
        steps += 1;
        assert!(steps < 100);
    }
    assert_eq!(w.h.killed, vec![(t, f, KillReason::OutOfMemory)]);
    // The pages that failed to go out stay in memory.
    while !w.h.pending.is_empty() {
        w.h.complete(&mut w.m, 0, false);
        w.m.audit().unwrap();
    }
    for p in 0..3 {
        let pv = w.m.page(t, va(a, p)).unwrap();
        assert!(matches!(pv, PageView::Resident { .. }), "{pv:?}");
    }
}

#[test]
fn a_refused_map_kills_the_fault() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, PAGE_SIZE, RW).unwrap();
    w.h.refuse_map = true;
    let (_, out) = w.try_access(t, a, Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Killed(KillReason::MapFailed));
    w.m.audit().unwrap();
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    assert!(w.m.is_idle());
}

#[test]
fn release_kills_faults_waiting_on_released_pages() {
    let mut w = World::small(2, 16);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 0).unwrap();
    w.write(t, va(a, 1), 1).unwrap();
    let (f, out) = w.try_access(t, va(a, 2), Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting);
    w.m.release(&mut w.h, t, a, 3 * PAGE_SIZE).unwrap();
    assert_eq!(w.h.killed, vec![(t, f, KillReason::Unreserved)]);
    w.m.audit().unwrap();
    w.drain();
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    w.drain();
    assert!(w.m.is_idle(), "{:?}", w.m.counters());
}

#[test]
fn kill_reason_codes_are_stable() {
    use KillReason::*;
    let all = [
        NullPage,
        KernelAddress,
        Unreserved,
        WriteReadOnly,
        ExecNonExec,
        SwapReadFailed,
        OutOfMemory,
        MapFailed,
        UnknownTask,
        TaskDying,
    ];
    let codes: Vec<u8> = all.iter().map(|&r| r as u8).collect();
    assert_eq!(codes, (1..=10).collect::<Vec<_>>());
}

#[test]
fn perms_refuse_write_with_execute_and_undefined_bits() {
    assert_eq!(Perms::from_bits(0), Some(Perms::R));
    assert_eq!(Perms::from_bits(1), Some(Perms::RW));
    assert_eq!(Perms::from_bits(2), Some(Perms::RX));
    assert_eq!(Perms::from_bits(3), None, "W^X");
    assert_eq!(Perms::from_bits(4), None);
    assert!(Perms::R.allows(Access::Read) && !Perms::R.allows(Access::Write));
    assert!(Perms::RX.allows(Access::Exec) && !Perms::RX.allows(Access::Write));
    assert!(Perms::RW.allows(Access::Write) && !Perms::RW.allows(Access::Exec));
}

#[test]
fn a_dying_task_keeps_its_frames_until_its_end_and_others_wait_for_them() {
    let mut w = World::small(2, 0);
    let t = w.task(1, 0);
    let u = w.task(2, 0);
    let a = w.m.reserve(t, 2 * PAGE_SIZE, RW).unwrap();
    let b = w.m.reserve(u, PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 0), 1).unwrap();
    w.write(t, va(a, 1), 2).unwrap();
    // t dies by a bad access; its frames are not evicted (no swap anyway).
    assert_eq!(w.access(t, 0, Access::Read, None), Err(KillReason::NullPage));
    let (f, out) = w.try_access(u, b, Access::Write, Some(3)).unwrap_err();
    assert_eq!(out, FaultOutcome::Waiting, "not out of memory: t's end frees frames");
    assert!(w.m.needs_tick());
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    assert!(w.h.resumed.contains(&f));
    w.write(u, b, 3).unwrap();
    assert_eq!(w.read(u, b).unwrap(), pattern(3));
    w.m.audit().unwrap();
}

#[test]
fn requests_past_max_io_wait_in_memd_with_their_frames_pinned() {
    let mut w = World::small_io(8, 32, 2);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 16 * PAGE_SIZE, RW).unwrap();
    for p in 0..8 {
        w.write(t, va(a, p), p).unwrap();
    }
    // Pushing 8 new pages in needs many write-outs; at most 2 at the disk.
    let mut faults = Vec::new();
    for p in 8..12 {
        if let Err((f, FaultOutcome::Waiting)) = w.try_access(t, va(a, p), Access::Write, Some(p)) {
            faults.push(f);
        }
        assert!(w.h.pending.len() <= 2);
        w.m.audit().unwrap();
    }
    let c = w.m.counters();
    assert!(c.frames_io > w.h.pending.len() as u64, "some requests queued in memd: {c:?}");
    // `Busy` from the driver: the request goes back to memd's queue.
    let r = w.h.pending[0];
    w.busy(0);
    assert_eq!(w.m.io_retry(r.tag), Err(Error::UnknownTag), "not at the disk any more");
    assert_eq!(w.m.io_done(&mut w.h, r.tag, true), Err(Error::UnknownTag));
    w.m.audit().unwrap();
    while !w.h.pending.is_empty() || w.m.needs_tick() {
        if w.h.pending.is_empty() {
            w.m.tick(&mut w.h);
        } else {
            w.h.complete(&mut w.m, 0, true);
        }
        assert!(w.h.pending.len() <= 2);
        w.m.audit().unwrap();
    }
    assert!(w.m.counters().frames_io == 0);
    for p in 0..8 {
        assert_eq!(w.read(t, va(a, p)).unwrap(), pattern(p), "page {p}");
    }
}

#[test]
fn queued_requests_of_a_dead_task_are_cancelled_without_io() {
    let mut w = World::small_io(6, 32, 1);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 12 * PAGE_SIZE, RW).unwrap();
    for p in 0..6 {
        w.write(t, va(a, p), p).unwrap();
    }
    for p in 6..9 {
        let _ = w.try_access(t, va(a, p), Access::Write, Some(p));
    }
    let owned = w.m.counters().frames_io;
    assert!(owned >= 2 && w.h.pending.len() == 1, "one at the disk, others queued");
    let submits = w.count(|e| matches!(e, Effect::Submit(_)));
    w.h.drop_task(t);
    w.m.task_gone(&mut w.h, t).unwrap();
    w.m.audit().unwrap();
    // Only the request at the disk still owns its frame.
    assert_eq!(w.m.counters().frames_io, 1);
    assert_eq!(w.count(|e| matches!(e, Effect::Submit(_))), submits, "queued ones never submitted");
    w.h.complete(&mut w.m, 0, true);
    assert!(w.m.is_idle(), "{:?}", w.m.counters());
}

/// A pool of `frames` with watermarks 1 and 2, a swap area of 64 slots and
/// `fault_around` pages of fault-around.
fn around(frames: u32, fault_around: u32) -> World {
    let mut cfg = Config::new(frames, 64);
    cfg.low_water = 1;
    cfg.high_water = 2;
    cfg.fault_around = fault_around;
    World::new(cfg)
}

/// Whether page `va` is resident, mapped and still a clean zero page.
fn prefaulted(w: &World, t: TaskId, va: u64) -> bool {
    matches!(
        w.m.page(t, va),
        Some(PageView::Resident { mapped: true, dirty: false, slot: None, .. })
    )
}

#[test]
fn fault_around_maps_the_following_pages_of_the_range() {
    assert_eq!(Config::new(64, 0).fault_around, 7, "on by default");
    let mut w = around(32, 7);
    let t = w.task(1, 40);
    let a = w.m.reserve(t, 20 * PAGE_SIZE, RW).unwrap();
    let (f, out) = w.try_access(t, va(a, 3), Access::Write, Some(3)).unwrap_err();
    assert_eq!(out, FaultOutcome::Resumed);
    // The faulting thread is resumed before the pages around are mapped.
    let resume = w.h.log.iter().position(|e| *e == Effect::Resume(f)).unwrap();
    let maps: Vec<usize> =
        (0..w.h.log.len()).filter(|&i| matches!(w.h.log[i], Effect::Map(..))).collect();
    assert_eq!(maps.len(), 8);
    assert!(maps[0] < resume && maps[1..].iter().all(|&i| i > resume));
    for p in 4..=10 {
        assert!(prefaulted(&w, t, va(a, p)), "page {p} mapped by fault-around");
        // Touching it is no fault at all.
        assert_eq!(w.h.access(t, va(a, p), Access::Read, None), Ok(Some(ZERO.to_vec())));
    }
    for p in [0, 1, 2, 11, 12] {
        assert_eq!(w.m.page(t, va(a, p)), None, "page {p} untouched");
    }
    let c = w.m.counters();
    assert_eq!((c.faults_zero, c.prefaulted, c.frames_free), (1, 7, 32 - 8));
    assert_eq!(w.count(|e| matches!(e, Effect::Zero(_))), 8, "every page zero-filled");
    // The quota counts reserved pages: fault-around changes nothing there.
    let tc = w.m.task(t).unwrap();
    assert_eq!((tc.quota, tc.reserved, tc.resident, tc.swapped), (40, 20, 8, 0));
    w.write(t, va(a, 3), 3).unwrap();
    assert_eq!(w.read(t, va(a, 3)).unwrap(), pattern(3));
    // The next fault is past them: it maps the next 7 in turn.
    w.read(t, va(a, 11)).unwrap();
    assert_eq!(w.m.counters().prefaulted, 14);
    assert!(prefaulted(&w, t, va(a, 18)) && w.m.page(t, va(a, 19)).is_none());
    w.m.audit().unwrap();
    w.h.check_against(&w.m);
}

#[test]
fn fault_around_stops_at_the_range_end() {
    let mut w = around(32, 7);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    let b = w.m.reserve(t, 3 * PAGE_SIZE, RW).unwrap();
    assert_eq!(b, a + 4 * PAGE_SIZE, "the next range is past one guard page");
    w.read(t, va(a, 0)).unwrap();
    assert!(prefaulted(&w, t, va(a, 1)) && prefaulted(&w, t, va(a, 2)));
    assert_eq!(w.m.page(t, va(b, 0)), None, "never into the next range");
    assert_eq!(w.m.counters().prefaulted, 2);
    // A fault on a range's last page maps nothing more.
    w.read(t, va(b, 2)).unwrap();
    assert_eq!(w.m.counters().prefaulted, 2);
    assert_eq!(w.m.task(t).unwrap().resident, 4);
    w.m.audit().unwrap();
}

#[test]
fn fault_around_stops_at_a_page_with_content() {
    let mut w = around(32, 7);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 10 * PAGE_SIZE, RW).unwrap();
    w.write(t, va(a, 4), 44).unwrap();
    assert_eq!(w.m.counters().prefaulted, 5, "pages 5 to 9");
    w.read(t, va(a, 0)).unwrap();
    assert_eq!(w.m.counters().prefaulted, 8, "pages 1 to 3, then page 4 has content");
    assert_eq!(w.read(t, va(a, 4)).unwrap(), pattern(44), "content kept");
    // Image ranges: a page given at spawn stops it; pages never given
    // content are zero pages like any other.
    let img = 0x40_0000;
    w.m.reserve_at(t, img, 6 * PAGE_SIZE, Perms::RX, Init::Image).unwrap();
    assert_eq!(w.m.populate(&mut w.h, t, va(img, 3), &pattern(3)).unwrap(), Populate::Done);
    w.access(t, va(img, 0), Access::Exec, None).unwrap();
    assert!(prefaulted(&w, t, va(img, 1)) && prefaulted(&w, t, va(img, 2)));
    assert_eq!(w.m.counters().prefaulted, 10);
    w.access(t, va(img, 4), Access::Read, None).unwrap();
    assert!(prefaulted(&w, t, va(img, 5)));
    assert_eq!(w.read(t, va(img, 3)).unwrap(), pattern(3));
    assert_eq!(w.read(t, va(img, 5)).unwrap(), ZERO.to_vec());
    let c = w.m.counters();
    assert_eq!((c.faults_zero, c.prefaulted), (4, 11));
    w.m.audit().unwrap();
    w.h.check_against(&w.m);
}

#[test]
fn fault_around_never_takes_the_pool_below_its_high_watermark() {
    let mut w = around(6, 7);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 12 * PAGE_SIZE, RW).unwrap();
    w.read(t, va(a, 0)).unwrap();
    // 5 free after the fault: pages 1 to 3, then 2 are left (the mark).
    assert!((1..=3).all(|p| prefaulted(&w, t, va(a, p))));
    assert_eq!(w.m.page(t, va(a, 4)), None);
    let c = w.m.counters();
    assert_eq!((c.prefaulted, c.frames_free, c.evictions), (3, 2, 0));
    // At the mark, a fault maps its own page only, and nothing is evicted
    // for fault-around.
    w.read(t, va(a, 5)).unwrap();
    let c = w.m.counters();
    assert_eq!((c.faults_zero, c.prefaulted, c.frames_free, c.evictions), (2, 3, 1, 0));
    assert_eq!(w.m.page(t, va(a, 6)), None);
    assert_eq!(w.count(|e| matches!(e, Effect::Unmap(..) | Effect::Submit(_))), 0);
    w.m.audit().unwrap();
}

#[test]
fn fault_around_pages_are_ordinary_resident_pages() {
    let mut w = around(6, 7);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 12 * PAGE_SIZE, RW).unwrap();
    w.read(t, va(a, 0)).unwrap();
    // The thread writes one page fault-around mapped, without a fault.
    w.h.access(t, va(a, 2), Access::Write, Some(&pattern(22))).unwrap();
    // Pressure: the untouched ones leave without I/O, the written one is
    // written to swap and comes back with its value.
    for p in 4..12 {
        w.write(t, va(a, p), p).unwrap();
    }
    w.drain();
    assert_eq!(w.read(t, va(a, 1)).unwrap(), ZERO.to_vec());
    assert_eq!(w.read(t, va(a, 2)).unwrap(), pattern(22));
    assert_eq!(w.read(t, va(a, 3)).unwrap(), ZERO.to_vec());
    for p in 4..12 {
        assert_eq!(w.read(t, va(a, p)).unwrap(), pattern(p));
    }
    let c = w.m.counters();
    assert!(c.evictions > 0 && c.pages_out > 0, "{c:?}");
    // Releasing the range gives every frame back.
    w.drain();
    w.m.release(&mut w.h, t, a, 12 * PAGE_SIZE).unwrap();
    w.drain();
    let c = w.m.counters();
    assert_eq!((c.frames_free, c.slots_used), (6, 0));
    assert_eq!(w.m.task(t).unwrap().resident, 0);
    w.m.audit().unwrap();
}

#[test]
fn fault_around_is_off_with_zero() {
    let mut w = around(32, 0);
    let t = w.task(1, 0);
    let a = w.m.reserve(t, 8 * PAGE_SIZE, RW).unwrap();
    w.read(t, va(a, 0)).unwrap();
    assert_eq!(w.m.page(t, va(a, 1)), None);
    let c = w.m.counters();
    assert_eq!((c.faults_zero, c.prefaulted, c.frames_free), (1, 0, 31));
    w.m.audit().unwrap();
}
