//! A bounded slot table whose keys carry a generation, used for tasks and
//! threads. A key names the object it was issued for and nothing else: once
//! the object is removed, the slot's generation moves on and the old key is
//! answered with `None`, never with the slot's next occupant.
//!
//! The table gives memory back: free slots at its tail are cut off at once
//! and the slot `Vec` shrinks (to 0 when the table is empty), so a burst of
//! tasks or threads leaves no high-water mark behind. A slot pushed again at
//! a cut-off index starts above every generation a cut-off slot had, so
//! keys issued before the cut stay stale.

use alloc::vec::Vec;

/// "No slot": the end of the free list.
const NIL: u32 = u32::MAX;

/// The smallest non-zero capacity kept: the one `Vec` growth starts with
/// for `T` (as in `alloc`'s `RawVec`), so a table back at a small length
/// has the capacity it had when it first grew to it.
const fn min_kept<T>() -> usize {
    match core::mem::size_of::<T>() {
        1 => 8,
        n if n <= 1024 => 4,
        _ => 1,
    }
}

enum Entry<T> {
    /// A live value.
    Occupied(T),
    /// A reusable slot, on the free list.
    Free { prev: u32, next: u32 },
    /// A slot whose generation is exhausted: never reused, never cut off.
    Retired,
}

struct Slot<T> {
    /// The live value's generation; for a free slot, the generation its
    /// next occupant gets.
    generation: u32,
    entry: Entry<T>,
}

/// A key: slot index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The slot.
    pub index: u32,
    /// The slot's generation when the key was issued.
    pub generation: u32,
}

/// A table of at most `capacity` live values.
pub struct GenTable<T> {
    /// Never ends with a free slot.
    slots: Vec<Slot<T>>,
    /// First and last free slot (`NIL` when none), and how many there are.
    /// Slots in the lower half of the table are linked at the front
    /// (reused first), the others at the back, so the tail tends to empty.
    free_head: u32,
    free_tail: u32,
    free_len: usize,
    /// The generation a slot pushed at the end starts with: above every
    /// generation a cut-off slot issued.
    fresh_generation: u32,
    len: usize,
    capacity: usize,
}

impl<T> GenTable<T> {
    /// An empty table that holds at most `capacity` values.
    pub const fn new(capacity: usize) -> Self {
        GenTable {
            slots: Vec::new(),
            free_head: NIL,
            free_tail: NIL,
            free_len: 0,
            fresh_generation: 1,
            len: 0,
            capacity,
        }
    }

    /// Stores the value built by `make` from its future key; `None` (and
    /// `make` is not called) when the table is full or memory runs out.
    pub fn insert_with(&mut self, make: impl FnOnce(Key) -> T) -> Option<Key> {
        if self.len >= self.capacity {
            return None;
        }
        let key = if self.free_head != NIL {
            let index = self.free_head;
            self.unlink(index);
            Key { index, generation: self.slots[index as usize].generation }
        } else {
            self.slots.try_reserve(1).ok()?;
            self.slots.push(Slot { generation: self.fresh_generation, entry: Entry::Retired });
            Key { index: (self.slots.len() - 1) as u32, generation: self.fresh_generation }
        };
        self.slots[key.index as usize].entry = Entry::Occupied(make(key));
        self.len += 1;
        Some(key)
    }

