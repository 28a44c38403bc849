//! Benchmarks of the IPC fast paths (`cargo bench -p alux-ipc`).
//!
//! - `signal_poll`: the peer signals one end, its owner's `poll_all` returns
//!   it, with the owner holding 1, 100 or 10,000 connected ends (the cost
//!   must stay flat: ready lists, not scans);
//! - `signal_wakes_parked_poller`: the owner is parked in `poll_all`, a
//!   signal wakes it, the kernel takes the wakeup;
//! - `poll_set_one_ready`: an explicit poll of a 1- or 64-handle set (this
//!   one is O(set size) by design);
//! - `connect_close`: port create + push, connect, close both ends, drain the
//!   events.

use alux_abi::{TaskId, ThreadId};
use alux_ipc::{Deadline, Handle, Ipc, Limits, Outcome};
use divan::{black_box, Bencher};

fn main() {
    divan::main();
}

const SERVER: ThreadId = ThreadId::new(0, 1);
const CLIENT: ThreadId = ThreadId::new(1, 1);
const SERVER_TASK: TaskId = TaskId::new(0, 1);
const CLIENT_TASK: TaskId = TaskId::new(1, 1);

/// A server thread holding `n` connected ends (OPENED already consumed), and
/// the client thread holding their peers: `(ipc, server ends, client ends)`.
fn world(n: usize) -> (Ipc, Vec<Handle>, Vec<Handle>) {
    let mut ipc = Ipc::new(Limits {
        ends_per_thread: n + 8,
        ends_per_task: n + 8,
        total_ends: 2 * n + 16,
        ends_reserved: 0,
        ends_per_uid: 2 * n + 16,
        ..Limits::default()
    });
    ipc.add_task(SERVER_TASK, 1, false).unwrap();
    ipc.add_task(CLIENT_TASK, 2, false).unwrap();
    ipc.add_thread(SERVER, SERVER_TASK).unwrap();
    ipc.add_thread(CLIENT, CLIENT_TASK).unwrap();
    let (mut s, mut c) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let p = ipc.port_create(SERVER).unwrap();
        ipc.listen_push(SERVER, p).unwrap();
        let Ok(Outcome::Done(h)) = ipc.connect(CLIENT, SERVER_TASK, Deadline::Now) else {
            panic!("connect")
        };
        ipc.poll_all(SERVER, Deadline::Now).unwrap();
        s.push(p);
        c.push(h);
    }
    (ipc, s, c)
}

#[divan::bench(args = [1, 100, 10_000])]
fn signal_poll(bencher: Bencher, n: usize) {
    let (mut ipc, _, c) = world(n);
    let hot = c[n / 2];
    bencher.bench_local(|| {
        ipc.signal(CLIENT, black_box(hot)).unwrap();
        black_box(ipc.poll_all(SERVER, Deadline::Now).unwrap());
    });
}

#[divan::bench(args = [1, 100, 10_000])]
fn signal_wakes_parked_poller(bencher: Bencher, n: usize) {
    let (mut ipc, _, c) = world(n);
    let hot = c[n / 2];
    bencher.bench_local(|| {
        ipc.poll_all(SERVER, Deadline::Never).unwrap();
        ipc.write_signal(CLIENT, black_box(hot), b"ping").unwrap();
        black_box(ipc.take_wakeup().unwrap());
    });
}

#[divan::bench(args = [1, 64])]
fn poll_set_one_ready(bencher: Bencher, n: usize) {
    let (mut ipc, s, c) = world(n);
    let hot = c[n - 1];
    bencher.bench_local(|| {
        ipc.signal(CLIENT, black_box(hot)).unwrap();
        black_box(ipc.poll(SERVER, &s, Deadline::Now).unwrap());
    });
}

#[divan::bench(args = [1, 10_000])]
fn connect_close(bencher: Bencher, n: usize) {
    let (mut ipc, _, _) = world(n);
    bencher.bench_local(|| {
        let p = ipc.port_create(SERVER).unwrap();
        ipc.listen_push(SERVER, p).unwrap();
        let Ok(Outcome::Done(h)) = ipc.connect(CLIENT, SERVER_TASK, Deadline::Now) else {
            panic!("connect")
        };
        ipc.close(CLIENT, h).unwrap();
        black_box(ipc.poll_all(SERVER, Deadline::Now).unwrap());
        ipc.close(SERVER, p).unwrap();
    });
}
