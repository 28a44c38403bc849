//! One test per IPC rule and per error the rules define.

mod common;

use alux_abi::ipc::{info_flags, kernel_end_kind, KERNEL_TASK, KERNEL_THREAD, MESSAGE_MAX};
use alux_abi::{TaskId, ThreadId};
use alux_ipc::{
    CloseReason, Completion, ConnState, Deadline, Error, Events, Handle, Ipc, KernelEndId, Limits,
    Outcome, SendReceive, BYTES_PER_CONNECTION, MAX_ID_INDEX,
};
use common::{done, World};

// ---------------------------------------------------------------- objects

#[test]
fn add_task_and_thread_errors() {
    let mut w = World::new();
    let (k, _) = w.task(1, false);
    assert_eq!(w.ipc.add_task(k, 1, false), Err(Error::InvalidArgument));
    // An ID cannot carry an index of MAX_ID_INDEX or more: it wraps to 0.
    assert_eq!(TaskId::new(MAX_ID_INDEX, 1).index(), 0);
    assert_eq!(w.ipc.add_thread(ThreadId::new(50, 1), TaskId::new(9, 1)), Err(Error::NoSuchTask));
    assert_eq!(
        w.ipc.add_thread(ThreadId::new(50, 1), TaskId::new(k.index(), 2)),
        Err(Error::NoSuchTask)
    );
    assert_eq!(w.ipc.add_thread(ThreadId::new(0, 1), k), Err(Error::InvalidArgument));
    assert_eq!(w.ipc.object_counts(), (1, 1));
}

#[test]
fn unknown_or_stale_thread_is_no_such_thread() {
    let mut w = World::new();
    let (k, t) = w.task(1, false);
    let p = w.ipc.port_create(t).unwrap();
    let stale = ThreadId::new(t.index(), 2);
    let unknown = ThreadId::new(77, 1);
    for bad in [stale, unknown] {
        assert_eq!(w.ipc.port_create(bad), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.listen_push(bad, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.listen_withdraw(bad, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.connect(bad, k, Deadline::Now), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.write(bad, p, b""), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.read(bad, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.signal(bad, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.write_signal(bad, p, b""), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.poll(bad, &[p], Deadline::Now), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.poll_all(bad, Deadline::Now), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.close(bad, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.connection_info(bad, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.set_connect_permission(bad, 3, false), Err(Error::NoSuchThread));
        assert_eq!(
            w.ipc.kernel_end_open(bad, kernel_end_kind::PAGE_FAULTS),
            Err(Error::NoSuchThread)
        );
        assert_eq!(w.ipc.connection_query(bad, 1), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.timed_out(bad), None);
    }
    // Removing unknown objects is harmless.
    w.ipc.remove_thread(unknown);
    w.ipc.remove_task(TaskId::new(40, 1), true);
    assert_eq!(w.ipc.end_count(), 1);
}

// ---------------------------------------------------------------- handles

#[test]
fn never_issued_handles_are_bad() {
    let mut w = World::new();
    let (_, t) = w.task(1, false);
    let p = w.ipc.port_create(t).unwrap();
    for h in [
        Handle::NULL,
        Handle::new(p.index(), 0),
        Handle::new(p.index(), p.generation() + 1),
        Handle::new(999, 1),
        Handle::from_raw(0xdead_beef_1234_5678),
    ] {
        assert_eq!(w.ipc.write(t, h, b"x"), Err(Error::BadHandle), "{h}");
        assert_eq!(w.ipc.close(t, h), Err(Error::BadHandle), "{h}");
    }
}

#[test]
fn closed_handle_is_stale_and_never_names_a_new_end() {
    let mut w = World::new();
    let (_, t) = w.task(1, false);
    let p = w.ipc.port_create(t).unwrap();
    w.ipc.close(t, p).unwrap();
    assert_eq!(w.ipc.close(t, p), Err(Error::StaleHandle));
    assert_eq!(w.ipc.listen_push(t, p), Err(Error::StaleHandle));
    // The slot is reused with a new generation; the old handle stays stale.
    let q = w.ipc.port_create(t).unwrap();
    assert_eq!(q.index(), p.index());
    assert_ne!(q, p);
    assert_eq!(w.ipc.listen_push(t, p), Err(Error::StaleHandle));
    w.ipc.listen_push(t, q).unwrap();
}

#[test]
fn another_threads_handle_is_wrong_thread() {
    let mut w = World::new();
    let (k, t1) = w.task(1, false);
    let t2 = w.thread(k);
    let (_, other) = w.task(2, false);
    let p = w.ipc.port_create(t1).unwrap();
    for t in [t2, other] {
        assert_eq!(w.ipc.listen_push(t, p), Err(Error::WrongThread));
        assert_eq!(w.ipc.read(t, p), Err(Error::WrongThread));
        assert_eq!(w.ipc.poll(t, &[p], Deadline::Now), Err(Error::WrongThread));
        assert_eq!(w.ipc.close(t, p), Err(Error::WrongThread));
        assert_eq!(w.ipc.connection_info(t, p), Err(Error::WrongThread));
    }
    // Still the owner's.
    w.ipc.listen_push(t1, p).unwrap();
}

#[test]
fn kernel_side_id_is_not_a_user_handle() {
    let mut w = World::new();
    let (_, t) = w.task(0, true);
    let (_, kid) = w.ipc.kernel_end_open(t, kernel_end_kind::PAGE_FAULTS).unwrap();
    let as_handle = Handle::from_raw(kid.raw());
    assert_eq!(w.ipc.write(t, as_handle, b""), Err(Error::BadHandle));
}

// ---------------------------------------------------------------- ports and the listen queue

#[test]
fn listen_queue_is_fifo_and_any_thread_may_push() {
    let mut w = World::new();
    let (sk, s1) = w.task(1, false);
    let s2 = w.thread(sk);
    let (_, c) = w.task(2, false);
    let a = w.ipc.port_create(s1).unwrap();
    let b = w.ipc.port_create(s2).unwrap();
    let d = w.ipc.port_create(s1).unwrap();
    w.ipc.listen_push(s1, a).unwrap();
    w.ipc.listen_push(s2, b).unwrap();
    w.ipc.listen_push(s1, d).unwrap();
    assert_eq!(w.ipc.listen_queue_len(sk), Some(3));
    for (port, owner) in [(a, s1), (b, s2), (d, s1)] {
        done(w.ipc.connect(c, sk, Deadline::Now));
        let r = w.poll_now(owner).unwrap();
        assert_eq!(r.handle, port);
        assert_eq!(r.events, Events::OPENED);
    }
    assert_eq!(w.ipc.listen_queue_len(sk), Some(0));
}

#[test]
fn push_errors() {
    let mut w = World::with(Limits { listen_queue_len: 2, ..Limits::default() });
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let p = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, p).unwrap();
    assert_eq!(w.ipc.listen_push(s, p), Err(Error::AlreadyQueued));
    let q = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, q).unwrap();
    let r = w.ipc.port_create(s).unwrap();
    assert_eq!(w.ipc.listen_push(s, r), Err(Error::QueueFull));
    let conn = done(w.ipc.connect(c, sk, Deadline::Now));
    // A connected end is not a port, on either side.
    assert_eq!(w.ipc.listen_push(s, p), Err(Error::WrongKind));
    assert_eq!(w.ipc.listen_push(c, conn), Err(Error::WrongKind));
    // The queue has room again.
    w.ipc.listen_push(s, r).unwrap();
}

#[test]
fn withdraw_removes_from_queue() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let p = w.ipc.port_create(s).unwrap();
    assert_eq!(w.ipc.listen_withdraw(s, p), Err(Error::NotQueued));
    w.ipc.listen_push(s, p).unwrap();
    w.ipc.listen_withdraw(s, p).unwrap();
    assert_eq!(w.ipc.listen_withdraw(s, p), Err(Error::NotQueued));
    assert_eq!(w.ipc.connect(c, sk, Deadline::Now), Err(Error::NoPortAvailable));
    // A port a client already took is no longer queued.
    w.ipc.listen_push(s, p).unwrap();
    done(w.ipc.connect(c, sk, Deadline::Now));
    assert_eq!(w.ipc.listen_withdraw(s, p), Err(Error::NotQueued));
}

#[test]
fn closing_a_queued_port_removes_it() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let p = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, p).unwrap();
    w.ipc.close(s, p).unwrap();
    assert_eq!(w.ipc.listen_queue_len(sk), Some(0));
    assert_eq!(w.ipc.connect(c, sk, Deadline::Now), Err(Error::NoPortAvailable));
    assert_eq!(w.ipc.end_count(), 0);
}

#[test]
fn exiting_thread_takes_its_ports_out_of_the_queue() {
    let mut w = World::new();
    let (sk, s1) = w.task(1, false);
    let s2 = w.thread(sk);
    let (_, c) = w.task(2, false);
    let a = w.ipc.port_create(s1).unwrap();
    let b = w.ipc.port_create(s2).unwrap();
    w.ipc.listen_push(s1, a).unwrap();
    w.ipc.listen_push(s2, b).unwrap();
    w.ipc.remove_thread(s1);
    assert_eq!(w.ipc.listen_queue_len(sk), Some(1));
    done(w.ipc.connect(c, sk, Deadline::Now));
    assert_eq!(w.poll_now(s2).unwrap().handle, b);
}

// ---------------------------------------------------------------- connect

#[test]
fn connect_tells_both_sides_who_the_peer_is() {
    let mut w = World::new();
    let (sk, s) = w.task(10, false);
    let (ck, c) = w.task(20, false);
    let (p, h) = w.connect_pair(s, sk, c);
    let r = w.poll_now(s).unwrap();
    assert_eq!((r.handle, r.events), (p, Events::OPENED));
    assert_eq!((r.peer_task, r.peer_uid), (ck, 20));
    assert_eq!(r.close_reason, None);
    let ci = w.ipc.connection_info(c, h).unwrap();
    assert_eq!((ci.peer_task_id(), ci.peer_uid), (sk, 10));
    assert_eq!(ci.conn_state(), Some(ConnState::Connected));
    assert_eq!(ci.flags, 0);
    let si = w.ipc.connection_info(s, p).unwrap();
    assert_eq!((si.peer_task_id(), si.peer_uid), (ck, 20));
    assert_eq!(si.flags, info_flags::SERVER);
    assert_eq!(si.conn_id, ci.conn_id);
    assert_eq!(r.conn_id, ci.conn_id);
    // The client's thread gets nothing to poll.
    assert_eq!(w.poll_now(c), Err(Error::TimedOut));
}

#[test]
fn connect_errors() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    assert_eq!(w.ipc.connect(c, TaskId::new(9, 1), Deadline::Now), Err(Error::NoSuchTask));
    assert_eq!(w.ipc.connect(c, TaskId::new(sk.index(), 7), Deadline::Now), Err(Error::NoSuchTask));
    assert_eq!(w.ipc.connect(s, sk, Deadline::Now), Err(Error::SelfConnect));
    assert_eq!(w.ipc.connect(c, sk, Deadline::Now), Err(Error::NoPortAvailable));
    // The bitmap is checked before the queue.
    w.ipc.set_connect_permission(s, 2, false).unwrap();
    assert_eq!(w.ipc.connect(c, sk, Deadline::Now), Err(Error::ConnectDenied));
    assert_eq!(w.ipc.connect(c, sk, Deadline::Never), Err(Error::ConnectDenied));
    assert!(!w.ipc.is_parked(c));
}

