//! The console's text buffer: a bounded ring of bytes waiting for the
//! serial port, with the rule that makes every line's author visible.
//!
//! It owns what the console prints and in which order. It must never touch
//! the port: the binary drains it a FIFO load at a time (`pop`), and it
//! never grows.
//!
//! The line rule: each line a task prints starts with `[task INDEX.GEN] `;
//! the kernel's lines carry no prefix (they begin `[kernel] ` by
//! convention), so no task can print a line that looks like the kernel's.
//! A task's unfinished line continues with its next print as long as no
//! one else printed in between; otherwise the other author's text first
//! ends that line, and the continuation starts a new, prefixed line.
//! Control characters in task text (other than `\n` and `\t`) become `?`,
//! so a carriage return or an escape sequence cannot hide the prefix on a
//! terminal. `\n` is stored as `\r\n`.

use alux_abi::TaskId;

/// Who wrote the line being printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The kernel.
    Kernel,
    /// A task.
    Task(TaskId),
}

/// The longest task prefix: `[task 65535.281474976710655] ` (16 index bits,
/// 48 generation bits).
pub const PREFIX_MAX: usize = 29;

/// What [`ConsoleBuffer::push_task`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queued {
    /// All of the text is queued.
    All,
    /// The first `done` bytes are queued (possibly none); the rest waits
    /// until at least `need` bytes of task room are free.
    Part {
        /// Bytes of the text queued.
        done: usize,
        /// Task room to wait for before trying again.
        need: usize,
    },
}

/// A ring of `N` bytes. The last `reserve` bytes of room are the kernel's:
/// task text never takes them, so kernel messages find room even while
/// tasks keep the console busy.
pub struct ConsoleBuffer<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
    reserve: usize,
    /// The author of the unfinished last line, if any.
    open: Option<Source>,
}

