//! Intrusive doubly linked lists over slab indices.
//!
//! This module owns only the link arithmetic: a list head stores the first
//! and last index, each node stores its neighbours in a [`Links`] field that
//! a selector function picks out. Pushing, unlinking and popping are O(1)
//! and never allocate. It must never know what the nodes mean; callers keep
//! track of which list (if any) a node is on.

/// "No node": the end of a list, or an unlinked node's neighbours.
pub(crate) const NIL: u32 = u32::MAX;

/// A node's neighbours on one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Links {
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Links {
    /// The links of a node on no list.
    pub(crate) const UNLINKED: Links = Links { prev: NIL, next: NIL };
}

impl Default for Links {
    fn default() -> Self {
        Links::UNLINKED
    }
}

/// A list head: first and last node, and the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: u32,
}

impl List {
    /// The empty list.
    pub(crate) const EMPTY: List = List { head: NIL, tail: NIL, len: 0 };

    /// True if the list has no node.
    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// The first node, if any.
    pub(crate) fn head_opt(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Appends node `i`, which must be on no list of this kind.
    pub(crate) fn push_back<T>(&mut self, nodes: &mut [T], sel: fn(&mut T) -> &mut Links, i: u32) {
        *sel(&mut nodes[i as usize]) = Links { prev: self.tail, next: NIL };
        if self.tail == NIL {
            self.head = i;
        } else {
            sel(&mut nodes[self.tail as usize]).next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    /// Prepends node `i`, which must be on no list of this kind.
    #[cfg(test)]
    pub(crate) fn push_front<T>(&mut self, nodes: &mut [T], sel: fn(&mut T) -> &mut Links, i: u32) {
        *sel(&mut nodes[i as usize]) = Links { prev: NIL, next: self.head };
        if self.head == NIL {
            self.tail = i;
        } else {
            sel(&mut nodes[self.head as usize]).prev = i;
        }
        self.head = i;
        self.len += 1;
    }

    /// Removes node `i`, which must be on this list.
    pub(crate) fn unlink<T>(&mut self, nodes: &mut [T], sel: fn(&mut T) -> &mut Links, i: u32) {
        let Links { prev, next } = *sel(&mut nodes[i as usize]);
        if prev == NIL {
            self.head = next;
        } else {
            sel(&mut nodes[prev as usize]).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            sel(&mut nodes[next as usize]).prev = prev;
        }
        *sel(&mut nodes[i as usize]) = Links::UNLINKED;
        self.len -= 1;
    }

    /// Removes and returns the first node.
    pub(crate) fn pop_front<T>(
        &mut self,
        nodes: &mut [T],
        sel: fn(&mut T) -> &mut Links,
    ) -> Option<u32> {
        let h = self.head;
        if h == NIL {
            return None;
        }
        self.unlink(nodes, sel, h);
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn sel(l: &mut Links) -> &mut Links {
        l
    }

    fn collect(list: &List, nodes: &[Links]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = list.head;
        while i != NIL {
            out.push(i);
            i = nodes[i as usize].next;
        }
        out
    }

    #[test]
    fn push_unlink_pop_keep_order() {
        let mut nodes = [Links::UNLINKED; 5];
        let mut l = List::EMPTY;
        for i in 0..5 {
            l.push_back(&mut nodes, sel, i);
        }
        l.unlink(&mut nodes, sel, 2);
        l.unlink(&mut nodes, sel, 0);
        l.unlink(&mut nodes, sel, 4);
        assert_eq!(collect(&l, &nodes), [1, 3]);
        assert_eq!(l.len, 2);
        assert_eq!(l.pop_front(&mut nodes, sel), Some(1));
        assert_eq!(l.pop_front(&mut nodes, sel), Some(3));
        assert_eq!(l.pop_front(&mut nodes, sel), None);
        assert!(l.is_empty() && l.tail == NIL);
        assert!(nodes.iter().all(|n| *n == Links::UNLINKED));
    }

    #[test]
    fn push_front_prepends() {
        let mut nodes = [Links::UNLINKED; 4];
        let mut l = List::EMPTY;
        l.push_front(&mut nodes, sel, 1);
        l.push_back(&mut nodes, sel, 2);
        l.push_front(&mut nodes, sel, 0);
        l.push_back(&mut nodes, sel, 3);
        assert_eq!(collect(&l, &nodes), [0, 1, 2, 3]);
        assert_eq!((l.head, l.tail, l.len), (0, 3, 4));
        l.unlink(&mut nodes, sel, 3);
        l.unlink(&mut nodes, sel, 0);
        assert_eq!(collect(&l, &nodes), [1, 2]);
        assert_eq!((nodes[1].prev, nodes[2].next), (NIL, NIL));
    }
}