#[test]
fn blocking_connect_waits_for_a_port() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (ck, c) = w.task(2, false);
    assert_eq!(
        w.ipc.connect(c, sk, Deadline::At(500)),
        Ok(Outcome::Block { deadline: Deadline::At(500) })
    );
    assert!(w.ipc.is_parked(c));
    assert_eq!(w.ipc.take_wakeup(), None);
    let p = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, p).unwrap();
    let wk = w.wakeups();
    assert_eq!(wk.len(), 1);
    let Completion::Connected(h) = wk[0].1 else { panic!("{wk:?}") };
    assert_eq!(wk[0].0, c);
    assert!(!w.ipc.is_parked(c));
    assert_eq!(w.ipc.listen_queue_len(sk), Some(0));
    let r = w.poll_now(s).unwrap();
    assert_eq!((r.handle, r.events, r.peer_task), (p, Events::OPENED, ck));
    w.ipc.write_signal(c, h, b"hi").unwrap();
    assert_eq!(w.ipc.read(s, p).unwrap().bytes(), b"hi");
    // Already woken: the timer firing late changes nothing.
    assert_eq!(w.ipc.timed_out(c), None);
}

#[test]
fn blocking_connects_are_served_in_order() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c1) = w.task(2, false);
    let (_, c2) = w.task(3, false);
    w.ipc.connect(c1, sk, Deadline::Never).unwrap();
    w.ipc.connect(c2, sk, Deadline::Never).unwrap();
    for expect in [c1, c2] {
        let p = w.ipc.port_create(s).unwrap();
        w.ipc.listen_push(s, p).unwrap();
        let wk = w.wakeups();
        assert_eq!(wk.len(), 1);
        assert_eq!(wk[0].0, expect);
        assert!(matches!(wk[0].1, Completion::Connected(_)));
    }
}

#[test]
fn blocking_connect_times_out() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    w.ipc.connect(c, sk, Deadline::At(10)).unwrap();
    assert_eq!(w.ipc.timed_out(c), Some(Completion::Failed(Error::TimedOut)));
    assert_eq!(w.ipc.timed_out(c), None);
    // No longer waiting: a pushed port stays queued.
    let p = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, p).unwrap();
    assert!(w.wakeups().is_empty());
    assert_eq!(w.ipc.listen_queue_len(sk), Some(1));
}

