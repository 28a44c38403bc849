//! Memory is given back: after a burst of activity the end slab, the task
//! and thread records and the queues shrink back to where they were, and
//! the handles (and connection IDs, kernel end IDs) of cut-off slots stay
//! stale when the slab grows again over them.

mod common;

use alux_abi::ipc::kernel_end_kind;
use alux_abi::{TaskId, ThreadId};
use alux_ipc::{Completion, Deadline, Error, Events, Handle, Ipc, Limits, Outcome};
use common::{done, World};

/// A flood like the OS test's: a task creates 1,024 ports and thousands of
/// connections to a server, then exits; the server closes what it got.
/// The baseline connection (at the slab's bottom) keeps working, and the
/// model's heap is back to its size before the flood.
#[test]
fn a_flood_gives_its_memory_back() {
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (bp, bc) = w.connect_pair(s, sk, c);
    w.ipc.poll_all(s, Deadline::Now).unwrap();
    let before = w.ipc.heap_bytes();
    let caps = (w.ipc.slab_capacity(), w.ipc.record_capacity());

    let (fk, f) = w.task(3, false);
    let servers: Vec<ThreadId> = (0..4).map(|_| w.thread(sk)).collect();
    let flooders: Vec<ThreadId> = (0..4).map(|_| w.thread(fk)).collect();
    let ports: Vec<Handle> = (0..1024).map(|_| w.ipc.port_create(f).unwrap()).collect();
    let mut served = Vec::new();
    for i in 0..3000 {
        let (st, ft) = (servers[i % 4], flooders[i % 4]);
        let p = w.ipc.port_create(st).unwrap();
        w.ipc.listen_push(st, p).unwrap();
        let h = done(w.ipc.connect(ft, sk, Deadline::Now));
        w.ipc.write_signal(ft, h, b"flood").unwrap();
        served.push((st, p));
    }
    assert_eq!(w.ipc.end_count(), 2 + 1024 + 6000);
    assert!(w.ipc.slab_capacity() >= 7026);
    w.ipc.remove_task(fk, false);
    for &(st, p) in &served {
        assert_eq!(w.ipc.read(st, p).unwrap().len, 5);
        w.ipc.close(st, p).unwrap();
    }
    for st in servers {
        w.ipc.remove_thread(st);
    }
    w.ipc.audit().unwrap();
    assert_eq!(w.ipc.end_count(), 2);
    assert_eq!((w.ipc.slab_capacity(), w.ipc.record_capacity()), caps);
    assert_eq!(w.ipc.heap_bytes(), before);
    // The flood's handles are stale, the baseline connection works.
    for p in ports {
        assert_eq!(w.ipc.close(f, p), Err(Error::NoSuchThread));
        assert_eq!(w.ipc.close(s, p), Err(Error::StaleHandle), "{p}");
    }
    w.ipc.signal(c, bc).unwrap();
    assert_eq!(w.poll_now(s).unwrap().handle, bp);
}

#[test]
fn stale_handles_stay_stale_after_truncation_and_regrowth() {
    let mut w = World::new();
    let (_, t) = w.task(1, false);
    let old: Vec<Handle> = (0..100).map(|_| w.ipc.port_create(t).unwrap()).collect();
    assert!(w.ipc.slab_capacity() >= 100);
    for &h in old.iter().rev() {
        w.ipc.close(t, h).unwrap();
    }
    assert_eq!(w.ipc.slab_capacity(), 0);
    w.ipc.audit().unwrap();
    // Cut off: stale, not bad (their indices were issued).
    for &h in &old {
        assert_eq!(w.ipc.close(t, h), Err(Error::StaleHandle), "{h}");
        assert_eq!(w.ipc.read(t, h), Err(Error::StaleHandle), "{h}");
    }
    // Never issued: an index never reached, or a generation never reached.
    assert_eq!(w.ipc.close(t, Handle::new(100, 1)), Err(Error::BadHandle));
    assert_eq!(w.ipc.close(t, Handle::new(5, 0)), Err(Error::BadHandle));
    assert_eq!(w.ipc.close(t, Handle::new(5, 1000)), Err(Error::BadHandle));
    // The slab grows again over the same indices with newer generations.
    let new: Vec<Handle> = (0..100).map(|_| w.ipc.port_create(t).unwrap()).collect();
    for (o, n) in old.iter().zip(&new) {
        assert_eq!(o.index(), n.index());
        assert!(n.generation() > o.generation(), "{o} {n}");
        assert_eq!(w.ipc.listen_push(t, *o), Err(Error::StaleHandle));
    }
    // Cut off and regrown again, partly: still stale.
    for &h in new.iter().skip(10) {
        w.ipc.close(t, h).unwrap();
    }
    let third: Vec<Handle> = (0..50).map(|_| w.ipc.port_create(t).unwrap()).collect();
    for h in old.iter().chain(&new[10..]) {
        assert_eq!(w.ipc.close(t, *h), Err(Error::StaleHandle), "{h}");
    }
    for h in new[..10].iter().chain(&third) {
        w.ipc.listen_withdraw(t, *h).unwrap_err();
        assert_eq!(w.ipc.connection_info(t, *h), Err(Error::NotConnected));
    }
    w.ipc.audit().unwrap();
}

