//! A fake world for memd: an MMU (page tables with accessed and dirty
//! bits), physical memory holding each pool frame's bytes, and a disk whose
//! requests stay pending until the test completes them, in any order, with
//! success or failure. Every effect memd has is checked against the rules
//! it must keep (a frame under I/O is never filled, mapped or freed; a
//! frame is mapped at most once; a page is unmapped before it is written
//! out; only written slots are read), and recorded.

#![allow(dead_code)]

use std::collections::HashMap;

use alux_memd_core::*;

/// Builds a task ID.
pub fn tid(i: u32) -> TaskId {
    TaskId::new(i, 1)
}

/// The bytes of a page holding value `v`: distinct words, so a page
/// swapped in from the wrong slot or half written is seen.
pub fn pattern(v: u64) -> Vec<u8> {
    (0..PAGE_SIZE / 8)
        .flat_map(|i| (v.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i).to_le_bytes())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pte {
    pub frame: Frame,
    pub perms: Perms,
    pub accessed: bool,
    pub dirty: bool,
}

/// One effect of memd on the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Map(TaskId, u64, Frame, Perms),
    Unmap(TaskId, u64),
    Bits(TaskId, u64, bool),
    Resume(FaultId),
    Kill(TaskId, FaultId, KillReason),
    Zero(Frame),
    CopyIn(Frame, usize),
    Submit(IoRequest),
}

pub struct Fake {
    pub ptes: HashMap<(TaskId, u64), Pte>,
    pub phys: Vec<Vec<u8>>,
    pub disk: HashMap<Slot, Vec<u8>>,
    pub pending: Vec<IoRequest>,
    pub log: Vec<Effect>,
    pub resumed: Vec<FaultId>,
    pub killed: Vec<(TaskId, FaultId, KillReason)>,
    /// `map` answers `MapRefused`.
    pub refuse_map: bool,
    /// `map` answers `MapRefused` for this task only.
    pub refuse_map_task: Option<TaskId>,
    /// `submit` hands requests back.
    pub refuse_submit: bool,
    /// The driver's limit of requests at once (memd's `max_io`).
    pub max_pending: usize,
}

impl Fake {
    pub fn new(frames: u32) -> Fake {
        Fake {
            ptes: HashMap::new(),
            // Garbage at start: memd must zero or fill before mapping.
            phys: vec![vec![0xa5; PAGE_SIZE as usize]; frames as usize],
            disk: HashMap::new(),
            pending: Vec::new(),
            log: Vec::new(),
            resumed: Vec::new(),
            killed: Vec::new(),
            refuse_map: false,
            refuse_map_task: None,
            refuse_submit: false,
            max_pending: usize::MAX,
        }
    }

    fn under_io(&self, frame: Frame) -> bool {
        self.pending.iter().any(|r| r.frame == frame)
    }

    fn mapped(&self, frame: Frame) -> bool {
        self.ptes.values().any(|p| p.frame == frame)
    }

