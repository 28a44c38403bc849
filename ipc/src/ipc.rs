//! The object model itself: [`Ipc`] and every IPC rule.
//!
//! This module owns all IPC state of one kernel: the end slab, the thread and
//! task records, the listen queues, the ready lists and the wakeup queue. It
//! must never block, sleep, read a clock or touch hardware: an operation
//! returns its result or tells the kernel to park the caller, and queues the
//! threads it wakes for the kernel to take.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use alux_abi::ipc::{
    info_flags, kernel_end_kind, CloseReason, ConnState, ConnectionEnds, ConnectionInfo, Events,
    Handle, Message, Ready, KERNEL_TASK, KERNEL_THREAD, KERNEL_UID, MESSAGE_MAX,
};
use alux_abi::{Error, TaskId, ThreadId, Uid};

use crate::list::{List, NIL};
use crate::objects::{
    owned_links, queue_links, ready_links, waiter_links, End, EndState, Task, Thread, Wait,
    BITMAP_WORDS, F_IN_WAIT_SET, F_KERNEL, F_SERVER,
};
use crate::quota::{Pool, Shares};
use crate::types::{
    Completion, Deadline, KernelEndId, Limits, Outcome, PollFast, ReceiveFast, SendReceive, Woken,
};

/// One past the largest task or thread slot index accepted (IDs are
/// expected to be the kernel's dense slab indices; the records are indexed
/// by them). Every index an ID can carry (`alux_abi::ids::INDEX_BITS`).
pub const MAX_ID_INDEX: u32 = alux_abi::ids::MAX_INDEX + 1;

/// Generations of end slots: a slot whose end had the last one is retired.
const MAX_GENERATION: u64 = alux_abi::ids::MAX_GENERATION;

/// The whole IPC object model of one kernel. The kernel keeps exactly one,
/// behind its lock, and calls it on every IPC system call and every task or
/// thread birth and death.
#[derive(Debug)]
pub struct Ipc {
    limits: Limits,
    /// The end slab. Its last slot is never free (free tail slots are cut
    /// off at once, see `trim_ends`), and its capacity follows
    /// `slab::shrink`.
    ends: Vec<End>,
    /// Free end slots below the slab's length. The lowest is reused first,
    /// so live ends pack at the bottom and the tail empties and is cut off
    /// whatever order ends close in (memory returns after a burst even if
    /// a long-lived end was made during it). Retired slots (generation
    /// `MAX_GENERATION`) are not in it. Sized with `issued`, once.
    free: crate::slab::FreeSlots,
    /// The last generation issued at each slot index (0: never), one entry
    /// per possible slot (`limits.total_ends`), allocated with the first
    /// end and never freed. A slot pushed at a cut-off index continues its
    /// own sequence, so an old handle stays stale; an index whose entry is
    /// 0 was never issued.
    issued: Vec<u64>,
    live_ends: usize,
    /// Slots retired for good (generation exhausted). They stay charged to
    /// `ends`, so they count against the limits of their last owner's uid
    /// (or the privileged reserve).
    retired: usize,
    /// Every live or retired end, charged to its task's uid (kernel sides
    /// to their task's, as privileged).
    pool: Pool,
    threads: Vec<Thread>,
    /// Live thread records.
    live_threads: usize,
    tasks: Vec<Task>,
    /// Completions for parked threads, at most one per live thread: its
    /// room for every live thread is reserved when a thread is added, so
    /// queueing a wakeup never allocates.
    wakeups: VecDeque<(ThreadId, Completion)>,
    /// Kernel sides with pending events (signals from their task).
    kernel_ready: List,
    /// Open kernel ends: `(kind, kernel side slot)`.
    kernel_kinds: Vec<(u32, u32)>,
    /// Kernel sides freed because their task's end closed (by `close`,
    /// thread exit or task end), so far: the kernel compares it with the
    /// count it last saw to learn that one of its ends is gone.
    kernel_sides_closed: u64,
    /// Ready-list arrival counter.
    stamp: u64,
}