#[test]
fn blocking_connect_rechecks_when_a_port_arrives() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c1) = w.task(2, false);
    let (_, c2) = w.task(3, false);
    w.ipc.connect(c1, sk, Deadline::Never).unwrap();
    w.ipc.connect(c2, sk, Deadline::Never).unwrap();
    w.ipc.set_connect_permission(s, 2, false).unwrap();
    let p = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, p).unwrap();
    let wk = w.wakeups();
    assert_eq!(wk[0], (c1, Completion::Failed(Error::ConnectDenied)));
    assert_eq!(wk[1].0, c2);
    assert!(matches!(wk[1].1, Completion::Connected(_)));
}

#[test]
fn blocking_connect_fails_when_target_dies() {
    let mut w = World::new();
    let (sk, _) = w.task(1, false);
    let (_, c) = w.task(2, false);
    w.ipc.connect(c, sk, Deadline::Never).unwrap();
    w.ipc.remove_task(sk, false);
    assert_eq!(w.wakeups(), vec![(c, Completion::Failed(Error::NoSuchTask))]);
    assert!(!w.ipc.is_parked(c));
}

#[test]
fn parked_thread_is_busy() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let p = w.ipc.port_create(c).unwrap();
    w.ipc.connect(c, sk, Deadline::Never).unwrap();
    assert_eq!(w.ipc.connect(c, sk, Deadline::Never), Err(Error::Busy));
    assert_eq!(w.ipc.poll_all(c, Deadline::Now), Err(Error::Busy));
    assert_eq!(w.ipc.poll(c, &[p], Deadline::Now), Err(Error::Busy));
    w.ipc.poll_all(s, Deadline::Never).unwrap();
    assert_eq!(w.ipc.poll_all(s, Deadline::Never), Err(Error::Busy));
    assert_eq!(w.ipc.connect(s, TaskId::new(1, 1), Deadline::Now), Err(Error::Busy));
}

// ---------------------------------------------------------------- write, read, signal

#[test]
fn write_overwrites_and_read_sees_current_buffer() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    let m0 = w.ipc.read(s, p).unwrap();
    assert_eq!((m0.len, m0.seq), (0, 0));
    w.ipc.write(c, h, b"hello world").unwrap();
    w.ipc.write(c, h, b"bye").unwrap();
    let m = w.ipc.read(s, p).unwrap();
    assert_eq!(m.bytes(), b"bye");
    assert_eq!(m.seq, 2);
    assert!(m.data[3..].iter().all(|&b| b == 0));
    // Reading does not consume; unchanged seq means unchanged data.
    assert_eq!(w.ipc.read(s, p).unwrap(), m);
    // Each side has its own buffer.
    assert_eq!(w.ipc.read(c, h).unwrap().seq, 0);
    w.ipc.write(s, p, &[7; MESSAGE_MAX]).unwrap();
    assert_eq!(w.ipc.read(c, h).unwrap().bytes(), &[7; MESSAGE_MAX]);
    // Writing alone does not signal.
    assert_eq!(w.poll_now(c), Err(Error::TimedOut));
}

#[test]
fn too_long_write_is_rejected_without_effect() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    assert_eq!(w.ipc.write(c, h, &[1; 33]), Err(Error::MessageTooLong));
    assert_eq!(w.ipc.write_signal(c, h, &[1; 33]), Err(Error::MessageTooLong));
    assert_eq!(w.ipc.read(s, p).unwrap().seq, 0);
    assert_eq!(w.poll_now(s), Err(Error::TimedOut));
}

#[test]
fn unconnected_port_is_not_connected() {
    let mut w = World::new();
    let (_, s) = w.task(1, false);
    let p = w.ipc.port_create(s).unwrap();
    assert_eq!(w.ipc.read(s, p), Err(Error::NotConnected));
    assert_eq!(w.ipc.write(s, p, b"x"), Err(Error::NotConnected));
    assert_eq!(w.ipc.signal(s, p), Err(Error::NotConnected));
    assert_eq!(w.ipc.write_signal(s, p, b"x"), Err(Error::NotConnected));
    assert_eq!(w.ipc.connection_info(s, p), Err(Error::NotConnected));
    w.ipc.listen_push(s, p).unwrap();
    assert_eq!(w.ipc.read(s, p), Err(Error::NotConnected));
}

#[test]
fn signals_do_not_queue() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    for _ in 0..5 {
        w.ipc.signal(c, h).unwrap();
    }
    let r = w.poll_now(s).unwrap();
    assert_eq!((r.handle, r.events), (p, Events::SIGNAL));
    assert_eq!(w.poll_now(s), Err(Error::TimedOut));
}

#[test]
fn opened_and_signal_are_reported_together() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.ipc.write_signal(c, h, b"req").unwrap();
    let r = w.poll_now(s).unwrap();
    assert_eq!((r.handle, r.events), (p, Events::OPENED | Events::SIGNAL));
    assert_eq!(w.ipc.read(s, p).unwrap().bytes(), b"req");
}

#[test]
fn signal_wakes_a_poll_all_waiter() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    assert_eq!(
        w.ipc.poll_all(s, Deadline::Never),
        Ok(Outcome::Block { deadline: Deadline::Never })
    );
    w.ipc.write_signal(c, h, b"x").unwrap();
    let wk = w.wakeups();
    assert_eq!(wk.len(), 1);
    let Completion::Polled(r) = wk[0].1 else { panic!() };
    assert_eq!((wk[0].0, r.handle, r.events), (s, p, Events::SIGNAL));
    // The woken poll consumed the event.
    assert_eq!(w.poll_now(s), Err(Error::TimedOut));
}

#[test]
fn signal_wakes_a_set_waiter_only_for_ends_in_its_set() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p1, h1) = w.connect_pair(s, sk, c);
    let (p2, h2) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    w.poll_now(s).unwrap();
    assert!(matches!(w.ipc.poll(s, &[p2], Deadline::At(9)), Ok(Outcome::Block { .. })));
    w.ipc.signal(c, h1).unwrap();
    assert!(w.wakeups().is_empty());
    w.ipc.signal(c, h2).unwrap();
    let wk = w.wakeups();
    let Completion::Polled(r) = wk[0].1 else { panic!() };
    assert_eq!(r.handle, p2);
    // p1's signal is still pending.
    assert_eq!(w.poll_now(s).unwrap().handle, p1);
}

#[test]
fn signal_to_a_non_waiting_thread_wakes_nobody() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (_, h) = w.connect_pair(s, sk, c);
    w.ipc.signal(c, h).unwrap();
    assert!(w.wakeups().is_empty());
}

// ---------------------------------------------------------------- poll