    /// What a thread of `task` does to `va`: `Ok(bytes read)` or, for a
    /// write, `Ok(None)` after storing `write`; `Err(())` is a page fault.
    pub fn access(
        &mut self,
        task: TaskId,
        va: u64,
        access: Access,
        write: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, ()> {
        let page = va & !(PAGE_SIZE - 1);
        let Some(pte) = self.ptes.get_mut(&(task, page)) else {
            return Err(());
        };
        if !pte.perms.allows(access) {
            return Err(());
        }
        pte.accessed = true;
        let frame = pte.frame;
        match write {
            Some(bytes) => {
                pte.dirty = true;
                assert!(!self.under_io(frame), "a mapped frame is under I/O");
                self.phys[frame.0 as usize].copy_from_slice(bytes);
                Ok(None)
            }
            None => Ok(Some(self.phys[frame.0 as usize].clone())),
        }
    }

    /// Completes pending request `i`; returns it. A failed read leaves
    /// garbage in the frame, which memd must never map.
    pub fn complete(&mut self, m: &mut Memd, i: usize, ok: bool) -> IoRequest {
        let r = self.pending.remove(i);
        let f = r.frame.0 as usize;
        match (r.kind, ok) {
            (IoKind::Write, true) => {
                self.disk.insert(r.slot, self.phys[f].clone());
            }
            (IoKind::Write, false) => {
                // A torn write: the slot holds garbage now.
                self.disk.insert(r.slot, vec![0xdd; PAGE_SIZE as usize]);
            }
            (IoKind::Read, true) => {
                let bytes = self.disk.get(&r.slot).expect("memd read a slot never written");
                self.phys[f] = bytes.clone();
            }
            (IoKind::Read, false) => self.phys[f] = vec![0xee; PAGE_SIZE as usize],
        }
        m.io_done(self, r.tag, ok).expect("completion of a request in flight");
        r
    }

    /// The kernel's side of a task's end: its page tables are gone.
    pub fn drop_task(&mut self, task: TaskId) {
        self.ptes.retain(|(t, _), _| *t != task);
    }

    pub fn take_resumed(&mut self) -> Vec<FaultId> {
        std::mem::take(&mut self.resumed)
    }

    pub fn take_killed(&mut self) -> Vec<(TaskId, FaultId, KillReason)> {
        std::mem::take(&mut self.killed)
    }

    /// Cross-checks the fake page tables against memd's view: every
    /// mapping is a resident, mapped page in that frame, and back.
    pub fn check_against(&self, m: &Memd) {
        for (&(task, va), pte) in &self.ptes {
            match m.page(task, va) {
                Some(PageView::Resident { frame, mapped: true, .. }) => {
                    assert_eq!(frame, pte.frame, "mapping of {task} {va:#x} in another frame")
                }
                other => panic!("{task} {va:#x} mapped but memd has {other:?}"),
            }
            assert!(m.owners(pte.frame).contains(&(task, va)), "owner of a mapped frame");
        }
        for r in &self.pending {
            assert!(!self.mapped(r.frame), "frame under I/O is mapped");
        }
    }
}

impl Host for Fake {
    fn map(&mut self, task: TaskId, va: u64, frame: Frame, perms: Perms) -> Result<(), MapRefused> {
        self.log.push(Effect::Map(task, va, frame, perms));
        if self.refuse_map || self.refuse_map_task == Some(task) {
            return Err(MapRefused);
        }
        assert_eq!(va % PAGE_SIZE, 0, "unaligned map");
        assert!((PAGE_SIZE..USER_END).contains(&va), "map outside the user half");
        assert!(!self.ptes.contains_key(&(task, va)), "map over a mapping");
        // A shared page is mapped once per side (check_against checks
        // that memd names both places); a private one once.
        let places = self.ptes.values().filter(|p| p.frame == frame).count();
        assert!(places < 2, "frame mapped more than twice");
        assert!(!self.under_io(frame), "frame under I/O mapped");
        self.ptes.insert((task, va), Pte { frame, perms, accessed: false, dirty: false });
        Ok(())
    }

    fn unmap(&mut self, task: TaskId, va: u64) -> PageBits {
        self.log.push(Effect::Unmap(task, va));
        let pte = self.ptes.remove(&(task, va)).expect("unmap of no mapping");
        PageBits { accessed: pte.accessed, dirty: pte.dirty }
    }

    fn bits(&mut self, task: TaskId, va: u64, clear: bool) -> PageBits {
        self.log.push(Effect::Bits(task, va, clear));
        let pte = self.ptes.get_mut(&(task, va)).expect("bits of no mapping");
        let b = PageBits { accessed: pte.accessed, dirty: pte.dirty };
        if clear {
            pte.accessed = false;
        }
        b
    }

    fn resume(&mut self, fault: FaultId) {
        self.log.push(Effect::Resume(fault));
        self.resumed.push(fault);
    }

    fn kill(&mut self, task: TaskId, fault: FaultId, reason: KillReason) {
        self.log.push(Effect::Kill(task, fault, reason));
        self.killed.push((task, fault, reason));
    }

    fn zero(&mut self, frame: Frame) {
        self.log.push(Effect::Zero(frame));
        assert!(!self.under_io(frame), "frame under I/O zeroed");
        assert!(!self.mapped(frame), "mapped frame zeroed");
        self.phys[frame.0 as usize].fill(0);
    }

