//! The rules of shared regions (`docs/shared-memory.md`): the negotiation
//! (who may ask, what is refused and how), the life cycle (release by one
//! side, task ends, the frames back when both are gone) and the paging of
//! shared pages (one frame for both tasks, evicted from both, brought back
//! for both). `audit()` runs after each step that matters.

mod common;

use alux_memd_core::*;
use common::*;

const CONN: u64 = 77;

fn ends(a: TaskId, b: TaskId) -> ConnEnds {
    ConnEnds { client: End { task: a, thread: 100 }, server: End { task: b, thread: 200 } }
}

/// A request carried by the client connection named after its thread.
fn ask(token: u64, from: End, len: u64) -> ShareAsk {
    ShareAsk { token, client: from.thread, from, conn: CONN, len, deadline: 1_000 }
}

/// Two tasks with a region of `pages` shared on `CONN`: (a, b, addr in a,
/// addr in b).
fn shared(w: &mut World, pages: u64) -> (TaskId, TaskId, u64, u64) {
    let (a, b) = (w.task(1, 0), w.task(2, 0));
    let e = ends(a, b);
    w.m.share_request(ask(1, e.client, pages * PAGE_SIZE), Some(e));
    assert_eq!(w.m.take_answers(), [], "the first request waits");
    assert_eq!(w.m.offers_waiting(), 1);
    w.m.share_request(ask(2, e.server, pages * PAGE_SIZE), Some(e));
    let got = w.m.take_answers();
    assert_eq!(got.len(), 2);
    let ga = got.iter().find(|x| x.token == 1).unwrap().result.unwrap();
    let gb = got.iter().find(|x| x.token == 2).unwrap().result.unwrap();
    assert_eq!((ga.side, gb.side, ga.len, gb.len), (0, 1, pages * PAGE_SIZE, pages * PAGE_SIZE));
    assert_eq!(ga.share, gb.share);
    assert_eq!(w.m.offers_waiting(), 0);
    w.m.audit().unwrap();
    (a, b, ga.addr, gb.addr)
}

#[test]
fn both_ends_asking_share_one_set_of_frames() {
    let mut w = World::small(8, 16);
    let (a, b, pa, pb) = shared(&mut w, 2);
    // Charged to both: each may keep it alone.
    assert_eq!(w.m.task(a).unwrap().reserved, 2);
    assert_eq!(w.m.task(b).unwrap().reserved, 2);
    w.write(a, pa, 7).unwrap();
    assert_eq!(w.read(b, pb).unwrap(), pattern(7), "b sees a's write");
    w.write(b, pb + PAGE_SIZE, 8).unwrap();
    assert_eq!(w.read(a, pa + PAGE_SIZE).unwrap(), pattern(8));
    // One frame per page, mapped in both.
    let fa = w.h.ptes[&(a, pa)].frame;
    assert_eq!(w.h.ptes[&(b, pb)].frame, fa);
    let mut owners = w.m.owners(fa);
    owners.sort();
    assert_eq!(owners, vec![(a, pa), (b, pb)]);
    assert_eq!(w.m.counters().frames_free, 6);
    w.m.audit().unwrap();
    w.h.check_against(&w.m);
}

#[test]
fn a_fault_in_either_maps_the_page_in_both() {
    let mut w = World::small(8, 16);
    let (a, b, pa, pb) = shared(&mut w, 1);
    w.write(a, pa, 3).unwrap();
    // b's mapping came with a's fault: no fault of b's.
    let faults = w.m.counters().faults_zero + w.m.counters().faults_minor;
    assert_eq!(w.h.access(b, pb, Access::Read, None).unwrap().unwrap(), pattern(3));
    assert_eq!(w.m.counters().faults_zero + w.m.counters().faults_minor, faults);
}

