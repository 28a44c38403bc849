//! An exhaustive search of the interleavings of one writer and one reader
//! over a tiny ring, with the crate's own `Writer` and `Reader` running in
//! two threads that a scheduler lets take one shared-memory step at a time.
//!
//! Every load or store of a header field is a step; the scheduler chooses
//! which thread takes the next one, and a depth-first search over these
//! choices visits every interleaving. Between steps a thread does only
//! private work and data copies (the data a side copies is its own by the
//! protocol). A thread told to wait sleeps until its peer signals it; a
//! signal is a pending bit, as on a basic IPC connection (signals before
//! a poll are seen as one). The model is sequentially consistent, which
//! is what the ring's fences give on hardware.
//!
//! A sleep set (Godefroid's partial-order reduction) skips runs that
//! differ from an explored one only in the order of two independent
//! steps: accesses to different fields, or two loads. Signals commute
//! with the peer's steps (a signal only sets a pending bit, and a sleep
//! ends the same way whether the bit was set before or after it began),
//! so a step's signal does not make it dependent.
//!
//! Each interleaving must end with every byte (or record) delivered in
//! order. A run that stops with a side asleep and nobody left to wake it
//! is a lost wake-up, reported with its schedule.

use super::VecMem;
use crate::*;
use std::format;
use std::string::String;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::vec::Vec;

const WRITER: usize = 0;
const READER: usize = 1;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    /// Between steps, or woken and not yet at its next step.
    Running,
    /// Waiting for its turn to take a step.
    AtStep,
    /// Waiting for a signal.
    Sleeping,
    Done,
}

struct State {
    status: [Status; 2],
    /// The header access each thread at a step is about to make: its
    /// offset, and whether it is a store.
    next: [(usize, bool); 2],
    turn: Option<usize>,
    pending: [bool; 2],
    /// Set when the run is over (a lost wake-up): sleepers give up and
    /// steps are no longer scheduled.
    abort: bool,
}

struct Sched {
    state: Mutex<State>,
    cv: Condvar,
}

impl Sched {
    fn new() -> Sched {
        Sched {
            state: Mutex::new(State {
                status: [Status::Running; 2],
                next: [(0, false); 2],
                turn: None,
                pending: [false; 2],
                abort: false,
            }),
            cv: Condvar::new(),
        }
    }

    /// Thread `me` is about to touch a header field: wait for its turn.
    fn step(&self, me: usize, offset: usize, store: bool) {
        let mut s = self.state.lock().unwrap();
        s.status[me] = Status::AtStep;
        s.next[me] = (offset, store);
        self.cv.notify_all();
        while s.turn != Some(me) && !s.abort {
            s = self.cv.wait(s).unwrap();
        }
        if s.turn == Some(me) {
            s.turn = None;
        }
        s.status[me] = Status::Running;
    }

    fn signal(&self, to: usize) {
        let mut s = self.state.lock().unwrap();
        s.pending[to] = true;
        if s.status[to] == Status::Sleeping {
            s.status[to] = Status::Running;
        }
        self.cv.notify_all();
    }

    /// Waits for a signal; false if the run was abandoned.
    fn sleep(&self, me: usize) -> bool {
        let mut s = self.state.lock().unwrap();
        loop {
            if s.pending[me] {
                s.pending[me] = false;
                s.status[me] = Status::Running;
                return true;
            }
            if s.abort {
                return false;
            }
            s.status[me] = Status::Sleeping;
            self.cv.notify_all();
            s = self.cv.wait(s).unwrap();
        }
    }

    fn done(&self, me: usize) {
        let mut s = self.state.lock().unwrap();
        s.status[me] = Status::Done;
        self.cv.notify_all();
    }
}

/// Marks its thread done however the thread ends (a panic included), so
/// the scheduler never waits for a dead thread; the thread's buffered
/// stores drain first (a task's stores are visible once it exits).
struct DoneGuard<'a>(&'a StepMem<'a>);

impl Drop for DoneGuard<'_> {
    fn drop(&mut self) {
        self.0.drain();
        self.0.sched.done(self.0.me);
    }
}

/// The region as one thread sees it: each header access waits for the
/// scheduler. `lose_reader_wait` drops the reader's stores to its wait
/// field, a broken protocol the search must catch.
///
/// With `store_buffer`, the thread's stores wait in a buffer of its own
/// (its loads see them, the peer does not) until a fence, a sleep or the
/// thread's end drains them, each drained store being a step: the
/// reordering x86 allows, at its latest. `ignore_fences` makes the fence
/// drain nothing, a ring without fences the search must catch.
struct StepMem<'a> {
    mem: &'a VecMem,
    sched: &'a Sched,
    me: usize,
    lose_reader_wait: bool,
    store_buffer: bool,
    ignore_fences: bool,
    buffered: Mutex<Vec<(usize, u64)>>,
}