#[test]
fn poll_times_out_or_blocks() {
    let mut w = World::new();
    let (_, s) = w.task(1, false);
    let p = w.ipc.port_create(s).unwrap();
    assert_eq!(w.ipc.poll(s, &[p], Deadline::Now), Err(Error::TimedOut));
    assert_eq!(w.ipc.poll_all(s, Deadline::Now), Err(Error::TimedOut));
    assert_eq!(
        w.ipc.poll(s, &[p], Deadline::At(5)),
        Ok(Outcome::Block { deadline: Deadline::At(5) })
    );
    assert!(w.ipc.is_parked(s));
    assert_eq!(w.ipc.timed_out(s), Some(Completion::Failed(Error::TimedOut)));
    assert!(!w.ipc.is_parked(s));
    assert_eq!(w.ipc.timed_out(s), None);
    w.ipc.audit().unwrap();
}

#[test]
fn poll_set_size_is_checked() {
    let mut w = World::with(Limits { poll_set_max: 2, ..Limits::default() });
    let (_, s) = w.task(1, false);
    let p = w.ipc.port_create(s).unwrap();
    assert_eq!(w.ipc.poll(s, &[], Deadline::Now), Err(Error::InvalidArgument));
    assert_eq!(w.ipc.poll(s, &[p, p, p], Deadline::Now), Err(Error::InvalidArgument));
    assert_eq!(w.ipc.poll(s, &[p, p], Deadline::Now), Err(Error::TimedOut));
}

#[test]
fn poll_set_rejects_any_bad_handle() {
    let mut w = World::new();
    let (_, s) = w.task(1, false);
    let (_, o) = w.task(2, false);
    let p = w.ipc.port_create(s).unwrap();
    let q = w.ipc.port_create(o).unwrap();
    assert_eq!(w.ipc.poll(s, &[p, q], Deadline::Never), Err(Error::WrongThread));
    assert_eq!(w.ipc.poll(s, &[p, Handle::NULL], Deadline::Never), Err(Error::BadHandle));
    assert!(!w.ipc.is_parked(s));
}

#[test]
fn poll_all_is_fifo_and_round_robin() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let pairs: Vec<_> = (0..4).map(|_| w.connect_pair(s, sk, c)).collect();
    for _ in 0..4 {
        w.poll_now(s).unwrap();
    }
    // Signal in the order 2, 0, 3, 1.
    for i in [2, 0, 3, 1] {
        w.ipc.signal(c, pairs[i].1).unwrap();
    }
    let r = w.poll_now(s).unwrap();
    assert_eq!(r.handle, pairs[2].0);
    // A busy end signaled again goes to the back: the others are not starved.
    w.ipc.signal(c, pairs[2].1).unwrap();
    let order: Vec<_> = (0..4).map(|_| w.poll_now(s).unwrap().handle).collect();
    assert_eq!(order, [pairs[0].0, pairs[3].0, pairs[1].0, pairs[2].0]);
}

#[test]
fn explicit_poll_returns_the_oldest_ready_end_of_the_set() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let pairs: Vec<_> = (0..3).map(|_| w.connect_pair(s, sk, c)).collect();
    for _ in 0..3 {
        w.poll_now(s).unwrap();
    }
    for i in [1, 2, 0] {
        w.ipc.signal(c, pairs[i].1).unwrap();
    }
    let set = [pairs[0].0, pairs[2].0];
    let first = common::done(w.ipc.poll(s, &set, Deadline::Now));
    assert_eq!(first.handle, pairs[2].0);
    let second = common::done(w.ipc.poll(s, &set, Deadline::Now));
    assert_eq!(second.handle, pairs[0].0);
    assert_eq!(w.ipc.poll(s, &set, Deadline::Now), Err(Error::TimedOut));
    assert_eq!(w.poll_now(s).unwrap().handle, pairs[1].0);
}

// ---------------------------------------------------------------- close

#[test]
fn close_tells_the_peer_and_keeps_last_data() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    w.ipc.write(c, h, b"last words").unwrap();
    w.ipc.close(c, h).unwrap();
    let r = w.poll_now(s).unwrap();
    assert_eq!((r.handle, r.events), (p, Events::PEER_CLOSED));
    assert_eq!(r.close_reason, Some(CloseReason::Closed));
    assert_eq!(w.ipc.write(s, p, b"x"), Err(Error::PeerClosed));
    assert_eq!(w.ipc.signal(s, p), Err(Error::PeerClosed));
    assert_eq!(w.ipc.write_signal(s, p, b"x"), Err(Error::PeerClosed));
    let m = w.ipc.read(s, p).unwrap();
    assert_eq!((m.bytes(), m.seq), (&b"last words"[..], 1));
    let info = w.ipc.connection_info(s, p).unwrap();
    assert_eq!(info.conn_state(), Some(ConnState::PeerClosed));
    assert_eq!(info.reason(), Some(CloseReason::Closed));
    // The closed end's handle is stale; closing the survivor frees it all.
    assert_eq!(w.ipc.read(c, h), Err(Error::StaleHandle));
    w.ipc.close(s, p).unwrap();
    assert_eq!(w.ipc.end_count(), 0);
}

#[test]
fn peer_close_wakes_a_waiter() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    w.ipc.poll(s, &[p], Deadline::Never).unwrap();
    w.ipc.close(c, h).unwrap();
    let wk = w.wakeups();
    let Completion::Polled(r) = wk[0].1 else { panic!() };
    assert_eq!(r.events, Events::PEER_CLOSED);
}

fn close_reason_after(f: impl FnOnce(&mut World, TaskId, ThreadId)) -> Option<CloseReason> {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (ck, c) = w.task(2, false);
    w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    f(&mut w, ck, c);
    let r = w.poll_now(s).unwrap();
    assert_eq!(r.events, Events::PEER_CLOSED);
    r.close_reason
}

#[test]
fn death_close_reasons() {
    assert_eq!(
        close_reason_after(|w, _, c| w.ipc.remove_thread(c)),
        Some(CloseReason::ThreadExited)
    );
    assert_eq!(
        close_reason_after(|w, k, _| w.ipc.remove_task(k, false)),
        Some(CloseReason::TaskExited)
    );
    assert_eq!(
        close_reason_after(|w, k, _| w.ipc.remove_task(k, true)),
        Some(CloseReason::TaskKilled)
    );
}

#[test]
fn thread_exit_drops_its_wait_and_wakeup() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (_, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    w.ipc.poll_all(s, Deadline::Never).unwrap();
    w.ipc.signal(c, h).unwrap();
    // Woken but not yet run when it dies: its wakeup is withdrawn.
    w.ipc.remove_thread(s);
    assert!(w.wakeups().is_empty());
    assert_eq!(w.ipc.signal(c, h), Err(Error::PeerClosed));
    // A thread parked in connect leaves the waiter list.
    let (_, d) = w.task(3, false);
    w.ipc.connect(d, sk, Deadline::Never).unwrap();
    w.ipc.remove_thread(d);
    let s2 = w.thread(sk);
    let p = w.ipc.port_create(s2).unwrap();
    w.ipc.listen_push(s2, p).unwrap();
    assert!(w.wakeups().is_empty());
    w.ipc.audit().unwrap();
}

