//! A bounded slot table whose keys carry a generation, used for tasks and
//! threads. A key names the object it was issued for and nothing else: once
//! the object is removed, the slot's generation moves on and the old key is
//! answered with `None`, never with the slot's next occupant.
//!
//! The table gives memory back: free slots at its tail are cut off at once
//! and the slot `Vec` shrinks (to 0 when the table is empty), so a burst of
//! tasks or threads leaves no high-water mark behind. Each index's last
//! generation is kept in a fixed array of `capacity` entries (allocated at
//! the first insert, never freed), so a slot pushed again at a cut-off index
//! continues its own sequence: keys issued before the cut stay stale, and
//! no global floor ratchets up.
//!
//! Generations are 48 bits wide (the ABI's ID layout, `alux_abi::ids`). A
//! slot whose occupant had the last generation is retired when it is
//! removed: never reused, never cut off, and counted against `capacity`
//! like a live value, so exhaustion costs one slot of a bounded table,
//! never heap. `docs/decisions.md` shows that this takes centuries.

use alloc::vec::Vec;

pub use alux_abi::ids::MAX_GENERATION;

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
    generation: u64,
    entry: Entry<T>,
}

/// A key: slot index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The slot.
    pub index: u32,
    /// The slot's generation when the key was issued.
    pub generation: u64,
}

/// Why an insert failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// `capacity` values (live or retired slots) are already held.
    Full,
    /// The heap could not grow the table.
    OutOfMemory,
}

impl From<InsertError> for alux_abi::Error {
    fn from(e: InsertError) -> Self {
        match e {
            InsertError::Full => alux_abi::Error::LimitReached,
            InsertError::OutOfMemory => alux_abi::Error::OutOfMemory,
        }
    }
}

/// A table of at most `capacity` live values (retired slots included).
pub struct GenTable<T> {
    /// Never ends with a free slot.
    slots: Vec<Slot<T>>,
    /// The last generation issued at each index (0: never), `capacity`
    /// entries once anything was inserted. Only read for a slot pushed at
    /// an index that was cut off.
    issued: Vec<u64>,
    /// First and last free slot (`NIL` when none), and how many there are.
    /// Slots in the lower half of the table are linked at the front
    /// (reused first), the others at the back, so the tail tends to empty.
    free_head: u32,
    free_tail: u32,
    free_len: usize,
    /// The generation an index gets the first time it is used.
    first_generation: u64,
    len: usize,
    retired: usize,
    capacity: usize,
}

impl<T> GenTable<T> {
    /// An empty table that holds at most `capacity` values (at most
    /// `alux_abi::ids::MAX_INDEX + 1`, the indices an ID can carry).
    pub const fn new(capacity: usize) -> Self {
        Self::starting_at(capacity, 1)
    }

    /// An empty table whose indices start at generation `first` (clamped
    /// to `1..=MAX_GENERATION`) instead of 1. For tests of generation
    /// exhaustion: a table started near [`MAX_GENERATION`] retires slots
    /// after a few reuses.
    pub const fn starting_at(capacity: usize, first: u64) -> Self {
        let max_slots = alux_abi::ids::MAX_INDEX as usize + 1;
        GenTable {
            slots: Vec::new(),
            issued: Vec::new(),
            free_head: NIL,
            free_tail: NIL,
            free_len: 0,
            first_generation: if first == 0 {
                1
            } else if first > MAX_GENERATION {
                MAX_GENERATION
            } else {
                first
            },
            len: 0,
            retired: 0,
            capacity: if capacity > max_slots { max_slots } else { capacity },
        }
    }

