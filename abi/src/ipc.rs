//! Basic IPC ABI types: handles, events, and the records IPC calls fill in.
//!
//! Owned by the IPC core work (see `docs/ipc.md`).
