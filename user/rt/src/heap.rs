//! The program heap: regions mapped from the kernel on demand, each managed
//! by a `linked_list_allocator` heap. A region is never returned; the task's
//! memory goes back to the system when it ends.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;
use spin::Mutex;

const MAX_REGIONS: usize = 24;
const FIRST_REGION: usize = 256 * 1024;

struct Regions {
    heaps: [Option<Heap>; MAX_REGIONS],
    count: usize,
}

/// The global allocator of every alux program.
pub struct RtAllocator(Mutex<Regions>);

#[global_allocator]
static ALLOCATOR: RtAllocator =
    RtAllocator(Mutex::new(Regions { heaps: [const { None }; MAX_REGIONS], count: 0 }));

impl Regions {
    fn grow(&mut self, layout: Layout) -> Option<()> {
        if self.count == MAX_REGIONS {
            return None;
        }
        let want = (FIRST_REGION << self.count.min(8)).max(layout.size() + layout.align() + 4096);
        let size = want.next_multiple_of(4096);
        let base = crate::sys::mem_map(size, alux_abi::syscall::map_flags::WRITE).ok()?;
        // SAFETY: the kernel just mapped `size` fresh writable bytes at
        // `base` for this task; only this heap will use them.
        let heap = unsafe { Heap::new(base, size) };
        self.heaps[self.count] = Some(heap);
        self.count += 1;
        Some(())
    }
}

// SAFETY: allocation and deallocation are serialised by the mutex; every
// pointer handed out comes from one of the region heaps and is given back to
// the heap whose range contains it.
unsafe impl GlobalAlloc for RtAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut r = self.0.lock();
        loop {
            let count = r.count;
            for h in r.heaps[..count].iter_mut().flatten() {
                if let Ok(p) = h.allocate_first_fit(layout) {
                    return p.as_ptr();
                }
            }
            if r.grow(layout).is_none() {
                return core::ptr::null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut r = self.0.lock();
        let count = r.count;
        for h in r.heaps[..count].iter_mut().flatten() {
            if (h.bottom() as usize..h.top() as usize).contains(&(ptr as usize)) {
                // SAFETY: `ptr` came from this heap with this layout (the
                // GlobalAlloc contract) and lies in its range.
                unsafe { h.deallocate(NonNull::new_unchecked(ptr), layout) };
                return;
            }
        }
    }
}
