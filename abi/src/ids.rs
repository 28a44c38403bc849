//! Task and thread identifiers, and user IDs.
//!
//! A task or thread ID (and an IPC handle) packs a slot index (low
//! [`INDEX_BITS`] bits) and a generation (high [`GENERATION_BITS`] bits). A
//! slot's generation grows each time the slot is reused, so an ID kept
//! after its object died never names a newer object: it is answered with
//! `NoSuchTask`/`NoSuchThread` (`StaleHandle` for a handle). A slot whose
//! generation reaches [`MAX_GENERATION`] is retired instead of wrapping
//! (see `docs/decisions.md` for why that takes centuries).

/// Bits of an ID that hold the slot index. Every table of the kernel holds
/// far fewer than `2^16` slots (the largest, the IPC end slab, 16,384).
pub const INDEX_BITS: u32 = 16;
/// Bits of an ID that hold the generation.
pub const GENERATION_BITS: u32 = 64 - INDEX_BITS;
/// The largest slot index an ID can carry.
pub const MAX_INDEX: u32 = (1 << INDEX_BITS) - 1;
/// The largest generation an ID can carry. A slot issued at this
/// generation is retired when its object goes, never reused.
pub const MAX_GENERATION: u64 = (1 << GENERATION_BITS) - 1;

/// Defines a `u64` identifier packing a slot index and a generation, shown
/// as `{prefix}{index}.{generation}`. Used for task, thread and IPC handle
/// IDs alike.
macro_rules! generational_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Builds an ID from a slot index and a generation; bits above
            /// [`MAX_INDEX`](crate::ids::MAX_INDEX) and
            /// [`MAX_GENERATION`](crate::ids::MAX_GENERATION) are dropped.
            pub const fn new(index: u32, generation: u64) -> Self {
                Self(
                    ((generation & $crate::ids::MAX_GENERATION) << $crate::ids::INDEX_BITS)
                        | (index & $crate::ids::MAX_INDEX) as u64,
                )
            }
            /// The raw value passed in registers.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// Reinterprets a register value; validity is checked by the kernel.
            pub const fn from_raw(raw: u64) -> Self {
                Self(raw)
            }
            /// The slot index.
            pub const fn index(self) -> u32 {
                (self.0 & $crate::ids::MAX_INDEX as u64) as u32
            }
            /// The slot generation.
            pub const fn generation(self) -> u64 {
                self.0 >> $crate::ids::INDEX_BITS
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}{}.{}", $prefix, self.index(), self.generation())
            }
        }
    };
}

pub(crate) use generational_id;

generational_id!(
    /// Names a task (an address space with its threads).
    TaskId,
    ""
);
generational_id!(
    /// Names a thread, system-wide.
    ThreadId,
    ""
);

/// A user ID. The uid space is 16 bits wide (65,536 users) so that a task's
/// connect-permission bitmap is a fixed 8 KiB.
pub type Uid = u16;

/// The number of distinct uids.
pub const UID_COUNT: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_packs_index_and_generation() {
        let id = TaskId::new(7, 3);
        assert_eq!(id.index(), 7);
        assert_eq!(id.generation(), 3);
        assert_eq!(TaskId::from_raw(id.raw()), id);
        assert_ne!(TaskId::new(7, 4), id);
        let top = ThreadId::new(MAX_INDEX, MAX_GENERATION);
        assert_eq!((top.index(), top.generation()), (MAX_INDEX, MAX_GENERATION));
        assert_eq!(top.raw(), u64::MAX);
        let low = ThreadId::new(0, 1);
        assert_eq!(low.raw(), 1 << INDEX_BITS);
        assert_eq!(ThreadId::new(MAX_INDEX + 1, 0), ThreadId::new(0, 0), "index bits are masked");
    }
}
