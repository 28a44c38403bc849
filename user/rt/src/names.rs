//! The name service client: find a task by a name of up to 24 bytes.
//!
//! The name service is an ordinary task (`names`); programs learn its task
//! ID from their spawn arguments (`ns=ID`, see [`crate::Start::arg_value`]).
//! A name is registered through a connection and stays registered while
//! that connection is open: when the registering thread or task ends, the
//! name is released. Protocol (one 32-byte message each way):
//!
//! | byte | request | reply |
//! |---|---|---|
//! | 0 | op: 1 register, 2 lookup | status: 0 ok, 1 not found, 2 taken, 3 bad request, 4 full |
//! | 1 | name length (1..=24) | |
//! | 2..26 | name | |
//! | 8..16 | | task ID (lookup), little-endian |

use crate::ipc::{self, Connection};
use alux_abi::{Error, TaskId};
use core::time::Duration;

/// Longest name.
pub const NAME_MAX: usize = 24;
/// Request: register the caller's task under a name.
pub const OP_REGISTER: u8 = 1;
/// Request: look a name up.
pub const OP_LOOKUP: u8 = 2;
/// Reply: done.
pub const STATUS_OK: u8 = 0;
/// Reply: no such name.
pub const STATUS_NOT_FOUND: u8 = 1;
/// Reply: the name belongs to another registration.
pub const STATUS_TAKEN: u8 = 2;
/// Reply: malformed request.
pub const STATUS_BAD_REQUEST: u8 = 3;
/// Reply: the service holds as many names as it can.
pub const STATUS_FULL: u8 = 4;

/// Why a name service call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    /// No task is registered under the name.
    NotFound,
    /// Another registration holds the name.
    Taken,
    /// The name is empty or longer than 24 bytes.
    BadName,
    /// The service holds as many names as it can.
    Full,
    /// The service answered something malformed.
    BadReply,
    /// Talking to the service failed.
    Ipc(Error),
}

impl From<Error> for NameError {
    fn from(e: Error) -> Self {
        NameError::Ipc(e)
    }
}

/// Encodes a request; `None` for a bad name.
pub fn request(op: u8, name: &str) -> Option<[u8; 32]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > NAME_MAX {
        return None;
    }
    let mut m = [0u8; 32];
    m[0] = op;
    m[1] = bytes.len() as u8;
    m[2..2 + bytes.len()].copy_from_slice(bytes);
    Some(m)
}

/// Decodes a request into its op and name.
pub fn parse_request(m: &[u8]) -> Option<(u8, &[u8])> {
    let len = *m.get(1)? as usize;
    if len == 0 || len > NAME_MAX || m.len() < 2 + len {
        return None;
    }
    Some((m[0], &m[2..2 + len]))
}

/// A connection to the name service, owned by the calling thread.
pub struct NameService {
    conn: Connection,
}

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(30));

impl NameService {
    /// Connects to the name service task.
    pub fn connect(service: TaskId) -> Result<Self, NameError> {
        Ok(NameService { conn: ipc::connect(service, TIMEOUT)? })
    }

    fn ask(&self, op: u8, name: &str) -> Result<[u8; 32], NameError> {
        let req = request(op, name).ok_or(NameError::BadName)?;
        let reply = self.conn.call(&req, TIMEOUT)?;
        if reply.len < 16 {
            return Err(NameError::BadReply);
        }
        match reply.data[0] {
            STATUS_OK => Ok(reply.data),
            STATUS_NOT_FOUND => Err(NameError::NotFound),
            STATUS_TAKEN => Err(NameError::Taken),
            STATUS_BAD_REQUEST => Err(NameError::BadName),
            STATUS_FULL => Err(NameError::Full),
            _ => Err(NameError::BadReply),
        }
    }

    /// Registers the calling task under `name` for as long as this
    /// connection stays open.
    pub fn register(&self, name: &str) -> Result<(), NameError> {
        self.ask(OP_REGISTER, name).map(|_| ())
    }

    /// The task registered under `name`.
    pub fn lookup(&self, name: &str) -> Result<TaskId, NameError> {
        let r = self.ask(OP_LOOKUP, name)?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&r[8..16]);
        Ok(TaskId::from_raw(u64::from_le_bytes(id)))
    }
}