impl Ipc {
    /// An empty object model with these limits (`total_ends` is clamped to
    /// the `2^16` slot indices a handle can carry).
    pub fn new(mut limits: Limits) -> Self {
        limits.total_ends = limits.total_ends.min(MAX_ID_INDEX as usize);
        Ipc {
            limits,
            ends: Vec::new(),
            free: crate::slab::FreeSlots::default(),
            issued: Vec::new(),
            live_ends: 0,
            retired: 0,
            pool: Pool::new(Shares {
                total: limits.total_ends,
                reserve: limits.ends_reserved,
                per_uid: limits.ends_per_uid,
            }),
            threads: Vec::new(),
            live_threads: 0,
            tasks: Vec::new(),
            wakeups: VecDeque::new(),
            kernel_ready: List::EMPTY,
            kernel_kinds: Vec::new(),
            kernel_sides_closed: 0,
            stamp: 0,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    // ------------------------------------------------------------------
    // Tasks and threads
    // ------------------------------------------------------------------

    /// Registers a task. Errors: `InvalidArgument` if its slot holds a live
    /// task, `OutOfMemory`.
    pub fn add_task(&mut self, task: TaskId, uid: Uid, privileged: bool) -> Result<(), Error> {
        let i = task.index();
        if self.tasks.len() <= i as usize {
            self.tasks
                .try_reserve(i as usize + 1 - self.tasks.len())
                .map_err(|_| Error::OutOfMemory)?;
            self.tasks.resize_with(i as usize + 1, Task::vacant);
        }
        let slot = &mut self.tasks[i as usize];
        if slot.live {
            return Err(Error::InvalidArgument);
        }
        *slot = Task::vacant();
        slot.id = task;
        slot.live = true;
        slot.uid = uid;
        slot.privileged = privileged;
        Ok(())
    }

    /// Registers a thread of a registered task. Errors: `NoSuchTask`,
    /// `InvalidArgument` (its slot holds a live thread), `OutOfMemory`.
    pub fn add_thread(&mut self, thread: ThreadId, task: TaskId) -> Result<(), Error> {
        let k = self.task_slot(task)?;
        let i = thread.index();
        if self.threads.get(i as usize).is_some_and(|t| t.live) {
            return Err(Error::InvalidArgument);
        }
        self.tasks[k as usize].threads.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
        let room = (self.live_threads + 1).saturating_sub(self.wakeups.len());
        self.wakeups.try_reserve(room).map_err(|_| Error::OutOfMemory)?;
        if self.threads.len() <= i as usize {
            self.threads
                .try_reserve(i as usize + 1 - self.threads.len())
                .map_err(|_| Error::OutOfMemory)?;
            self.threads.resize_with(i as usize + 1, Thread::vacant);
        }
        let slot = &mut self.threads[i as usize];
        slot.id = thread;
        slot.live = true;
        slot.task = k;
        slot.owned = List::EMPTY;
        slot.ready = List::EMPTY;
        slot.wait = Wait::None;
        slot.wait_set.clear();
        slot.waiter = crate::list::Links::UNLINKED;
        self.tasks[k as usize].threads.push(i);
        self.live_threads += 1;
        Ok(())
    }

    /// Forgets a thread: cancels its wait, drops its queued wakeup, and
    /// closes its ends (their peers see `PEER_CLOSED`, reason
    /// `ThreadExited`). Unknown threads are ignored.
    pub fn remove_thread(&mut self, thread: ThreadId) {
        if let Ok(t) = self.thread_slot(thread) {
            self.drop_thread(t, CloseReason::ThreadExited);
        }
    }

    /// Forgets a task and all its threads. Their ends close with reason
    /// `TaskKilled` if `killed`, else `TaskExited`; threads of other tasks
    /// blocked connecting to it wake with `NoSuchTask`. Unknown tasks are
    /// ignored.
    pub fn remove_task(&mut self, task: TaskId, killed: bool) {
        let Ok(k) = self.task_slot(task) else {
            return;
        };
        let reason = if killed { CloseReason::TaskKilled } else { CloseReason::TaskExited };
        while let Some(&t) = self.tasks[k as usize].threads.last() {
            self.drop_thread(t, reason);
        }
        while let Some(w) =
            self.tasks[k as usize].waiters.pop_front(&mut self.threads, waiter_links)
        {
            let th = &mut self.threads[w as usize];
            th.wait = Wait::None;
            let id = th.id;
            self.wakeups.push_back((id, Completion::Failed(Error::NoSuchTask)));
        }
        let slot = &mut self.tasks[k as usize];
        slot.live = false;
        slot.denied = None;
        slot.threads = Vec::new();
        trim_records(&mut self.tasks, |k| k.live);
    }

    fn drop_thread(&mut self, t: u32, reason: CloseReason) {
        self.clear_wait(t);
        let id = self.threads[t as usize].id;
        self.wakeups.retain(|(w, _)| *w != id);
        while let Some(i) = self.threads[t as usize].owned.head_opt() {
            self.close_end(i, reason);
        }
        let th = &mut self.threads[t as usize];
        th.live = false;
        th.wait_set = Vec::new();
        let k = th.task as usize;
        self.live_threads -= 1;
        self.trim_wakeups();
        let threads = &mut self.tasks[k].threads;
        if let Some(pos) = threads.iter().position(|&x| x == t) {
            threads.swap_remove(pos);
        }
        crate::slab::shrink(threads);
        trim_records(&mut self.threads, |t| t.live);
    }

    // ------------------------------------------------------------------
    // Ports and the listen queue
    // ------------------------------------------------------------------

    /// Creates a port: an unconnected end of the caller, charged to its
    /// thread, its task and its task's uid. Errors: `NoSuchThread`,
    /// `LimitReached`, `OutOfMemory`.
    pub fn port_create(&mut self, caller: ThreadId) -> Result<Handle, Error> {
        let t = self.thread_slot(caller)?;
        self.check_room(t, 1)?;
        let i = self.new_owned_end(t, EndState::Port)?;
        Ok(self.handle_of(i))
    }

    /// Pushes a port onto the caller's task's listen queue. If a client is
    /// blocked connecting, the port goes to the oldest eligible one at once.
    /// Errors: `NoSuchThread`, handle errors, `AlreadyQueued`, `WrongKind`
    /// (not a port), `QueueFull`.
    pub fn listen_push(&mut self, caller: ThreadId, port: Handle) -> Result<(), Error> {
        let t = self.thread_slot(caller)?;
        let i = self.end_slot(t, port)?;
        match self.ends[i as usize].state {
            EndState::Port => {}
            EndState::Queued => return Err(Error::AlreadyQueued),
            _ => return Err(Error::WrongKind),
        }
        let k = self.threads[t as usize].task;
        // A blocked client gets the port without it entering the queue.
        while let Some(w) =
            self.tasks[k as usize].waiters.pop_front(&mut self.threads, waiter_links)
        {
            self.threads[w as usize].wait = Wait::None;
            let wid = self.threads[w as usize].id;
            let completion = match self.connect_checks(w, k).and_then(|()| self.pair(w, i)) {
                Err(e) => Completion::Failed(e),
                Ok(h) => Completion::Connected(h),
            };
            self.wakeups.push_back((wid, completion));
            if let Completion::Connected(_) = completion {
                return Ok(());
            }
        }
        let task = &mut self.tasks[k as usize];
        if task.queue.len as usize >= self.limits.listen_queue_len {
            return Err(Error::QueueFull);
        }
        task.queue.push_back(&mut self.ends, queue_links, i);
        self.ends[i as usize].state = EndState::Queued;
        Ok(())
    }

    /// Takes a port back out of the listen queue. Errors: `NoSuchThread`,
    /// handle errors, `NotQueued` (not in the queue, including a port a
    /// client has already taken).
    pub fn listen_withdraw(&mut self, caller: ThreadId, port: Handle) -> Result<(), Error> {
        let t = self.thread_slot(caller)?;
        let i = self.end_slot(t, port)?;
        if self.ends[i as usize].state != EndState::Queued {
            return Err(Error::NotQueued);
        }
        let k = self.ends[i as usize].task;
        self.tasks[k as usize].queue.unlink(&mut self.ends, queue_links, i);
        self.ends[i as usize].state = EndState::Port;
        Ok(())
    }

    /// The number of ports in a task's listen queue (`None` for an unknown
    /// task).
    pub fn listen_queue_len(&self, task: TaskId) -> Option<usize> {
        let k = self.task_slot(task).ok()?;
        Some(self.tasks[k as usize].queue.len as usize)
    }

    // ------------------------------------------------------------------
    // Connect
    // ------------------------------------------------------------------

    /// Connects the caller to `target`, taking the oldest port of its listen
    /// queue. Checks, in order: caller (`NoSuchThread`), not parked
    /// (`Busy`), target (`NoSuchTask`), not its own task (`SelfConnect`),
    /// the target's permission bitmap (`ConnectDenied`), the caller's limits
    /// (`LimitReached`). Then with an empty queue: `NoPortAvailable` for
    /// [`Deadline::Now`], else the caller blocks until a port is pushed
    /// (waking with `Connected`, or `Failed` if the checks fail by then or
    /// the target dies).
    pub fn connect(
        &mut self,
        caller: ThreadId,
        target: TaskId,
        deadline: Deadline,
    ) -> Result<Outcome<Handle>, Error> {
        let t = self.thread_slot(caller)?;
        if self.threads[t as usize].wait != Wait::None {
            return Err(Error::Busy);
        }
        let k = self.task_slot(target)?;
        self.connect_checks(t, k)?;
        if let Some(p) = self.tasks[k as usize].queue.head_opt() {
            // The port leaves the queue only once the client end exists.
            let h = self.pair(t, p)?;
            return Ok(Outcome::Done(h));
        }
        if deadline == Deadline::Now {
            return Err(Error::NoPortAvailable);
        }
        self.threads[t as usize].wait = Wait::Connect(k);
        self.tasks[k as usize].waiters.push_back(&mut self.threads, waiter_links, t);
        Ok(Outcome::Block { deadline })
    }

    fn connect_checks(&self, t: u32, k: u32) -> Result<(), Error> {
        let my_task = self.threads[t as usize].task;
        if my_task == k {
            return Err(Error::SelfConnect);
        }
        if !self.tasks[k as usize].allows(self.tasks[my_task as usize].uid) {
            return Err(Error::ConnectDenied);
        }
        self.check_room(t, 1)
    }

    /// Makes a client end for thread `t`, charged to `t` (the server's
    /// end is the port it created and pushed), connected to port `p`, which
    /// leaves its listen queue if it is in one, and tells `p`'s owner with
    /// `OPENED`. Errors: `OutOfMemory` (nothing changes).
    fn pair(&mut self, t: u32, p: u32) -> Result<Handle, Error> {
        let c = self.new_owned_end(t, EndState::Connected)?;
        if self.ends[p as usize].state == EndState::Queued {
            let k = self.ends[p as usize].task;
            self.tasks[k as usize].queue.unlink(&mut self.ends, queue_links, p);
        }
        let h = self.handle_of(c);
        let ct = self.threads[t as usize].task as usize;
        let st = self.ends[p as usize].task as usize;
        let (client_task, client_uid) = (self.tasks[ct].id, self.tasks[ct].uid);
        let (server_task, server_uid) = (self.tasks[st].id, self.tasks[st].uid);
        let conn_id = h.raw();
        let ce = &mut self.ends[c as usize];
        ce.peer = p;
        ce.peer_task = server_task;
        ce.peer_uid = server_uid;
        ce.conn_id = conn_id;
        let pe = &mut self.ends[p as usize];
        pe.state = EndState::Connected;
        pe.flags |= F_SERVER;
        pe.peer = c;
        pe.peer_task = client_task;
        pe.peer_uid = client_uid;
        pe.conn_id = conn_id;
        self.deliver(p, Events::OPENED);
        Ok(h)
    }

    // ------------------------------------------------------------------
    // Write, read, signal
    // ------------------------------------------------------------------

    /// Overwrites the caller's end's outgoing buffer (its peer reads it).
    /// Errors: `NoSuchThread`, handle errors, `MessageTooLong`,
    /// `NotConnected` (a port), `PeerClosed`.
    pub fn write(&mut self, caller: ThreadId, h: Handle, data: &[u8]) -> Result<(), Error> {
        let i = self.writable_end(caller, h, data)?;
        self.store(i, data);
        Ok(())
    }

    /// Marks the peer end pending with `SIGNAL` and wakes its thread if it
    /// waits on it. Signals do not queue. Errors: `NoSuchThread`, handle
    /// errors, `NotConnected`, `PeerClosed`.
    pub fn signal(&mut self, caller: ThreadId, h: Handle) -> Result<(), Error> {
        let i = self.writable_end(caller, h, &[])?;
        let p = self.ends[i as usize].peer;
        self.deliver(p, Events::SIGNAL);
        Ok(())
    }

    /// [`Ipc::write`] then [`Ipc::signal`], all or nothing: errors as for
    /// `write`.
    pub fn write_signal(&mut self, caller: ThreadId, h: Handle, data: &[u8]) -> Result<(), Error> {
        let i = self.writable_end(caller, h, data)?;
        self.store(i, data);
        let p = self.ends[i as usize].peer;
        self.deliver(p, Events::SIGNAL);
        Ok(())
    }

    /// Reads the peer's buffer as it is now; after the peer closed, its last
    /// data. Errors: `NoSuchThread`, handle errors, `NotConnected`.
    pub fn read(&self, caller: ThreadId, h: Handle) -> Result<Message, Error> {
        let t = self.thread_slot(caller)?;
        let i = self.end_slot(t, h)?;
        let e = &self.ends[i as usize];
        let src = match e.state {
            EndState::Connected => &self.ends[e.peer as usize],
            EndState::PeerGone => e,
            _ => return Err(Error::NotConnected),
        };
        Ok(Message { data: src.buf, len: src.len, seq: src.seq })
    }

    /// Validates a write/signal on a connected end; returns its slot.
    fn writable_end(&self, caller: ThreadId, h: Handle, data: &[u8]) -> Result<u32, Error> {
        let t = self.thread_slot(caller)?;
        let i = self.end_slot(t, h)?;
        if data.len() > MESSAGE_MAX {
            return Err(Error::MessageTooLong);
        }
        match self.ends[i as usize].state {
            EndState::Connected => Ok(i),
            EndState::PeerGone => Err(Error::PeerClosed),
            _ => Err(Error::NotConnected),
        }
    }

    fn store(&mut self, i: u32, data: &[u8]) {
        let e = &mut self.ends[i as usize];
        e.buf = [0; MESSAGE_MAX];
        e.buf[..data.len()].copy_from_slice(data);
        e.len = data.len() as u8;
        e.seq += 1;
    }

    // ------------------------------------------------------------------
    // Poll
    // ------------------------------------------------------------------

    /// Waits until one of `set` (ends of the caller) has events, returning
    /// the one that became ready first and clearing its events. Cost
    /// O(`set.len()`). Errors: `NoSuchThread`, `Busy` (already parked),
    /// `InvalidArgument` (empty set or more than `poll_set_max` handles),
    /// handle errors, `TimedOut` (nothing ready and [`Deadline::Now`]).
    pub fn poll(
        &mut self,
        caller: ThreadId,
        set: &[Handle],
        deadline: Deadline,
    ) -> Result<Outcome<Ready>, Error> {
        let t = self.thread_slot(caller)?;
        if self.threads[t as usize].wait != Wait::None {
            return Err(Error::Busy);
        }
        if set.is_empty() || set.len() > self.limits.poll_set_max {
            return Err(Error::InvalidArgument);
        }
        let mut best: Option<u32> = None;
        for &h in set {
            let i = self.end_slot(t, h)?;
            let e = &self.ends[i as usize];
            if e.pending != 0
                && best.is_none_or(|b| e.ready_stamp < self.ends[b as usize].ready_stamp)
            {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            return Ok(Outcome::Done(self.take_events(i)));
        }
        if deadline == Deadline::Now {
            return Err(Error::TimedOut);
        }
        let ws = &mut self.threads[t as usize].wait_set;
        ws.clear();
        ws.try_reserve(set.len()).map_err(|_| Error::OutOfMemory)?;
        let mut ws = core::mem::take(ws);
        for &h in set {
            let i = h.index();
            self.ends[i as usize].flags |= F_IN_WAIT_SET;
            ws.push(i);
        }
        let th = &mut self.threads[t as usize];
        th.wait_set = ws;
        th.wait = Wait::PollSet;
        Ok(Outcome::Block { deadline })
    }

    /// Waits until any end of the caller has events, returning the one that
    /// became ready first (FIFO, so no end starves) and clearing its events.
    /// O(1) in the number of ends. Errors: `NoSuchThread`, `Busy`,
    /// `TimedOut` (nothing ready and [`Deadline::Now`]).
    pub fn poll_all(
        &mut self,
        caller: ThreadId,
        deadline: Deadline,
    ) -> Result<Outcome<Ready>, Error> {
        let t = self.thread_slot(caller)?;
        let th = &self.threads[t as usize];
        if th.wait != Wait::None {
            return Err(Error::Busy);
        }
        if let Some(i) = th.ready.head_opt() {
            return Ok(Outcome::Done(self.take_events(i)));
        }
        if deadline == Deadline::Now {
            return Err(Error::TimedOut);
        }
        self.threads[t as usize].wait = Wait::PollAll;
        Ok(Outcome::Block { deadline })
    }

    /// [`Ipc::poll_all`] and [`Ipc::read`] of the ready end in one step:
    /// the end, its events, and its peer's buffer (empty for a port no one
    /// has written to). What the kernel's fast `Receive` call uses; a parked
    /// caller wakes with [`Completion::Received`]. Errors as `poll_all`.
    pub fn receive(
        &mut self,
        caller: ThreadId,
        deadline: Deadline,
    ) -> Result<Outcome<(Ready, Message)>, Error> {
        let t = self.thread_slot(caller)?;
        let th = &self.threads[t as usize];
        if th.wait != Wait::None {
            return Err(Error::Busy);
        }
        if let Some(i) = th.ready.head_opt() {
            let ready = self.take_events(i);
            return Ok(Outcome::Done((ready, self.message_of(i))));
        }
        if deadline == Deadline::Now {
            return Err(Error::TimedOut);
        }
        self.threads[t as usize].wait = Wait::Receive;
        Ok(Outcome::Block { deadline })
    }

    /// [`Ipc::write_signal`] then [`Ipc::receive`] without a time limit,
    /// in one step: the request/reply primitive. If the caller parks and the
    /// message woke the peer's thread from a receive, that thread is handed
    /// back in [`SendReceive::Parked`] instead of being queued as a wakeup,
    /// so the kernel can switch to it at once. Errors: as `write_signal`
    /// (nothing is sent), then `WrongKind` on a kernel end (the kernel
    /// never answers a request inside the call, so the reply this call
    /// waits for without a time limit would never come; nothing is sent),
    /// then `Busy` if the caller is already parked.
    pub fn send_receive(
        &mut self,
        caller: ThreadId,
        h: Handle,
        data: &[u8],
    ) -> Result<SendReceive, Error> {
        let i = self.writable_end(caller, h, data)?;
        if self.ends[i as usize].flags & F_KERNEL != 0 {
            return Err(Error::WrongKind);
        }
        let t = caller.index();
        if self.threads[t as usize].wait != Wait::None {
            return Err(Error::Busy);
        }
        self.store(i, data);
        let p = self.ends[i as usize].peer;
        if let Some(r) = self.threads[t as usize].ready.head_opt() {
            // Something is waiting already: no parking, no hand-off.
            self.deliver(p, Events::SIGNAL);
            let ready = self.take_events(r);
            return Ok(SendReceive::Received(ready, self.message_of(r)));
        }
        self.threads[t as usize].wait = Wait::Receive;
        let handoff = self.deliver_or_hand_off(p, Events::SIGNAL);
        Ok(SendReceive::Parked { handoff })
    }

    /// The `SendReceive` fast path's narrow entry: [`Ipc::send_receive`]
    /// of `len` bytes packed little-endian in `words` (bytes at `len` and
    /// beyond are ignored, as the general path ignores them), done only in
    /// the common case where it hands the message straight to the peer's
    /// thread parked in a receive: `h` is a connected, task-to-task end of
    /// `caller`, the caller is not parked and has no end with events, the
    /// peer end has none either, its owner is parked in a receive, and
    /// `accept(owner)` agrees (the kernel's own check of that thread).
    ///
    /// Then the state changes exactly as `send_receive` changes it (the
    /// caller parks in a receive, the peer wakes with the message) and the
    /// woken thread's six result registers come back already encoded as
    /// [`alux_abi::syscall::Received::encode`] lays them out, so the
    /// message goes from the caller's registers to the receiver's as
    /// words. Otherwise nothing changes and `None` comes back: the kernel
    /// then runs the general path, which finds the same answer or the
    /// precise error.
    #[inline]
    pub fn send_receive_fast(
        &mut self,
        caller: ThreadId,
        h: Handle,
        len: u64,
        words: [u64; 4],
        accept: impl FnOnce(ThreadId) -> bool,
    ) -> Option<(ThreadId, [u64; 6])> {
        // `thread_slot`, `end_slot` and `writable_end` in the one outcome
        // that passes them all: a live caller record; the handle's
        // generation current and its end owned by the caller (a connected
        // end is live and has an owner, and no end ever has generation 0);
        // at most 32 bytes; connected, to a task's end.
        let t = caller.index();
        let th = self.threads.get(t as usize)?;
        if !th.live || th.id != caller || th.wait != Wait::None || th.ready.head_opt().is_some() {
            return None;
        }
        let i = h.index();
        let e = self.ends.get(i as usize)?;
        if h.generation() != e.gen
            || e.owner != t
            || e.state != EndState::Connected
            || e.flags & F_KERNEL != 0
            || len > MESSAGE_MAX as u64
        {
            return None;
        }
        let p = e.peer;
        let pe = self.ends.get(p as usize)?;
        if pe.pending != 0 {
            return None;
        }
        let owner = pe.owner;
        let receiver = self.threads.get(owner as usize)?;
        if receiver.wait != Wait::Receive || !accept(receiver.id) {
            return None;
        }
        let to = receiver.id;
        // Commit: what `send_receive` and `deliver_or_hand_off` change.
        self.threads[t as usize].wait = Wait::Receive;
        Some((to, self.hand_over(i, p, owner, len, words)))
    }

    /// The `Send` fast path's narrow entry: [`Ipc::write_signal`] of `len`
    /// bytes packed in `words`, done only when the signal wakes the peer's
    /// thread, parked in a receive or in a poll that waits for the peer end
    /// (a poll of all its ends, or of a set naming it): `h` is a connected
    /// end of `caller` (a task's or the kernel's peer alike: only a task's
    /// peer can be parked), at most 32 bytes, the peer end has no events,
    /// its owner waits for it, and `accept(owner, in_receive)` agrees (the
    /// kernel's own check that the thread is blocked in a receive, or in a
    /// poll; what it gives is handed back, so that the kernel need not
    /// look the thread up again). Nothing fails after `accept` agreed.
    ///
    /// Then the state changes exactly as `write_signal` changes it, except
    /// that the woken thread is returned with its result registers
    /// ([`Woken`]) instead of being queued as a wakeup: the kernel wakes
    /// it. Otherwise nothing changes and `None` comes back.
    #[inline]
    pub fn send_fast<R>(
        &mut self,
        caller: ThreadId,
        h: Handle,
        len: u64,
        words: [u64; 4],
        accept: impl FnOnce(ThreadId, bool) -> Option<R>,
    ) -> Option<(ThreadId, R, Woken)> {
        if len > MESSAGE_MAX as u64 {
            return None;
        }
        let (i, p, owner, in_receive) = self.woken_by_signal(caller, h)?;
        let to = self.threads[owner as usize].id;
        let r = accept(to, in_receive)?;
        if in_receive {
            let regs = self.hand_over(i, p, owner, len, words);
            return Some((to, r, Woken { in_receive, regs }));
        }
        self.store_words_of(i, len, words);
        let [a, b, c, d] = self.end_poll(p, owner);
        Some((to, r, Woken { in_receive, regs: [a, b, c, d, 0, 0] }))
    }

    /// The `Signal` fast path's narrow entry: [`Ipc::signal`], done only
    /// when it wakes the peer's thread, as [`Ipc::send_fast`] (without the
    /// message: a receiver gets the buffer the caller last wrote). The
    /// same state change as `signal`, the woken thread returned with its
    /// result registers instead of queued; otherwise `None` and nothing
    /// changed.
    #[inline]
    pub fn signal_fast<R>(
        &mut self,
        caller: ThreadId,
        h: Handle,
        accept: impl FnOnce(ThreadId, bool) -> Option<R>,
    ) -> Option<(ThreadId, R, Woken)> {
        let (i, p, owner, in_receive) = self.woken_by_signal(caller, h)?;
        let to = self.threads[owner as usize].id;
        let r = accept(to, in_receive)?;
        if in_receive {
            // `message_of(p)`: the peer of `p` is `i`.
            let e = &self.ends[i as usize];
            let (len, words) = (e.len as u64, load_words(&e.buf));
            let regs = self.end_receive(p, owner, len, words);
            return Some((to, r, Woken { in_receive, regs }));
        }
        let [a, b, c, d] = self.end_poll(p, owner);
        Some((to, r, Woken { in_receive, regs: [a, b, c, d, 0, 0] }))
    }

    /// The checks `send_fast` and `signal_fast` share, changing nothing:
    /// `h` a connected end of a live `caller`, its peer end a task's with
    /// no events, whose owner waits for it. The end, its peer, the peer's
    /// owner (a thread slot), and whether that one waits in a receive
    /// (else in a poll).
    #[inline(always)]
    fn woken_by_signal(&self, caller: ThreadId, h: Handle) -> Option<(u32, u32, u32, bool)> {
        let t = caller.index();
        let th = self.threads.get(t as usize)?;
        if !th.live || th.id != caller {
            return None;
        }
        let i = h.index();
        let e = self.ends.get(i as usize)?;
        if h.generation() != e.gen || e.owner != t || e.state != EndState::Connected {
            return None;
        }
        let p = e.peer;
        let pe = self.ends.get(p as usize)?;
        if pe.pending != 0 || pe.owner == NIL {
            return None;
        }
        let owner = pe.owner;
        let in_receive = match self.threads.get(owner as usize)?.wait {
            Wait::Receive => true,
            Wait::PollAll => false,
            Wait::PollSet if pe.flags & F_IN_WAIT_SET != 0 => false,
            _ => return None,
        };
        Some((i, p, owner, in_receive))
    }

    /// The `Receive` fast path's narrow entry: [`Ipc::receive`] with
    /// [`Deadline::Never`], its result already in registers. `None` (and
    /// nothing changed) where `receive` fails (an unknown caller, or one
    /// already parked: `Busy`); else the same state change as `receive`:
    /// the first ready end's events taken, with its peer buffer as words,
    /// or the caller parked.
    #[inline]
    pub fn receive_fast(&mut self, caller: ThreadId) -> Option<ReceiveFast> {
        let t = caller.index();
        let th = self.threads.get(t as usize)?;
        if !th.live || th.id != caller || th.wait != Wait::None {
            return None;
        }
        let Some(i) = th.ready.head_opt() else {
            self.threads[t as usize].wait = Wait::Receive;
            return Some(ReceiveFast::Parked);
        };
        let ready = self.take_events(i);
        // `message_of`, as words (no 32-byte value copied: this runs with
        // the caller's vector registers live).
        let e = &self.ends[i as usize];
        let src = match e.state {
            EndState::Connected => Some(&self.ends[e.peer as usize]),
            EndState::PeerGone => Some(e),
            _ => None,
        };
        let (len, [w0, w1, w2, w3]) = match src {
            Some(src) => (src.len as u64, load_words(&src.buf)),
            None => (0, [0; 4]),
        };
        let reason = ready.close_reason.map_or(0, |c| c.code() as u64);
        let info = ready.events.bits() as u64
            | (reason & 0xff) << 8
            | (ready.peer_uid as u64) << 16
            | len << 32;
        Some(ReceiveFast::Done([ready.handle.raw(), info, w0, w1, w2, w3]))
    }

    /// The `Poll` fast path's narrow entry: [`Ipc::poll`] of the set
    /// `[h]`, with any deadline but [`Deadline::Now`] if `park`, else with
    /// `Deadline::Now`; its result already in registers. The same state
    /// change as `poll`: `h`'s events taken, or the caller parked on `h`
    /// alone. `None` (and nothing changed) where `poll` fails (an unknown
    /// caller, one already parked: `Busy`, a bad, stale or foreign handle),
    /// where it would answer `TimedOut` (nothing ready and `!park`), and
    /// where parking would have to allocate the caller's wait set (its
    /// first poll: the general path grows it; later polls reuse it).
    #[inline(always)]
    pub fn poll_fast(&mut self, caller: ThreadId, h: Handle, park: bool) -> Option<PollFast> {
        let t = caller.index();
        let th = self.threads.get(t as usize)?;
        if !th.live || th.id != caller || th.wait != Wait::None {
            return None;
        }
        // `end_slot`'s one success: the handle's generation current and
        // its end owned by the caller (a free slot has no owner, and no
        // live end has generation 0).
        let i = h.index();
        let e = self.ends.get(i as usize)?;
        if h.generation() != e.gen || e.owner != t {
            return None;
        }
        if e.pending != 0 {
            // `take_events` and `encode_ready`, as words: this runs with
            // the caller's vector registers live (no switch follows).
            self.threads[t as usize].ready.unlink(&mut self.ends, ready_links, i);
            let e = &mut self.ends[i as usize];
            let events = e.pending as u64;
            e.pending = 0;
            let info = events | (e.close_reason as u64) << 8 | (e.peer_uid as u64) << 16;
            return Some(PollFast::Done([
                Handle::new(i, e.gen).raw(),
                info,
                e.peer_task.raw(),
                e.conn_id,
            ]));
        }
        let th = &mut self.threads[t as usize];
        if !park || th.wait_set.capacity() == 0 {
            return None;
        }
        th.wait_set.clear();
        th.wait_set.push(i);
        th.wait = Wait::PollSet;
        self.ends[i as usize].flags |= F_IN_WAIT_SET;
        Some(PollFast::Parked)
    }

    /// The commit shared by the fast entries: stores `words` (`len` bytes)
    /// in end `i`, and delivers `SIGNAL` to its peer end
    /// `p`, whose owner (thread slot `owner`) is parked in a receive: its
    /// wait ends and its six result registers come back.
    #[inline(always)]
    fn hand_over(&mut self, i: u32, p: u32, owner: u32, len: u64, words: [u64; 4]) -> [u64; 6] {
        let words = self.store_words_of(i, len, words);
        self.end_receive(p, owner, len, words)
    }

    /// `store` of `len` bytes packed in `words` into end `i`; the words as
    /// stored (bytes past `len` cleared).
    #[inline(always)]
    fn store_words_of(&mut self, i: u32, len: u64, words: [u64; 4]) -> [u64; 4] {
        // Word by word in general registers (no array copy: the `Send`
        // fast path runs with the caller's vector registers live).
        let [mut w0, mut w1, mut w2, mut w3] = words;
        if len < MESSAGE_MAX as u64 {
            [w0, w1, w2, w3] =
                [keep(w0, 0, len), keep(w1, 1, len), keep(w2, 2, len), keep(w3, 3, len)];
        }
        let e = &mut self.ends[i as usize];
        store_words(&mut e.buf, [w0, w1, w2, w3]);
        e.len = len as u8;
        e.seq += 1;
        [w0, w1, w2, w3]
    }

    /// What `deliver_or_hand_off(p, SIGNAL)` does for an end `p` without
    /// events whose owner (slot `owner`) is parked in a receive: the wait
    /// ends and the events go straight to it, never on the ready list. Its
    /// six result registers, with `len` bytes in `words` as its message.
    #[inline(always)]
    fn end_receive(&mut self, p: u32, owner: u32, len: u64, words: [u64; 4]) -> [u64; 6] {
        let [w0, w1, w2, w3] = words;
        self.threads[owner as usize].wait = Wait::None;
        self.stamp += 1;
        let pe = &mut self.ends[p as usize];
        pe.ready_stamp = self.stamp;
        let info = Events::SIGNAL.bits() as u64
            | (pe.close_reason as u64) << 8
            | (pe.peer_uid as u64) << 16
            | len << 32;
        [Handle::new(p, pe.gen).raw(), info, w0, w1, w2, w3]
    }

    /// [`Ipc::end_receive`] for an owner parked in a poll that waits for
    /// `p`: its wait ends (a poll set's flags cleared) and its four result
    /// registers come back, laid out as `encode_ready`.
    #[inline(always)]
    fn end_poll(&mut self, p: u32, owner: u32) -> [u64; 4] {
        self.clear_wait(owner);
        self.stamp += 1;
        let pe = &mut self.ends[p as usize];
        pe.ready_stamp = self.stamp;
        let info = Events::SIGNAL.bits() as u64
            | (pe.close_reason as u64) << 8
            | (pe.peer_uid as u64) << 16;
        [Handle::new(p, pe.gen).raw(), info, pe.peer_task.raw(), pe.conn_id]
    }

    /// What a read of end `i` returns now: the peer's buffer, the last data
    /// of a closed peer, or nothing for an unconnected end.
    fn message_of(&self, i: u32) -> Message {
        let e = &self.ends[i as usize];
        let src = match e.state {
            EndState::Connected => &self.ends[e.peer as usize],
            EndState::PeerGone => e,
            _ => return Message::default(),
        };
        Message { data: src.buf, len: src.len, seq: src.seq }
    }

    /// The kernel reports that a parked thread's deadline passed: cancels
    /// its wait and returns `Failed(TimedOut)`. `None` if the thread is not
    /// parked (e.g. its wakeup is already queued: the kernel must use that).
    pub fn timed_out(&mut self, thread: ThreadId) -> Option<Completion> {
        let t = self.thread_slot(thread).ok()?;
        if self.threads[t as usize].wait == Wait::None {
            return None;
        }
        self.clear_wait(t);
        Some(Completion::Failed(Error::TimedOut))
    }

    /// The next parked thread an operation woke, with what it wakes with,
    /// oldest first. The kernel drains this after every call.
    pub fn take_wakeup(&mut self) -> Option<(ThreadId, Completion)> {
        let w = self.wakeups.pop_front();
        if w.is_none() {
            self.trim_wakeups();
        }
        w
    }

    /// Once drained, the wakeup queue goes back to room for the live
    /// threads, as a power of two (its first capacity, 4, once few are
    /// left): it shrinks only when the thread count halves.
    fn trim_wakeups(&mut self) {
        let kept = crate::slab::MIN_KEPT.max(self.live_threads).next_power_of_two();
        if self.wakeups.is_empty() && self.wakeups.capacity() > kept {
            self.wakeups.shrink_to(kept);
        }
    }

    /// Whether `thread` is parked in this model (a poll or a blocking
    /// connect).
    pub fn is_parked(&self, thread: ThreadId) -> bool {
        self.thread_slot(thread).is_ok_and(|t| self.threads[t as usize].wait != Wait::None)
    }

    /// Adds events to end `i`; queues it on its ready list if it was not
    /// pending, and wakes its owner if the owner waits on it.
    fn deliver(&mut self, i: u32, ev: Events) {
        if let Some((id, ready, message)) = self.deliver_or_hand_off(i, ev) {
            self.wakeups.push_back((id, Completion::Received(ready, message)));
        }
    }

    /// [`Ipc::deliver`], except that an owner parked in a receive is not
    /// queued as a wakeup but returned, with what it receives.
    fn deliver_or_hand_off(&mut self, i: u32, ev: Events) -> Option<(ThreadId, Ready, Message)> {
        self.stamp += 1;
        let stamp = self.stamp;
        let e = &mut self.ends[i as usize];
        let was = e.pending;
        e.pending |= ev.bits() as u8;
        if was != 0 {
            // Already ready: a parked owner cannot be waiting on it (it would
            // not have parked), so there is no one to wake.
            return None;
        }
        e.ready_stamp = stamp;
        let owner = e.owner;
        if owner == NIL {
            self.kernel_ready.push_back(&mut self.ends, ready_links, i);
            return None;
        }
        let th = &mut self.threads[owner as usize];
        let wait = th.wait;
        let wake = match wait {
            Wait::PollAll | Wait::Receive => true,
            Wait::PollSet => self.ends[i as usize].flags & F_IN_WAIT_SET != 0,
            _ => false,
        };
        if !wake {
            th.ready.push_back(&mut self.ends, ready_links, i);
            return None;
        }
        // The owner waits for exactly this: hand the events over directly,
        // without queueing the end on its ready list.
        let id = th.id;
        self.clear_wait(owner);
        let ready = self.describe_and_clear(i);
        if wait == Wait::Receive {
            return Some((id, ready, self.message_of(i)));
        }
        self.wakeups.push_back((id, Completion::Polled(ready)));
        None
    }

    /// Clears end `i`'s events, takes it off its ready list, and describes
    /// it.
    fn take_events(&mut self, i: u32) -> Ready {
        let owner = self.ends[i as usize].owner;
        self.threads[owner as usize].ready.unlink(&mut self.ends, ready_links, i);
        self.describe_and_clear(i)
    }

    /// Clears end `i`'s events (it is on no ready list) and describes it.
    fn describe_and_clear(&mut self, i: u32) -> Ready {
        let e = &mut self.ends[i as usize];
        let events = Events::from_bits(e.pending as u32).unwrap_or(Events::NONE);
        e.pending = 0;
        Ready {
            handle: Handle::new(i, e.gen),
            events,
            conn_id: e.conn_id,
            peer_task: e.peer_task,
            peer_uid: e.peer_uid,
            close_reason: CloseReason::from_code(e.close_reason as u32),
        }
    }

    /// Cancels thread `t`'s wait, if any.
    fn clear_wait(&mut self, t: u32) {
        match self.threads[t as usize].wait {
            Wait::None | Wait::PollAll | Wait::Receive => {}
            Wait::PollSet => {
                let ws = core::mem::take(&mut self.threads[t as usize].wait_set);
                for &i in &ws {
                    // The slot may have been freed (and cut off) meanwhile.
                    if let Some(e) = self.ends.get_mut(i as usize) {
                        if e.owner == t {
                            e.flags &= !F_IN_WAIT_SET;
                        }
                    }
                }
                self.threads[t as usize].wait_set = ws;
            }
            Wait::Connect(k) => {
                self.tasks[k as usize].waiters.unlink(&mut self.threads, waiter_links, t);
            }
        }
        self.threads[t as usize].wait = Wait::None;
    }

    // ------------------------------------------------------------------
    // Close
    // ------------------------------------------------------------------

    /// Closes an end: a queued port leaves the queue; a connected end's peer
    /// gets `PEER_CLOSED` (reason `Closed`) and keeps reading this end's
    /// last data. Errors: `NoSuchThread`, handle errors.
    pub fn close(&mut self, caller: ThreadId, h: Handle) -> Result<(), Error> {
        let t = self.thread_slot(caller)?;
        let i = self.end_slot(t, h)?;
        self.close_end(i, CloseReason::Closed);
        Ok(())
    }

    /// Closes task-owned end `i` for `reason` and frees it.
    fn close_end(&mut self, i: u32, reason: CloseReason) {
        let e = &self.ends[i as usize];
        match e.state {
            EndState::Queued => {
                let k = e.task;
                self.tasks[k as usize].queue.unlink(&mut self.ends, queue_links, i);
            }
            EndState::Connected => {
                let p = e.peer;
                if self.ends[p as usize].state == EndState::KernelSide {
                    self.kernel_sides_closed += 1;
                    self.free_kernel_side(p);
                } else {
                    self.orphan(p, i, reason);
                }
            }
            _ => {}
        }
        self.free_end(i);
    }

    /// Turns `p` (whose peer `gone` is closing) into a `PeerGone` end that
    /// keeps `gone`'s last data, and tells its owner.
    fn orphan(&mut self, p: u32, gone: u32, reason: CloseReason) {
        let g = &self.ends[gone as usize];
        let (buf, len, seq) = (g.buf, g.len, g.seq);
        let pe = &mut self.ends[p as usize];
        pe.buf = buf;
        pe.len = len;
        pe.seq = seq;
        pe.state = EndState::PeerGone;
        pe.peer = NIL;
        pe.close_reason = reason.code() as u8;
        self.deliver(p, Events::PEER_CLOSED);
    }

    fn free_kernel_side(&mut self, k: u32) {
        if let Some(pos) = self.kernel_kinds.iter().position(|&(_, s)| s == k) {
            self.kernel_kinds.swap_remove(pos);
        }
        if self.kernel_kinds.is_empty() {
            self.kernel_kinds = Vec::new();
        }
        self.free_end(k);
    }

    /// Allocates an end slot and charges it to `uid` (the caller checked
    /// the limits with [`Ipc::check_room`]). `OutOfMemory` if the slab or
    /// the generation array cannot grow or the uid's counter cannot be
    /// made; nothing changes then.
    fn alloc_end(&mut self, uid: Uid, privileged: bool) -> Result<u32, Error> {
        // Both fixed arrays are made with the first end (a no-op after).
        self.free.reserve(self.limits.total_ends).map_err(|_| Error::OutOfMemory)?;
        if self.issued.is_empty() {
            let n = self.limits.total_ends;
            self.issued.try_reserve_exact(n).map_err(|_| Error::OutOfMemory)?;
            self.issued.resize(n, 0);
        }
        let reuse = self.free.lowest();
        if reuse.is_none() {
            self.ends.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
        }
        self.pool.charge(uid, privileged, 1)?;
        self.live_ends += 1;
        let i = match reuse {
            Some(i) => {
                self.free.remove(i);
                let e = &mut self.ends[i as usize];
                // Free slots are never retired, so this stays in range.
                *e = End::free(e.gen + 1);
                i
            }
            None => {
                // Every slot below is live or retired (free slots are
                // listed), and those are charged to the pool, so the index
                // is below `total_ends`. A cut-off index continues its own
                // sequence (it was below the last generation, or it would
                // have been retired, not cut off).
                let i = self.ends.len() as u32;
                self.ends.push(End::free(self.issued[i as usize] + 1));
                i
            }
        };
        self.issued[i as usize] = self.ends[i as usize].gen;
        Ok(i)
    }

    /// Allocates an end owned by thread `t`, charged to its task's uid.
    fn new_owned_end(&mut self, t: u32, state: EndState) -> Result<u32, Error> {
        let k = self.threads[t as usize].task;
        let (uid, privileged) = (self.tasks[k as usize].uid, self.tasks[k as usize].privileged);
        let i = self.alloc_end(uid, privileged)?;
        let e = &mut self.ends[i as usize];
        e.state = state;
        e.owner = t;
        e.task = k;
        self.threads[t as usize].owned.push_back(&mut self.ends, owned_links, i);
        self.tasks[k as usize].ends += 1;
        Ok(i)
    }

    /// Frees slot `i`: off every list, counts down, generation kept so old
    /// handles are stale. A slot whose generation is exhausted is retired:
    /// it stays in the slab and charged to the pool. Free slots at the
    /// slab's tail are cut off and the slab shrinks.
    fn free_end(&mut self, i: u32) {
        let e = &self.ends[i as usize];
        let (owner, task, pending) = (e.owner, e.task, e.pending);
        // Who the slot is charged to: its task's uid, or for a kernel side
        // (no owner) its task's, as privileged (only privileged tasks open
        // kernel ends).
        let charge = if owner == NIL {
            if pending != 0 {
                self.kernel_ready.unlink(&mut self.ends, ready_links, i);
            }
            (self.ends[i as usize].peer_uid, true)
        } else {
            let th = &mut self.threads[owner as usize];
            if pending != 0 {
                th.ready.unlink(&mut self.ends, ready_links, i);
            }
            th.owned.unlink(&mut self.ends, owned_links, i);
            let k = &mut self.tasks[task as usize];
            k.ends -= 1;
            (k.uid, k.privileged)
        };
        self.live_ends -= 1;
        let e = &mut self.ends[i as usize];
        *e = End::free(e.gen);
        if e.gen >= MAX_GENERATION {
            self.retired += 1;
            return;
        }
        self.pool.release(charge.0, charge.1, 1);
        if i as usize + 1 == self.ends.len() {
            self.trim_ends(i);
        } else {
            self.free.insert(i);
        }
    }

    /// Cuts off the slab's tail: `last` (just freed, on no list) and the
    /// free slots below it, then shrinks the slab. Their generations stay
    /// in `issued`. Amortised O(1): each slot is cut off once per time it
    /// was pushed. Stops at a live or retired slot.
    fn trim_ends(&mut self, last: u32) {
        self.ends.pop().expect("the slot to cut off");
        debug_assert_eq!(self.ends.len(), last as usize);
        while let Some(e) = self.ends.last() {
            if e.live() || e.gen >= MAX_GENERATION {
                break;
            }
            let i = (self.ends.len() - 1) as u32;
            self.free.remove(i);
            self.ends.pop();
        }
        crate::slab::shrink(&mut self.ends);
    }

    /// Whether handle `h`, whose index is beyond the slab, names a slot that
    /// was cut off: its generation is one that index has issued.
    fn cut_off(&self, h: Handle) -> bool {
        let g = h.generation();
        g != 0 && self.issued.get(h.index() as usize).is_some_and(|&last| g <= last)
    }

    /// Fails with `LimitReached` unless thread `t` may own one more end and
    /// `total` more ends fit its task's uid share (or, for a privileged
    /// task, the whole table including the reserve).
    fn check_room(&self, t: u32, total: usize) -> Result<(), Error> {
        let th = &self.threads[t as usize];
        let task = &self.tasks[th.task as usize];
        if th.owned.len as usize >= self.limits.ends_per_thread
            || task.ends as usize >= self.limits.ends_per_task
        {
            return Err(Error::LimitReached);
        }
        self.pool.check(task.uid, task.privileged, total)
    }

    // ------------------------------------------------------------------
    // Identity and permissions
    // ------------------------------------------------------------------

    /// The identity of the connection an end belongs to. Errors:
    /// `NoSuchThread`, handle errors, `NotConnected` (a port).
    pub fn connection_info(&self, caller: ThreadId, h: Handle) -> Result<ConnectionInfo, Error> {
        let t = self.thread_slot(caller)?;
        let i = self.end_slot(t, h)?;
        let e = &self.ends[i as usize];
        let state = match e.state {
            EndState::Connected => ConnState::Connected,
            EndState::PeerGone => ConnState::PeerClosed,
            _ => return Err(Error::NotConnected),
        };
        let mut flags = 0;
        if e.flags & F_SERVER != 0 {
            flags |= info_flags::SERVER;
        }
        if e.flags & F_KERNEL != 0 {
            flags |= info_flags::KERNEL | info_flags::PEER_PRIVILEGED;
        } else if self
            .tasks
            .get(e.peer_task.index() as usize)
            .is_some_and(|p| p.live && p.id == e.peer_task && p.privileged)
        {
            flags |= info_flags::PEER_PRIVILEGED;
        }
        Ok(ConnectionInfo {
            conn_id: e.conn_id,
            peer_task: e.peer_task.raw(),
            peer_uid: e.peer_uid as u32,
            state: state as u32,
            close_reason: e.close_reason as u32,
            flags,
            kernel_kind: e.kernel_kind,
            reserved: 0,
        })
    }

    /// Allows or denies `uid` to connect to the caller's task (any thread
    /// of the task may). By default every uid is allowed. Errors:
    /// `NoSuchThread`.
    pub fn set_connect_permission(
        &mut self,
        caller: ThreadId,
        uid: Uid,
        allow: bool,
    ) -> Result<(), Error> {
        let t = self.thread_slot(caller)?;
        let task = &mut self.tasks[self.threads[t as usize].task as usize];
        let (w, bit) = (uid as usize / 64, 1u64 << (uid % 64));
        match (&mut task.denied, allow) {
            (None, true) => {}
            (None, false) => {
                let mut bits = vec![0u64; BITMAP_WORDS].into_boxed_slice();
                bits[w] |= bit;
                task.denied = Some(bits);
            }
            (Some(bits), true) => bits[w] &= !bit,
            (Some(bits), false) => bits[w] |= bit,
        }
        Ok(())
    }

    /// Whether `uid` may connect to `task` (`None` for an unknown task).
    pub fn connect_permitted(&self, task: TaskId, uid: Uid) -> Option<bool> {
        let k = self.task_slot(task).ok()?;
        Some(self.tasks[k as usize].allows(uid))
    }

    /// The two ends of a live connection. Privileged callers only. Errors:
    /// `NoSuchThread`, `NotPrivileged`, `NoSuchConnection` (unknown, or one
    /// end already closed).
    pub fn connection_query(&self, caller: ThreadId, conn: u64) -> Result<ConnectionEnds, Error> {
        let t = self.thread_slot(caller)?;
        if !self.tasks[self.threads[t as usize].task as usize].privileged {
            return Err(Error::NotPrivileged);
        }
        // A connection ID is its client end's handle value.
        let h = Handle::from_raw(conn);
        let c = self
            .ends
            .get(h.index() as usize)
            .filter(|e| {
                e.gen == h.generation()
                    && e.state == EndState::Connected
                    && e.owner != NIL
                    && e.flags & F_SERVER == 0
                    && e.conn_id == conn
            })
            .ok_or(Error::NoSuchConnection)?;
        let p = &self.ends[c.peer as usize];
        let (server_task, server_thread) = if p.owner == NIL {
            (KERNEL_TASK, KERNEL_THREAD)
        } else {
            (self.tasks[p.task as usize].id, self.threads[p.owner as usize].id)
        };
        Ok(ConnectionEnds {
            conn_id: conn,
            client_task: self.tasks[c.task as usize].id.raw(),
            client_thread: self.threads[c.owner as usize].id.raw(),
            server_task: server_task.raw(),
            server_thread: server_thread.raw(),
        })
    }

    // ------------------------------------------------------------------
    // Kernel ends
    // ------------------------------------------------------------------

    /// Opens a connection whose far side is the kernel, for a privileged
    /// caller: returns the caller's end and the kernel's side. At most one
    /// end of each `kind` value is open. Errors: `NoSuchThread`,
    /// `NotPrivileged`, `InvalidArgument` (unknown kind), `Busy` (kind
    /// already open), `LimitReached`.
    pub fn kernel_end_open(
        &mut self,
        caller: ThreadId,
        kind: u32,
    ) -> Result<(Handle, KernelEndId), Error> {
        let t = self.thread_slot(caller)?;
        let k = self.threads[t as usize].task;
        if !self.tasks[k as usize].privileged {
            return Err(Error::NotPrivileged);
        }
        if !kernel_end_kind::is_valid(kind) {
            return Err(Error::InvalidArgument);
        }
        if self.kernel_kinds.iter().any(|&(kk, _)| kk == kind) {
            return Err(Error::Busy);
        }
        self.check_room(t, 2)?;
        self.kernel_kinds.try_reserve(1).map_err(|_| Error::OutOfMemory)?;
        let u = self.new_owned_end(t, EndState::Connected)?;
        let uid = self.tasks[k as usize].uid;
        let s = match self.alloc_end(uid, true) {
            Ok(s) => s,
            Err(e) => {
                self.free_end(u);
                return Err(e);
            }
        };
        let h = self.handle_of(u);
        let ue = &mut self.ends[u as usize];
        ue.peer = s;
        ue.flags = F_KERNEL;
        ue.peer_task = KERNEL_TASK;
        ue.peer_uid = KERNEL_UID;
        ue.kernel_kind = kind;
        ue.conn_id = h.raw();
        let task_id = self.tasks[k as usize].id;
        let se = &mut self.ends[s as usize];
        se.state = EndState::KernelSide;
        se.peer = u;
        se.flags = F_KERNEL | F_SERVER;
        se.peer_task = task_id;
        se.peer_uid = uid;
        se.kernel_kind = kind;
        se.conn_id = h.raw();
        self.kernel_kinds.push((kind, s));
        Ok((h, KernelEndId(self.handle_of(s))))
    }

    /// The open kernel end of `kind`, if any.
    pub fn kernel_end_by_kind(&self, kind: u32) -> Option<KernelEndId> {
        self.kernel_kinds
            .iter()
            .find(|&&(k, _)| k == kind)
            .map(|&(_, s)| KernelEndId(self.handle_of(s)))
    }

    /// The kernel writes its side's buffer and signals the task's end.
    /// Errors: `BadHandle` (never a kernel end), `PeerClosed` (the end is
    /// gone: the task closed it, or its thread or task died),
    /// `MessageTooLong`.
    pub fn kernel_write_signal(&mut self, end: KernelEndId, data: &[u8]) -> Result<(), Error> {
        let s = self.kernel_slot(end)?;
        if data.len() > MESSAGE_MAX {
            return Err(Error::MessageTooLong);
        }
        self.store(s, data);
        let u = self.ends[s as usize].peer;
        self.deliver(u, Events::SIGNAL);
        Ok(())
    }

    /// The kernel reads the task's buffer of a kernel end. Errors as for
    /// [`Ipc::kernel_write_signal`].
    pub fn kernel_read(&self, end: KernelEndId) -> Result<Message, Error> {
        let s = self.kernel_slot(end)?;
        let u = &self.ends[self.ends[s as usize].peer as usize];
        Ok(Message { data: u.buf, len: u.len, seq: u.seq })
    }

    /// The next kernel end its task signaled since the kernel last looked
    /// (oldest first), with its events, which this clears.
    pub fn kernel_take_signal(&mut self) -> Option<(KernelEndId, Events)> {
        let s = self.kernel_ready.pop_front(&mut self.ends, ready_links)?;
        let e = &mut self.ends[s as usize];
        let ev = Events::from_bits(e.pending as u32).unwrap_or(Events::NONE);
        e.pending = 0;
        Some((KernelEndId(Handle::new(s, e.gen)), ev))
    }

    /// The kernel closes its side: the task's end gets `PEER_CLOSED`
    /// (reason `Closed`) and keeps reading the kernel's last data. Errors as
    /// for [`Ipc::kernel_write_signal`].
    pub fn kernel_end_close(&mut self, end: KernelEndId) -> Result<(), Error> {
        let s = self.kernel_slot(end)?;
        let u = self.ends[s as usize].peer;
        self.orphan(u, s, CloseReason::Closed);
        self.free_kernel_side(s);
        Ok(())
    }

    /// Whether any kernel side was signaled and not yet taken with
    /// [`Ipc::kernel_take_signal`].
    pub fn kernel_signals_pending(&self) -> bool {
        !self.kernel_ready.is_empty()
    }

    /// How many kernel sides have been freed because their task's end
    /// closed (the task closed it, or its thread or task ended). It only
    /// grows: a change tells the kernel to check its ends with
    /// [`Ipc::kernel_end_is_open`].
    pub fn kernel_sides_closed(&self) -> u64 {
        self.kernel_sides_closed
    }

    /// Whether the kernel side `end` is still open.
    pub fn kernel_end_is_open(&self, end: KernelEndId) -> bool {
        self.kernel_slot(end).is_ok()
    }

    fn kernel_slot(&self, end: KernelEndId) -> Result<u32, Error> {
        let h = end.0;
        let Some(e) = self.ends.get(h.index() as usize) else {
            return Err(if self.cut_off(h) { Error::PeerClosed } else { Error::BadHandle });
        };
        let g = h.generation();
        if g == 0 || g > e.gen {
            return Err(Error::BadHandle);
        }
        if g < e.gen || !e.live() {
            return Err(Error::PeerClosed);
        }
        if e.state != EndState::KernelSide {
            return Err(Error::BadHandle);
        }
        Ok(h.index())
    }

    // ------------------------------------------------------------------
    // Lookup helpers and accounting
    // ------------------------------------------------------------------

    fn thread_slot(&self, id: ThreadId) -> Result<u32, Error> {
        match self.threads.get(id.index() as usize) {
            Some(t) if t.live && t.id == id => Ok(id.index()),
            _ => Err(Error::NoSuchThread),
        }
    }

    fn task_slot(&self, id: TaskId) -> Result<u32, Error> {
        match self.tasks.get(id.index() as usize) {
            Some(k) if k.live && k.id == id => Ok(id.index()),
            _ => Err(Error::NoSuchTask),
        }
    }

    /// Resolves handle `h` of thread slot `t`: `BadHandle` if it was never
    /// issued (or names a kernel side), `StaleHandle` if its end is gone,
    /// `WrongThread` if another thread owns it. A slot re-created after its
    /// index was cut off skipped generations: a skipped generation below
    /// the current one is answered `StaleHandle`, like a real old one.
    fn end_slot(&self, t: u32, h: Handle) -> Result<u32, Error> {
        let Some(e) = self.ends.get(h.index() as usize) else {
            return Err(if self.cut_off(h) { Error::StaleHandle } else { Error::BadHandle });
        };
        let g = h.generation();
        if g == 0 || g > e.gen {
            return Err(Error::BadHandle);
        }
        if g < e.gen || !e.live() {
            return Err(Error::StaleHandle);
        }
        if e.owner == NIL {
            return Err(Error::BadHandle);
        }
        if e.owner != t {
            return Err(Error::WrongThread);
        }
        Ok(h.index())
    }

    fn handle_of(&self, i: u32) -> Handle {
        Handle::new(i, self.ends[i as usize].gen)
    }

    /// Live ends kernel-wide (including kernel sides of kernel ends).
    pub fn end_count(&self) -> usize {
        self.live_ends
    }

    /// Live ends owned by `thread` (`None` for an unknown thread).
    pub fn thread_end_count(&self, thread: ThreadId) -> Option<usize> {
        let t = self.thread_slot(thread).ok()?;
        Some(self.threads[t as usize].owned.len as usize)
    }

    /// Live ends owned by the threads of `task` (`None` if unknown).
    pub fn task_end_count(&self, task: TaskId) -> Option<usize> {
        let k = self.task_slot(task).ok()?;
        Some(self.tasks[k as usize].ends as usize)
    }

    /// Capacity of the end slab, in slots (for memory statistics and
    /// tests). It follows the slab's length: 0 once no end is left (or only
    /// retired slots below live ones remain), and never more than
    /// `max(4, 4 × slots in use)`.
    pub fn slab_capacity(&self) -> usize {
        self.ends.capacity()
    }

    /// Capacities of the task and the thread records, in records (indexed
    /// by the IDs' slot indices; cut back like the end slab).
    pub fn record_capacity(&self) -> (usize, usize) {
        (self.tasks.capacity(), self.threads.capacity())
    }

    /// Heap bytes this model holds now: its tables' capacities, the thread
    /// and wakeup queues, the tasks' thread lists and permission bitmaps
    /// and the threads' poll sets. Allocator overhead not included.
    pub fn heap_bytes(&self) -> usize {
        use core::mem::size_of;
        let tasks: usize = self
            .tasks
            .iter()
            .map(|k| {
                k.threads.capacity() * size_of::<u32>()
                    + k.denied.as_ref().map_or(0, |b| b.len() * size_of::<u64>())
            })
            .sum();
        let threads: usize =
            self.threads.iter().map(|t| t.wait_set.capacity() * size_of::<u32>()).sum();
        self.ends.capacity() * size_of::<End>()
            + self.tasks.capacity() * size_of::<Task>()
            + self.threads.capacity() * size_of::<Thread>()
            + self.wakeups.capacity() * size_of::<(ThreadId, Completion)>()
            + self.kernel_kinds.capacity() * size_of::<(u32, u32)>()
            + self.issued.capacity() * size_of::<u64>()
            + self.free.heap_bytes()
            + self.pool.heap_bytes()
            + tasks
            + threads
    }

    /// Bytes of the generation array and the free-slot bitmap, allocated
    /// with the first end and kept for good (about `8 × total_ends + total_ends
    /// / 8`; 0 before any end existed).
    pub fn fixed_heap_bytes(&self) -> usize {
        self.issued.capacity() * core::mem::size_of::<u64>() + self.free.heap_bytes()
    }

    /// End slots retired for good (their generation is exhausted); each
    /// stays charged to its last owner's uid, or to the privileged reserve.
    pub fn retired_ends(&self) -> usize {
        self.retired
    }

    /// Ends (live or retired) charged to the unprivileged tasks of `uid`.
    pub fn uid_end_count(&self, uid: Uid) -> usize {
        self.pool.uid_used(uid)
    }

    /// Live tasks and threads registered (for leak checks).
    pub fn object_counts(&self) -> (usize, usize) {
        (
            self.tasks.iter().filter(|k| k.live).count(),
            self.threads.iter().filter(|t| t.live).count(),
        )
    }

    /// Checks every internal invariant, in O(objects). For tests and debug
    /// builds; returns what is broken.
    pub fn audit(&self) -> Result<(), &'static str> {
        crate::audit::audit(self)
    }

    /// Read-only access for the audit.
    pub(crate) fn parts(&self) -> Parts<'_> {
        Parts {
            ends: &self.ends,
            free: &self.free,
            issued: &self.issued,
            retired: self.retired,
            pool: &self.pool,
            live_threads: self.live_threads,
            capacities: [self.ends.capacity(), self.threads.capacity(), self.tasks.capacity()],
            live_ends: self.live_ends,
            threads: &self.threads,
            tasks: &self.tasks,
            wakeups: &self.wakeups,
            kernel_ready: &self.kernel_ready,
            kernel_kinds: &self.kernel_kinds,
            limits: &self.limits,
        }
    }
}

/// A borrowed view of every field, for the audit.
pub(crate) struct Parts<'a> {
    pub(crate) ends: &'a [End],
    pub(crate) free: &'a crate::slab::FreeSlots,
    pub(crate) issued: &'a [u64],
    pub(crate) retired: usize,
    pub(crate) pool: &'a Pool,
    pub(crate) live_threads: usize,
    /// Capacities of `ends`, `threads` and `tasks`.
    pub(crate) capacities: [usize; 3],
    pub(crate) live_ends: usize,
    pub(crate) threads: &'a [Thread],
    pub(crate) tasks: &'a [Task],
    pub(crate) wakeups: &'a VecDeque<(ThreadId, Completion)>,
    pub(crate) kernel_ready: &'a List,
    pub(crate) kernel_kinds: &'a [(u32, u32)],
    pub(crate) limits: &'a Limits,
}