#[test]
fn eviction_unmaps_from_both_and_a_fault_brings_it_back_for_both() {
    let mut w = World::small(4, 16);
    let (a, b, pa, pb) = shared(&mut w, 1);
    w.write(b, pb, 11).unwrap();
    // Fill the pool with a's private pages until the shared page leaves.
    let priv_a = w.m.reserve(a, 8 * PAGE_SIZE, Perms::RW).unwrap();
    let mut i = 0;
    while w.h.ptes.contains_key(&(a, pa)) || w.h.ptes.contains_key(&(b, pb)) {
        w.write(a, priv_a + (i % 8) * PAGE_SIZE, 100 + i).unwrap();
        w.drain();
        i += 1;
        assert!(i < 64, "the shared page never leaves");
    }
    assert!(!w.h.ptes.contains_key(&(a, pa)) && !w.h.ptes.contains_key(&(b, pb)));
    assert!(matches!(w.m.page(b, pb), Some(PageView::Swapped { .. })), "{:?}", w.m.page(b, pb));
    w.m.audit().unwrap();
    // a's fault reads it back; b then finds it mapped.
    assert_eq!(w.read(a, pa).unwrap(), pattern(11));
    assert!(w.h.ptes.contains_key(&(b, pb)), "brought back for both");
    assert_eq!(w.h.access(b, pb, Access::Read, None).unwrap().unwrap(), pattern(11));
    w.h.check_against(&w.m);
}

#[test]
fn a_write_through_either_mapping_is_kept_on_eviction() {
    let mut w = World::small(4, 16);
    let (a, b, pa, pb) = shared(&mut w, 1);
    w.read(a, pa).unwrap();
    // Only b writes (its dirty bit, not a's, says so).
    w.h.access(b, pb, Access::Write, Some(&pattern(5))).unwrap();
    let priv_a = w.m.reserve(a, 8 * PAGE_SIZE, Perms::RW).unwrap();
    for i in 0..16 {
        w.write(a, priv_a + (i % 8) * PAGE_SIZE, i).unwrap();
        w.drain();
    }
    assert_eq!(w.read(a, pa).unwrap(), pattern(5));
}

#[test]
fn one_side_releasing_keeps_the_other_and_the_last_frees_the_frames() {
    let mut w = World::small(8, 16);
    let (a, b, pa, pb) = shared(&mut w, 2);
    w.write(a, pa, 1).unwrap();
    w.write(a, pa + PAGE_SIZE, 2).unwrap();
    // Part of a shared range cannot go.
    assert_eq!(w.m.release(&mut w.h, a, pa, PAGE_SIZE), Err(Error::InvalidArgument));
    assert_eq!(w.m.share_release(&mut w.h, a, pa + PAGE_SIZE), Err(Error::NotReserved));
    w.m.share_release(&mut w.h, a, pa).unwrap();
    assert!(!w.h.ptes.contains_key(&(a, pa)), "a's mapping went");
    assert_eq!(w.m.task(a).unwrap().reserved, 0);
    assert_eq!(w.read(b, pb + PAGE_SIZE).unwrap(), pattern(2), "b keeps the data");
    assert_eq!(w.m.counters().frames_free, 6);
    // a's access now is to an unreserved page.
    assert_eq!(w.read(a, pa), Err(KillReason::Unreserved));
    w.m.release(&mut w.h, b, pb, 2 * PAGE_SIZE).unwrap();
    assert_eq!(w.m.counters().frames_free, 8, "both gone: the frames are back");
    assert_eq!(w.m.shares().count(), 0);
    w.m.audit().unwrap();
}

#[test]
fn a_task_ending_leaves_the_other_its_mapping_and_data() {
    let mut w = World::small(4, 16);
    let (a, b, pa, pb) = shared(&mut w, 1);
    w.write(a, pa, 9).unwrap();
    // a's write went through its own mapping, whose page tables die with
    // it: memd must keep the page (it cannot read a's dirty bit any more),
    // and write it out when it evicts it.
    w.h.drop_task(a);
    w.m.task_gone(&mut w.h, a).unwrap();
    w.m.audit().unwrap();
    let p = w.m.reserve(b, 8 * PAGE_SIZE, Perms::RW).unwrap();
    for i in 0..8 {
        w.write(b, p + i * PAGE_SIZE, i).unwrap();
        w.drain();
    }
    assert!(!w.h.ptes.contains_key(&(b, pb)), "evicted");
    assert_eq!(w.read(b, pb).unwrap(), pattern(9));
    w.h.drop_task(b);
    w.m.task_gone(&mut w.h, b).unwrap();
    w.drain();
    assert!(w.m.is_idle(), "{:?}", w.m.counters());
}

