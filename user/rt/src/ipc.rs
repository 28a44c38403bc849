//! Basic IPC: ports, connections and polling, as safe thread-local values.
//!
//! Every end belongs to the thread that created it (all IPC is
//! thread-local), so [`Port`] and [`Connection`] are neither `Send` nor
//! `Sync`: the compiler keeps them on their thread, and the kernel would
//! refuse another thread's use anyway. Dropping one closes it.
//!
//! A server creates ports and pushes them onto its task's listen queue
//! ([`Port::listen`]); a client [`connect`]s to the task and takes the
//! oldest port. Each end has a 32-byte buffer: [`Connection::send`] writes it
//! and signals the peer, which wakes from [`poll_all`] (or a [`PollSet`])
//! and [`Connection::read`]s.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use alux_abi::ipc::{ConnectionEnds, ConnectionInfo, Events, Handle, Message, Ready, MESSAGE_MAX};
pub use alux_abi::syscall::Received;
use alux_abi::syscall::{decode_ready, pack_message, Sys};
use alux_abi::{Error, TaskId, Uid};
use core::marker::PhantomData;
use core::time::Duration;

use crate::sys::call;
use crate::time::timeout_ns;

/// Marks a type as bound to its thread (neither `Send` nor `Sync`).
type ThreadBound = PhantomData<*const ()>;

fn ready(regs: [u64; 4]) -> Result<Ready, Error> {
    decode_ready(regs).ok_or(Error::InvalidArgument)
}

/// An end of this thread not yet connected: what a server offers.
#[derive(Debug)]
pub struct Port {
    handle: Handle,
    _thread: ThreadBound,
}

impl Port {
    /// Creates a port owned by the calling thread.
    pub fn new() -> Result<Port, Error> {
        let [h, ..] = call(Sys::PortCreate, [0; 6])?;
        Ok(Port { handle: Handle::from_raw(h), _thread: PhantomData })
    }