impl StepMem<'_> {
    /// Makes the buffered stores visible, oldest first.
    fn drain(&self) {
        let stores: Vec<(usize, u64)> = self.buffered.lock().unwrap().drain(..).collect();
        for (offset, v) in stores {
            self.publish(offset, v);
        }
    }

    fn publish(&self, offset: usize, v: u64) {
        self.sched.step(self.me, offset, true);
        if !(self.lose_reader_wait && offset == READER_WAIT) {
            self.mem.store_u64(offset, v)
        }
    }
}

impl SharedMem for StepMem<'_> {
    fn len(&self) -> usize {
        self.mem.len()
    }
    fn load_u64(&self, offset: usize) -> u64 {
        self.sched.step(self.me, offset, false);
        let own = self.buffered.lock().unwrap().iter().rev().find(|s| s.0 == offset).copied();
        own.map_or_else(|| self.mem.load_u64(offset), |s| s.1)
    }
    fn store_u64(&self, offset: usize, v: u64) {
        if self.store_buffer {
            self.buffered.lock().unwrap().push((offset, v));
        } else {
            self.publish(offset, v);
        }
    }
    fn fence(&self) {
        if !self.ignore_fences {
            self.drain();
        }
    }
    fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        self.mem.read_bytes(offset, out)
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        self.mem.write_bytes(offset, data)
    }
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    cap: usize,
    /// Bytes streamed, or records sent.
    total: usize,
    /// Bytes per write, or per record.
    chunk: usize,
    /// Bytes per read (stream only).
    read_chunk: usize,
    messages: bool,
    lose_reader_wait: bool,
    store_buffer: bool,
    ignore_fences: bool,
}

fn payload(sc: &Scenario) -> Vec<u8> {
    let bytes = if sc.messages { sc.total * sc.chunk } else { sc.total };
    (0..bytes).map(|i| i as u8 + 1).collect()
}

/// Waits for a signal (a system call: the thread's stores drain first);
/// false if the run was abandoned.
fn sleep(mem: &StepMem, sched: &Sched) -> bool {
    mem.drain();
    sched.sleep(mem.me)
}

fn writer(mem: &StepMem, sched: &Sched, sc: &Scenario) -> Result<(), String> {
    let _guard = DoneGuard(mem);
    let data = payload(sc);
    let mut w = Writer::new(mem.len()).unwrap();
    let mut sent = 0;
    while sent < data.len() {
        let chunk = &data[sent..(sent + sc.chunk).min(data.len())];
        let out = if sc.messages { w.send(mem, chunk) } else { w.write(mem, chunk) };
        let out = out.map_err(|e| format!("writer: {e:?}"))?;
        if out.must_signal {
            sched.signal(READER);
        }
        if out.must_wait && !sleep(mem, sched) {
            return Ok(());
        }
        sent += out.written;
    }
    Ok(())
}

