//! The invariant checker behind [`crate::Ipc::audit`].
//!
//! This module owns only read-only consistency checks of the object model,
//! used by tests (after every step of the property tests) and available to
//! debug builds. It must never change state.

use crate::list::{List, NIL};
use crate::objects::{End, EndState, Wait, F_IN_WAIT_SET, F_KERNEL};
use crate::slab::tight;
use crate::Ipc;

const MAX_GENERATION: u64 = alux_abi::ids::MAX_GENERATION;

fn walk(
    list: &List,
    ends: &[End],
    next: fn(&End) -> u32,
    mut f: impl FnMut(u32),
) -> Result<(), &'static str> {
    let mut n = 0u32;
    let mut prev = NIL;
    let mut i = list.head;
    while i != NIL {
        n += 1;
        if n > list.len {
            return Err("list longer than its length");
        }
        f(i);
        prev = i;
        i = next(&ends[i as usize]);
    }
    if n != list.len || list.tail != prev {
        return Err("list length or tail wrong");
    }
    Ok(())
}

/// Checks every invariant of `ipc`.
pub(crate) fn audit(ipc: &Ipc) -> Result<(), &'static str> {
    let p = ipc.parts();
    let live = p.ends.iter().filter(|e| e.live()).count();
    if live != p.live_ends {
        return Err("live end count wrong");
    }
    if live > p.limits.total_ends {
        return Err("total limit exceeded");
    }
    // The free set holds exactly the free, unretired slots below the
    // slab's length, and the slab has no free tail (it is cut off at once).
    for (i, e) in p.ends.iter().enumerate() {
        let free = !e.live() && e.gen < MAX_GENERATION;
        if free != p.free.contains(i as u32) {
            return Err("free set differs from the free, unretired slots");
        }
    }
    let free = p.ends.iter().filter(|e| !e.live() && e.gen < MAX_GENERATION).count();
    if free != p.free.len() {
        return Err("free set counts a cut-off slot");
    }
    if p.ends.last().is_some_and(|e| !e.live() && e.gen < MAX_GENERATION) {
        return Err("free slot at the slab's tail");
    }
    let retired = p.ends.iter().filter(|e| !e.live() && e.gen >= MAX_GENERATION).count();
    if retired != p.retired {
        return Err("retired count wrong");
    }
    if p.pool.used() != p.live_ends + p.retired {
        return Err("pool charges differ from live and retired ends");
    }
    p.pool.audit()?;
    if p.threads.iter().filter(|t| t.live).count() != p.live_threads {
        return Err("live thread count wrong");
    }
    if p.wakeups.len() > p.live_threads {
        return Err("more wakeups than live threads (their room is not reserved)");
    }
    if !(p.issued.is_empty() && p.ends.is_empty()) && p.issued.len() != p.limits.total_ends {
        return Err("generation array missing or of the wrong size");
    }
    if p.ends.iter().enumerate().any(|(i, e)| p.issued[i] != e.gen) {
        return Err("generation array disagrees with the slab");
    }
    if !tight(p.ends.len(), p.capacities[0])
        || !tight(p.threads.len(), p.capacities[1])
        || !tight(p.tasks.len(), p.capacities[2])
    {
        return Err("a table holds more than four times the capacity it uses");
    }
    if p.threads.last().is_some_and(|t| !t.live) || p.tasks.last().is_some_and(|k| !k.live) {
        return Err("dead record at a table's tail");
    }
    for (i, e) in p.ends.iter().enumerate() {
        let i = i as u32;
        if !e.live() {
            if e.pending != 0 || e.owner != NIL || e.gen == 0 {
                return Err("free slot holds state");
            }
            continue;
        }
        if e.gen == 0 {
            return Err("live slot with generation 0");
        }
        match e.state {
            EndState::Connected => {
                let q = &p.ends[e.peer as usize];
                if q.peer != i
                    || !(q.state == EndState::Connected || q.state == EndState::KernelSide)
                {
                    return Err("connection not symmetric");
                }
                if q.conn_id != e.conn_id {
                    return Err("ends disagree on connection id");
                }
            }
            EndState::KernelSide => {
                if e.owner != NIL || e.flags & F_KERNEL == 0 {
                    return Err("kernel side owned by a thread");
                }
                if !p.kernel_kinds.iter().any(|&(k, s)| s == i && k == e.kernel_kind) {
                    return Err("kernel side not registered");
                }
            }
            EndState::Port | EndState::Queued | EndState::PeerGone => {
                if e.peer != NIL {
                    return Err("unconnected end has a peer");
                }
            }
            EndState::Free => {}
        }
        if e.state != EndState::KernelSide {
            let t = p.threads.get(e.owner as usize).ok_or("end owner out of range")?;
            if !t.live || t.task != e.task {
                return Err("end owned by a dead thread or wrong task");
            }
            if e.flags & F_IN_WAIT_SET != 0 && t.wait != Wait::PollSet {
                return Err("wait-set flag without a set wait");
            }
        }
    }
    let mut on_ready = alloc::vec![false; p.ends.len()];
    let mut on_owned = alloc::vec![false; p.ends.len()];
    let mut on_queue = alloc::vec![false; p.ends.len()];
    for (ti, t) in p.threads.iter().enumerate() {
        if !t.live {
            continue;
        }
        let ti = ti as u32;
        let task = &p.tasks[t.task as usize];
        if !task.live || !task.threads.contains(&ti) {
            return Err("thread not in its task");
        }
        walk(&t.owned, p.ends, |e| e.owned.next, |i| on_owned[i as usize] = true)?;
        let mut bad = false;
        walk(
            &t.ready,
            p.ends,
            |e| e.ready.next,
            |i| {
                on_ready[i as usize] = true;
                bad |= p.ends[i as usize].owner != ti;
            },
        )?;
        if bad {
            return Err("ready list holds another thread's end");
        }
        if matches!(t.wait, Wait::PollAll | Wait::Receive) && !t.ready.is_empty() {
            return Err("thread parked in poll_all with ends ready");
        }
        if t.wait == Wait::PollSet
            && t.wait_set.iter().any(|&i| {
                p.ends.get(i as usize).is_some_and(|e| {
                    e.owner == ti && e.flags & F_IN_WAIT_SET != 0 && e.pending != 0
                })
            })
        {
            return Err("thread parked on a ready end");
        }
        if t.wait != Wait::None && p.wakeups.iter().any(|(w, _)| *w == t.id) {
            return Err("parked thread has a queued wakeup");
        }
    }
    walk(p.kernel_ready, p.ends, |e| e.ready.next, |i| on_ready[i as usize] = true)?;
    for (ki, k) in p.tasks.iter().enumerate() {
        if !k.live {
            continue;
        }
        if k.queue.len as usize > p.limits.listen_queue_len {
            return Err("listen queue over its limit");
        }
        let mut bad = false;
        walk(
            &k.queue,
            p.ends,
            |e| e.queue.next,
            |i| {
                on_queue[i as usize] = true;
                let e = &p.ends[i as usize];
                bad |= e.state != EndState::Queued || e.task != ki as u32;
            },
        )?;
        if bad {
            return Err("queue holds a non-port or another task's port");
        }
        if !k.waiters.is_empty() && !k.queue.is_empty() {
            return Err("connect waiters while ports are queued");
        }
        let ends = p.ends.iter().filter(|e| e.live() && e.task == ki as u32).count();
        if ends != k.ends as usize {
            return Err("task end count wrong");
        }
    }
    for (i, e) in p.ends.iter().enumerate() {
        if e.live() {
            if on_ready[i] != (e.pending != 0) {
                return Err("ready list membership differs from pending events");
            }
            if on_owned[i] != (e.state != EndState::KernelSide) {
                return Err("end missing from its owner's list");
            }
            if on_queue[i] != (e.state == EndState::Queued) {
                return Err("queued state differs from queue membership");
            }
        }
    }
    Ok(())
}