#[test]
fn the_frames_of_a_swapped_shared_page_come_back_when_both_end() {
    let mut w = World::small(4, 16);
    let (a, b, pa, _) = shared(&mut w, 3);
    for i in 0..3 {
        w.write(a, pa + i * PAGE_SIZE, i).unwrap();
    }
    let p = w.m.reserve(b, 6 * PAGE_SIZE, Perms::RW).unwrap();
    for i in 0..6 {
        w.write(b, p + i * PAGE_SIZE, i).unwrap();
    }
    assert!(w.m.counters().slots_used > 0);
    for t in [b, a] {
        w.h.drop_task(t);
        w.m.task_gone(&mut w.h, t).unwrap();
    }
    w.drain();
    assert!(w.m.is_idle(), "{:?}", w.m.counters());
}

#[test]
fn refusals_are_defined_and_change_nothing() {
    let mut w = World::small(8, 16);
    let (a, b, c) = (w.task(1, 0), w.task(2, 0), w.task(3, 0));
    let e = ends(a, b);
    let one = |w: &mut World, x: ShareAsk, e: Option<ConnEnds>| {
        w.m.share_request(x, e);
        let got = w.m.take_answers();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].token, x.token);
        got[0].result.unwrap_err()
    };
    // A third task naming a's connection; another thread of a.
    assert_eq!(one(&mut w, ask(1, End { task: c, thread: 300 }, 4096), Some(e)), Error::NotAnEnd);
    assert_eq!(one(&mut w, ask(1, End { task: a, thread: 101 }, 4096), Some(e)), Error::NotAnEnd);
    // A connection that is not (or no longer) live.
    assert_eq!(one(&mut w, ask(1, e.client, 4096), None), Error::NoSuchConnection);
    // Lengths.
    assert_eq!(one(&mut w, ask(1, e.client, 0), Some(e)), Error::InvalidArgument);
    assert_eq!(one(&mut w, ask(1, e.client, u64::MAX), Some(e)), Error::InvalidArgument);
    // A task memd does not serve, at either end.
    let stranger = tid(9);
    let f = ends(a, stranger);
    assert_eq!(one(&mut w, ask(1, f.client, 4096), Some(f)), Error::PeerNotServed);
    assert_eq!(one(&mut w, ask(1, f.server, 4096), Some(f)), Error::NoSuchTask);
    // Both ends the same thread.
    let same = ConnEnds { client: e.client, server: e.client };
    assert_eq!(one(&mut w, ask(1, e.client, 4096), Some(same)), Error::InvalidArgument);
    // Asking twice while waiting.
    w.m.share_request(ask(1, e.client, 4096), Some(e));
    assert_eq!(w.m.take_answers(), []);
    assert_eq!(one(&mut w, ask(2, e.client, 4096), Some(e)), Error::AlreadyAsked);
    // Mismatched lengths: both are told.
    w.m.share_request(ask(3, e.server, 8192), Some(e));
    let got = w.m.take_answers();
    assert_eq!(
        got,
        [
            ShareAnswer { token: 1, result: Err(Error::SizeMismatch) },
            ShareAnswer { token: 3, result: Err(Error::SizeMismatch) },
        ]
    );
    assert_eq!((w.m.offers_waiting(), w.m.shares().count()), (0, 0));
    for t in [a, b, c] {
        assert_eq!(w.m.task(t).unwrap().reserved, 0);
    }
    w.m.audit().unwrap();
}

#[test]
fn asking_again_while_holding_the_region_is_refused() {
    let mut w = World::small(8, 16);
    let (a, b, pa, _) = shared(&mut w, 1);
    let e = ends(a, b);
    w.m.share_request(ask(5, e.client, 4096), Some(e));
    assert_eq!(w.m.take_answers(), [ShareAnswer { token: 5, result: Err(Error::AlreadyShared) }]);
    // Once a released its side, it may ask again (b still holds its own).
    w.m.share_release(&mut w.h, a, pa).unwrap();
    w.m.share_request(ask(6, e.client, 4096), Some(e));
    assert_eq!(w.m.take_answers(), []);
    w.m.share_request(ask(7, e.server, 4096), Some(e));
    assert_eq!(w.m.take_answers(), [ShareAnswer { token: 7, result: Err(Error::AlreadyShared) }]);
    w.m.audit().unwrap();
}

