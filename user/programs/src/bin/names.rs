//! The name service: maps names of up to 24 bytes to task IDs. A name is
//! bound to the connection that registered it (and so to the registering
//! task) and is released when that connection closes. See
//! `alux_rt::names` for the protocol.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use alux_abi::ipc::{Events, Handle};
use alux_abi::TaskId;
use alux_rt::ipc::{self, Connection, Listener};
use alux_rt::names::{self, OP_LOOKUP, OP_REGISTER};
use alux_rt::{println, Start};

/// Ports kept in the listen queue at once.
const PORTS: usize = 8;
/// Most names held (each costs a few dozen bytes here, nothing in the kernel).
const MAX_NAMES: usize = 1024;

struct Client {
    conn: Connection,
    task: TaskId,
}

fn main(_: &Start) -> u64 {
    let mut listener = Listener::new();
    let mut clients: BTreeMap<Handle, Client> = BTreeMap::new();
    // name -> (task, registering connection)
    let mut table: BTreeMap<Vec<u8>, (TaskId, Handle)> = BTreeMap::new();
    loop {
        listener.refill(PORTS);
        let Ok(r) = ipc::receive(None) else { continue };
        if r.events.contains(Events::OPENED) {
            if let Some(conn) = listener.accept(r.handle) {
                let task = conn.info().map(|i| i.peer_task_id()).unwrap_or(TaskId::from_raw(0));
                clients.insert(r.handle, Client { conn, task });
            }
        }
        if r.events.contains(Events::SIGNAL) {
            if let Some(c) = clients.get(&r.handle) {
                let mut reply = [0u8; 32];
                reply[0] = match names::parse_request(r.message.bytes()) {
                    Some((OP_REGISTER, name)) => match table.get(name) {
                        Some(_) => names::STATUS_TAKEN,
                        None if table.len() >= MAX_NAMES => names::STATUS_FULL,
                        None => {
                            table.insert(name.to_vec(), (c.task, r.handle));
                            println!(
                                "names: {} registered by task {}",
                                core::str::from_utf8(name).unwrap_or("?"),
                                c.task
                            );
                            names::STATUS_OK
                        }
                    },
                    Some((OP_LOOKUP, name)) => match table.get(name) {
                        Some((task, _)) => {
                            reply[8..16].copy_from_slice(&task.raw().to_le_bytes());
                            names::STATUS_OK
                        }
                        None => names::STATUS_NOT_FOUND,
                    },
                    _ => names::STATUS_BAD_REQUEST,
                };
                let _ = c.conn.send(&reply);
            }
        }
        if r.events.contains(Events::PEER_CLOSED) {
            clients.remove(&r.handle);
            table.retain(|_, (_, h)| *h != r.handle);
        }
    }
}
alux_rt::entry!(main);