#[test]
fn everything_is_freed_when_every_task_exits() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (ck, c) = w.task(2, false);
    let (pk, pt) = w.task(0, true);
    w.connect_pair(s, sk, c);
    w.connect_pair(s, sk, c);
    let q = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, q).unwrap();
    w.ipc.kernel_end_open(pt, kernel_end_kind::PAGE_FAULTS).unwrap();
    assert_eq!(w.ipc.end_count(), 7);
    w.ipc.remove_task(ck, true);
    w.ipc.remove_task(sk, false);
    w.ipc.remove_task(pk, false);
    assert_eq!(w.ipc.end_count(), 0);
    assert_eq!(w.ipc.object_counts(), (0, 0));
    w.ipc.audit().unwrap();
}

// ---------------------------------------------------------------- permission bitmap

#[test]
fn permission_bitmap_defaults_to_allow() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c7) = w.task(7, false);
    let (_, c8) = w.task(8, false);
    for uid in [0, 1, 7, u16::MAX] {
        assert_eq!(w.ipc.connect_permitted(sk, uid), Some(true));
    }
    assert_eq!(alux_abi::ids::UID_COUNT, 65_536);
    w.ipc.set_connect_permission(s, 7, false).unwrap();
    assert_eq!(w.ipc.connect_permitted(sk, 7), Some(false));
    assert_eq!(w.ipc.connect_permitted(sk, 8), Some(true));
    w.ipc.set_connect_permission(s, u16::MAX, false).unwrap();
    assert_eq!(w.ipc.connect_permitted(sk, u16::MAX), Some(false));
    for _ in 0..2 {
        let p = w.ipc.port_create(s).unwrap();
        w.ipc.listen_push(s, p).unwrap();
    }
    assert_eq!(w.ipc.connect(c7, sk, Deadline::Now), Err(Error::ConnectDenied));
    done(w.ipc.connect(c8, sk, Deadline::Now));
    // Re-allowing works; allowing an allowed uid is a no-op.
    w.ipc.set_connect_permission(s, 7, true).unwrap();
    w.ipc.set_connect_permission(s, 9, true).unwrap();
    done(w.ipc.connect(c7, sk, Deadline::Now));
    assert_eq!(w.ipc.connect_permitted(TaskId::new(50, 1), 1), None);
}

#[test]
fn any_thread_sets_its_own_tasks_bitmap_only() {
    let mut w = World::new();
    let (sk, _) = w.task(1, false);
    let s2 = w.thread(sk);
    let (ok, _) = w.task(2, false);
    w.ipc.set_connect_permission(s2, 5, false).unwrap();
    assert_eq!(w.ipc.connect_permitted(sk, 5), Some(false));
    assert_eq!(w.ipc.connect_permitted(ok, 5), Some(true));
}

// ---------------------------------------------------------------- kernel ends

#[test]
fn connection_info_says_whether_the_peer_is_privileged() {
    let mut w = World::new();
    let (pk, p) = w.task(0, true);
    let (uk, u) = w.task(7, false);
    let (server_end, client_end) = w.connect_pair(p, pk, u);
    let at_server = w.ipc.connection_info(p, server_end).unwrap();
    assert_eq!(at_server.flags, info_flags::SERVER, "the client is unprivileged");
    let at_client = w.ipc.connection_info(u, client_end).unwrap();
    assert_eq!(at_client.flags, info_flags::PEER_PRIVILEGED);
    // The other way round: an unprivileged server, a privileged client.
    let (a, b) = w.connect_pair(u, uk, p);
    assert_eq!(
        w.ipc.connection_info(u, a).unwrap().flags,
        info_flags::SERVER | info_flags::PEER_PRIVILEGED
    );
    assert_eq!(w.ipc.connection_info(p, b).unwrap().flags, 0);
    // A peer that is gone is no longer vouched for.
    w.ipc.remove_task(pk, true);
    assert_eq!(w.ipc.connection_info(u, client_end).unwrap().flags, 0);
}

#[test]
fn the_kernel_learns_when_a_task_closes_its_kernel_end() {
    let mut w = World::new();
    let (k, t) = w.task(0, true);
    let (h, kid) = w.ipc.kernel_end_open(t, kernel_end_kind::interrupt(11)).unwrap();
    let (_, kid2) = w.ipc.kernel_end_open(t, kernel_end_kind::interrupt(12)).unwrap();
    assert_eq!(w.ipc.kernel_sides_closed(), 0);
    assert!(!w.ipc.kernel_signals_pending());
    w.ipc.signal(t, h).unwrap();
    assert!(w.ipc.kernel_signals_pending());
    assert_eq!(w.ipc.kernel_take_signal(), Some((kid, Events::SIGNAL)));
    assert!(!w.ipc.kernel_signals_pending());
    w.ipc.close(t, h).unwrap();
    assert_eq!(w.ipc.kernel_sides_closed(), 1);
    assert!(!w.ipc.kernel_end_is_open(kid));
    assert!(w.ipc.kernel_end_is_open(kid2));
    // The task ends: its other kernel end goes too, and is counted.
    w.ipc.remove_task(k, false);
    assert_eq!(w.ipc.kernel_sides_closed(), 2);
    assert!(!w.ipc.kernel_end_is_open(kid2));
    // The kernel closing its own side is not counted: it knows already.
    let (_, t2) = w.task(0, true);
    let (_, kid3) = w.ipc.kernel_end_open(t2, kernel_end_kind::PAGE_FAULTS).unwrap();
    w.ipc.kernel_end_close(kid3).unwrap();
    assert_eq!(w.ipc.kernel_sides_closed(), 2);
}

#[test]
fn kernel_end_delivers_like_a_peer() {
    let mut w = World::new();
    let (pk, t) = w.task(0, true);
    let (h, kid) = w.ipc.kernel_end_open(t, kernel_end_kind::PAGE_FAULTS).unwrap();
    assert_eq!(w.ipc.kernel_end_by_kind(kernel_end_kind::PAGE_FAULTS), Some(kid));
    assert_eq!(w.ipc.end_count(), 2);
    assert_eq!(w.ipc.thread_end_count(t), Some(1));
    assert_eq!(w.ipc.task_end_count(pk), Some(1));
    w.ipc.poll_all(t, Deadline::Never).unwrap();
    w.ipc.kernel_write_signal(kid, b"fault@0x1000").unwrap();
    let wk = w.wakeups();
    let Completion::Polled(r) = wk[0].1 else { panic!() };
    assert_eq!((r.handle, r.events, r.peer_task), (h, Events::SIGNAL, KERNEL_TASK));
    assert_eq!(w.ipc.read(t, h).unwrap().bytes(), b"fault@0x1000");
    let info = w.ipc.connection_info(t, h).unwrap();
    assert_eq!(info.flags, info_flags::KERNEL | info_flags::PEER_PRIVILEGED);
    assert_eq!(info.kernel_kind, kernel_end_kind::PAGE_FAULTS);
    assert_eq!(info.peer_task_id(), KERNEL_TASK);
    // The task answers; the kernel sees the signal and the data.
    assert_eq!(w.ipc.kernel_take_signal(), None);
    w.ipc.write_signal(t, h, b"done").unwrap();
    w.ipc.signal(t, h).unwrap();
    assert_eq!(w.ipc.kernel_take_signal(), Some((kid, Events::SIGNAL)));
    assert_eq!(w.ipc.kernel_take_signal(), None);
    assert_eq!(w.ipc.kernel_read(kid).unwrap().bytes(), b"done");
    assert_eq!(w.ipc.kernel_write_signal(kid, &[0; 33]), Err(Error::MessageTooLong));
}

