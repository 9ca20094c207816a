//! Ctrl-C and `kill`: a run interrupted by SIGINT or SIGTERM still ends in order.
//!
//! The loop turns signals into events (`EventLoop::handle_signals`: the signal handler
//! only writes to a pipe, the loop reads it like a socket and calls `on_signal`), so an
//! interrupt is handled between two callbacks, like anything else, with every data
//! structure consistent. What the fetcher does with it:
//!
//! - **The first signal** stops admitting URLs and cancels every transfer in flight: each
//!   ends with the error "interrupted by SIGINT", its connection is closed, and its body's
//!   temporary file is removed by the writer thread after its last bytes — exactly the
//!   path of any failed transfer, so nothing new can go wrong here. The loop then runs on
//!   until the writer has printed the results of every URL that finished (and those
//!   cancelled), and `fetch` prints the summary and returns `Interrupted`: the command
//!   exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as shells
//!   expect of a process a signal ended.
//! - **A second signal** means "now": the writer may be blocked (a stdout nobody reads),
//!   so nothing waits for it. The loop thread removes the temporary files itself and the
//!   process exits with `_exit` — no destructors, no flushing, no joining of threads that
//!   may never return. Files under their final names are complete bodies either way:
//!   bodies only get their names once complete (`naming.rs`).
//!
//! URLs never started get no result line; the summary counts them.

use std::fmt;
use std::io;

use super::fetcher::{Fetcher, Link};
use crate::core::{signal_name, Ctx, SignalAction};

/// The run was cut short by a signal: the error `fetch` returns, so the command can exit
/// with `exit_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted {
    /// The signal's number (SIGINT, SIGTERM).
    pub signal: i32,
    /// URLs never started.
    pub not_started: usize,
}

impl Interrupted {
    /// 128 + the signal's number, as for a process the signal killed.
    pub fn exit_code(&self) -> i32 {
        128 + self.signal
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted by {}", signal_name(self.signal))
    }
}

impl std::error::Error for Interrupted {}

/// The `Interrupted` inside an error `fetch` returned, if the run was interrupted.
pub fn interrupted(e: &io::Error) -> Option<Interrupted> {
    e.get_ref()?.downcast_ref::<Interrupted>().copied()
}

impl Fetcher {
    /// SIGINT or SIGTERM (`on_signal`): the first cancels the run in order, a second
    /// exits at once (see the module docs).
    pub(super) fn interrupt(&mut self, ctx: &mut Ctx<Link>, signal: i32) -> SignalAction {
        if signal != libc::SIGINT && signal != libc::SIGTERM {
            return SignalAction::Handled;
        }
        if self.interrupted.is_some() {
            // Held until the exit: no temporary file can appear after the cleanup.
            let _no_new_files = self.output.remove_temp_files();
            // SAFETY: `_exit` ends the process without running anything else: no
            // destructor, no atexit handler, no lock taken (the writer thread may hold
            // stdout's). Every file left is complete or already removed above.
            unsafe { libc::_exit(128 + signal) };
        }
        let not_started = self.plan.urls.len() - self.next_url.min(self.plan.urls.len());
        self.interrupted = Some(Interrupted {
            signal,
            not_started,
        });
        log::info!(
            "{}: cancelling {} transfers, {not_started} URLs not started (again to exit at once)",
            signal_name(signal),
            self.transfers.len()
        );
        // No more admissions: as if every URL had been admitted.
        self.next_url = self.plan.urls.len();
        let running: Vec<usize> = self.transfers.iter().map(|(id, _)| id).collect();
        for id in running {
            let e = format!("interrupted by {}: transfer cancelled", signal_name(signal));
            self.finish(ctx, id, Some(e));
        }
        self.stop_if_done(ctx);
        SignalAction::Handled
    }
}
