//! The kernel's state behind the one kernel lock, and the scheduler: a
//! round-robin run queue with time slices, and a general blocking interface
//! — a thread blocks on one [`Wait`] until it is woken with a result or its
//! deadline passes.
//!
//! It owns which thread runs. It must never touch user memory or hardware
//! beyond loading a thread's context and address space.

use crate::arch::context::{Context, Regs};
use crate::arch::gdt::MAX_CPUS;
use crate::arch::{cpu, entry, lapic, smp, time};
use crate::mm::AddressSpace;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use alux_abi::syscall::TaskEnd;
use alux_abi::{TaskId, ThreadId, Uid};
use alux_ipc::quota::{Pool, Shares};
use alux_ipc::Ipc;
use kernel::frame::FrameAllocator;
use kernel::syscall::SysResult;
use kernel::table::{GenTable, Key};
use kernel::timers::TimerSet;
use spin::{Mutex, MutexGuard, Once};

/// Time slice of a thread, in nanoseconds.
pub const TIME_SLICE_NS: u64 = 10_000_000;
/// Run-queue capacity kept when it empties (more is given back).
const RUN_QUEUE_KEPT: usize = 4;
/// Most live tasks (zombies included).
pub const MAX_TASKS: usize = 256;
/// Most live threads.
pub const MAX_THREADS: usize = 2048;
/// Most threads in one task.
pub const MAX_THREADS_PER_TASK: usize = 256;
/// Most user pages one task may have mapped (64 MiB).
pub const MAX_PAGES_PER_TASK: usize = 16 * 1024;

/// What a blocked thread waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Only its deadline.
    Sleep,
    /// Another thread of its task to end.
    Join(ThreadId),
    /// A task to end.
    Task(TaskId),
    /// An IPC event; the IPC core completes the wait.
    Ipc,
    /// An IPC event for `Receive`, which also reads the peer's buffer.
    IpcReceive,
    /// Room in the console buffer, to run its `DebugPrint` again.
    Console,
    /// The pager, to settle a fault at `addr` (met by the CPU, or by the
    /// kernel during a system call, which then runs again).
    PageFault {
        /// The page or address touched.
        addr: u64,
        /// Met by a system call, not the CPU.
        syscall: bool,
    },
    /// The pager, to fill a task this thread's `Spawn` created.
    Spawn(TaskId),
}

/// A thread's scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// In the run queue.
    Ready,
    /// The current thread.
    Running,
    /// Waiting; not in the run queue.
    Blocked(Wait),
}

/// A thread.
pub struct Thread {
    /// Its ID.
    pub id: ThreadId,
    /// Its task.
    pub task: TaskId,
    /// Saved user state.
    pub ctx: Box<Context>,
    /// Scheduling state.
    pub state: ThreadState,
    /// Absolute TSC deadline of its wait, if any.
    pub deadline: Option<u64>,
    /// Its state was saved by `syscall`, so it may leave through `sysretq`.
    pub from_syscall: bool,
    /// Its task's page-table root (for CR3), copied here for the switch path.
    pub root: u64,
    /// Its task has I/O ports granted (copied here for the switch path).
    pub io: bool,
    /// Its task's uid and `task_flags` (fixed for the task's life), copied
    /// here for the per-CPU identity (`entry::set_current_identity`).
    pub uid: Uid,
    /// See `uid`.
    pub task_flags: u32,
    /// The CPU where it runs (or ran last), whose run queue it joins when
    /// it becomes ready (a ready thread is in this CPU's queue or hand-off
    /// slot). A running thread pinned elsewhere (`ThreadSetCpu`) already
    /// names its new CPU here; it leaves at its CPU's next dispatch.
    pub cpu: usize,
    /// It runs only on `cpu` (`ThreadSetCpu`).
    pub pinned: bool,
}

impl Thread {
    /// Whether its saved state may leave through `sysretq`: it was saved
    /// by `syscall` (so `rcx`/`r11` carry nothing the thread needs) and its
    /// return address is canonical.
    pub fn may_sysret(&self) -> bool {
        self.from_syscall && self.ctx.regs.rip < kernel::syscall::USER_POINTER_END
    }
}

/// A task: an address space, its threads, and who it is.
pub struct Task {
    /// Its ID.
    pub id: TaskId,
    /// Its user ID.
    pub uid: Uid,
    /// Whether it may use privileged calls.
    pub privileged: bool,
    /// The task that spawned it, while that one lives.
    pub parent: Option<TaskId>,
    /// Its memory; `None` once it has ended (a zombie awaiting its parent).
    pub space: Option<AddressSpace>,
    /// Its live threads.
    pub threads: Vec<ThreadId>,
    /// How it ended, once it has.
    pub end: Option<TaskEnd>,
    /// Next free address for `MemMap`.
    pub next_map: u64,
    /// User pages it has mapped.
    pub pages: usize,
    /// Its I/O permission bitmap, once it was granted ports.
    pub io_ports: Option<kernel::claims::IoBitmap>,
    /// Frames charged to the page pool for it: its pages and its page
    /// tables, root included (`Kernel::pages`).
    pub charged: usize,
    /// Its memory comes from the pager (memd), not the kernel.
    pub paged: bool,
    /// The spawn the pager is filling it for, until it starts.
    pub spawn: Option<crate::pager::PendingSpawn>,
}

/// One CPU's scheduling state, under the kernel lock like the rest. 128
/// bytes, so that finding this CPU's is one shift.
#[repr(align(128))]
pub struct CpuSched {
    /// The thread on this CPU (its state is `Running`), if any.
    current: Option<ThreadId>,
    run_queue: VecDeque<ThreadId>,
    /// A thread handed a message directly: it runs next here (see
    /// `hand_off`).
    handoff: Option<ThreadId>,
    slice_end: u64,
    /// The deadline the timer is armed for (0: none).
    armed: u64,
    /// The run queue or the timers changed since the timer was last armed.
    timer_dirty: bool,
    loaded_root: u64,
    /// The task whose I/O bitmap is switched on in this CPU's TSS, if any.
    io_active: Option<TaskId>,
    /// The task whose I/O bitmap this CPU's TSS holds (on or off), if any.
    io_loaded: Option<TaskId>,
    /// Halted in `dispatch` (the lock released) until an interrupt.
    idle: bool,
}

