//! Tasks: exiting, and (for privileged tasks) spawning, waiting for and
//! killing other tasks.

use alux_abi::syscall::{task_flags, SpawnArgs, Sys, TaskEnd};
use alux_abi::{Error, TaskId, Uid};
use core::time::Duration;

/// Ends this task with `code`.
pub fn exit(code: u64) -> ! {
    let _ = crate::sys::call(Sys::TaskExit, [code, 0, 0, 0, 0, 0]);
    unreachable!("TaskExit returned")
}

/// How to start a task.
pub struct Spawn<'a> {
    /// The ELF image.
    pub image: &'a [u8],
    /// Arguments it receives.
    pub args: &'a [u8],
    /// Its uid.
    pub uid: Uid,
    /// Whether it is privileged.
    pub privileged: bool,
    /// Pages it may have from the memory daemon (0: the daemon's default).
    pub quota_pages: u64,
}

impl Spawn<'_> {
    /// Starts the task (privileged callers only).
    pub fn start(&self) -> Result<TaskId, Error> {
        let args = SpawnArgs {
            image_ptr: self.image.as_ptr() as u64,
            image_len: self.image.len() as u64,
            arg_ptr: self.args.as_ptr() as u64,
            arg_len: self.args.len() as u64,
            uid: self.uid as u32,
            flags: if self.privileged { task_flags::PRIVILEGED } else { 0 },
            quota_pages: self.quota_pages,
        };
        let [id, ..] = crate::sys::call(Sys::Spawn, [&args as *const _ as u64, 0, 0, 0, 0, 0])?;
        Ok(TaskId::from_raw(id))
    }
}

/// Waits for a child (or, privileged, any task) to end; `None` waits
/// forever.
pub fn wait(task: TaskId, timeout: Option<Duration>) -> Result<TaskEnd, Error> {
    let [kind, detail, ..] = crate::sys::call(
        Sys::TaskWait,
        [task.raw(), crate::time::timeout_ns(timeout), 0, 0, 0, 0],
    )?;
    TaskEnd::decode(kind, detail).ok_or(Error::InvalidArgument)
}

/// Kills a child (or, privileged, any task).
pub fn kill(task: TaskId) -> Result<(), Error> {
    crate::sys::call(Sys::TaskKill, [task.raw(), 0, 0, 0, 0, 0]).map(|_| ())
}

/// Finds a file in a tar archive (the boot module).
pub fn find_file<'a>(archive: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let archive = tar_no_std::TarArchiveRef::new(archive).ok()?;
    archive.entries().find(|e| e.filename().as_str().ok() == Some(name)).map(|e| e.data())
}
