//! A bounded slot table whose keys carry a generation, used for tasks and
//! threads. A key names the object it was issued for and nothing else: once
//! the object is removed, the slot's generation moves on and the old key is
//! answered with `None`, never with the slot's next occupant.

use alloc::vec::Vec;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
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
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    capacity: usize,
}

impl<T> GenTable<T> {
    /// An empty table that holds at most `capacity` values.
    pub const fn new(capacity: usize) -> Self {
        GenTable {
            slots: Vec::new(),
            free: Vec::new(),
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
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.try_reserve(1).ok()?;
                self.free.try_reserve(self.slots.len() + 1).ok()?;
                self.slots.push(Slot {
                    generation: 1,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        let key = Key {
            index,
            generation: slot.generation,
        };
        slot.value = Some(make(key));
        self.len += 1;
        Some(key)
    }

    /// The value for a key, if the key is current.
    pub fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_ref()
    }

    /// Mutable access for a current key.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Removes and returns the value; the key (and any copy of it) is stale
    /// from now on.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        // A generation that would wrap retires the slot for good, so a key
        // can never come back to life.
        match slot.generation.checked_add(1) {
            Some(g) => {
                slot.generation = g;
                self.free.push(key.index);
            }
            None => slot.generation = u32::MAX,
        }
        self.len -= 1;
        Some(value)
    }

    /// Live values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every live key and value.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value.as_ref().map(|v| {
                (
                    Key {
                        index: i as u32,
                        generation: s.generation,
                    },
                    v,
                )
            })
        })
    }

    /// Every live key and value, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let g = s.generation;
            s.value.as_mut().map(move |v| {
                (
                    Key {
                        index: i as u32,
                        generation: g,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(t
            .get(Key {
                index: 5,
                generation: 1
            })
            .is_none());
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
                        Some(k) => live.push((k, i)),
                        None => proptest::prop_assert_eq!(live.len(), 8),
                    },
                    1 if !live.is_empty() => {
                        let (k, v) = live.remove(pick % live.len());
                        proptest::prop_assert_eq!(t.remove(k), Some(v));
                        dead.push(k);
                    }
                    _ => {}
                }
                for (k, v) in &live {
                    proptest::prop_assert_eq!(t.get(*k), Some(v));
                }
                for k in &dead {
                    proptest::prop_assert!(t.get(*k).is_none());
                }
                proptest::prop_assert_eq!(t.len(), live.len());
            }
        }
    }
}