const _: () = assert!(core::mem::size_of::<CpuSched>() == 128);

impl CpuSched {
    fn new(kernel_root: u64) -> Self {
        CpuSched {
            current: None,
            run_queue: VecDeque::new(),
            handoff: None,
            slice_end: 0,
            armed: 0,
            timer_dirty: false,
            loaded_root: kernel_root,
            io_active: None,
            io_loaded: None,
            idle: false,
        }
    }
}

/// Everything the kernel knows, guarded by the kernel lock.
pub struct Kernel {
    /// Physical frames.
    pub frames: FrameAllocator,
    /// Tasks.
    pub tasks: GenTable<Task>,
    /// Threads.
    pub threads: GenTable<Thread>,
    /// The IPC object model.
    pub ipc: Ipc,
    /// Interrupt lines handed to drivers.
    pub irq: crate::irq_glue::Irqs,
    /// Task records (zombies and retired slots included) per uid, with the
    /// privileged reserve (`docs/decisions.md`, "Shares of the global
    /// tables").
    pub task_pool: Pool,
    /// Threads (and retired thread slots) per uid.
    pub thread_pool: Pool,
    /// Frames of task memory (pages and page tables) per uid.
    pub page_pool: Pool,
    /// Each CPU's scheduling state, by CPU index (`online` of them used).
    cpus: [CpuSched; MAX_CPUS],
    /// CPUs that run threads (the boot CPU and the APs that came up).
    online: usize,
    timers: TimerSet<u64, ThreadId>,
    slice_ticks: u64,
    /// I/O port claims: which task may use which ports.
    pub ports: kernel::claims::Claims<TaskId>,
    /// Device memory claims: which task has mapped which physical range.
    pub mmio: kernel::claims::Claims<TaskId>,
    /// PCI functions claimed by their drivers (`bus << 8 | dev << 3 | fn`).
    pub devices: kernel::claims::Claims<TaskId>,
    /// Frames drivers have handed to devices (DMA pins).
    pub pins: kernel::pins::Pins<TaskId>,
    /// The kernel's own PML4 (its upper half is in every address space).
    pub kernel_root: u64,
    /// The boot module's physical range, mapped (not owned) into init.
    pub boot_module: (u64, u64),
    /// The memory daemon, once it attached.
    pub pager: Option<crate::pager::Pager>,
    /// Frames its pool gets when it attaches.
    pub pool_frames: u64,
    /// The first task: when it ends, the machine stops.
    pub init: Option<TaskId>,
    /// Timer interrupts so far.
    pub ticks: u64,
    /// Context switches so far.
    pub switches: u64,
}

static KERNEL: Once<Mutex<Kernel>> = Once::new();

/// TSC ticks spent idle in `dispatch` (`KernelStats::idle_tsc`).
pub static IDLE_TSC: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Installs the kernel state. Called once at boot.
pub fn install(k: Kernel) {
    KERNEL.call_once(|| Mutex::new(k));
}

/// The kernel lock, held.
pub type KernelGuard = MutexGuard<'static, Kernel>;

/// Takes the kernel lock. While another CPU holds it, this one answers
/// that CPU's requests (`smp::answer`: a TLB flush, leaving an address
/// space, stopping its thread), which the holder may be waiting for.
#[inline]
pub fn lock() -> MutexGuard<'static, Kernel> {
    let Some(m) = KERNEL.get() else {
        crate::fatal(format_args!("kernel entered before initialisation"))
    };
    match m.try_lock() {
        Some(k) => k,
        None => lock_contended(m),
    }
}