#[test]
fn a_lone_request_times_out_or_is_withdrawn() {
    let mut w = World::small(8, 16);
    let (a, b) = (w.task(1, 0), w.task(2, 0));
    let e = ends(a, b);
    w.m.share_request(ShareAsk { deadline: 500, ..ask(1, e.client, 4096) }, Some(e));
    w.m.share_request(ShareAsk { conn: CONN + 1, ..ask(2, e.client, 4096) }, Some(e));
    assert_eq!(w.m.next_deadline(), Some(500));
    w.m.share_expire(499);
    assert_eq!(w.m.take_answers(), []);
    w.m.share_expire(500);
    assert_eq!(w.m.take_answers(), [ShareAnswer { token: 1, result: Err(Error::TimedOut) }]);
    assert_eq!(w.m.next_deadline(), Some(1_000));
    assert_eq!(
        w.m.share_withdraw(e.server.thread, e.server, CONN + 1),
        Err(Error::NotPending),
        "not b's"
    );
    assert_eq!(
        w.m.share_withdraw(e.client.thread, e.client, CONN + 1),
        Ok(Withdrawal::Withdrawn(2))
    );
    assert_eq!(w.m.take_answers(), [], "the withdrawal's answer is the only one");
    assert_eq!(w.m.share_withdraw(e.client.thread, e.client, CONN + 1), Err(Error::NotPending));
    assert_eq!(w.m.next_deadline(), None);
    assert_eq!(w.m.task(a).unwrap().reserved, 0);
}

#[test]
fn a_withdrawal_that_comes_too_late_gets_the_region() {
    let mut w = World::small(8, 16);
    let (a, b, pa, pb) = shared(&mut w, 1);
    let e = ends(a, b);
    let got = w.m.share_withdraw(e.server.thread, e.server, CONN).unwrap();
    let Withdrawal::TooLate(g) = got else { panic!("{got:?}") };
    assert_eq!((g.addr, g.len, g.side), (pb, PAGE_SIZE, 1));
    w.m.share_release(&mut w.h, a, pa).unwrap();
    assert_eq!(w.m.share_withdraw(e.client.thread, e.client, CONN), Err(Error::NotPending));
}

#[test]
fn a_peer_ending_fails_the_request_waiting_for_it() {
    let mut w = World::small(8, 16);
    let (a, b, c) = (w.task(1, 0), w.task(2, 0), w.task(3, 0));
    let e = ends(a, b);
    w.m.share_request(ask(1, e.client, 4096), Some(e));
    let f = ConnEnds { client: End { task: c, thread: 1 }, server: End { task: b, thread: 2 } };
    w.m.share_request(ShareAsk { conn: 5, ..ask(2, f.server, 4096) }, Some(f));
    w.h.drop_task(b);
    w.m.task_gone(&mut w.h, b).unwrap();
    // a's request waited for b: it fails now. b's own request just goes.
    assert_eq!(w.m.take_answers(), [ShareAnswer { token: 1, result: Err(Error::PeerFailed) }]);
    assert_eq!(w.m.offers_waiting(), 0);
    // A thread whose connection to memd closed loses its requests quietly.
    w.m.share_request(ask(3, e.client, 4096), Some(ConnEnds { server: f.client, ..e }));
    assert_eq!(w.m.offers_waiting(), 1);
    // A withdrawal on another connection of the same thread finds nothing.
    assert_eq!(w.m.share_withdraw(999, e.client, CONN), Err(Error::NotPending));
    w.m.share_forget(e.client.thread);
    assert_eq!((w.m.offers_waiting(), w.m.take_answers().len()), (0, 0));
}

