//! The program heap: regions reserved on demand (from memd for a paged
//! task, from the kernel otherwise: `crate::mem`), each managed by a
//! `linked_list_allocator` heap. A region that empties is given back
//! (except the first, which most programs keep using), so a burst of
//! allocations does not hold memory for the rest of the task's life.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;
use spin::Mutex;

const MAX_REGIONS: usize = 24;
const FIRST_REGION: usize = 256 * 1024;

struct Regions {
    /// Live regions; a freed one leaves a hole that the next growth fills.
    heaps: [Option<Heap>; MAX_REGIONS],
}

/// The global allocator of every alux program.
pub struct RtAllocator(Mutex<Regions>);

#[global_allocator]
static ALLOCATOR: RtAllocator =
    RtAllocator(Mutex::new(Regions { heaps: [const { None }; MAX_REGIONS] }));

impl Regions {
    fn grow(&mut self, layout: Layout) -> Option<()> {
        let slot = self.heaps.iter().position(|h| h.is_none())?;
        // Each region doubles the last live one's size, so a heap that
        // grows and shrinks again (regions given back) starts small again.
        let live = self.heaps.iter().filter(|h| h.is_some()).count();
        let want = (FIRST_REGION << live.min(8)).max(layout.size() + layout.align() + 4096);
        let size = want.next_multiple_of(4096);
        let base = crate::mem::reserve(size, true).ok()?;
        // SAFETY: `size` fresh writable bytes at `base` were just reserved
        // for this task; only this heap will use them.
        let heap = unsafe { Heap::new(base, size) };
        self.heaps[slot] = Some(heap);
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
            for h in r.heaps.iter_mut().flatten() {
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
        for (i, slot) in r.heaps.iter_mut().enumerate() {
            let Some(h) = slot else { continue };
            if (h.bottom() as usize..h.top() as usize).contains(&(ptr as usize)) {
                // SAFETY: `ptr` came from this heap with this layout (the
                // GlobalAlloc contract) and lies in its range.
                unsafe { h.deallocate(NonNull::new_unchecked(ptr), layout) };
                if i > 0 && h.used() == 0 {
                    let (bottom, size) = (h.bottom(), h.size());
                    *slot = None;
                    // SAFETY: the region is empty and no longer one of the
                    // heaps: nothing refers to it.
                    let _ = unsafe { crate::mem::release(bottom, size) };
                }
                return;
            }
        }
    }
}