#[test]
fn survivors_pin_only_the_slots_below_them() {
    let mut w = World::new();
    let (_, t) = w.task(1, false);
    let hs: Vec<Handle> = (0..1000).map(|_| w.ipc.port_create(t).unwrap()).collect();
    for (i, &h) in hs.iter().enumerate() {
        if i != 0 && i != 10 {
            w.ipc.close(t, h).unwrap();
        }
    }
    w.ipc.audit().unwrap();
    assert_eq!(w.ipc.slab_capacity(), 16, "11 slots in use");
    // Low free slots are reused first, so the tail stays free.
    let q = w.ipc.port_create(t).unwrap();
    assert!(q.index() < 10, "{q}");
    w.ipc.close(t, hs[10]).unwrap();
    w.ipc.audit().unwrap();
    assert!(w.ipc.slab_capacity() <= 4 * (q.index() as usize + 1).max(1));
    w.ipc.close(t, q).unwrap();
    w.ipc.close(t, hs[0]).unwrap();
    assert_eq!(w.ipc.slab_capacity(), 0);
}

#[test]
fn connection_and_kernel_end_ids_stay_dead_after_truncation() {
    let mut w = World::new();
    let (sk, s) = w.task(1, true);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    let conn = w.ipc.connection_info(c, h).unwrap().conn_id;
    assert!(w.ipc.connection_query(s, conn).is_ok());
    let (u, kid) = w.ipc.kernel_end_open(s, kernel_end_kind::PAGE_FAULTS).unwrap();
    w.ipc.kernel_end_close(kid).unwrap();
    for x in [u, h, p] {
        let owner = if x == h { c } else { s };
        w.ipc.close(owner, x).unwrap();
    }
    assert_eq!(w.ipc.slab_capacity(), 0);
    assert_eq!(w.ipc.connection_query(s, conn), Err(Error::NoSuchConnection));
    assert_eq!(w.ipc.kernel_read(kid), Err(Error::PeerClosed));
    assert_eq!(w.ipc.kernel_write_signal(kid, b"x"), Err(Error::PeerClosed));
    // The same slots again: new IDs, the old ones still name nothing.
    let (p2, h2) = w.connect_pair(s, sk, c);
    let (_, kid2) = w.ipc.kernel_end_open(s, kernel_end_kind::PAGE_FAULTS).unwrap();
    assert_eq!((p2.index(), h2.index()), (p.index(), h.index()));
    let conn2 = w.ipc.connection_info(c, h2).unwrap().conn_id;
    assert_ne!(conn2, conn);
    assert_ne!(kid2, kid);
    assert_eq!(w.ipc.connection_query(s, conn), Err(Error::NoSuchConnection));
    assert!(w.ipc.connection_query(s, conn2).is_ok());
    assert_eq!(w.ipc.kernel_read(kid), Err(Error::PeerClosed));
    assert_eq!(w.ipc.kernel_end_close(kid), Err(Error::PeerClosed));
    w.ipc.kernel_write_signal(kid2, b"ok").unwrap();
    w.ipc.audit().unwrap();
}