fn reader(mem: &StepMem, sched: &Sched, sc: &Scenario) -> Result<Vec<u8>, String> {
    let _guard = DoneGuard(mem);
    let want = payload(sc).len();
    let mut r = Reader::new(mem.len()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < want {
        let out = if sc.messages {
            r.recv(mem, &mut buf)
        } else {
            r.read(mem, &mut buf[..sc.read_chunk])
        };
        let out = out.map_err(|e| format!("reader: {e:?}"))?;
        if sc.messages && !out.must_wait && out.n != sc.chunk {
            return Err(format!("reader: a record of {} bytes", out.n));
        }
        got.extend_from_slice(&buf[..out.n]);
        if out.must_signal_writer {
            sched.signal(WRITER);
        }
        if out.must_wait && !sleep(mem, sched) {
            break;
        }
    }
    Ok(got)
}

/// The choices one run made: (index taken, number of threads ready).
type Choices = Vec<(usize, usize)>;

/// Runs one interleaving, following `prefix` and then always the first
/// ready thread.
fn run_once(prefix: &[usize], sc: &Scenario) -> (Choices, Result<(), String>) {
    let mem = VecMem::new(HEADER_SIZE + sc.cap);
    let sched = Sched::new();
    let side = |me| StepMem {
        mem: &mem,
        sched: &sched,
        me,
        lose_reader_wait: sc.lose_reader_wait,
        store_buffer: sc.store_buffer,
        ignore_fences: sc.ignore_fences,
        buffered: Mutex::new(Vec::new()),
    };
    let (wmem, rmem) = (side(WRITER), side(READER));
    let mut choices = Vec::new();
    // The sleep set: threads whose next step the search has already
    // explored from an equivalent state.
    let mut asleep = [false; 2];
    let (end, wres, rres) = thread::scope(|scope| {
        let w = scope.spawn(|| writer(&wmem, &sched, sc));
        let r = scope.spawn(|| reader(&rmem, &sched, sc));
        let end = loop {
            let mut s = sched.state.lock().unwrap();
            while s.status.contains(&Status::Running) {
                s = sched.cv.wait(s).unwrap();
            }
            let at_step: Vec<usize> = (0..2).filter(|&t| s.status[t] == Status::AtStep).collect();
            let ready: Vec<usize> = at_step.iter().copied().filter(|&t| !asleep[t]).collect();
            if ready.is_empty() {
                let end = if !at_step.is_empty() {
                    End::Pruned
                } else if s.status != [Status::Done; 2] {
                    End::Stuck(format!("lost wake-up: {:?}", s.status))
                } else {
                    End::Finished
                };
                s.abort = true;
                sched.cv.notify_all();
                break end;
            }
            let pick = if ready.len() > 1 {
                let c = prefix.get(choices.len()).copied().unwrap_or(0);
                choices.push((c, ready.len()));
                c
            } else {
                0
            };
            let t = ready[pick];
            // The alternatives explored before this one go to sleep, and
            // a sleeping thread wakes when a step conflicts with its own.
            for &u in &ready[..pick] {
                asleep[u] = true;
            }
            for (u, sleeping) in asleep.iter_mut().enumerate() {
                if u != t && *sleeping && !independent(s.next[u], s.next[t]) {
                    *sleeping = false;
                }
            }
            s.status[t] = Status::Running;
            s.turn = Some(t);
            sched.cv.notify_all();
        };
        (end, w.join().unwrap(), r.join().unwrap())
    });
    let outcome = match (end, wres, rres) {
        (End::Pruned, _, _) => Ok(()),
        (End::Stuck(e), _, _) | (End::Finished, Err(e), _) | (End::Finished, _, Err(e)) => Err(e),
        (End::Finished, Ok(()), Ok(got)) if got != payload(sc) => Err(format!("delivered {got:?}")),
        (End::Finished, Ok(()), Ok(_)) => Ok(()),
    };
    (choices, outcome)
}

/// How a run ended.
enum End {
    /// Both threads finished.
    Finished,
    /// A thread sleeps and no one is left to wake it.
    Stuck(String),
    /// Every thread that could step is in the sleep set: an equivalent
    /// run was explored already.
    Pruned,
}

/// Two header accesses commute unless they touch the same field and one
/// of them stores.
fn independent(a: (usize, bool), b: (usize, bool)) -> bool {
    a.0 != b.0 || (!a.1 && !b.1)
}

/// Visits every interleaving; returns how many, or the first failure with
/// its schedule.
fn explore(sc: Scenario) -> Result<usize, String> {
    let mut prefix = Vec::new();
    let mut runs = 0;
    loop {
        let (mut choices, outcome) = run_once(&prefix, &sc);
        runs += 1;
        if let Err(e) = outcome {
            let schedule: Vec<usize> = choices.iter().map(|c| c.0).collect();
            return Err(format!("{sc:?}: run {runs}, schedule {schedule:?}: {e}"));
        }
        loop {
            match choices.pop() {
                None => return Ok(runs),
                Some((c, n)) if c + 1 < n => {
                    choices.push((c + 1, n));
                    break;
                }
                Some(_) => {}
            }
        }
        prefix = choices.iter().map(|c| c.0).collect();
    }
}

const BASE: Scenario = Scenario {
    cap: 2,
    total: 3,
    chunk: 2,
    read_chunk: 1,
    messages: false,
    lose_reader_wait: false,
    store_buffer: false,
    ignore_fences: false,
};

#[test]
fn stream_loses_no_wake_up_in_any_interleaving() {
    let runs = explore(BASE).unwrap();
    // Both sides wait in some of them: the search is not trivial.
    assert!(runs > 100, "only {runs} interleavings");
    std::eprintln!("stream: {runs} interleavings");
}

#[test]
fn a_full_ring_loses_no_wake_up_in_any_interleaving() {
    let sc = Scenario { cap: 1, total: 2, chunk: 1, ..BASE };
    let runs = explore(sc).unwrap();
    std::eprintln!("full ring: {runs} interleavings");
}

#[test]
fn messages_lose_no_wake_up_in_any_interleaving() {
    let sc = Scenario { cap: 5, total: 2, chunk: 1, messages: true, ..BASE };
    let runs = explore(sc).unwrap();
    std::eprintln!("messages: {runs} interleavings");
}

#[test]
fn the_search_finds_a_lost_wake_up_when_the_reader_wait_is_lost() {
    let sc = Scenario { cap: 2, total: 1, chunk: 1, lose_reader_wait: true, ..BASE };
    let err = explore(sc).unwrap_err();
    assert!(err.contains("lost wake-up"), "{err}");
}

#[test]
fn store_buffers_lose_no_wake_up_with_the_fences() {
    let sc = Scenario { cap: 2, total: 2, chunk: 1, store_buffer: true, ..BASE };
    let runs = explore(sc).unwrap();
    std::eprintln!("store buffers: {runs} interleavings");
}

#[test]
fn store_buffers_lose_a_wake_up_without_the_fences() {
    let sc =
        Scenario { cap: 2, total: 1, chunk: 1, store_buffer: true, ignore_fences: true, ..BASE };
    let err = explore(sc).unwrap_err();
    assert!(err.contains("lost wake-up"), "{err}");
}
