//! Shared test scaffolding: a world of tasks and threads around one `Ipc`.
#![allow(dead_code)]

use alux_abi::{TaskId, ThreadId, Uid};
use alux_ipc::{Completion, Deadline, Error, Handle, Ipc, Limits, Outcome, Ready};

/// An `Ipc` plus ID allocation.
pub struct World {
    pub ipc: Ipc,
    next_task: u32,
    next_thread: u32,
}

impl World {
    pub fn new() -> Self {
        Self::with(Limits::default())
    }

    pub fn with(limits: Limits) -> Self {
        World { ipc: Ipc::new(limits), next_task: 0, next_thread: 0 }
    }

    /// A new task (with generation 1) and its first thread.
    pub fn task(&mut self, uid: Uid, privileged: bool) -> (TaskId, ThreadId) {
        let k = TaskId::new(self.next_task, 1);
        self.next_task += 1;
        self.ipc.add_task(k, uid, privileged).unwrap();
        let t = self.thread(k);
        (k, t)
    }

    /// Another thread of `task`.
    pub fn thread(&mut self, task: TaskId) -> ThreadId {
        let t = ThreadId::new(self.next_thread, 1);
        self.next_thread += 1;
        self.ipc.add_thread(t, task).unwrap();
        t
    }

    /// A port of `server` pushed on its task's queue, and a client end of
    /// `client` connected to it: `(server end, client end)`.
    pub fn connect_pair(
        &mut self,
        server: ThreadId,
        server_task: TaskId,
        client: ThreadId,
    ) -> (Handle, Handle) {
        let p = self.ipc.port_create(server).unwrap();
        self.ipc.listen_push(server, p).unwrap();
        let c = done(self.ipc.connect(client, server_task, Deadline::Now));
        (p, c)
    }

    /// Non-blocking poll_all.
    pub fn poll_now(&mut self, t: ThreadId) -> Result<Ready, Error> {
        self.ipc.poll_all(t, Deadline::Now).map(done_of)
    }

    /// Every queued wakeup.
    pub fn wakeups(&mut self) -> Vec<(ThreadId, Completion)> {
        core::iter::from_fn(|| self.ipc.take_wakeup()).collect()
    }
}

/// The value of a call that must not block.
pub fn done<T: core::fmt::Debug>(r: Result<Outcome<T>, Error>) -> T {
    done_of(r.unwrap())
}

/// The value of an outcome that must be `Done`.
pub fn done_of<T: core::fmt::Debug>(o: Outcome<T>) -> T {
    match o {
        Outcome::Done(v) => v,
        other => panic!("expected Done, got {other:?}"),
    }
}
