//! netloop: readiness-based network I/O on one single-threaded `mio` event loop.
//!
//! Everything netloop does — the echo family of servers, the chat example, the client,
//! the HTTP fetcher, the stress tester and the upload service — is a [`Handler`]
//! plugged into the one loop in [`core`]. Read `core/event_loop.rs` first; `NOTES.md`
//! explains how it maps to the Python `select()`/`selectors` programs it comes from.
//!
//! # Layout
//!
//! The tree is the architecture; arrows point down only
//! (command line → services, apps, workers → proto → core):
//!
//! - [`core`]: the loop and its API (`EventLoop`, `Handler`, `Ctx`, timers, the offload
//!   pool, listeners); imports nothing else of the crate.
//! - [`proto`]: pure codecs that know no sockets: length-prefixed JSON frames, the HMAC
//!   challenge, HTTP response parsing.
//! - [`services`]: what `netloop serve` runs: echo, upper, hello, upload, exec; one
//!   handler each.
//! - [`apps`]: clients and tools on the loop: `client`, `upload`, `exec`, `fetch`, `stress`,
//!   `resolve`.
//! - [`workers`]: worker processes (spawning, shared by `serve` and `stress`; the supervisor).
//!
//! The command line (`src/cli/`: argument structs, parsing and the wiring) belongs to the
//! `netloop` binary, not to this library: nothing here imports it.

#![deny(missing_docs)]

pub mod apps;
pub mod core;
pub mod proto;
pub mod services;
pub mod workers;

pub use crate::core::{
    CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Pool, SendStatus, SignalAction,
    Target, TimerId, Token,
};