/// Cuts the dead records off the tail of a task or thread table and shrinks
/// it. Nothing refers to a dead record (lists hold live threads only, ends
/// live tasks and threads), and lookups by ID treat a missing record as an
/// unknown ID.
/// Word `k` of a message with every byte at `len` and beyond cleared: what
/// a store of the first `len` bytes leaves in a buffer (`len` at most 32).
#[inline(always)]
fn keep(w: u64, k: u64, len: u64) -> u64 {
    let bytes = len.saturating_sub(k * 8).min(8);
    if bytes == 8 {
        w
    } else {
        w & ((1u64 << (bytes * 8)) - 1)
    }
}

/// [`keep`] for all four words.
#[cfg(test)]
fn mask_message(words: [u64; 4], len: u64) -> [u64; 4] {
    let [a, b, c, d] = words;
    [keep(a, 0, len), keep(b, 1, len), keep(c, 2, len), keep(d, 3, len)]
}

/// The four little-endian words of a message buffer (the layout of
/// `alux_abi::syscall::pack_message`): four word loads.
#[inline(always)]
fn load_words(buf: &[u8; MESSAGE_MAX]) -> [u64; 4] {
    let w = |k: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[k * 8..k * 8 + 8]);
        u64::from_le_bytes(b)
    };
    [w(0), w(1), w(2), w(3)]
}