/// Writes the prefix of `task` into `out`; returns its length.
fn prefix(task: TaskId, out: &mut [u8; PREFIX_MAX]) -> usize {
    fn digits(mut v: u64, out: &mut [u8], at: &mut usize) {
        let mut tmp = [0u8; 20];
        let mut n = 0;
        loop {
            tmp[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            out[*at] = tmp[i];
            *at += 1;
        }
    }
    let mut at = 0;
    for &b in b"[task " {
        out[at] = b;
        at += 1;
    }
    digits(task.index() as u64, out, &mut at);
    out[at] = b'.';
    at += 1;
    digits(task.generation(), out, &mut at);
    out[at] = b']';
    out[at + 1] = b' ';
    at + 2
}

/// A task byte as printed.
fn sanitize(b: u8) -> u8 {
    if (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f {
        b'?'
    } else {
        b
    }
}

impl<const N: usize> ConsoleBuffer<N> {
    /// An empty buffer keeping `reserve` bytes for the kernel.
    pub const fn new(reserve: usize) -> Self {
        ConsoleBuffer { buf: [0; N], head: 0, len: 0, reserve, open: None }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most task text the buffer can hold.
    pub fn task_capacity(&self) -> usize {
        N - self.reserve
    }

    /// Room task text may use now.
    pub fn task_room(&self) -> usize {
        self.task_capacity().saturating_sub(self.len)
    }

    fn put(&mut self, b: u8) {
        debug_assert!(self.len < N);
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
    }

    fn put_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.put(b);
        }
    }

    /// Bytes byte `b` of `from` costs with the line in state `open`, and
    /// the state after it.
    fn cost(open: Option<Source>, from: Source, b: u8, prefix_len: usize) -> usize {
        let mut n = if b == b'\n' { 2 } else { 1 };
        if open != Some(from) {
            if open.is_some() {
                n += 2; // end the other author's line
            }
            if matches!(from, Source::Task(_)) {
                n += prefix_len;
            }
        }
        n
    }

    fn emit(&mut self, from: Source, b: u8, prefix: &[u8]) {
        if self.open != Some(from) {
            if self.open.is_some() {
                self.put_all(b"\r\n");
            }
            self.put_all(prefix);
            self.open = Some(from);
        }
        if b == b'\n' {
            self.put_all(b"\r\n");
            self.open = None;
        } else {
            self.put(b);
        }
    }

    /// Queues kernel text: as many bytes as fit in the whole buffer.
    /// Returns how many were queued; the caller drains and retries.
    pub fn push_kernel(&mut self, bytes: &[u8]) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            if self.len + Self::cost(self.open, Source::Kernel, b, 0) > N {
                return i;
            }
            self.emit(Source::Kernel, b, &[]);
        }
        bytes.len()
    }

    /// Queues a task's text. A text whose printed form fits in the task
    /// capacity is queued whole or not at all, so a short line is never
    /// split; a longer one (only possible with many line breaks, each
    /// prefixed) is queued as far as it fits.
    pub fn push_task(&mut self, task: TaskId, bytes: &[u8]) -> Queued {
        let mut pbuf = [0u8; PREFIX_MAX];
        let plen = prefix(task, &mut pbuf);
        let from = Source::Task(task);
        let mut open = self.open;
        let mut total = 0;
        for &b in bytes {
            let b = sanitize(b);
            total += Self::cost(open, from, b, plen);
            open = if b == b'\n' { None } else { Some(from) };
        }
        let room = self.task_room();
        if total <= room {
            for &b in bytes {
                self.emit(from, sanitize(b), &pbuf[..plen]);
            }
            return Queued::All;
        }
        if total <= self.task_capacity() {
            return Queued::Part { done: 0, need: total };
        }
        let mut done = 0;
        for &b in bytes {
            let b = sanitize(b);
            if Self::cost(self.open, from, b, plen) > self.task_room() {
                break;
            }
            self.emit(from, b, &pbuf[..plen]);
            done += 1;
        }
        Queued::Part { done, need: self.task_capacity() }
    }

    /// Takes up to `out.len()` bytes from the front; returns how many.
    pub fn pop(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        for o in out.iter_mut().take(n) {
            *o = self.buf[self.head];
            self.head = (self.head + 1) % N;
        }
        self.len -= n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn drain<const N: usize>(c: &mut ConsoleBuffer<N>) -> String {
        let mut out = Vec::new();
        let mut chunk = [0u8; 16];
        loop {
            let n = c.pop(&mut chunk);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    const T3: TaskId = TaskId::new(3, 1);
    const T4: TaskId = TaskId::new(4, 2);

    #[test]
    fn task_lines_are_prefixed_and_partial_lines_continue() {
        let mut c = ConsoleBuffer::<1024>::new(128);
        assert_eq!(c.push_task(T3, b"one\ntwo "), Queued::All);
        assert_eq!(c.push_task(T3, b"and more\n\n"), Queued::All);
        assert_eq!(drain(&mut c), "[task 3.1] one\r\n[task 3.1] two and more\r\n[task 3.1] \r\n");
    }

    #[test]
    fn a_task_cannot_forge_a_kernel_line() {
        let mut c = ConsoleBuffer::<1024>::new(128);
        c.push_task(T3, b"x\n[kernel] forged\r[kernel] again\x1b[2K\n");
        let out = drain(&mut c);
        for line in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(line.starts_with("[task 3.1] "), "{line:?}");
        }
        assert!(out.contains("[task 3.1] [kernel] forged?[kernel] again?[2K\r\n"));
    }

    #[test]
    fn other_authors_end_an_open_line() {
        let mut c = ConsoleBuffer::<1024>::new(128);
        c.push_task(T3, b"half");
        c.push_task(T4, b"other\n");
        c.push_task(T3, b" rest\n");
        c.push_task(T4, b"open");
        assert_eq!(c.push_kernel(b"[kernel] note\n"), 14);
        assert_eq!(
            drain(&mut c),
            "[task 3.1] half\r\n[task 4.2] other\r\n[task 3.1]  rest\r\n[task 4.2] open\r\n[kernel] note\r\n"
        );
    }

    #[test]
    fn task_text_is_whole_or_waits_and_leaves_the_reserve() {
        let mut c = ConsoleBuffer::<64>::new(16);
        assert_eq!(c.task_capacity(), 48);
        assert_eq!(c.push_task(T3, b"0123456789"), Queued::All); // 11 + 10
                                                                 // The line is still open: no second prefix; 28 bytes do not fit in 27.
        assert_eq!(
            c.push_task(T3, b"0123456789abcdefghijklmnopqr"),
            Queued::Part { done: 0, need: 28 }
        );
        assert_eq!(c.len(), 21);
        // The kernel may use the reserve: it ends the task's open line
        // (2 bytes), then 41 bytes fill the buffer; one more does not fit.
        assert_eq!(c.push_kernel(&[b'k'; 42]), 41);
        assert_eq!(c.len(), 64);
        let mut chunk = [0u8; 16];
        assert_eq!(c.pop(&mut chunk), 16);
        assert_eq!(&chunk[..], b"[task 3.1] 01234");
    }

    #[test]
    fn a_text_longer_than_the_task_capacity_goes_in_parts() {
        let mut c = ConsoleBuffer::<64>::new(16);
        // Each empty line costs 13 bytes: three fit in 48.
        let text = [b'\n'; 10];
        assert_eq!(c.push_task(T3, &text), Queued::Part { done: 3, need: 48 });
        assert_eq!(drain(&mut c), "[task 3.1] \r\n".repeat(3));
        assert_eq!(c.push_task(T3, &text[3..]), Queued::Part { done: 3, need: 48 });
    }

    #[test]
    fn the_ring_wraps_in_order() {
        let mut c = ConsoleBuffer::<32>::new(0);
        let mut all = String::new();
        for i in 0..20 {
            let line = alloc::format!("l{i}\n");
            assert_eq!(c.push_kernel(line.as_bytes()), line.len());
            all.push_str(&drain(&mut c));
        }
        let want: String = (0..20).map(|i| alloc::format!("l{i}\r\n")).collect();
        assert_eq!(all, want);
    }

    #[test]
    fn longest_prefix_fits() {
        let mut p = [0u8; PREFIX_MAX];
        assert_eq!(
            prefix(TaskId::new(alux_abi::ids::MAX_INDEX, alux_abi::ids::MAX_GENERATION), &mut p),
            PREFIX_MAX
        );
        assert_eq!(&p[..], b"[task 65535.281474976710655] ");
    }
}