    /// Pushes the port onto this task's listen queue, where the next
    /// connecting client takes it.
    pub fn listen(&self) -> Result<(), Error> {
        call(Sys::ListenPush, [self.handle.raw(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// Takes the port back out of the listen queue.
    pub fn withdraw(&self) -> Result<(), Error> {
        call(Sys::ListenWithdraw, [self.handle.raw(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// The port's handle (to match poll results).
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Waits until a client has connected to this port, then returns the
    /// connection and the `OPENED` event (client task and uid). On a
    /// timeout or error the port comes back with the error, still listening.
    ///
    /// The client may already have written, signalled or closed: one poll
    /// reports all of an end's events, so they come in this `Ready` too
    /// and will not be reported again. A server that goes on with
    /// [`receive`] or [`Connection::wait`] takes them first
    /// ([`Connection::after_open`]).
    pub fn accept(self, timeout: Option<Duration>) -> Result<(Connection, Ready), (Port, Error)> {
        match poll(&[self.handle], timeout) {
            Ok(r) if r.events.contains(Events::OPENED) => Ok((self.into_connection(), r)),
            Ok(_) => Err((self, Error::NotConnected)),
            Err(e) => Err((self, e)),
        }
    }

    /// Treats the port as the connection it became once a client took it
    /// (after a poll reported `OPENED` for it).
    pub fn into_connection(self) -> Connection {
        let c = Connection { handle: self.handle, _thread: PhantomData };
        core::mem::forget(self);
        c
    }
}

/// A server's listening ports: keeps ports on the calling thread's listen
/// queue and turns the one a client took into its connection. The serving
/// loop of every service and driver: `refill` before each wait, `accept`
/// on `OPENED`.
pub struct Listener {
    ports: BTreeMap<Handle, Port>,
}

impl Listener {
    /// No ports yet.
    pub const fn new() -> Listener {
        Listener { ports: BTreeMap::new() }
    }

    /// Tops the listen queue up to `count` ports. It stops early, without
    /// an error, when a port cannot be made or pushed (a limit of the
    /// caller's): the next call tries again.
    pub fn refill(&mut self, count: usize) {
        while self.ports.len() < count {
            let Ok(p) = Port::new() else { return };
            if p.listen().is_err() {
                return;
            }
            self.ports.insert(p.handle(), p);
        }
    }

    /// The connection a client made on `handle`, if `handle` is one of
    /// these ports (call on `OPENED`); the port leaves the listener.
    pub fn accept(&mut self, handle: Handle) -> Option<Connection> {
        self.ports.remove(&handle).map(Port::into_connection)
    }

    /// Withdraws and closes every port still queued, so that the next
    /// `refill` makes new ones, which take the kernel's lowest free end
    /// slots. A port a client has just taken (its `OPENED` not received
    /// yet) cannot be withdrawn, and stays.
    pub fn renew(&mut self) {
        self.ports.retain(|_, p| p.withdraw().is_err());
    }

    /// Ports listening now.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether no port is listening.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

impl Default for Listener {
    fn default() -> Listener {
        Listener::new()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        let _ = call(Sys::Close, [self.handle.raw(), 0, 0, 0, 0, 0]);
    }
}

/// One end of a connection, owned by the calling thread.
#[derive(Debug)]
pub struct Connection {
    handle: Handle,
    _thread: ThreadBound,
}

/// Connects to `task`, taking the oldest port of its listen queue. With a
/// timeout, waits that long for a port if none is queued (`None`: forever;
/// zero: not at all, failing with `NoPortAvailable`).
pub fn connect(task: TaskId, timeout: Option<Duration>) -> Result<Connection, Error> {
    let [h, ..] = call(Sys::Connect, [task.raw(), timeout_ns(timeout), 0, 0, 0, 0])?;
    Ok(Connection { handle: Handle::from_raw(h), _thread: PhantomData })
}

impl Connection {
    /// The end's handle (to match poll results).
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Overwrites this end's buffer (at most 32 bytes) without signalling.
    pub fn write(&self, data: &[u8]) -> Result<(), Error> {
        call(Sys::Write, [self.handle.raw(), data.as_ptr() as u64, data.len() as u64, 0, 0, 0])
            .map(|_| ())
    }

    /// Signals the peer: it sees `SIGNAL` at its next poll.
    pub fn signal(&self) -> Result<(), Error> {
        call(Sys::Signal, [self.handle.raw(), 0, 0, 0, 0, 0]).map(|_| ())
    }

    /// Writes and signals in one system call, the message travelling in
    /// registers (the fast path).
    pub fn send(&self, data: &[u8]) -> Result<(), Error> {
        if data.len() > MESSAGE_MAX {
            return Err(Error::MessageTooLong);
        }
        let [a, b, c, d] = pack_message(data);
        call(Sys::Send, [self.handle.raw(), data.len() as u64, a, b, c, d]).map(|_| ())
    }

    /// Writes and signals with the message read from memory (`WriteSignal`).
    pub fn write_signal(&self, data: &[u8]) -> Result<(), Error> {
        call(
            Sys::WriteSignal,
            [self.handle.raw(), data.as_ptr() as u64, data.len() as u64, 0, 0, 0],
        )
        .map(|_| ())
    }

    /// The peer's buffer as it is now.
    pub fn read(&self) -> Result<Message, Error> {
        let mut data = [0u8; MESSAGE_MAX];
        let [len, seq, ..] =
            call(Sys::Read, [self.handle.raw(), data.as_mut_ptr() as u64, 0, 0, 0, 0])?;
        Ok(Message { data, len: len as u8, seq })
    }

    /// What came with `opened` (the `Ready` [`Port::accept`] returned)
    /// besides the open itself, as `Receive` reports it, with the peer's
    /// buffer; `None` if the open came alone. See [`Port::accept`].
    pub fn after_open(&self, opened: &Ready) -> Result<Option<Received>, Error> {
        let events = Events::from_bits(opened.events.bits() & !Events::OPENED.bits())
            .unwrap_or(Events::NONE);
        if events.is_empty() {
            return Ok(None);
        }
        let m = self.read()?;
        Ok(Some(Received {
            handle: opened.handle,
            events,
            close_reason: opened.close_reason,
            peer_uid: opened.peer_uid,
            message: Message { data: m.data, len: m.len, seq: 0 },
        }))
    }

    /// Waits for an event on this end alone (`PollOne`: the handle in a
    /// register).
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Ready, Error> {
        ready(call(Sys::PollOne, [self.handle.raw(), timeout_ns(timeout), 0, 0, 0, 0])?)
    }

    /// Sends `data` and waits for the peer's answer: the common
    /// request/reply step.
    ///
    /// The answer is the first peer write after the request: a signal left
    /// over from earlier (say, a late answer to a call that timed out) is
    /// skipped, by the buffer's sequence number.
    pub fn call(&self, data: &[u8], timeout: Option<Duration>) -> Result<Message, Error> {
        let before = self.read()?.seq;
        self.send(data)?;
        loop {
            let r = self.wait(timeout)?;
            let m = self.read()?;
            if m.seq != before {
                return Ok(m);
            }
            if r.events.contains(Events::PEER_CLOSED) {
                return Err(Error::PeerClosed);
            }
        }
    }

    /// The connection's identity: ID, peer task and uid, state.
    pub fn info(&self) -> Result<ConnectionInfo, Error> {
        let mut info = ConnectionInfo::default();
        call(Sys::ConnectionInfo, [self.handle.raw(), &mut info as *mut _ as u64, 0, 0, 0, 0])?;
        Ok(info)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = call(Sys::Close, [self.handle.raw(), 0, 0, 0, 0, 0]);
    }
}

/// Waits for an event on one of `handles` (all of this thread).
pub fn poll(handles: &[Handle], timeout: Option<Duration>) -> Result<Ready, Error> {
    ready(call(
        Sys::Poll,
        [handles.as_ptr() as u64, handles.len() as u64, timeout_ns(timeout), 0, 0, 0],
    )?)
}

/// Waits for an event on any end of this thread and returns it with that
/// end's peer buffer, all in registers: a poll and a read in one call.
#[inline]
pub fn receive(timeout: Option<Duration>) -> Result<Received, Error> {
    let (rax, regs) = crate::sys::call_wide(Sys::Receive, [timeout_ns(timeout), 0, 0, 0, 0, 0]);
    received(rax, regs)
}

/// Decodes the six registers `Receive` and `SendReceive` return.
#[inline]
fn received(rax: u64, regs: [u64; 6]) -> Result<Received, Error> {
    if rax != 0 {
        return Err(Error::from_code(rax).unwrap_or(Error::UnknownSyscall));
    }
    Received::decode(regs).ok_or(Error::InvalidArgument)
}

/// Sends `data` on `conn` (write and signal), then waits without a time
/// limit for the next event on any end of this thread and returns it with
/// its peer buffer: one system call for a request/reply step.
#[inline]
pub fn send_receive(conn: &Connection, data: &[u8]) -> Result<Received, Error> {
    if data.len() > MESSAGE_MAX {
        return Err(Error::MessageTooLong);
    }
    let [w0, w1, w2, w3] = pack_message(data);
    let args = [conn.handle.raw(), data.len() as u64, w0, w1, w2, w3];
    let (rax, regs) = crate::sys::call_wide(Sys::SendReceive, args);
    received(rax, regs)
}

/// Waits for an event on any end of this thread.
pub fn poll_all(timeout: Option<Duration>) -> Result<Ready, Error> {
    ready(call(Sys::PollAll, [timeout_ns(timeout), 0, 0, 0, 0, 0])?)
}

/// A set of ends to poll together.
#[derive(Default)]
pub struct PollSet {
    handles: Vec<Handle>,
    _thread: ThreadBound,
}

impl PollSet {
    /// An empty set.
    pub fn new() -> Self {
        PollSet { handles: Vec::new(), _thread: PhantomData }
    }
    /// Adds an end.
    pub fn add(&mut self, handle: Handle) {
        self.handles.push(handle);
    }
    /// Removes an end.
    pub fn remove(&mut self, handle: Handle) {
        self.handles.retain(|h| *h != handle);
    }
    /// Waits for an event on one of the set's ends.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<Ready, Error> {
        poll(&self.handles, timeout)
    }
}

/// Allows or denies `uid` to connect to this task (all uids are allowed at
/// first).
pub fn set_connect_permission(uid: Uid, allow: bool) -> Result<(), Error> {
    call(Sys::SetConnectPermission, [uid as u64, allow as u64, 0, 0, 0, 0]).map(|_| ())
}

/// Opens an end whose far side is the kernel (privileged tasks only).
pub fn open_kernel_end(kind: u32) -> Result<Connection, Error> {
    let [h, ..] = call(Sys::KernelEndOpen, [kind as u64, 0, 0, 0, 0, 0])?;
    Ok(Connection { handle: Handle::from_raw(h), _thread: PhantomData })
}

/// The two ends of a live connection (privileged tasks only): how a
/// service checks that two tasks are really connected.
pub fn query_connection(conn_id: u64) -> Result<ConnectionEnds, Error> {
    let mut ends = ConnectionEnds::default();
    call(Sys::ConnectionQuery, [conn_id, &mut ends as *mut _ as u64, 0, 0, 0, 0])?;
    Ok(ends)
}