#[test]
fn send_receive_on_a_kernel_end_is_refused_and_receive_keeps_its_timeout() {
    let mut w = World::new();
    let (_, t) = w.task(0, true);
    let (h, kid) = w.ipc.kernel_end_open(t, kernel_end_kind::PAGE_FAULTS).unwrap();
    // The kernel never answers inside the call: refused, nothing sent, and
    // the caller is not parked.
    assert_eq!(w.ipc.send_receive(t, h, b"reply"), Err(Error::WrongKind));
    assert_eq!(w.ipc.kernel_take_signal(), None);
    assert_eq!(w.ipc.kernel_read(kid).unwrap().len, 0);
    assert!(!w.ipc.is_parked(t));
    // A receive on the thread's kernel end ends by its own deadline.
    assert_eq!(w.ipc.receive(t, Deadline::Now), Err(Error::TimedOut));
    assert_eq!(
        w.ipc.receive(t, Deadline::At(10)),
        Ok(Outcome::Block { deadline: Deadline::At(10) })
    );
    assert_eq!(w.ipc.timed_out(t), Some(Completion::Failed(Error::TimedOut)));
    assert!(!w.ipc.is_parked(t));
    // ... or when the kernel signals it, with the kernel's data.
    assert_eq!(w.ipc.receive(t, Deadline::Never), Ok(Outcome::Block { deadline: Deadline::Never }));
    w.ipc.kernel_write_signal(kid, b"fault").unwrap();
    let wk = w.wakeups();
    let Completion::Received(r, m) = wk[0].1 else { panic!("{wk:?}") };
    assert_eq!((wk[0].0, r.handle, r.events), (t, h, Events::SIGNAL));
    assert_eq!(m.bytes(), b"fault");
    // A plain send still reaches the kernel.
    w.ipc.write_signal(t, h, b"done").unwrap();
    assert_eq!(w.ipc.kernel_take_signal(), Some((kid, Events::SIGNAL)));
}

#[test]
fn kernel_end_open_errors() {
    let mut w = World::new();
    let (_, u) = w.task(1, false);
    let (_, t) = w.task(0, true);
    assert_eq!(w.ipc.kernel_end_open(u, kernel_end_kind::PAGE_FAULTS), Err(Error::NotPrivileged));
    assert_eq!(w.ipc.kernel_end_open(t, 0), Err(Error::InvalidArgument));
    assert_eq!(w.ipc.kernel_end_open(t, 0x7f), Err(Error::InvalidArgument));
    w.ipc.kernel_end_open(t, kernel_end_kind::interrupt(3)).unwrap();
    assert_eq!(w.ipc.kernel_end_open(t, kernel_end_kind::interrupt(3)), Err(Error::Busy));
    w.ipc.kernel_end_open(t, kernel_end_kind::interrupt(4)).unwrap();
    let mut small = World::with(Limits { ends_per_thread: 1, ..Limits::default() });
    let (_, t) = small.task(0, true);
    small.ipc.kernel_end_open(t, kernel_end_kind::interrupt(1)).unwrap();
    assert_eq!(
        small.ipc.kernel_end_open(t, kernel_end_kind::interrupt(2)),
        Err(Error::LimitReached)
    );
}

#[test]
fn closing_a_kernel_end_frees_both_sides() {
    let mut w = World::new();
    let (_, t) = w.task(0, true);
    let kind = kernel_end_kind::interrupt(9);
    let (h, kid) = w.ipc.kernel_end_open(t, kind).unwrap();
    w.ipc.kernel_write_signal(kid, b"irq").unwrap();
    w.ipc.close(t, h).unwrap();
    assert_eq!(w.ipc.end_count(), 0);
    assert_eq!(w.ipc.kernel_write_signal(kid, b"irq"), Err(Error::PeerClosed));
    assert_eq!(w.ipc.kernel_read(kid), Err(Error::PeerClosed));
    assert_eq!(w.ipc.kernel_end_close(kid), Err(Error::PeerClosed));
    assert_eq!(w.ipc.kernel_end_by_kind(kind), None);
    // The kind can be opened again.
    w.ipc.kernel_end_open(t, kind).unwrap();
    assert_eq!(w.ipc.kernel_write_signal(KernelEndId::from_raw(0), b""), Err(Error::BadHandle));
    assert_eq!(
        w.ipc.kernel_write_signal(KernelEndId::from_raw(u64::MAX), b""),
        Err(Error::BadHandle)
    );
}

#[test]
fn kernel_closing_its_side_tells_the_task() {
    let mut w = World::new();
    let (_, t) = w.task(0, true);
    let (h, kid) = w.ipc.kernel_end_open(t, kernel_end_kind::PAGE_FAULTS).unwrap();
    w.ipc.kernel_write_signal(kid, b"bye").unwrap();
    w.ipc.kernel_end_close(kid).unwrap();
    assert_eq!(w.ipc.end_count(), 1);
    let r = w.poll_now(t).unwrap();
    assert_eq!(r.events, Events::SIGNAL | Events::PEER_CLOSED);
    assert_eq!(r.close_reason, Some(CloseReason::Closed));
    assert_eq!(w.ipc.read(t, h).unwrap().bytes(), b"bye");
    assert_eq!(w.ipc.signal(t, h), Err(Error::PeerClosed));
    w.ipc.close(t, h).unwrap();
    assert_eq!(w.ipc.end_count(), 0);
}

#[test]
fn task_signal_to_kernel_is_dropped_when_end_closes() {
    let mut w = World::new();
    let (_, t) = w.task(0, true);
    let (h, _) = w.ipc.kernel_end_open(t, kernel_end_kind::PAGE_FAULTS).unwrap();
    w.ipc.signal(t, h).unwrap();
    w.ipc.remove_thread(t);
    assert_eq!(w.ipc.kernel_take_signal(), None);
    assert_eq!(w.ipc.end_count(), 0);
    w.ipc.audit().unwrap();
}

// ---------------------------------------------------------------- connection identity

#[test]
fn connection_ids_are_unique_even_when_slots_are_reused() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let (p, h) = w.connect_pair(s, sk, c);
        let id = w.ipc.connection_info(c, h).unwrap().conn_id;
        assert_eq!(w.ipc.connection_info(s, p).unwrap().conn_id, id);
        assert!(seen.insert(id));
        w.ipc.close(c, h).unwrap();
        w.ipc.close(s, p).unwrap();
    }
}