    /// The value for a key, if the key is current.
    pub fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        match &slot.entry {
            Entry::Occupied(v) if slot.generation == key.generation => Some(v),
            _ => None,
        }
    }

    /// Mutable access for a current key.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        match &mut slot.entry {
            Entry::Occupied(v) if slot.generation == key.generation => Some(v),
            _ => None,
        }
    }

    /// Removes and returns the value; the key (and any copy of it) is stale
    /// from now on. Amortised O(1): it may cut off free tail slots (each
    /// once per push) and shrink the table.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation || !matches!(slot.entry, Entry::Occupied(_)) {
            return None;
        }
        self.len -= 1;
        // A generation that would wrap retires the slot for good, so a key
        // can never come back to life.
        let Some(next) = slot.generation.checked_add(1) else {
            let Entry::Occupied(v) = core::mem::replace(&mut slot.entry, Entry::Retired) else {
                unreachable!()
            };
            return Some(v);
        };
        slot.generation = next;
        let Entry::Occupied(v) =
            core::mem::replace(&mut slot.entry, Entry::Free { prev: NIL, next: NIL })
        else {
            unreachable!()
        };
        let n = self.slots.len();
        if key.index as usize + 1 == n {
            self.trim();
        } else if (key.index as usize) < n / 2 {
            self.push_front(key.index);
        } else {
            self.push_back(key.index);
        }
        Some(v)
    }

    /// Live values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slots the table has room for without growing (for statistics and
    /// tests): 0 when empty, at most `max(4, 4 × slots in use)` otherwise.
    pub fn slab_capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Heap bytes the table's slots take (its values' own heap memory not
    /// included).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Slot<T>>()
    }

    /// Every live key and value.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match &s.entry {
            Entry::Occupied(v) => Some((Key { index: i as u32, generation: s.generation }, v)),
            _ => None,
        })
    }

    /// Every live key and value, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| match &mut s.entry {
            Entry::Occupied(v) => Some((Key { index: i as u32, generation: s.generation }, v)),
            _ => None,
        })
    }

    /// Cuts off the last slot (just freed, on no list) and the free slots
    /// below it, then shrinks the `Vec`: freed entirely when empty, else to
    /// `len` rounded up to a power of two (at least `min_kept`, the first
    /// capacity `Vec` growth gives) once at most a quarter of
    /// it is in use (so growth and shrinking are both amortised O(1)).
    fn trim(&mut self) {
        let last = self.slots.pop().expect("a slot to cut off");
        self.fresh_generation = self.fresh_generation.max(last.generation);
        while let Some(s) = self.slots.last() {
            if !matches!(s.entry, Entry::Free { .. }) {
                break;
            }
            let g = s.generation;
            self.unlink((self.slots.len() - 1) as u32);
            self.fresh_generation = self.fresh_generation.max(g);
            self.slots.pop();
        }
        let (len, cap) = (self.slots.len(), self.slots.capacity());
        if len == 0 {
            self.slots = Vec::new();
        } else if len <= cap / 4 {
            self.slots.shrink_to(len.next_power_of_two().max(min_kept::<Slot<T>>()));
        }
    }

    fn links(&mut self, i: u32) -> (&mut u32, &mut u32) {
        match &mut self.slots[i as usize].entry {
            Entry::Free { prev, next } => (prev, next),
            _ => unreachable!("free-list node {i} is not free"),
        }
    }

    fn push_front(&mut self, i: u32) {
        let head = self.free_head;
        *self.links(i).0 = NIL;
        *self.links(i).1 = head;
        if head == NIL {
            self.free_tail = i;
        } else {
            *self.links(head).0 = i;
        }
        self.free_head = i;
        self.free_len += 1;
    }

    fn push_back(&mut self, i: u32) {
        let tail = self.free_tail;
        *self.links(i).0 = tail;
        *self.links(i).1 = NIL;
        if tail == NIL {
            self.free_head = i;
        } else {
            *self.links(tail).1 = i;
        }
        self.free_tail = i;
        self.free_len += 1;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let (p, n) = self.links(i);
            (*p, *n)
        };
        if prev == NIL {
            self.free_head = next;
        } else {
            *self.links(prev).1 = next;
        }
        if next == NIL {
            self.free_tail = prev;
        } else {
            *self.links(next).0 = prev;
        }
        let (p, n) = self.links(i);
        (*p, *n) = (NIL, NIL);
        self.free_len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every internal invariant.
    fn check<T>(t: &GenTable<T>) {
        let occupied = t.slots.iter().filter(|s| matches!(s.entry, Entry::Occupied(_))).count();
        assert_eq!(occupied, t.len);
        assert!(t.len <= t.capacity);
        let free = t.slots.iter().filter(|s| matches!(s.entry, Entry::Free { .. })).count();
        assert_eq!(free, t.free_len);
        // Walk the free list both ways.
        let (mut n, mut prev, mut i) = (0, NIL, t.free_head);
        while i != NIL {
            n += 1;
            assert!(n <= t.free_len, "free list loops");
            let Entry::Free { prev: p, next } = t.slots[i as usize].entry else {
                panic!("non-free slot {i} on the free list")
            };
            assert_eq!(p, prev);
            (prev, i) = (i, next);
        }
        assert_eq!((n, prev), (t.free_len, t.free_tail));
        assert!(
            !matches!(t.slots.last(), Some(s) if matches!(s.entry, Entry::Free { .. })),
            "free slot at the tail"
        );
        let (len, cap) = (t.slots.len(), t.slots.capacity());
        if len == 0 {
            assert_eq!(cap, 0);
        } else {
            assert!(len > cap / 4 || cap <= len.next_power_of_two().max(min_kept::<Slot<T>>()));
        }
        for s in &t.slots {
            assert!(s.generation >= 1);
        }
    }

    #[test]
    fn stale_keys_never_name_new_objects() {
        let mut t = GenTable::new(4);
        let a = t.insert_with(|_| "a").unwrap();
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert_with(|_| "b").unwrap();
        assert_eq!(a.index, b.index);
        assert_ne!(a.generation, b.generation);
        assert_eq!(t.get(a), None);
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(b), Some(&"b"));
    }

    #[test]
    fn capacity_is_enforced() {
        let mut t = GenTable::new(2);
        let a = t.insert_with(|k| k).unwrap();
        t.insert_with(|k| k).unwrap();
        assert!(t.insert_with(|k| k).is_none());
        t.remove(a);
        assert!(t.insert_with(|k| k).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn insert_passes_the_key() {
        let mut t = GenTable::new(8);
        let k = t.insert_with(|k| k).unwrap();
        assert_eq!(t.get(k), Some(&k));
        assert_eq!(t.iter().count(), 1);
    }

    #[test]
    fn random_index_is_none() {
        let t: GenTable<u8> = GenTable::new(8);
        assert!(t.get(Key { index: 5, generation: 1 }).is_none());
    }

    #[test]
    fn memory_goes_back_after_a_burst() {
        let mut t = GenTable::new(4096);
        let base = t.insert_with(|_| 0usize).unwrap();
        let cap = t.slab_capacity();
        let keys: Vec<Key> = (1..=3000).map(|i| t.insert_with(|_| i).unwrap()).collect();
        assert!(t.slab_capacity() >= 3001);
        // Freed out of order: the tail goes as soon as it is free.
        for k in keys.iter().step_by(2).chain(keys.iter().skip(1).step_by(2)) {
            t.remove(*k).unwrap();
            check(&t);
        }
        assert_eq!(t.slab_capacity(), cap);
        assert_eq!(t.heap_bytes(), cap * core::mem::size_of::<Slot<usize>>());
        assert_eq!(t.get(base), Some(&0));
        t.remove(base).unwrap();
        assert_eq!(t.slab_capacity(), 0);
        assert_eq!(t.heap_bytes(), 0);
        // Regrown over the cut-off slots: every old key stays stale.
        let new: Vec<Key> = (0..3001).map(|i| t.insert_with(|_| i).unwrap()).collect();
        check(&t);
        for k in keys.iter().chain([&base]) {
            assert_eq!(t.get(*k), None);
            assert!(t.get_mut(*k).is_none());
            assert_eq!(t.remove(*k), None);
        }
        for (i, k) in new.iter().enumerate() {
            assert_eq!(t.get(*k), Some(&i));
            assert!(k.generation > 1, "{k:?}");
        }
        assert_eq!(t.iter().count(), 3001);
    }

    #[test]
    fn free_low_slots_are_reused_first() {
        let mut t = GenTable::new(100);
        let keys: Vec<Key> = (0..100).map(|i| t.insert_with(|_| i).unwrap()).collect();
        t.remove(keys[90]).unwrap();
        t.remove(keys[3]).unwrap();
        t.remove(keys[95]).unwrap();
        assert_eq!(t.insert_with(|_| 0).unwrap().index, 3);
        assert_eq!(t.insert_with(|_| 0).unwrap().index, 90);
        check(&t);
    }

    #[test]
    fn a_retired_slot_stays_and_its_keys_stay_stale() {
        let mut t = GenTable::new(8);
        let a = t.insert_with(|_| 'a').unwrap();
        // As if slot 0 had been reused 2^32 - 2 times.
        t.slots[0].generation = u32::MAX;
        let a = Key { generation: u32::MAX, ..a };
        let b = t.insert_with(|_| 'b').unwrap();
        assert_eq!(t.remove(a), Some('a'));
        assert_eq!(t.remove(b), Some('b'));
        check(&t);
        assert_eq!(t.slots.len(), 1, "the retired slot is not cut off");
        assert_eq!(t.get(a), None);
        let c = t.insert_with(|_| 'c').unwrap();
        assert_eq!(c.index, 1);
        assert!(c.generation > b.generation);
        assert_eq!(t.get(b), None);
        assert_eq!(t.get(a), None);
        check(&t);
    }

    proptest::proptest! {
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..3, 0usize..16), 0..200)) {
            let mut t = GenTable::new(8);
            let mut live: Vec<(Key, usize)> = Vec::new();
            let mut dead: Vec<Key> = Vec::new();
            for (i, (op, pick)) in ops.into_iter().enumerate() {
                match op {
                    0 => match t.insert_with(|_| i) {
                        Some(k) => {
                            proptest::prop_assert!(!dead.contains(&k), "key reissued");
                            live.push((k, i));
                        }
                        None => proptest::prop_assert_eq!(live.len(), 8),
                    },
                    1 if !live.is_empty() => {
                        let (k, v) = live.remove(pick % live.len());
                        proptest::prop_assert_eq!(t.remove(k), Some(v));
                        dead.push(k);
                    }
                    _ => {}
                }
                check(&t);
                for (k, v) in &live {
                    proptest::prop_assert_eq!(t.get(*k), Some(v));
                }
                for k in &dead {
                    proptest::prop_assert!(t.get(*k).is_none());
                }
                proptest::prop_assert_eq!(t.len(), live.len());
                proptest::prop_assert_eq!(t.iter().count(), live.len());
            }
            for (k, v) in live.drain(..) {
                proptest::prop_assert_eq!(t.remove(k), Some(v));
                dead.push(k);
            }
            proptest::prop_assert_eq!(t.slab_capacity(), 0);
            for k in &dead {
                proptest::prop_assert!(t.get(*k).is_none());
            }
        }
    }
}