/// [`lock`] while another CPU holds it: spin, answering its requests.
#[cold]
#[inline(never)]
fn lock_contended(m: &'static Mutex<Kernel>) -> MutexGuard<'static, Kernel> {
    loop {
        smp::answer();
        core::hint::spin_loop();
        if let Some(k) = m.try_lock() {
            return k;
        }
    }
}

/// A started AP's entry into the scheduler (called by `arch::smp` once the
/// CPU is set up): it waits for the kernel state, then runs threads like
/// every CPU. Never returns.
#[no_mangle]
extern "C" fn ap_ready() -> ! {
    while KERNEL.get().is_none() {
        core::hint::spin_loop();
    }
    dispatch(lock());
    entry::enter_user()
}

/// Writes a call's result into saved registers (`rax, rdi, rsi, rdx, r10`).
pub fn write_result(r: &mut Regs, result: SysResult) {
    let [rax, rdi, rsi, rdx, r10] = kernel::syscall::encode(result);
    (r.rax, r.rdi, r.rsi, r.rdx, r.r10) = (rax, rdi, rsi, rdx, r10);
}

/// Writes `Receive`'s result (`rax, rdi, rsi, rdx, r10, r8, r9`).
pub fn write_wide_result(r: &mut Regs, result: kernel::syscall::WideResult) {
    let [rax, rdi, rsi, rdx, r10, r8, r9] = kernel::syscall::encode_wide(result);
    (r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (rax, rdi, rsi, rdx, r10, r8, r9);
}

/// Removes a timer. The set's room (one entry per live thread, reserved
/// when a thread is created) is kept; `Kernel::trim_run_queue` gives it
/// back with the threads.
fn remove_timer(timers: &mut TimerSet<u64, ThreadId>, deadline: u64, id: ThreadId) {
    timers.remove(deadline, id);
}

fn key_of_thread(id: ThreadId) -> Key {
    Key { index: id.index(), generation: id.generation() }
}

fn key_of_task(id: TaskId) -> Key {
    Key { index: id.index(), generation: id.generation() }
}

/// The page pool's bounds for `frames` frames of RAM: a quarter reserved
/// for privileged tasks, and a quarter per uid (at least one task's cap,
/// when the machine has room for it).
pub fn page_shares(frames: usize) -> Shares {
    let reserve = frames / 4;
    let per_uid = (frames / 4).max(MAX_PAGES_PER_TASK.min(frames - reserve));
    Shares { total: frames, reserve, per_uid }
}

/// Converts a relative timeout in nanoseconds to an absolute TSC deadline.
pub fn deadline_after(ns: u64) -> u64 {
    let ticks = time::ns_to_tsc(ns).min(u64::MAX as u128 / 2) as u64;
    cpu::rdtsc().saturating_add(ticks)
}

impl Kernel {
    /// A kernel with no tasks.
    pub fn new(
        frames: FrameAllocator,
        ipc: Ipc,
        irq: crate::irq_glue::Irqs,
        device_memory_forbidden: Vec<kernel::claims::Range>,
        kernel_root: u64,
        boot_module: (u64, u64),
    ) -> Self {
        let frame_count = frames.free_count();
        Kernel {
            frames,
            tasks: GenTable::new(MAX_TASKS),
            threads: GenTable::new(MAX_THREADS),
            ipc,
            irq,
            task_pool: Pool::new(Shares::split(MAX_TASKS)),
            thread_pool: Pool::new(Shares::split(MAX_THREADS)),
            page_pool: Pool::new(page_shares(frame_count)),
            cpus: core::array::from_fn(|_| CpuSched::new(kernel_root)),
            online: smp::online(),
            timers: TimerSet::new(),
            slice_ticks: (TIME_SLICE_NS as u128 * time::tsc_hz() as u128 / 1_000_000_000) as u64,
            ports: kernel::claims::Claims::new(crate::devices::kernel_ports()),
            mmio: kernel::claims::Claims::new(device_memory_forbidden),
            devices: kernel::claims::Claims::new(Vec::new()),
            pins: kernel::pins::Pins::new(),
            pager: None,
            pool_frames: crate::pager::default_pool_frames(frame_count),
            kernel_root,
            boot_module,
            init: None,
            ticks: 0,
            switches: 0,
        }
    }

    /// This CPU's index.
    pub fn this_cpu(&self) -> usize {
        entry::cpu_index()
    }

    /// CPUs that run threads.
    pub fn cpus_online(&self) -> usize {
        self.online
    }

    /// The thread running on this CPU, if any.
    #[inline(always)]
    pub fn current(&self) -> Option<ThreadId> {
        self.cpus[entry::cpu_index()].current
    }

    /// Runs `id` only on `cpu` from now on (`None`: on any CPU). A ready
    /// thread moves to that CPU's run queue; a thread running on another
    /// CPU is preempted there (an IPI), and one running here at the next
    /// dispatch. `InvalidArgument` if `cpu` does not run threads.
    pub fn set_thread_cpu(
        &mut self,
        id: ThreadId,
        cpu: Option<u32>,
    ) -> Result<(), alux_abi::Error> {
        let cpu = cpu.map(|c| c as usize);
        if cpu.is_some_and(|c| c >= self.online) {
            return Err(alux_abi::Error::InvalidArgument);
        }
        let here = entry::cpu_index();
        let t = self.threads.get_mut(key_of_thread(id)).ok_or(alux_abi::Error::NoSuchThread)?;
        t.pinned = cpu.is_some();
        let Some(to) = cpu else { return Ok(()) };
        let (from, state) = (t.cpu, t.state);
        // Where it runs, if it does (`cpu` may already name its next CPU).
        let on = self.cpus[..self.online].iter().position(|c| c.current == Some(id));
        if from == to && on.is_none_or(|c| c == to) {
            return Ok(());
        }
        match state {
            ThreadState::Ready => {
                let c = &mut self.cpus[from];
                if c.handoff == Some(id) {
                    c.handoff = None;
                } else {
                    c.run_queue.retain(|x| *x != id);
                }
                t.cpu = to;
                queue_ready(&mut self.cpus, self.online, t);
            }
            ThreadState::Running => {
                // It leaves at its CPU's next dispatch, which puts it in
                // `to`'s run queue (`cpu` names where it is to run).
                t.cpu = to;
                let on = on.unwrap_or(from);
                if on != to {
                    entry::set_resched(on, true);
                    if on != here {
                        smp::kick(on);
                    }
                }
            }
            ThreadState::Blocked(_) => t.cpu = to,
        }
        Ok(())
    }

    /// Stops every thread of `threads` that runs on another CPU: each such
    /// CPU is asked to leave user mode and answers from the kernel without
    /// the lock (`smp::ask`), its registers saved into the thread's context
    /// and its vector registers released; it then has no current thread,
    /// so when it gets the lock it chooses another. After this the threads
    /// may be freed: no CPU runs them or will write their contexts.
    pub fn stop_elsewhere(&mut self, threads: &[ThreadId]) {
        if self.online == 1 {
            return;
        }
        let here = entry::cpu_index();
        let mut mask = 0u32;
        for (c, cpu) in self.cpus[..self.online].iter().enumerate() {
            if c != here && cpu.current.is_some_and(|t| threads.contains(&t)) {
                mask |= 1 << c;
            }
        }
        if mask == 0 {
            return;
        }
        smp::ask(cpus_in(mask), 0);
        for c in cpus_in(mask) {
            self.cpus[c].current = None;
            entry::mark_stopped(c);
        }
    }

    /// Flushes the TLB of every other CPU that has `root` loaded: called
    /// after a mapping of `root` was removed or weakened (this CPU's entry
    /// was invalidated by the caller), before its frame can be reused.
    pub fn shootdown(&mut self, root: u64) {
        if self.online == 1 {
            return;
        }
        let mask = self.cpus_with_root(root);
        if mask != 0 {
            smp::ask(cpus_in(mask), 0);
        }
    }

    /// The other CPUs (a bit each) whose loaded tables are `root`.
    fn cpus_with_root(&self, root: u64) -> u32 {
        let here = entry::cpu_index();
        let mut mask = 0u32;
        for (c, cpu) in self.cpus[..self.online].iter().enumerate() {
            if c != here && cpu.loaded_root == root {
                mask |= 1 << c;
            }
        }
        mask
    }

    /// A live thread.
    pub fn thread(&self, id: ThreadId) -> Option<&Thread> {
        self.threads.get(key_of_thread(id))
    }

    /// A live thread, mutably.
    pub fn thread_mut(&mut self, id: ThreadId) -> Option<&mut Thread> {
        self.threads.get_mut(key_of_thread(id))
    }

    /// A task (live or zombie).
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(key_of_task(id))
    }

    /// A task, mutably.
    pub fn task_mut(&mut self, id: TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(key_of_task(id))
    }

    /// A task and the frame allocator, borrowed together (to change the
    /// task's mappings).
    pub fn task_and_frames(&mut self, id: TaskId) -> Option<(&mut Task, &mut FrameAllocator)> {
        let task = self.tasks.get_mut(key_of_task(id))?;
        Some((task, &mut self.frames))
    }

    /// A task, the frame allocator and the pins, borrowed together (to
    /// unmap the task's pages).
    pub fn task_frames_pins(
        &mut self,
        id: TaskId,
    ) -> Option<(&mut Task, &mut FrameAllocator, &mut kernel::pins::Pins<TaskId>)> {
        let task = self.tasks.get_mut(key_of_task(id))?;
        Some((task, &mut self.frames, &mut self.pins))
    }

    /// Removes a task record and gives its slot back to its uid's share,
    /// unless the slot retires (then it stays charged for good).
    pub fn remove_task_record(&mut self, id: TaskId) -> Option<Task> {
        let key = key_of_task(id);
        let task = self.tasks.remove(key)?;
        if !GenTable::<Task>::retires(key) {
            self.task_pool.release(task.uid, task.privileged, 1);
        }
        Some(task)
    }

    /// Removes a thread record (the caller has unlinked it everywhere) and
    /// gives its slot back to its task's uid share, unless the slot retires.
    /// The task record must still exist (live or zombie).
    pub fn remove_thread_record(&mut self, id: ThreadId) -> Option<Thread> {
        self.unschedule(id);
        let key = key_of_thread(id);
        let thread = self.threads.remove(key)?;
        self.trim_run_queue();
        let owner = self.task(thread.task).map(|t| (t.uid, t.privileged));
        debug_assert!(owner.is_some(), "thread outlived its task record");
        if let (Some((uid, privileged)), false) = (owner, GenTable::<Thread>::retires(key)) {
            self.thread_pool.release(uid, privileged, 1);
        }
        Some(thread)
    }

    /// The run queue's capacity kept: room for every live thread, as a
    /// power of two (at least `RUN_QUEUE_KEPT`), so it depends only on the
    /// number of threads and comes back with it.
    fn run_queue_kept(&self) -> usize {
        RUN_QUEUE_KEPT.max(self.threads.len()).next_power_of_two()
    }

    /// Gives back run-queue and timer capacity beyond
    /// [`Kernel::run_queue_kept`] (it shrinks only when the thread count
    /// halves, so amortised O(1)); the timers' room goes entirely with the
    /// last thread.
    fn trim_run_queue(&mut self) {
        let kept = self.run_queue_kept();
        for c in &mut self.cpus[..self.online] {
            if c.run_queue.capacity() > kept {
                c.run_queue.shrink_to(kept);
            }
        }
        let timers = if self.threads.is_empty() { 0 } else { kept };
        if self.timers.capacity() > timers {
            self.timers.trim(timers);
        }
    }

    /// Makes sure the run queue and the timers can hold every live thread
    /// plus one, so that queueing a thread or arming its deadline never
    /// allocates (called before a thread is created; `OutOfMemory` if the
    /// heap cannot grow them).
    pub fn reserve_run_queue(&mut self) -> Result<(), alux_abi::Error> {
        let want = self.threads.len() + 1;
        for c in &mut self.cpus[..self.online] {
            c.run_queue
                .try_reserve(want.saturating_sub(c.run_queue.len()))
                .map_err(|_| alux_abi::Error::OutOfMemory)?;
        }
        self.timers.reserve(want).map_err(|_| alux_abi::Error::OutOfMemory)
    }

    /// Puts a thread at the back of a run queue (`queue_ready`).
    pub fn make_ready(&mut self, id: ThreadId) {
        if let Some(t) = self.threads.get_mut(key_of_thread(id)) {
            t.state = ThreadState::Ready;
            queue_ready(&mut self.cpus, self.online, t);
        }
    }

    /// Blocks the current thread on `wait` until woken or until `deadline`
    /// (absolute TSC) passes.
    #[inline(always)]
    pub fn block_current(&mut self, wait: Wait, deadline: Option<u64>) {
        let here = entry::cpu_index();
        let Some(id) = self.cpus[here].current else { return };
        if let Some(t) = self.thread_mut(id) {
            t.state = ThreadState::Blocked(wait);
            t.deadline = deadline;
        }
        if let Some(d) = deadline {
            self.timers.insert(d, id);
            self.cpus[here].timer_dirty = true;
        }
    }

    /// Writes a finished call's result into a thread's registers.
    pub fn set_result(&mut self, id: ThreadId, result: SysResult) {
        if let Some(t) = self.thread_mut(id) {
            write_result(&mut t.ctx.regs, result);
        }
    }

    /// Writes `Receive`'s six result registers.
    pub fn set_wide_result(&mut self, id: ThreadId, result: kernel::syscall::WideResult) {
        if let Some(t) = self.thread_mut(id) {
            write_wide_result(&mut t.ctx.regs, result);
        }
    }

    /// Ends a blocked thread's wait with `result` and makes it runnable.
    pub fn wake(&mut self, id: ThreadId, result: SysResult) {
        self.wake_with(id, |_, regs| write_result(regs, result));
    }

    /// Ends a blocked thread's wait: `write` fills in its result registers
    /// (it is told what the thread waited for), and
    /// the thread goes to the back of the run queue. Nothing happens if the
    /// thread is not blocked. One lookup: this is on the IPC fast path.
    pub fn wake_with(&mut self, id: ThreadId, write: impl FnOnce(Wait, &mut Regs)) {
        let Some(t) = self.threads.get_mut(key_of_thread(id)) else { return };
        let ThreadState::Blocked(wait) = t.state else { return };
        if let Some(d) = t.deadline.take() {
            remove_timer(&mut self.timers, d, id);
        }
        write(wait, &mut t.ctx.regs);
        t.state = ThreadState::Ready;
        queue_ready(&mut self.cpus, self.online, t);
    }

    /// Threads blocked on `wait`.
    pub fn waiters(&self, wait: Wait) -> Vec<ThreadId> {
        self.threads
            .iter()
            .filter(|(_, t)| t.state == ThreadState::Blocked(wait))
            .map(|(_, t)| t.id)
            .collect()
    }

    /// Takes a thread out of the run queue and the timers. A thread
    /// running on another CPU must have been stopped (`stop_elsewhere`).
    fn unschedule(&mut self, id: ThreadId) {
        let Some(t) = self.thread_mut(id) else { return };
        let (state, cpu) = (t.state, t.cpu);
        let deadline = t.deadline.take();
        if state == ThreadState::Ready {
            let c = &mut self.cpus[cpu];
            c.run_queue.retain(|x| *x != id);
            if c.handoff == Some(id) {
                c.handoff = None;
            }
        }
        if let Some(d) = deadline {
            remove_timer(&mut self.timers, d, id);
        }
        for c in &mut self.cpus[..self.online] {
            if c.current == Some(id) {
                c.current = None;
            }
        }
    }

    /// Ends the waits whose deadline has passed.
    pub fn expire_timers(&mut self, now: u64) {
        while let Some((deadline, id)) = self.timers.first() {
            if deadline > now {
                break;
            }
            remove_timer(&mut self.timers, deadline, id);
            let Some(t) = self.thread_mut(id) else {
                continue;
            };
            t.deadline = None;
            let result = match t.state {
                ThreadState::Blocked(Wait::Sleep) => Ok([0; 4]),
                ThreadState::Blocked(Wait::Ipc | Wait::IpcReceive) => {
                    crate::ipc_glue::timed_out(self, id);
                    continue;
                }
                ThreadState::Blocked(_) => Err(alux_abi::Error::TimedOut),
                _ => continue,
            };
            self.wake(id, result);
        }
    }

    /// Sends the console's next FIFO load if the port takes it, and lets
    /// the threads waiting for console room run (to retry their print) once
    /// there is room. Whether a load was sent.
    pub fn console_pump(&mut self) -> bool {
        let sent = crate::console::pump();
        if crate::console::take_wake() {
            for id in self.waiters(Wait::Console) {
                self.wake_with(id, |_, _| {});
            }
        }
        sent
    }

    /// Asks for the current thread to be preempted at the next dispatch.
    #[inline(always)]
    pub fn request_resched(&mut self) {
        entry::set_resched(entry::cpu_index(), true);
    }

    /// Called on a timer interrupt (each CPU's own timer).
    pub fn on_timer_tick(&mut self) {
        let here = entry::cpu_index();
        self.ticks += 1;
        self.cpus[here].armed = 0;
        self.cpus[here].timer_dirty = true;
        let now = cpu::rdtsc();
        self.expire_timers(now);
        self.console_pump();
        if now >= self.cpus[here].slice_end {
            entry::set_resched(here, true);
        }
    }

    /// The fast path of every return: the current thread keeps the CPU and
    /// everything is loaded already. Its `sysretq` flag, or `None` if the
    /// scheduler must choose.
    #[inline(always)]
    fn still_current(&self) -> Option<bool> {
        if entry::resched_pending() {
            return None;
        }
        let c = &self.cpus[entry::cpu_index()];
        let t = self.thread(c.current?)?;
        (t.state == ThreadState::Running).then_some(t.may_sysret())
    }

    /// Chooses the thread to run on this CPU and loads it; `None` if
    /// nothing can run here.
    fn pick_and_load(&mut self) -> Option<bool> {
        let here = entry::cpu_index();
        let now = cpu::rdtsc();
        let running = self.cpus[here]
            .current
            .filter(|&c| self.thread(c).map(|t| t.state) == Some(ThreadState::Running));
        if let Some(t) = self.cpus[here].handoff.take() {
            if running.is_some() {
                // The current thread did not block after all: the hand-off
                // target waits its turn like any woken thread.
                self.cpus[here].run_queue.push_back(t);
                self.cpus[here].timer_dirty = true;
            } else if let Some(may_sysret) = self.load(t) {
                // It runs in the rest of the blocked thread's time slice:
                // neither the slice nor the run queue changed, so the timer
                // need not be re-armed.
                self.switches += 1;
                return Some(may_sysret);
            }
        }
        if let Some(cur) = running {
            // A thread pinned to another CPU since it was loaded leaves.
            let stays = self.thread(cur).is_some_and(|t| !t.pinned || t.cpu == here);
            if !entry::resched_pending() && stays {
                return self.sysret_flag(cur);
            }
            entry::set_resched(here, false);
            if self.cpus[here].run_queue.is_empty() && stays {
                self.cpus[here].slice_end = now + self.slice_ticks;
                self.cpus[here].timer_dirty = true;
                self.refresh_io();
                return self.sysret_flag(cur);
            }
            self.make_ready(cur);
        }
        self.cpus[here].current = None;
        entry::set_resched(here, false);
        while let Some(next) = self.cpus[here].run_queue.pop_front() {
            if self.cpus[here].run_queue.is_empty() {
                // After a burst of runnable threads: give the memory back,
                // keeping room for every live thread (`reserve_run_queue`).
                self.trim_run_queue();
            }
            if let Some(may_sysret) = self.load(next) {
                self.switches += 1;
                self.cpus[here].slice_end = now + self.slice_ticks;
                self.cpus[here].timer_dirty = true;
                return Some(may_sysret);
            }
        }
        self.cpus[here].timer_dirty = true;
        None
    }

    /// An idle CPU takes the first thread not pinned elsewhere from another
    /// CPU's run queue. Whether it found one.
    fn steal(&mut self) -> bool {
        if self.online == 1 {
            return false;
        }
        let here = entry::cpu_index();
        for c in 0..self.online {
            if c == here {
                continue;
            }
            let threads = &self.threads;
            let found = self.cpus[c]
                .run_queue
                .iter()
                .position(|&id| threads.get(key_of_thread(id)).is_some_and(|t| !t.pinned));
            if let Some(id) = found.and_then(|i| self.cpus[c].run_queue.remove(i)) {
                if let Some(t) = self.threads.get_mut(key_of_thread(id)) {
                    t.cpu = here;
                }
                self.cpus[here].run_queue.push_back(id);
                return true;
            }
        }
        false
    }

    /// Loads the current thread's task's I/O bitmap again if another CPU
    /// changed it meanwhile (`forget_io`).
    fn refresh_io(&mut self) {
        let c = &self.cpus[entry::cpu_index()];
        if let (Some(task), None) = (c.io_active, c.io_loaded) {
            self.switch_io(Some(task));
        }
    }

    /// Makes `id` the running thread: its context for the return path, its
    /// address space in CR3. Returns whether it may leave through `sysretq`;
    /// `None` if it no longer exists.
    fn load(&mut self, id: ThreadId) -> Option<bool> {
        self.load_with(id, |_| {})
    }

    /// [`Kernel::load`], with `write` filling in the thread's result
    /// registers first (one lookup: the fast hand-off uses it).
    #[inline(always)]
    fn load_with(&mut self, id: ThreadId, write: impl FnOnce(&mut Regs)) -> Option<bool> {
        let here = entry::cpu_index();
        let t = self.threads.get_mut(key_of_thread(id))?;
        write(&mut t.ctx.regs);
        t.state = ThreadState::Running;
        t.cpu = here;
        entry::set_current_context(&mut t.ctx);
        entry::set_current_identity(id, t.task, t.uid, t.task_flags);
        let may_sysret = t.may_sysret();
        let root = t.root;
        let io = if t.io { Some(t.task) } else { None };
        let c = &mut self.cpus[here];
        c.current = Some(id);
        if io != c.io_active {
            self.switch_io(io);
        }
        let c = &mut self.cpus[here];
        if root != c.loaded_root {
            // SAFETY: `root` is the PML4 of the thread's live task, whose
            // upper half is the kernel's (built by `AddressSpace::new`).
            unsafe { cpu::write_cr3(root) };
            c.loaded_root = root;
        }
        Some(may_sysret)
    }

    /// Whether the thread's saved state may leave through `sysretq`.
    fn sysret_flag(&self, id: ThreadId) -> Option<bool> {
        let t = self.thread(id)?;
        Some(t.may_sysret())
    }

    /// Ends a blocked thread's wait and makes it the next to run, ahead of
    /// the run queue, once the current thread blocks (`write` fills in its
    /// result registers). The IPC fast path: a request goes straight to the
    /// server that waits for it.
    pub fn hand_off(&mut self, id: ThreadId, write: impl FnOnce(&mut Regs)) {
        let here = entry::cpu_index();
        let Some(t) = self.threads.get_mut(key_of_thread(id)) else { return };
        // The IPC core hands off only a thread it had parked in a receive,
        // which the kernel blocked the same way: both models agree.
        debug_assert_eq!(t.state, ThreadState::Blocked(Wait::IpcReceive));
        if !matches!(t.state, ThreadState::Blocked(_)) {
            return;
        }
        if let Some(d) = t.deadline.take() {
            remove_timer(&mut self.timers, d, id);
        }
        write(&mut t.ctx.regs);
        t.state = ThreadState::Ready;
        if t.pinned && t.cpu != here {
            // Pinned to another CPU: it runs there, woken like any thread.
            queue_ready(&mut self.cpus, self.online, t);
            return;
        }
        t.cpu = here;
        let c = &mut self.cpus[here];
        if let Some(previous) = c.handoff.replace(id) {
            c.run_queue.push_back(previous);
            c.timer_dirty = true;
        }
    }

    /// Whether a hand-off is already waiting to run here (the fast path
    /// then leaves the call to the general one).
    #[inline(always)]
    pub fn hand_off_pending(&self) -> bool {
        self.cpus[entry::cpu_index()].handoff.is_some()
    }

    /// Whether a thread other than the current one is ready to run here.
    #[inline(always)]
    pub fn others_ready(&self) -> bool {
        let c = &self.cpus[entry::cpu_index()];
        c.handoff.is_some() || !c.run_queue.is_empty()
    }

    /// Whether the current thread is to be preempted at the next dispatch
    /// (a fast path that keeps it running then leaves the call to the
    /// general one, which switches).
    #[inline(always)]
    pub fn resched_pending(&self) -> bool {
        entry::resched_pending()
    }

    /// Whether `id` is blocked in an IPC receive without a deadline and
    /// may run on CPU `here`: the thread the fast path may switch to
    /// directly (a deadline would need its timer taken out: the general
    /// path does that).
    #[inline(always)]
    pub fn parked_for_hand_off(threads: &GenTable<Thread>, id: ThreadId, here: usize) -> bool {
        threads.get(key_of_thread(id)).is_some_and(|t| {
            t.state == ThreadState::Blocked(Wait::IpcReceive)
                && t.deadline.is_none()
                && (!t.pinned || t.cpu == here)
        })
    }

    /// The fast path's switch, after the IPC core handed `to` a message
    /// from `caller` (the current thread): the caller blocks in a receive
    /// without deadline, `to` gets `regs` as its six result registers and
    /// runs now, in the rest of the caller's time slice. The same end state
    /// as `block_current`, `hand_off` and `dispatch` reach on the general
    /// path, without the hand-off slot and the run queue. Returns 1 if
    /// `to` may leave through `sysretq`; `None` (not reached: the IPC core
    /// asked `parked_for_hand_off` under the same lock) if `to` is gone,
    /// and then [`dispatch`] must choose the next thread.
    #[inline(always)]
    pub fn fast_hand_off(&mut self, caller: ThreadId, to: ThreadId, regs: [u64; 6]) -> Option<u64> {
        if let Some(t) = self.threads.get_mut(key_of_thread(caller)) {
            t.state = ThreadState::Blocked(Wait::IpcReceive);
            t.deadline = None;
            t.from_syscall = true;
        }
        self.cpus[entry::cpu_index()].current = None;
        let [a, b, c, d, e, f] = regs;
        let may_sysret = self.load_with(to, |r| {
            (r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (0, a, b, c, d, e, f);
        })?;
        self.switches += 1;
        // Neither the run queue nor the timers changed: as for a thread
        // that keeps the CPU, the timer is re-armed only if it must be.
        self.rearm_if_needed();
        Some(may_sysret as u64)
    }

    /// `Yield` by the current thread `caller` while another thread is
    /// ready and no hand-off is pending: what `request_resched` and
    /// `dispatch` do then (the caller to the back of the run queue, the
    /// front one loaded with a fresh slice, the timer re-armed), without
    /// the general dispatch's checks for cases that do not hold. Returns 1
    /// if the loaded thread may leave through `sysretq`; `None` (nothing
    /// changed) otherwise.
    #[inline]
    pub fn fast_yield(&mut self, caller: ThreadId) -> Option<u64> {
        let here = entry::cpu_index();
        let c = &self.cpus[here];
        if c.handoff.is_some() || c.run_queue.is_empty() {
            return None;
        }
        let t = self.threads.get_mut(key_of_thread(caller))?;
        if t.state != ThreadState::Running || (t.pinned && t.cpu != here) {
            return None;
        }
        t.from_syscall = true;
        t.state = ThreadState::Ready;
        let c = &mut self.cpus[here];
        c.current = None;
        entry::set_resched(here, false);
        let now = cpu::rdtsc();
        if let (1, Some(front)) = (c.run_queue.len(), c.run_queue.front_mut()) {
            // One thread queued: the caller to the back and the front out
            // is one swap in place.
            let next = core::mem::replace(front, caller);
            if let Some(may_sysret) = self.load_with(next, |_| {}) {
                return Some(self.start_slice(here, now, may_sysret));
            }
        } else {
            c.run_queue.push_back(caller);
        }
        self.run_front(here, now)
    }

    /// The current thread has just blocked in a fast path
    /// ([`Kernel::block_in_call`]): what `dispatch` then does when no
    /// hand-off is pending and a thread is ready here (the run queue's
    /// front loaded with a fresh slice, the timer armed), without its
    /// checks for cases that do not hold. Returns 1 if the loaded thread
    /// may leave through `sysretq`; `None` if nothing was loaded (a
    /// hand-off is pending or nobody is ready here): [`dispatch`] must
    /// choose, steal or idle.
    #[inline]
    pub fn fast_run_next(&mut self) -> Option<u64> {
        let here = entry::cpu_index();
        let c = &mut self.cpus[here];
        if c.handoff.is_some() || c.run_queue.is_empty() {
            return None;
        }
        c.current = None;
        entry::set_resched(here, false);
        self.run_front(here, cpu::rdtsc())
    }

    /// Loads this CPU's (`here`) run queue's front with a fresh slice from
    /// `now` (the tail of `pick_and_load`). The queue's room is not trimmed
    /// here when it empties: it only grows when a thread is made
    /// (`reserve_run_queue`) and is trimmed when one is removed.
    #[inline(always)]
    fn run_front(&mut self, here: usize, now: u64) -> Option<u64> {
        while let Some(next) = self.cpus[here].run_queue.pop_front() {
            if let Some(may_sysret) = self.load_with(next, |_| {}) {
                return Some(self.start_slice(here, now, may_sysret));
            }
        }
        None
    }

    /// A thread was just loaded by a switch from a thread that yielded or
    /// blocked: it gets a fresh slice from `now`, and the timer is re-armed
    /// if it must be. The deadline the timer needs is the earliest of the
    /// first timer, the slice end if others are ready, and the console's;
    /// the switch moved the slice end later and the run queue can only
    /// have emptied, so none of them came earlier: unless the timers or
    /// the queue changed since the timer was last armed (`timer_dirty`) or
    /// console text waits, the armed deadline still comes first.
    #[inline(always)]
    fn start_slice(&mut self, here: usize, now: u64, may_sysret: bool) -> u64 {
        self.switches += 1;
        self.cpus[here].slice_end = now + self.slice_ticks;
        self.rearm_if_needed();
        may_sysret as u64
    }

    /// The current thread `id` blocks in a system call on `wait` until it
    /// is woken or `deadline` (absolute TSC) passes: `block_current` for a
    /// fast path, with the flag the general path sets on entry (its saved
    /// state came from `syscall`), in one lookup.
    #[inline]
    pub fn block_in_call(&mut self, id: ThreadId, wait: Wait, deadline: Option<u64>) {
        if let Some(t) = self.threads.get_mut(key_of_thread(id)) {
            t.state = ThreadState::Blocked(wait);
            t.deadline = deadline;
            t.from_syscall = true;
        }
        if let Some(d) = deadline {
            self.timers.insert(d, id);
            // This CPU's timer is re-armed only if this deadline comes
            // before the armed one (see `start_slice`).
            let c = &mut self.cpus[entry::cpu_index()];
            if c.armed == 0 || c.armed > d {
                c.timer_dirty = true;
            }
        }
    }

    /// What `dispatch` does for a thread that keeps the CPU: re-arms the
    /// timer if the run queue or the timers changed, or if console text
    /// waits sooner than the armed deadline.
    #[inline(always)]
    pub fn rearm_if_needed(&mut self) {
        let c = &self.cpus[entry::cpu_index()];
        let console = crate::console::next_send().is_some_and(|t| c.armed == 0 || c.armed > t);
        if c.timer_dirty || console {
            self.arm_timer();
        }
    }

    /// The kernel's consent to a fast `Send` or `Signal` waking `id` (the
    /// IPC core's `accept`): it must be blocked in an IPC receive
    /// (`in_receive`) or in a poll, with or without a deadline. If so its
    /// wait ends here, as the IPC core commits right after consenting:
    /// the thread is `Ready`, and its registers (for the results) and the
    /// deadline it had come back; [`Kernel::queue_woken`] does the rest.
    /// One lookup for the check and the wake.
    #[inline]
    pub fn take_parked(
        threads: &mut GenTable<Thread>,
        id: ThreadId,
        in_receive: bool,
    ) -> Option<(&mut Regs, Option<u64>)> {
        let t = threads.get_mut(key_of_thread(id))?;
        let wait = if in_receive { Wait::IpcReceive } else { Wait::Ipc };
        if t.state != ThreadState::Blocked(wait) {
            return None;
        }
        t.state = ThreadState::Ready;
        Some((&mut t.ctx.regs, t.deadline.take()))
    }

    /// The rest of what `wake_with` does for a thread [`Kernel::take_parked`]
    /// woke, its result registers written: the timer of its `deadline`
    /// goes, and it joins the back of the run queue.
    #[inline]
    pub fn queue_woken(&mut self, id: ThreadId, deadline: Option<u64>) {
        if let Some(d) = deadline {
            remove_timer(&mut self.timers, d, id);
        }
        let Some(t) = self.threads.get_mut(key_of_thread(id)) else { return };
        queue_ready(&mut self.cpus, self.online, t);
    }

    /// Makes `io`'s I/O bitmap the one the CPU checks (`None`: every port
    /// denied). The bitmap is copied only if the TSS holds another task's.
    pub fn switch_io(&mut self, io: Option<TaskId>) {
        let here = entry::cpu_index();
        match io {
            Some(task) if self.cpus[here].io_loaded == Some(task) => {
                crate::arch::gdt::set_io_bitmap_enabled(true)
            }
            Some(task) => {
                let map = self.task(task).and_then(|t| t.io_ports.as_ref());
                crate::arch::gdt::load_io_bitmap(map);
                self.cpus[here].io_loaded = map.map(|_| task);
            }
            None => crate::arch::gdt::set_io_bitmap_enabled(false),
        }
        self.cpus[here].io_active = io;
    }

    /// Forgets `task`'s I/O bitmap (changed, or the task ended): the next
    /// load copies it again, and this CPU stops using it now. Another CPU
    /// running a thread of `task` (a grant by a sibling thread) is
    /// preempted and loads the new bitmap (`refresh_io`); one that only
    /// holds the bitmap switches it off at its next load of another task
    /// (`io_active` still names `task` there).
    pub fn forget_io(&mut self, task: TaskId) {
        let here = entry::cpu_index();
        for c in 0..self.online {
            if self.cpus[c].io_loaded == Some(task) {
                self.cpus[c].io_loaded = None;
            }
            if c != here && self.cpus[c].io_active == Some(task) && self.cpus[c].current.is_some() {
                entry::set_resched(c, true);
                smp::kick(c);
            }
        }
        if self.cpus[here].io_active == Some(task) {
            self.switch_io(None);
        }
    }

    /// Makes every CPU stop using `root` before it is freed: this one
    /// loads the kernel's tables, and any other that has `root` loaded
    /// (none runs a thread of it: `stop_elsewhere`) is asked to.
    pub fn forget_root(&mut self, root: u64) {
        let here = entry::cpu_index();
        if self.cpus[here].loaded_root == root {
            // SAFETY: the kernel's own root maps the kernel like every other.
            unsafe { cpu::write_cr3(self.kernel_root) };
            self.cpus[here].loaded_root = self.kernel_root;
        }
        if self.online > 1 {
            let mask = self.cpus_with_root(root);
            if mask != 0 {
                smp::ask(cpus_in(mask), root);
                for c in cpus_in(mask) {
                    self.cpus[c].loaded_root = self.kernel_root;
                }
            }
        }
    }

    fn arm_timer(&mut self) {
        let here = entry::cpu_index();
        let c = &mut self.cpus[here];
        c.timer_dirty = false;
        let mut next = self.timers.first().map_or(u64::MAX, |(d, _)| d);
        if c.current.is_some() && !c.run_queue.is_empty() {
            // Others wait for the CPU: end this slice on time.
            next = next.min(c.slice_end);
        }
        if let Some(c) = crate::console::next_send() {
            // Console text waits: come back when the port can take more.
            next = next.min(c);
        }
        if next == u64::MAX {
            return;
        }
        // A deadline armed no later than this one fires first, and its
        // interrupt re-arms (`on_timer_tick`). It may have passed already:
        // the kernel runs with interrupts off, so its interrupt is pending
        // and comes at the return to user mode (or the idle loop's `sti`),
        // and `armed` is 0 only once it has been handled. The LAPIC timer
        // and `armed` are this CPU's.
        if c.armed != 0 && c.armed <= next {
            return;
        }
        let now = cpu::rdtsc();
        lapic::arm_timer_tsc(next.saturating_sub(now));
        c.armed = next.max(1);
    }
}

/// The CPUs named by the bits of `mask`.
fn cpus_in(mask: u32) -> impl Iterator<Item = usize> + Clone {
    (0..MAX_CPUS).filter(move |c| mask & (1 << c) != 0)
}

/// Puts `t` (made `Ready` by the caller) at the back of a run queue: its
/// CPU's if it is pinned there or that CPU idles, else an idle CPU's, else
/// this CPU's (a woken thread runs where it was woken: an IPC server next
/// to its client). Another CPU is sent an IPI: it wakes if it idles, and
/// if it runs a thread it arms the end of that thread's slice.
#[inline]
fn queue_ready(cpus: &mut [CpuSched; MAX_CPUS], online: usize, t: &mut Thread) {
    let here = entry::cpu_index();

    let target = if online == 1 {
        here
    } else if t.pinned || cpus[t.cpu].idle {
        t.cpu
    } else {
        cpus[..online].iter().position(|c| c.idle).unwrap_or(here)
    };
    t.cpu = target;
    let c = &mut cpus[target];
    c.run_queue.push_back(t.id);
    // Someone waits for the CPU now, so its slice end counts: a deadline
    // armed no later covers it (see `arm_timer`).
    if c.armed == 0 || c.armed > c.slice_end {
        c.timer_dirty = true;
    }
    if target != here {
        c.idle = false;
        smp::kick(target);
    }
}

/// Picks the next thread and prepares the return to user mode, idling
/// (interrupts on, lock released) while nothing can run. Returns 1 if the
/// chosen context may leave through `sysretq`.
pub fn dispatch(mut k: MutexGuard<'static, Kernel>) -> u64 {
    if let Some(may_sysret) = k.still_current() {
        k.rearm_if_needed();
        return may_sysret as u64;
    }
    if k.online > 1 {
        // The thread this CPU ran may be chosen by another CPU as soon as
        // the lock is released: its vector registers go to its context
        // now, not at this CPU's return to user mode.
        entry::release_vectors();
    }
    loop {
        if let Some(may_sysret) = k.pick_and_load() {
            k.arm_timer();
            return may_sysret as u64;
        }
        if k.steal() {
            continue;
        }
        // Nothing to run: the console may have the CPU, one FIFO load at a
        // time, with expired timers checked between loads.
        if k.console_pump() {
            let now = cpu::rdtsc();
            k.expire_timers(now);
            continue;
        }
        k.arm_timer();
        // Another CPU may load the thread that ran here last: its
        // selectors go to its context before the lock is released.
        entry::park_selectors();
        let here = entry::cpu_index();
        k.cpus[here].idle = true;
        drop(k);
        let t0 = cpu::rdtsc();
        cpu::wait_for_interrupt();
        IDLE_TSC.fetch_add(cpu::rdtsc() - t0, core::sync::atomic::Ordering::Relaxed);
        k = lock();
        let now = cpu::rdtsc();
        k.cpus[here].idle = false;
        k.cpus[here].armed = 0;
        k.expire_timers(now);
        // A device may have interrupted the idle loop.
        crate::ipc_glue::deliver_wakeups(&mut k);
    }
}