#[test]
fn connection_query_returns_both_ends() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (ck, c) = w.task(2, false);
    let (mk, m) = w.task(0, true);
    let (p, h) = w.connect_pair(s, sk, c);
    let id = w.ipc.connection_info(c, h).unwrap().conn_id;
    assert_eq!(w.ipc.connection_query(c, id), Err(Error::NotPrivileged));
    let ends = w.ipc.connection_query(m, id).unwrap();
    assert_eq!(ends.conn_id, id);
    assert_eq!((ends.client_task, ends.client_thread), (ck.raw(), c.raw()));
    assert_eq!((ends.server_task, ends.server_thread), (sk.raw(), s.raw()));
    assert_eq!(w.ipc.connection_query(m, id ^ (1 << 40)), Err(Error::NoSuchConnection));
    assert_eq!(w.ipc.connection_query(m, 0), Err(Error::NoSuchConnection));
    // A server end's handle value is not a connection ID.
    assert_eq!(w.ipc.connection_query(m, p.raw()), Err(Error::NoSuchConnection));
    // Not live once either end closes.
    w.ipc.close(s, p).unwrap();
    assert_eq!(w.ipc.connection_query(m, id), Err(Error::NoSuchConnection));
    // Kernel ends: the server side is the kernel.
    let (kh, _) = w.ipc.kernel_end_open(m, kernel_end_kind::PAGE_FAULTS).unwrap();
    let kid = w.ipc.connection_info(m, kh).unwrap().conn_id;
    let ends = w.ipc.connection_query(m, kid).unwrap();
    assert_eq!((ends.client_task, ends.client_thread), (mk.raw(), m.raw()));
    assert_eq!((ends.server_task, ends.server_thread), (KERNEL_TASK.raw(), KERNEL_THREAD.raw()));
}

// ---------------------------------------------------------------- limits

#[test]
fn per_thread_limit_harms_no_one_else() {
    let mut w = World::with(Limits { ends_per_thread: 2, ..Limits::default() });
    let (sk, s) = w.task(1, false);
    let s2 = w.thread(sk);
    let (_, c) = w.task(2, false);
    let a = w.ipc.port_create(s).unwrap();
    w.ipc.port_create(s).unwrap();
    assert_eq!(w.ipc.port_create(s), Err(Error::LimitReached));
    w.ipc.port_create(s2).unwrap();
    // The client at its limit cannot connect; the server's port stays queued.
    w.ipc.listen_push(s, a).unwrap();
    w.ipc.port_create(c).unwrap();
    w.ipc.port_create(c).unwrap();
    assert_eq!(w.ipc.connect(c, sk, Deadline::Now), Err(Error::LimitReached));
    assert_eq!(w.ipc.listen_queue_len(sk), Some(1));
    let c2 = w.thread(TaskId::new(1, 1));
    done(w.ipc.connect(c2, sk, Deadline::Now));
}

#[test]
fn per_task_and_total_limits() {
    let mut w = World::with(Limits {
        ends_per_task: 3,
        total_ends: 5,
        ends_reserved: 0,
        ..Limits::default()
    });
    let (k, t1) = w.task(1, false);
    let t2 = w.thread(k);
    w.ipc.port_create(t1).unwrap();
    w.ipc.port_create(t2).unwrap();
    let last = w.ipc.port_create(t1).unwrap();
    assert_eq!(w.ipc.port_create(t2), Err(Error::LimitReached));
    assert_eq!(w.ipc.task_end_count(k), Some(3));
    let (_, o) = w.task(2, false);
    w.ipc.port_create(o).unwrap();
    w.ipc.port_create(o).unwrap();
    assert_eq!(w.ipc.port_create(o), Err(Error::LimitReached));
    // Freeing one makes room again.
    w.ipc.close(t1, last).unwrap();
    w.ipc.port_create(o).unwrap();
    // A kernel end needs two slots of the total.
    let (_, p) = w.task(0, true);
    assert_eq!(w.ipc.end_count(), 5);
    assert_eq!(w.ipc.kernel_end_open(p, kernel_end_kind::PAGE_FAULTS), Err(Error::LimitReached));
}

#[test]
fn uid_shares_and_the_privileged_reserve() {
    let mut w = World::with(Limits {
        ends_per_thread: 8,
        ends_per_task: 8,
        total_ends: 16,
        ends_reserved: 4,
        ends_per_uid: 5,
        ..Limits::default()
    });
    // Two tasks of uid 1 share its 5 ends.
    let (_, a) = w.task(1, false);
    let (_, b) = w.task(1, false);
    for _ in 0..3 {
        w.ipc.port_create(a).unwrap();
    }
    w.ipc.port_create(b).unwrap();
    w.ipc.port_create(b).unwrap();
    assert_eq!(w.ipc.port_create(b), Err(Error::LimitReached));
    assert_eq!(w.ipc.uid_end_count(1), 5);
    // uid 2 fills its share; uid 3 gets the 2 left of the unprivileged 12.
    let (_, c) = w.task(2, false);
    for _ in 0..5 {
        w.ipc.port_create(c).unwrap();
    }
    let (_, d) = w.task(3, false);
    w.ipc.port_create(d).unwrap();
    let last = w.ipc.port_create(d).unwrap();
    assert_eq!(w.ipc.port_create(d), Err(Error::LimitReached), "the unprivileged part is full");
    // A connect by an unprivileged client fails for the client only...
    let (sk, s) = w.task(0, true);
    let port = w.ipc.port_create(s).unwrap();
    w.ipc.listen_push(s, port).unwrap();
    assert_eq!(w.ipc.connect(d, sk, Deadline::Now), Err(Error::LimitReached));
    assert_eq!(w.ipc.listen_queue_len(sk), Some(1), "the server keeps its port");
    // ...while a privileged task, whatever its uid, gets the reserve.
    let (_, p) = w.task(1, true);
    let mine: Vec<Handle> = (0..3).map(|_| w.ipc.port_create(p).unwrap()).collect();
    assert_eq!(w.ipc.port_create(p), Err(Error::LimitReached), "the table is full");
    assert_eq!(w.ipc.end_count(), 16);
    // A connect charges the connecting side: freeing one of uid 3's ends
    // lets it connect, and the server's count does not change.
    w.ipc.close(d, last).unwrap();
    let before = w.ipc.thread_end_count(s);
    let h = done(w.ipc.connect(d, sk, Deadline::Now));
    assert_eq!(w.ipc.thread_end_count(s), before);
    assert_eq!(w.ipc.uid_end_count(3), 2);
    w.ipc.close(d, h).unwrap();
    for h in mine {
        w.ipc.close(p, h).unwrap();
    }
    w.ipc.audit().unwrap();
}

#[test]
fn bytes_per_connection_are_bounded() {
    // Two end slots per connection (see `BYTES_PER_CONNECTION`).
    let bytes = std::hint::black_box(BYTES_PER_CONNECTION);
    println!("kernel memory per connection: {bytes} bytes (2 end slots)");
    assert!(bytes <= 256, "{bytes}");
}