    /// Stores the value built by `make` from its future key. Fails (and
    /// `make` is not called) when the table is full, counting retired
    /// slots, or the heap cannot grow it.
    pub fn insert_with(&mut self, make: impl FnOnce(Key) -> T) -> Result<Key, InsertError> {
        if self.len + self.retired >= self.capacity {
            return Err(InsertError::Full);
        }
        if self.issued.is_empty() {
            self.issued.try_reserve_exact(self.capacity).map_err(|_| InsertError::OutOfMemory)?;
            self.issued.resize(self.capacity, 0);
        }
        let key = if self.free_head != NIL {
            let index = self.free_head;
            self.unlink(index);
            Key { index, generation: self.slots[index as usize].generation }
        } else {
            // Free slots are all on the list and none is at the tail, so
            // every slot below is live or retired: the index is below
            // `capacity`.
            self.slots.try_reserve(1).map_err(|_| InsertError::OutOfMemory)?;
            let index = self.slots.len();
            // An index never used starts at `first_generation`; a cut-off
            // one continues its own sequence (its last generation was below
            // the maximum, or the slot would have been retired, not cut).
            let generation = (self.issued[index] + 1).max(self.first_generation);
            self.slots.push(Slot { generation, entry: Entry::Retired });
            Key { index: index as u32, generation }
        };
        self.issued[key.index as usize] = key.generation;
        self.slots[key.index as usize].entry = Entry::Occupied(make(key));
        self.len += 1;
        Ok(key)
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
        // An exhausted generation retires the slot for good (still counted
        // against `capacity`), so a key can never come back to life.
        if slot.generation >= MAX_GENERATION {
            let Entry::Occupied(v) = core::mem::replace(&mut slot.entry, Entry::Retired) else {
                unreachable!()
            };
            self.retired += 1;
            return Some(v);
        }
        slot.generation += 1;
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

    /// Slots retired for good (generation exhausted); they count against
    /// the capacity.
    pub fn retired(&self) -> usize {
        self.retired
    }

    /// Whether removing the value of `key` retires its slot (its
    /// generation is the last one).
    pub fn retires(key: Key) -> bool {
        key.generation >= MAX_GENERATION
    }

    /// Slots the table has room for without growing (for statistics and
    /// tests): 0 when empty, at most `max(4, 4 × slots in use)` otherwise.
    pub fn slab_capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Heap bytes the table's slots and its generation array take (its
    /// values' own heap memory not included).
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Slot<T>>()
            + self.issued.capacity() * core::mem::size_of::<u64>()
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
        self.slots.pop().expect("a slot to cut off");
        while let Some(s) = self.slots.last() {
            if !matches!(s.entry, Entry::Free { .. }) {
                break;
            }
            self.unlink((self.slots.len() - 1) as u32);
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
        let retired = t.slots.iter().filter(|s| matches!(s.entry, Entry::Retired)).count();
        assert_eq!(retired, t.retired);
        assert!(t.len + t.retired <= t.capacity);
        assert!(t.issued.is_empty() || t.issued.len() == t.capacity);
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
        for (i, s) in t.slots.iter().enumerate() {
            assert!(s.generation >= 1 && s.generation <= MAX_GENERATION);
            match s.entry {
                Entry::Free { .. } => assert_eq!(s.generation, t.issued[i] + 1),
                _ => assert_eq!(s.generation, t.issued[i]),
            }
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
        assert_eq!(t.insert_with(|k| k), Err(InsertError::Full));
        t.remove(a);
        assert!(t.insert_with(|k| k).is_ok());
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
        let fixed = 4096 * core::mem::size_of::<u64>();
        assert_eq!(t.slab_capacity(), cap);
        assert_eq!(t.heap_bytes(), cap * core::mem::size_of::<Slot<usize>>() + fixed);
        assert_eq!(t.get(base), Some(&0));
        t.remove(base).unwrap();
        assert_eq!(t.slab_capacity(), 0);
        assert_eq!(t.heap_bytes(), fixed, "only the generation array stays");
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
        // As if slot 0 had been reused 2^48 - 2 times.
        t.slots[0].generation = MAX_GENERATION;
        t.issued[0] = MAX_GENERATION;
        let a = Key { generation: MAX_GENERATION, ..a };
        assert!(GenTable::<char>::retires(a));
        let b = t.insert_with(|_| 'b').unwrap();
        assert_eq!(t.remove(a), Some('a'));
        assert_eq!(t.remove(b), Some('b'));
        check(&t);
        assert_eq!(t.slots.len(), 1, "the retired slot is not cut off");
        assert_eq!(t.retired(), 1);
        assert_eq!(t.get(a), None);
        let c = t.insert_with(|_| 'c').unwrap();
        assert_eq!(c.index, 1);
        assert_eq!(c.generation, b.generation + 1, "index 1 continues its own sequence");
        assert_eq!(t.get(b), None);
        assert_eq!(t.get(a), None);
        check(&t);
    }

    #[test]
    fn generations_near_the_end_retire_slots_that_count_against_the_capacity() {
        // Every index starts three generations before the last.
        let mut t = GenTable::starting_at(3, MAX_GENERATION - 2);
        let mut seen = Vec::new();
        let mut cycles = 0;
        // Create/remove at the tail until no slot is left: each index gives
        // exactly three keys, then is retired and counts as held.
        loop {
            match t.insert_with(|k| k) {
                Ok(k) => {
                    assert!(!seen.contains(&k), "key {k:?} issued twice");
                    assert!(k.generation >= MAX_GENERATION - 2);
                    seen.push(k);
                    assert_eq!(t.remove(k), Some(k));
                    check(&t);
                    cycles += 1;
                }
                Err(e) => {
                    assert_eq!(e, InsertError::Full);
                    break;
                }
            }
        }
        assert_eq!(cycles, 9, "3 indices × 3 generations");
        assert_eq!(t.retired(), 3);
        assert_eq!(t.len(), 0);
        for k in &seen {
            assert_eq!(t.get(*k), None);
            assert_eq!(t.remove(*k), None);
        }
        // Memory stays bounded: three retired slots and the fixed array.
        assert_eq!(t.slots.len(), 3);
        check(&t);
    }

    #[test]
    fn a_cut_off_index_continues_its_own_sequence() {
        let mut t = GenTable::new(4);
        let mut last = Key { index: 0, generation: 0 };
        for _ in 0..1000 {
            let k = t.insert_with(|_| ()).unwrap();
            assert_eq!(k.index, 0);
            assert_eq!(k.generation, last.generation + 1);
            t.remove(k).unwrap();
            assert_eq!(t.slab_capacity(), 0);
            last = k;
        }
        // Index 1 has never been used: it starts at 1, not above index 0.
        let a = t.insert_with(|_| ()).unwrap();
        let b = t.insert_with(|_| ()).unwrap();
        assert_eq!((a.generation, b.generation), (1001, 1));
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
                        Ok(k) => {
                            proptest::prop_assert!(!dead.contains(&k), "key reissued");
                            live.push((k, i));
                        }
                        Err(e) => {
                            proptest::prop_assert_eq!(e, InsertError::Full);
                            proptest::prop_assert_eq!(live.len(), 8);
                        }
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
