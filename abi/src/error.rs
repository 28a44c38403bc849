//! The error codes every system call can answer with.
//!
//! Codes are stable ABI: never renumber a variant; add new ones at the end.

crate::code_enum! {
    /// Every failure a system call reports. `0` in `rax` means success, so codes
    /// start at 1.
    #[non_exhaustive]
    pub enum Error: u64 {
        /// The system call number is not one the kernel knows.
        UnknownSyscall = 1,
        /// A user pointer is null, non-canonical, in kernel space, unmapped,
        /// misaligned, or lacks the needed access (e.g. not writable).
        BadAddress = 2,
        /// An argument is out of its allowed range (a flag, a size, a length).
        InvalidArgument = 3,
        /// A handle names no object of this thread.
        BadHandle = 4,
        /// The handle's object existed once but is gone (generation mismatch).
        StaleHandle = 5,
        /// The handle belongs to another thread: all IPC is thread-local.
        WrongThread = 6,
        /// No live task has this ID (or the ID's generation is stale).
        NoSuchTask = 7,
        /// No live thread has this ID (or the ID's generation is stale).
        NoSuchThread = 8,
        /// The caller is not privileged and the call needs privilege.
        NotPrivileged = 9,
        /// The target task's permission bitmap denies the caller's uid.
        ConnectDenied = 10,
        /// The target task's listen queue is empty (non-blocking connect).
        NoPortAvailable = 11,
        /// A bounded queue (e.g. the listen queue) is full.
        QueueFull = 12,
        /// A per-thread, per-task or system-wide object limit was reached.
        LimitReached = 13,
        /// The kernel is out of physical frames or heap for this request.
        OutOfMemory = 14,
        /// The timeout passed before the awaited event happened.
        TimedOut = 15,
        /// The connection's peer end is closed.
        PeerClosed = 16,
        /// A message is longer than the 32-byte connection buffer.
        MessageTooLong = 17,
        /// The ELF image is malformed or not loadable.
        BadImage = 18,
        /// The end is a port that no client has connected to yet.
        NotConnected = 19,
        /// The port is already in its task's listen queue.
        AlreadyQueued = 20,
        /// The port is not in the listen queue (withdraw of an unqueued port).
        NotQueued = 21,
        /// The end is not of the right kind for this call (e.g. a connected end
        /// pushed to a listen queue).
        WrongKind = 22,
        /// The target task is the caller's own task.
        SelfConnect = 23,
        /// The object is busy: e.g. another wait of this thread is in progress.
        Busy = 24,
        /// No such connection ID exists.
        NoSuchConnection = 25,
        /// The resource (an I/O port range, device memory) belongs to the
        /// kernel or to another task.
        InUse = 26,
    }
}

impl Error {
    /// A short name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            Error::UnknownSyscall => "unknown system call",
            Error::BadAddress => "bad address",
            Error::InvalidArgument => "invalid argument",
            Error::BadHandle => "bad handle",
            Error::StaleHandle => "stale handle",
            Error::WrongThread => "handle of another thread",
            Error::NoSuchTask => "no such task",
            Error::NoSuchThread => "no such thread",
            Error::NotPrivileged => "not privileged",
            Error::ConnectDenied => "connect denied",
            Error::NoPortAvailable => "no port available",
            Error::QueueFull => "queue full",
            Error::LimitReached => "limit reached",
            Error::OutOfMemory => "out of memory",
            Error::TimedOut => "timed out",
            Error::PeerClosed => "peer closed",
            Error::MessageTooLong => "message too long",
            Error::BadImage => "bad image",
            Error::NotConnected => "not connected",
            Error::AlreadyQueued => "already queued",
            Error::NotQueued => "not queued",
            Error::WrongKind => "wrong kind of end",
            Error::SelfConnect => "connect to own task",
            Error::Busy => "busy",
            Error::NoSuchConnection => "no such connection",
            Error::InUse => "in use by the kernel or another task",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_dense() {
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.code(), i as u64 + 1);
            assert_eq!(Error::from_code(e.code()), Some(*e));
        }
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(Error::ALL.len() as u64 + 1), None);
    }
}