    fn copy_in(&mut self, frame: Frame, offset: usize, bytes: &[u8]) {
        self.log.push(Effect::CopyIn(frame, bytes.len()));
        assert!(!self.under_io(frame), "frame under I/O filled");
        assert!(!self.mapped(frame), "mapped frame filled");
        self.phys[frame.0 as usize][offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    fn submit(&mut self, req: IoRequest) -> Result<(), IoRequest> {
        self.log.push(Effect::Submit(req));
        if self.refuse_submit {
            return Err(req);
        }
        assert!(self.pending.len() < self.max_pending, "more requests than the driver takes");
        assert!(!self.under_io(req.frame), "frame under two requests");
        assert!(!self.mapped(req.frame), "I/O on a mapped frame");
        assert!(!self.pending.iter().any(|r| r.slot == req.slot), "slot under two requests");
        if req.kind == IoKind::Read {
            assert!(self.disk.contains_key(&req.slot), "read of a slot never written");
        }
        self.pending.push(req);
        Ok(())
    }
}

/// memd with its fake world, and helpers that play a thread's accesses.
pub struct World {
    pub m: Memd,
    pub h: Fake,
    pub next_fault: u64,
}

impl World {
    pub fn new(cfg: Config) -> World {
        let mut h = Fake::new(cfg.pool_frames);
        h.max_pending = cfg.max_io as usize;
        World { m: Memd::new(cfg).expect("valid config"), h, next_fault: 1 }
    }

    /// Like `small`, with at most `max_io` requests at the disk.
    pub fn small_io(frames: u32, slots: u32, max_io: u32) -> World {
        let mut cfg = Config::new(frames, slots);
        cfg.low_water = 1;
        cfg.high_water = if frames > 2 { 2 } else { 1 };
        cfg.max_io = max_io;
        World::new(cfg)
    }

    /// The driver answers `Busy` to pending request `i`: memd queues it
    /// again.
    pub fn busy(&mut self, i: usize) {
        let r = self.h.pending.remove(i);
        self.m.io_retry(r.tag).expect("retry of a request at the disk");
    }

    /// A small world: `frames` frames, `slots` slots, watermarks 1 and 2
    /// (1 and 1 for a pool of 2 frames).
    pub fn small(frames: u32, slots: u32) -> World {
        let mut cfg = Config::new(frames, slots);
        cfg.low_water = 1;
        cfg.high_water = if frames > 2 { 2 } else { 1 };
        World::new(cfg)
    }

    pub fn task(&mut self, i: u32, quota: u64) -> TaskId {
        let t = tid(i);
        self.m.task_new(t, quota).unwrap();
        t
    }

    pub fn fault_id(&mut self) -> FaultId {
        self.next_fault += 1;
        FaultId(self.next_fault)
    }

    /// One attempt; a page fault is reported to memd.
    pub fn try_access(
        &mut self,
        task: TaskId,
        va: u64,
        access: Access,
        write: Option<u64>,
    ) -> Result<Option<Vec<u8>>, (FaultId, FaultOutcome)> {
        let bytes = write.map(pattern);
        match self.h.access(task, va, access, bytes.as_deref()) {
            Ok(r) => Ok(r),
            Err(()) => {
                let f = self.fault_id();
                let out = self.m.fault(&mut self.h, task, f, va, access);
                Err((f, out))
            }
        }
    }

    /// Plays one access to the end, completing disk requests (successfully,
    /// oldest first) while its fault waits. `Err` if the task was killed.
    pub fn access(
        &mut self,
        task: TaskId,
        va: u64,
        access: Access,
        write: Option<u64>,
    ) -> Result<Option<Vec<u8>>, KillReason> {
        for _ in 0..1000 {
            let (f, out) = match self.try_access(task, va, access, write) {
                Ok(r) => return Ok(r),
                Err(x) => x,
            };
            self.m.audit().unwrap();
            match out {
                FaultOutcome::Resumed => {}
                FaultOutcome::Killed(r) => return Err(r),
                FaultOutcome::Waiting => loop {
                    if self.h.resumed.contains(&f) {
                        break;
                    }
                    if let Some(k) = self.h.killed.iter().find(|k| k.1 == f) {
                        return Err(k.2);
                    }
                    if self.h.pending.is_empty() {
                        assert!(self.m.needs_tick(), "fault {f:?} waits with no I/O in flight");
                        self.m.tick(&mut self.h);
                    } else {
                        self.h.complete(&mut self.m, 0, true);
                    }
                    self.m.audit().unwrap();
                },
            }
        }
        panic!("access to {va:#x} never completes");
    }

    pub fn write(&mut self, task: TaskId, va: u64, v: u64) -> Result<(), KillReason> {
        self.access(task, va, Access::Write, Some(v)).map(|_| ())
    }

    pub fn read(&mut self, task: TaskId, va: u64) -> Result<Vec<u8>, KillReason> {
        self.access(task, va, Access::Read, None).map(|r| r.unwrap())
    }

    /// Completes every pending request successfully.
    pub fn drain(&mut self) {
        while !self.h.pending.is_empty() {
            self.h.complete(&mut self.m, 0, true);
            self.m.audit().unwrap();
        }
    }

    /// Count of effects matching `f`.
    pub fn count(&self, f: impl Fn(&Effect) -> bool) -> usize {
        self.h.log.iter().filter(|e| f(e)).count()
    }
}
