//! Basic IPC (see issue 4).