#[test]
fn the_task_without_room_is_told_and_its_peer_too() {
    let mut w = World::small(8, 16);
    let (a, b) = (w.task(1, 0), w.task(2, 4));
    let e = ends(a, b);
    w.m.share_request(ask(1, e.client, 5 * PAGE_SIZE), Some(e));
    w.m.share_request(ask(2, e.server, 5 * PAGE_SIZE), Some(e));
    assert_eq!(
        w.m.take_answers(),
        [
            ShareAnswer { token: 2, result: Err(Error::OutOfMemory) },
            ShareAnswer { token: 1, result: Err(Error::PeerFailed) },
        ]
    );
    // Nothing stays charged to a, which had room.
    assert_eq!(w.m.task(a).unwrap().reserved, 0);
    assert_eq!(w.m.shares().count(), 0);
    w.m.audit().unwrap();
}

#[test]
fn two_threads_of_one_task_may_share_with_each_other() {
    let mut w = World::small(8, 16);
    let a = w.task(1, 0);
    let e = ConnEnds { client: End { task: a, thread: 1 }, server: End { task: a, thread: 2 } };
    w.m.share_request(ask(1, e.client, 4096), Some(e));
    w.m.share_request(ask(2, e.server, 4096), Some(e));
    let got = w.m.take_answers();
    let (x, y) = (got[0].result.unwrap().addr, got[1].result.unwrap().addr);
    assert_ne!(x, y);
    w.write(a, x, 4).unwrap();
    assert_eq!(w.read(a, y).unwrap(), pattern(4), "two addresses, one page");
    assert_eq!(w.m.task(a).unwrap().reserved, 2);
    w.h.drop_task(a);
    w.m.task_gone(&mut w.h, a).unwrap();
    assert!(w.m.is_idle());
}

#[test]
fn a_shared_range_is_never_executable_and_faults_check_it() {
    let mut w = World::small(8, 16);
    let (a, _, pa, _) = shared(&mut w, 1);
    assert!(w.m.allows(a, pa, Access::Write));
    assert!(!w.m.allows(a, pa, Access::Exec));
    assert_eq!(w.access(a, pa, Access::Exec, None).map(|_| ()), Err(KillReason::ExecNonExec));
}