#[test]
fn default_limits_match_the_abi() {
    let l = Limits::default();
    assert_eq!(l.ends_per_thread, alux_abi::ipc::limits::ENDS_PER_THREAD);
    assert_eq!(l.ends_per_task, alux_abi::ipc::limits::ENDS_PER_TASK);
    assert_eq!(l.listen_queue_len, alux_abi::ipc::limits::LISTEN_QUEUE_LEN);
    assert_eq!(l.total_ends, alux_abi::ipc::limits::TOTAL_ENDS);
    assert_eq!(l.poll_set_max, alux_abi::ipc::limits::POLL_SET_MAX);
    assert_eq!(Ipc::new(l).limits(), l);
}

#[test]
fn deadline_from_timeout() {
    assert_eq!(Deadline::from_timeout(100, 0), Deadline::Now);
    assert_eq!(Deadline::from_timeout(100, u64::MAX), Deadline::Never);
    assert_eq!(Deadline::from_timeout(100, 5), Deadline::At(105));
    assert_eq!(Deadline::from_timeout(u64::MAX - 1, 5), Deadline::At(u64::MAX));
}

// ---------------------------------------------------------------- receive (poll all + read)

#[test]
fn receive_returns_the_ready_end_with_its_peer_buffer() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    // The OPENED event of a port nobody wrote to comes with an empty buffer.
    let Outcome::Done((r, m)) = w.ipc.receive(s, Deadline::Now).unwrap() else { panic!() };
    assert_eq!((r.handle, r.events, m.len), (p, Events::OPENED, 0));
    w.ipc.write_signal(c, h, b"hello").unwrap();
    let Outcome::Done((r, m)) = w.ipc.receive(s, Deadline::Now).unwrap() else { panic!() };
    assert_eq!((r.handle, r.events, m.bytes()), (p, Events::SIGNAL, &b"hello"[..]));
    assert_eq!(w.ipc.receive(s, Deadline::Now), Err(Error::TimedOut));
}

#[test]
fn a_parked_receive_wakes_with_the_message() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    assert_eq!(w.ipc.receive(s, Deadline::Never), Ok(Outcome::Block { deadline: Deadline::Never }));
    assert_eq!(w.ipc.receive(s, Deadline::Never), Err(Error::Busy));
    assert_eq!(w.ipc.poll_all(s, Deadline::Never), Err(Error::Busy));
    w.ipc.write_signal(c, h, b"ping").unwrap();
    let wk = w.wakeups();
    assert_eq!(wk.len(), 1);
    let Completion::Received(r, m) = wk[0].1 else { panic!("{:?}", wk[0].1) };
    assert_eq!((wk[0].0, r.handle, r.events, m.bytes()), (s, p, Events::SIGNAL, &b"ping"[..]));
    // Consumed: nothing left, and the end is on no ready list.
    assert_eq!(w.poll_now(s), Err(Error::TimedOut));
    w.ipc.audit().unwrap();
}

#[test]
fn a_parked_receive_sees_peer_close_with_the_last_data() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (ck, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    w.ipc.write(c, h, b"last").unwrap();
    assert!(matches!(w.ipc.receive(s, Deadline::At(5)), Ok(Outcome::Block { .. })));
    w.ipc.remove_task(ck, true);
    let wk = w.wakeups();
    let Completion::Received(r, m) = wk[0].1 else { panic!() };
    assert_eq!(r.handle, p);
    assert!(r.events.contains(Events::PEER_CLOSED));
    assert_eq!(r.close_reason, Some(CloseReason::TaskKilled));
    assert_eq!(m.bytes(), b"last");
}

#[test]
fn a_receive_times_out() {
    let mut w = World::new();
    let (_, s) = w.task(1, false);
    assert!(matches!(w.ipc.receive(s, Deadline::At(7)), Ok(Outcome::Block { .. })));
    assert_eq!(w.ipc.timed_out(s), Some(Completion::Failed(Error::TimedOut)));
    assert_eq!(w.ipc.timed_out(s), None);
    assert_eq!(w.ipc.receive(ThreadId::new(99, 1), Deadline::Now), Err(Error::NoSuchThread));
}

// ---------------------------------------------------------------- send_receive (request/reply)

#[test]
fn send_receive_hands_off_to_a_parked_receiver() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    assert!(matches!(w.ipc.receive(s, Deadline::Never), Ok(Outcome::Block { .. })));
    let SendReceive::Parked { handoff: Some((to, r, m)) } =
        w.ipc.send_receive(c, h, b"request").unwrap()
    else {
        panic!()
    };
    assert_eq!((to, r.handle, r.events, m.bytes()), (s, p, Events::SIGNAL, &b"request"[..]));
    // Handed off, not queued; the server is no longer parked, the client is.
    assert!(w.wakeups().is_empty());
    assert!(!w.ipc.is_parked(s));
    assert!(w.ipc.is_parked(c));
    // The reply reaches the parked client through the ordinary path.
    w.ipc.write_signal(s, p, b"reply").unwrap();
    let wk = w.wakeups();
    let Completion::Received(r, m) = wk[0].1 else { panic!("{:?}", wk) };
    assert_eq!((wk[0].0, r.handle, m.bytes()), (c, h, &b"reply"[..]));
    w.ipc.audit().unwrap();
}

#[test]
fn send_receive_parks_without_hand_off_when_the_peer_does_not_wait() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    assert_eq!(w.ipc.send_receive(c, h, b"x"), Ok(SendReceive::Parked { handoff: None }));
    assert_eq!(w.ipc.send_receive(c, h, b"y"), Err(Error::Busy));
    // The request is pending on the server's end.
    let r = w.poll_now(s).unwrap();
    assert_eq!((r.handle, r.events), (p, Events::SIGNAL));
    assert_eq!(w.ipc.read(s, p).unwrap().bytes(), b"x");
}

#[test]
fn send_receive_returns_what_already_waits() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.poll_now(s).unwrap();
    w.ipc.write_signal(s, p, b"early").unwrap();
    let SendReceive::Received(r, m) = w.ipc.send_receive(c, h, b"req").unwrap() else { panic!() };
    assert_eq!((r.handle, m.bytes()), (h, &b"early"[..]));
    assert!(!w.ipc.is_parked(c));
    assert_eq!(w.ipc.read(s, p).unwrap().bytes(), b"req");
}

#[test]
fn send_receive_errors_send_nothing() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (ck, c) = w.task(2, false);
    let (_, h) = w.connect_pair(s, sk, c);
    assert_eq!(w.ipc.send_receive(c, h, &[0; MESSAGE_MAX + 1]), Err(Error::MessageTooLong));
    assert_eq!(w.ipc.send_receive(s, h, b"x"), Err(Error::WrongThread));
    w.ipc.remove_task(sk, false);
    assert_eq!(w.ipc.send_receive(c, h, b"x"), Err(Error::PeerClosed));
    assert!(!w.ipc.is_parked(c));
    let _ = ck;
}
