//! Task and thread identifiers, and user IDs.
//!
//! A task or thread ID packs a slot index (low 32 bits) and a generation
//! (high 32 bits). A slot's generation grows each time the slot is reused, so
//! an ID kept after its object died never names a newer object: it is
//! answered with `NoSuchTask`/`NoSuchThread`.

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
            /// Builds an ID from a slot index and a generation.
            pub const fn new(index: u32, generation: u32) -> Self {
                Self(((generation as u64) << 32) | index as u64)
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
                self.0 as u32
            }
            /// The slot generation.
            pub const fn generation(self) -> u32 {
                (self.0 >> 32) as u32
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
    }
}