/// Stores `words` into a message buffer, little-endian (the layout of
/// `alux_abi::syscall::pack_message`): four word stores.
#[inline(always)]
fn store_words(buf: &mut [u8; MESSAGE_MAX], words: [u64; 4]) {
    let [a, b, c, d] = words;
    buf[0..8].copy_from_slice(&a.to_le_bytes());
    buf[8..16].copy_from_slice(&b.to_le_bytes());
    buf[16..24].copy_from_slice(&c.to_le_bytes());
    buf[24..32].copy_from_slice(&d.to_le_bytes());
}

fn trim_records<T>(v: &mut Vec<T>, live: impl Fn(&T) -> bool) {
    let before = v.len();
    while v.last().is_some_and(|r| !live(r)) {
        v.pop();
    }
    if v.len() != before {
        crate::slab::shrink(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_stores_what_a_byte_store_would() {
        let words = [u64::MAX; 4];
        for len in 0..=32u64 {
            let mut got = [0xaau8; MESSAGE_MAX];
            store_words(&mut got, mask_message(words, len));
            let mut want = [0u8; MESSAGE_MAX];
            want[..len as usize].fill(0xff);
            assert_eq!(got, want, "len {len}");
        }
        let words = [0x0807_0605_0403_0201, 0, 0, 0x2000_0000_0000_0000];
        let mut b = [0u8; MESSAGE_MAX];
        store_words(&mut b, words);
        assert_eq!((b[0], b[7], b[31]), (1, 8, 0x20), "little-endian, as pack_message");
        assert_eq!(alux_abi::syscall::pack_message(&b), words);
    }

    fn world() -> (Ipc, ThreadId) {
        let mut ipc = Ipc::new(Limits::default());
        let (k, t) = (TaskId::new(0, 1), ThreadId::new(0, 1));
        ipc.add_task(k, 1, false).unwrap();
        ipc.add_thread(t, k).unwrap();
        (ipc, t)
    }

    #[test]
    fn a_retired_slot_is_never_cut_off_nor_reused_and_stays_charged() {
        let (mut ipc, t) = world();
        let p = ipc.port_create(t).unwrap();
        // As if the slot had been reused 2^48 - 2 times.
        ipc.ends[p.index() as usize].gen = MAX_GENERATION;
        ipc.issued[p.index() as usize] = MAX_GENERATION;
        let p = Handle::new(p.index(), MAX_GENERATION);
        let q = ipc.port_create(t).unwrap();
        ipc.close(t, p).unwrap();
        ipc.close(t, q).unwrap();
        ipc.audit().unwrap();
        assert_eq!(ipc.ends.len(), 1, "the retired slot stays, above it goes");
        assert_eq!((ipc.retired_ends(), ipc.end_count()), (1, 0));
        assert_eq!(ipc.uid_end_count(1), 1, "charged to its last owner's uid");
        assert_eq!(ipc.close(t, p), Err(Error::StaleHandle));
        assert_eq!(ipc.close(t, q), Err(Error::StaleHandle));
        let r = ipc.port_create(t).unwrap();
        assert_eq!(r.index(), 1);
        assert_eq!(r.generation(), q.generation() + 1, "index 1 continues its sequence");
        assert_eq!(ipc.close(t, q), Err(Error::StaleHandle));
        ipc.close(t, r).unwrap();
        assert_eq!(ipc.slab_capacity(), crate::slab::MIN_KEPT);
        ipc.audit().unwrap();
    }

    /// Every slot starts three generations before the last: a tail
    /// create/close loop retires each slot after three uses and the
    /// retired slots fill the uid's share, never the heap.
    #[test]
    fn exhausted_generations_cost_the_uid_its_share_not_memory() {
        let limits =
            Limits { total_ends: 8, ends_reserved: 2, ends_per_uid: 4, ..Limits::default() };
        let mut ipc = Ipc::new(limits);
        let (k, t) = (TaskId::new(0, 1), ThreadId::new(0, 1));
        ipc.add_task(k, 1, false).unwrap();
        ipc.add_thread(t, k).unwrap();
        let (pk, pt) = (TaskId::new(1, 1), ThreadId::new(1, 1));
        ipc.add_task(pk, 0, true).unwrap();
        ipc.add_thread(pt, pk).unwrap();
        ipc.issued.resize(8, 0);
        for g in ipc.issued.iter_mut() {
            *g = MAX_GENERATION - 3;
        }
        let mut seen = Vec::new();
        let err = loop {
            match ipc.port_create(t) {
                Ok(h) => {
                    assert!(!seen.contains(&h), "{h} issued twice");
                    assert!(h.generation() > MAX_GENERATION - 3);
                    seen.push(h);
                    ipc.close(t, h).unwrap();
                    ipc.audit().unwrap();
                }
                Err(e) => break e,
            }
        };
        assert_eq!(err, Error::LimitReached);
        assert_eq!(seen.len(), 12, "4 slots × 3 generations, then the share is full");
        assert_eq!((ipc.retired_ends(), ipc.uid_end_count(1), ipc.end_count()), (4, 4, 0));
        assert_eq!(ipc.ends.len(), 4);
        for h in &seen {
            assert_eq!(ipc.close(t, *h), Err(Error::StaleHandle));
        }
        // The privileged task still gets the remaining slots.
        let mine: Vec<Handle> = (0..4).map(|_| ipc.port_create(pt).unwrap()).collect();
        assert_eq!(ipc.port_create(pt), Err(Error::LimitReached), "the table is full");
        for h in mine {
            ipc.close(pt, h).unwrap();
        }
        ipc.audit().unwrap();
    }

    #[test]
    fn a_cut_off_index_continues_its_own_sequence() {
        let (mut ipc, t) = world();
        let first = ipc.port_create(t).unwrap();
        let mut last = first;
        for _ in 0..1000 {
            ipc.close(t, last).unwrap();
            assert_eq!(ipc.slab_capacity(), 0);
            let h = ipc.port_create(t).unwrap();
            assert_eq!(h.index(), 0);
            assert_eq!(h.generation(), last.generation() + 1);
            last = h;
        }
        assert_eq!(last.generation(), 1001);
        ipc.close(t, last).unwrap();
        // No global floor: index 1, never used, starts at 1.
        let a = ipc.port_create(t).unwrap();
        let b = ipc.port_create(t).unwrap();
        assert_eq!((a.index(), b.index()), (0, 1));
        assert_eq!((a.generation(), b.generation()), (1002, 1));
        assert_eq!(ipc.close(t, first), Err(Error::StaleHandle));
        assert_eq!(ipc.close(t, Handle::new(0, 500)), Err(Error::StaleHandle));
        ipc.close(t, b).unwrap();
        // Index 1 was issued at generation 1, index 2 never.
        assert_eq!(ipc.close(t, b), Err(Error::StaleHandle));
        assert_eq!(ipc.close(t, Handle::new(1, 2)), Err(Error::BadHandle));
        assert_eq!(ipc.close(t, Handle::new(2, 1)), Err(Error::BadHandle));
        ipc.audit().unwrap();
    }
}
