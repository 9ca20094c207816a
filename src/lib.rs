//! netloop: readiness-based network I/O on one single-threaded `mio` event loop.
//!
//! Everything netloop does — the echo family of servers, the client, the HTTP fetcher,
//! the stress tester and the upload service — is a [`handler::Handler`]
//! plugged into the one loop in [`event_loop`]. Read that file first; `NOTES.md` explains
//! how it maps to the Python `select()`/`selectors` programs it comes from.
//!
//! # Layout
//!
//! - [`event_loop`]: the loop (`Poll`, `Events`, the slab of connections), one turn at a time.
//! - [`conns`]: `Conns`, the connection table and what handlers may do (send, close, connect).
//! - [`conn`]: one connection's slot: socket, peer, flags, buffers only while pending.
//! - [`outbound`]: `OutboundQueue`, the bytes a peer is owed (seed 001's `message_queue`).
//! - [`deadlines`]: the loop clock and the ordered deadlines behind idle timeouts.
//! - [`handler`]: the `Handler` trait applications implement, and `CloseReason`.
//! - [`listen`]: TCP, Unix and UDP sockets made with the right options.
//! - [`services`]: echo, upper, hello and upload, one file each.
//! - [`framing`]: length-prefixed JSON frames and the upload stream decoder (seeds 000, 004).
//! - [`upload_store`]: the upload directory: name rules, temporary files, no-clobber rename.
//! - [`auth`]: the HMAC-SHA256 challenge/response of seed 000's demo 4.
//! - [`upload`]: `netloop upload`, the upload client on the loop.
//! - [`serve`]: `netloop serve`, services on every transport asked for.
//! - [`serve_workers`]: `netloop serve --workers N`, the nginx worker model: ports, spawning.
//! - [`supervisor`]: the parent of those workers, a handler on the loop.
//! - [`client`]: `netloop client`, the seeds' interactive client.
//! - [`resolve`]: `netloop resolve`, seed 001's address lookups.
//! - [`stats`]: counters and the shutdown summary line.
//! - [`stress`]: `netloop stress`, many idle connections and a few measured ones.
//! - [`fetch`]: `netloop fetch`, a non-blocking HTTP/1.1 and HTTPS fetcher (seed 001's `Fetcher`).
//! - [`io_util`]: `would_block`, `interrupted` and friends.

#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod conn;
pub mod conns;
pub mod deadlines;
pub mod event_loop;
pub mod fetch;
pub mod framing;
pub mod handler;
pub mod io_util;
pub mod listen;
pub mod outbound;
pub mod resolve;
pub mod serve;
pub mod serve_workers;
pub mod services;
pub mod stats;
pub mod stress;
pub mod supervisor;
pub mod upload;
pub mod upload_store;

pub use event_loop::{Conns, EventLoop, LoopConfig, Target};
pub use handler::{CloseReason, Handler, SignalAction};
pub use mio::Token;
