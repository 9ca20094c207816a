//! The core: one readiness loop, and everything a handler may ask of it.
//!
//! Read it top to bottom like Redis's `ae.c`. One turn of the loop
//! (`EventLoop::turn`) is:
//!
//! 1. **sleep** in `epoll_wait` (`mio::Poll::poll`) until a socket is ready or the
//!    earliest timer is due — nothing else ever blocks this thread;
//! 2. **dispatch** each event: accept until `WouldBlock` (`accept.rs`), read until
//!    `WouldBlock` and hand the bytes to the handler (`read.rs`), write what was queued
//!    (`write.rs`), deliver signals and wake-ups from other threads;
//! 3. read the connections that were **left ready** (a fairness cap or backpressure
//!    stopped their reading early: no new edge will come for bytes already waiting);
//! 4. **fire** what is due (`timers.rs`): loop timers, handler deadlines, idle timeouts;
//! 5. call the handler's `on_turn`, and finish connections closed along the way
//!    (`on_close`, once each).
//!
//! The core imports nothing else of the crate: services, clients and tools are
//! `Handler`s plugged into it, and nobody writes a second loop or timer beside it.
//!
//! - [`event_loop`]: `EventLoop`: `turn`, `run`, dispatching events.
//! - [`closing`]: finishing closed connections (`on_close`, once), shutdown.
//! - [`due`]: firing what is due: timers, deadlines, idle timeouts, the periodic report.
//! - [`accept`], [`read`], [`write`]: the three readiness paths.
//! - [`handler`]: the `Handler` trait; [`close`]: `CloseReason` and `Closed`.
//! - [`ctx`]: `Ctx`, what a handler may do from a callback.
//! - [`slot`]: one connection's slot: its stream (a socket or a pipe end: a child's stdout
//!   is drained like a socket), peer, flags, buffers only while pending.
//! - [`outbound`]: `OutboundQueue`, seed 001's `message_queue[conn]`, bounded.
//! - [`timers`]: the loop's clock and its ordered set of things due.
//! - [`config`]: `LoopConfig`, the limits every connection is held to.
//! - [`listen`], [`connect`]: sockets made with the right options.
//! - [`offload`]: `Pool`, blocking work on helper threads, results through the waker.
//! - [`record`]: `Recorder`, the loop's events as JSON lines (`--record`), one branch when off.
//! - [`stats`]: counters, the periodic INFO line and the shutdown summary line.
//! - [`log_limit`]: rate-limited warnings, so logs cannot be made to fill a disk.
//! - [`io_util`]: `would_block`, `interrupted` and friends.

pub mod accept;
pub mod close;
pub mod closing;
pub mod config;
pub mod connect;
pub mod ctx;
pub mod due;
pub mod event_loop;
pub mod handler;
pub mod io_util;
pub mod listen;
pub mod log_limit;
pub mod offload;
pub mod outbound;
pub mod read;
pub mod record;
pub mod slot;
pub mod stats;
pub mod timers;
pub mod write;

pub use close::{CloseReason, Closed};
pub use config::{IdleCounts, LoopConfig};
pub use connect::Target;
pub use ctx::Ctx;
pub use event_loop::EventLoop;
pub use handler::{signal_name, Handler, SignalAction};
pub use listen::Listener;
pub use mio::Token;
pub use offload::Pool;
pub use slot::{Peer, Stream};
pub use stats::Stats;
pub use timers::{Millis, TimerId};
pub use write::{SendStatus, LINGER};