mod negotiation_model {
    //! Random negotiations between two tasks' threads on a few
    //! connections (requests, withdrawals, deadlines, threads and tasks
    //! ending, releases): every request is answered exactly once unless
    //! its thread or task ended first or it was withdrawn, a grant always
    //! pairs the two ends of one connection with the same length, and the
    //! audit holds after every step.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Clone, Debug)]
    enum Op {
        Ask { conn: u8, server: bool, big: bool, wait: u8 },
        Withdraw { conn: u8, server: bool },
        Time { by: u8 },
        ThreadEnds { conn: u8, server: bool },
        TaskEnds { server: bool },
        Release { conn: u8, server: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..3, any::<bool>(), any::<bool>(), 1u8..20)
                .prop_map(|(conn, server, big, wait)| Op::Ask { conn, server, big, wait }),
            1 => (0u8..3, any::<bool>()).prop_map(|(conn, server)| Op::Withdraw { conn, server }),
            2 => (1u8..10).prop_map(|by| Op::Time { by }),
            1 => (0u8..3, any::<bool>()).prop_map(|(conn, server)| Op::ThreadEnds { conn, server }),
            1 => any::<bool>().prop_map(|server| Op::TaskEnds { server }),
            2 => (0u8..3, any::<bool>()).prop_map(|(conn, server)| Op::Release { conn, server }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
        #[test]
        fn every_request_is_answered_once(ops in proptest::collection::vec(op(), 1..80)) {
            let mut w = World::small(8, 16);
            let mut tasks = [w.task(1, 6), w.task(2, 6)];
            let mut next_task = 3;
            // Each connection's ends: thread 10+conn in task 0 (client), 20+conn in task 1.
            let end = |tasks: &[TaskId; 2], conn: u8, server: bool| End {
                task: tasks[server as usize],
                thread: if server { 20 } else { 10 } + conn as u64,
            };
            let (mut now, mut token) = (0u64, 0u64);
            // token -> (end, conn, len)
            let mut open: BTreeMap<u64, (End, u64, u64)> = BTreeMap::new();
            let mut answered = BTreeSet::new();
            // (end, conn) -> addr of a region it holds
            let mut held: BTreeMap<(End, u64), u64> = BTreeMap::new();
            for op in &ops {
                match *op {
                    Op::Ask { conn, server, big, wait } => {
                        let e = ConnEnds {
                            client: end(&tasks, conn, false),
                            server: end(&tasks, conn, true),
                        };
                        let from = if server { e.server } else { e.client };
                        token += 1;
                        let len = if big { 2 * PAGE_SIZE } else { PAGE_SIZE };
                        let ask = ShareAsk {
                            token,
                            client: from.thread,
                            from,
                            conn: conn as u64,
                            len,
                            deadline: now + wait as u64,
                        };
                        open.insert(token, (from, conn as u64, len));
                        w.m.share_request(ask, Some(e));
                    }
                    Op::Withdraw { conn, server } => {
                        let from = end(&tasks, conn, server);
                        match w.m.share_withdraw(from.thread, from, conn as u64) {
                            Ok(Withdrawal::Withdrawn(t)) => {
                                let (f, c, _) = open.remove(&t).expect("a withdrawn request was open");
                                prop_assert_eq!((f, c), (from, conn as u64));
                            }
                            Ok(Withdrawal::TooLate(g)) => {
                                prop_assert!(held.values().any(|&a| a == g.addr));
                            }
                            Err(e) => prop_assert_eq!(e, Error::NotPending),
                        }
                    }
                    Op::Time { by } => {
                        now += by as u64;
                        w.m.share_expire(now);
                    }
                    Op::ThreadEnds { conn, server } => {
                        let from = end(&tasks, conn, server);
                        w.m.share_forget(from.thread);
                        open.retain(|_, (f, _, _)| *f != from);
                    }
                    Op::TaskEnds { server } => {
                        let t = tasks[server as usize];
                        w.h.drop_task(t);
                        w.m.task_gone(&mut w.h, t).unwrap();
                        open.retain(|_, (f, _, _)| f.task != t);
                        held.retain(|(f, _), _| f.task != t);
                        tasks[server as usize] = w.task(next_task, 6);
                        next_task += 1;
                    }
                    Op::Release { conn, server } => {
                        let from = end(&tasks, conn, server);
                        if let Some(addr) = held.remove(&(from, conn as u64)) {
                            w.m.share_release(&mut w.h, from.task, addr).unwrap();
                        }
                    }
                }
                let mut grants: BTreeMap<u64, Vec<(End, Granted)>> = BTreeMap::new();
                for a in w.m.take_answers() {
                    prop_assert!(answered.insert(a.token), "token {} answered twice", a.token);
                    let (from, conn, len) = open.remove(&a.token).expect("answer to an open request");
                    if let Ok(g) = a.result {
                        prop_assert_eq!(g.len, len);
                        prop_assert_eq!(g.side, (from.thread >= 20) as u8);
                        held.insert((from, conn), g.addr);
                        grants.entry(conn).or_default().push((from, g));
                    }
                }
                for (_, g) in grants {
                    // Grants come in pairs: both ends of one connection.
                    prop_assert_eq!(g.len(), 2);
                    prop_assert_eq!(g[0].1.share, g[1].1.share);
                    prop_assert_ne!(g[0].1.side, g[1].1.side);
                }
                w.m.audit().unwrap();
                // Each task is charged exactly the regions it holds.
                for t in tasks {
                    let mine: u64 = held
                        .iter()
                        .filter(|((f, _), _)| f.task == t)
                        .map(|((f, c), _)| {
                            w.m.shares()
                                .find(|s| s.1 == *c && s.3.contains(&Some(f.task)))
                                .map_or(0, |s| s.2)
                        })
                        .sum();
                    prop_assert_eq!(w.m.task(t).unwrap().reserved, mine);
                }
            }
            // Whatever is still open times out.
            w.m.share_expire(u64::MAX);
            for a in w.m.take_answers() {
                prop_assert!(answered.insert(a.token));
                prop_assert_eq!(a.result, Err(Error::TimedOut));
                open.remove(&a.token);
            }
            prop_assert!(open.is_empty(), "requests never answered: {:?}", open);
            for t in tasks {
                w.h.drop_task(t);
                w.m.task_gone(&mut w.h, t).unwrap();
            }
            prop_assert!(w.m.is_idle());
        }
    }
}

/// Both sides fault on one shared page while no frame is free: when a
/// frame comes, the first fault maps the page in both tasks, and the other
/// side's queued fault is resumed with it (it needs no frame of its own).
#[test]
fn the_other_sides_waiting_fault_follows_the_page() {
    let mut w = World::small(4, 1);
    let c = tid(3);
    let (a, b, pa, pb) = shared(&mut w, 1);
    w.m.task_new(c, 0).unwrap();
    let pc = w.m.reserve(c, 4 * PAGE_SIZE, Perms::RW).unwrap();
    for i in 0..4 {
        w.write(c, pc + i * PAGE_SIZE, i).unwrap();
    }
    assert_eq!(w.m.counters().frames_free, 0);
    let (fa, oa) = w.try_access(a, pa, Access::Read, None).unwrap_err();
    let (fb, ob) = w.try_access(b, pb, Access::Read, None).unwrap_err();
    assert_eq!((oa, ob), (FaultOutcome::Waiting, FaultOutcome::Waiting));
    assert_eq!(w.h.pending.len(), 1);
    w.h.complete(&mut w.m, 0, true);
    w.m.audit().unwrap();
    assert!(w.h.resumed.contains(&fa) && w.h.resumed.contains(&fb), "both resumed");
    w.h.access(a, pa, Access::Write, Some(&pattern(1))).unwrap();
    for _ in 0..3 {
        if w.m.needs_tick() {
            w.m.tick(&mut w.h);
        }
    }
    assert!(w.h.killed.is_empty(), "{:?}", w.h.killed);
}

/// Two threads of one task share with each other; the second thread's
/// withdrawal comes after the grant: it gets its own side's region.
#[test]
fn a_late_withdrawal_gets_the_askers_own_side() {
    let mut w = World::small(8, 16);
    let a = w.task(1, 0);
    let e = ConnEnds { client: End { task: a, thread: 1 }, server: End { task: a, thread: 2 } };
    w.m.share_request(ask(3, e.client, 4096), Some(e));
    w.m.share_request(ask(4, e.server, 4096), Some(e));
    let got = w.m.take_answers();
    let g4 = got.iter().find(|x| x.token == 4).unwrap().result.unwrap();
    let Ok(Withdrawal::TooLate(g)) = w.m.share_withdraw(e.server.thread, e.server, CONN) else {
        panic!("not too late")
    };
    assert_eq!((g.side, g.addr), (g4.side, g4.addr));
}

/// A fault's own mapping is refused (its task dies) while the other side's
/// mapping is made: the page is not left fresh for a thread that will never
/// touch it, so it can leave memory and a fault waiting for a frame is
/// served, not left waiting forever.
#[test]
fn a_page_is_not_fresh_for_a_side_whose_mapping_was_refused() {
    let mut w = World::small(2, 0);
    let c = tid(3);
    let (_, b, _, pb) = shared(&mut w, 1);
    w.m.task_new(c, 0).unwrap();
    w.h.refuse_map_task = Some(b);
    let (_, out) = w.try_access(b, pb, Access::Read, None).unwrap_err();
    assert_eq!(out, FaultOutcome::Killed(KillReason::MapFailed));
    w.h.refuse_map_task = None;
    w.h.drop_task(b);
    w.m.task_gone(&mut w.h, b).unwrap();
    w.m.audit().unwrap();
    let pc = w.m.reserve(c, 2 * PAGE_SIZE, Perms::RW).unwrap();
    w.write(c, pc, 1).unwrap();
    let (f, out) = w.try_access(c, pc + PAGE_SIZE, Access::Write, Some(2)).unwrap_err();
    for _ in 0..1000 {
        if out != FaultOutcome::Waiting || !w.m.needs_tick() {
            break;
        }
        w.m.tick(&mut w.h);
    }
    let answered = out == FaultOutcome::Resumed
        || w.h.resumed.contains(&f)
        || w.h.killed.iter().any(|k| k.1 == f);
    assert!(answered, "c's fault waits forever");
}