#[test]
fn dead_records_bitmaps_and_queues_are_released() {
    let mut ipc = Ipc::new(Limits::default());
    assert_eq!(ipc.heap_bytes(), 0);
    let b = TaskId::new(1, 1);
    ipc.add_task(b, 2, false).unwrap();
    ipc.add_thread(ThreadId::new(0, 1), b).unwrap();
    // Warm the wakeup queue up once (a blocked connect that times out
    // needs none; a connect that a push completes queues one).
    let a0 = TaskId::new(0, 1);
    ipc.add_task(a0, 1, false).unwrap();
    let a0t = ThreadId::new(1, 1);
    ipc.add_thread(a0t, a0).unwrap();
    let blocked = ipc.connect(ThreadId::new(0, 1), a0, Deadline::Never);
    assert!(matches!(blocked, Ok(Outcome::Block { .. })));
    ipc.remove_task(a0, false);
    assert!(matches!(ipc.take_wakeup(), Some((_, Completion::Failed(Error::NoSuchTask)))));
    assert_eq!(ipc.take_wakeup(), None);
    let before = ipc.heap_bytes();
    let caps = ipc.record_capacity();

    // Task A at index 0 (below B): many threads, a permission bitmap, and
    // many blocked clients it wakes when it dies.
    let a = TaskId::new(0, 2);
    ipc.add_task(a, 1, false).unwrap();
    let threads: Vec<ThreadId> = (1..=300).map(|i| ThreadId::new(i, 2)).collect();
    for &t in &threads {
        ipc.add_thread(t, a).unwrap();
    }
    let c = TaskId::new(7, 1);
    ipc.add_task(c, 3, false).unwrap();
    let clients: Vec<ThreadId> = (400..440).map(|i| ThreadId::new(i, 1)).collect();
    for &t in &clients {
        ipc.add_thread(t, c).unwrap();
        assert!(matches!(ipc.connect(t, a, Deadline::Never), Ok(Outcome::Block { .. })));
    }
    ipc.set_connect_permission(threads[0], 9, false).unwrap();
    assert!(ipc.heap_bytes() > before + 8192);
    ipc.remove_task(a, true);
    assert_eq!(core::iter::from_fn(|| ipc.take_wakeup()).count(), 40);
    ipc.remove_task(c, false);
    ipc.audit().unwrap();
    assert_eq!(ipc.record_capacity(), caps);
    assert_eq!(ipc.heap_bytes(), before);
    ipc.remove_task(b, false);
    assert_eq!(ipc.record_capacity(), (0, 0));
    assert_eq!(ipc.slab_capacity(), 0);
    let queue_entry = core::mem::size_of::<(ThreadId, alux_ipc::Completion)>();
    assert!(ipc.heap_bytes() <= 4 * queue_entry, "only the wakeup queue's first capacity");
}

#[test]
fn a_parked_poll_set_survives_truncation_of_nothing_it_names() {
    // A parked poller's wait set names its own ends only; the slots above
    // them may be cut off while it waits.
    let mut w = World::new();
    let (sk, s) = w.task(1, false);
    let (_, c) = w.task(2, false);
    let (p, h) = w.connect_pair(s, sk, c);
    w.ipc.poll_all(s, Deadline::Now).unwrap();
    let extra: Vec<Handle> = (0..20).map(|_| w.ipc.port_create(c).unwrap()).collect();
    assert!(matches!(w.ipc.poll(s, &[p], Deadline::Never), Ok(Outcome::Block { .. })));
    for x in extra {
        w.ipc.close(c, x).unwrap();
    }
    w.ipc.signal(c, h).unwrap();
    let wakeups = w.wakeups();
    assert!(matches!(
        wakeups[..],
        [(t, Completion::Polled(r))] if t == s && r.handle == p && r.events.contains(Events::SIGNAL)
    ));
    w.ipc.audit().unwrap();
}

/// An end made in the middle of a burst sits high in the slab; once the
/// burst is gone, an end made to replace it takes the lowest free slot
/// (whatever order the burst closed in), so the slab shrinks back: a
/// service that renews its long-lived ends after a burst gives the memory
/// back.
#[test]
fn renewed_ends_pack_low_and_the_slab_shrinks_back() {
    let mut w = World::new();
    let (_, s) = w.task(1, true);
    let (fk, f) = w.task(2, false);
    let f2 = w.thread(fk);
    let keep = w.ipc.port_create(s).unwrap();
    let before = (w.ipc.heap_bytes(), w.ipc.slab_capacity());
    let burst: Vec<(ThreadId, Handle)> = (0..2000)
        .map(|i| if i % 2 == 0 { f } else { f2 })
        .map(|t| (t, w.ipc.port_create(t).unwrap()))
        .collect();
    let long_lived = w.ipc.port_create(s).unwrap();
    assert!(long_lived.index() >= 2000, "made during the burst, it sits high");
    // The burst closes from the bottom up, the worst order for a list
    // reused last-freed first.
    for (t, h) in burst {
        w.ipc.close(t, h).unwrap();
    }
    assert!(w.ipc.slab_capacity() > 2000, "the long-lived end pins the slab");
    // The service renews it: the new end takes the lowest free slot.
    w.ipc.close(s, long_lived).unwrap();
    let renewed = w.ipc.port_create(s).unwrap();
    assert_eq!(renewed.index(), 1, "the lowest free slot, right above `keep`");
    w.ipc.audit().unwrap();
    assert_eq!((w.ipc.heap_bytes(), w.ipc.slab_capacity()), before);
    w.ipc.close(s, renewed).unwrap();
    w.ipc.close(s, keep).unwrap();
}
