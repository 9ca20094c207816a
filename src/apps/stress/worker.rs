//! One worker process of `netloop stress --workers W`: the stress handler on its own
//! loop, talking to the parent (`workers.rs`) over its stdin and stdout.
//!
//! Its stdout is a socket pair to the parent, and it prints JSON lines there:
//! `{"progress":…}` every `PROGRESS_EVERY` (a repeating loop timer), `{"connected":…}`
//! once its connect phase is over, and `{"report":…}` (with its latency histogram) at the
//! end. Its stdin, the other socket pair, brings the parent's orders, one per line:
//! `go` (every worker is connected: hold now) and `stop SIGNAL` (the parent was
//! interrupted: end now, with a report). Its stdin closing means the parent is gone: it
//! stops at once (and the kernel sends it SIGTERM anyway, `PR_SET_PDEATHSIG`).

use std::io::{self, Write};
use std::time::Duration;

use mio::Token;
use serde_json::{json, Value};

use crate::apps::stress::memory::rss_kb;
use crate::apps::stress::probe::{Phase, ProbeState, Stress, FIRST_FREE_TIMER};
use crate::apps::stress::{plan, StressOptions};
use crate::core::{Closed, Ctx, EventLoop, Handler, LoopConfig, SignalAction};
use crate::workers::spawn::{add_to_loop, stdin_from_parent};

/// Worker's timer key: time to tell the parent how far it is.
const PROGRESS_TIMER: u64 = FIRST_FREE_TIMER;
/// How often a worker tells the parent how far it is.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The worker side: the stress handler, plus the parent's `go` on stdin.
struct Worker {
    stress: Stress,
    stdin: Token,
    said_connected: bool,
}

fn emit(v: Value) {
    let mut out = io::stdout().lock();
    // If the parent is gone there is no one to tell; the stdin EOF ends the run.
    let _ = writeln!(out, "{v}").and_then(|()| out.flush());
}

impl Worker {
    /// Tell the parent once the connect phase is over (checked after each callback that
    /// can end it: a connect completing, failing or timing out, a rate timer).
    fn tell_when_connected(&mut self) {
        if self.stress.phase() == Phase::Connected && !self.said_connected {
            self.said_connected = true;
            emit(json!({"connected": true, "progress": self.stress.progress().to_json()}));
        }
    }
}

impl Handler for Worker {
    type State = ProbeState;

    fn on_open(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.stress.on_open(ctx, token);
        self.tell_when_connected();
    }

    fn on_data(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, data: &mut [u8]) -> usize {
        if token != self.stdin {
            return self.stress.on_data(ctx, token, data);
        }
        // Whole lines: `go` (hold now) or `stop SIGNAL` (end now, with a report).
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&data[used..used + end]).into_owned();
            used += end + 1;
            if line == "go" && self.stress.phase() == Phase::Connected {
                self.stress.start_hold(ctx);
            } else if let Some(signal) = line.strip_prefix("stop ") {
                self.stress.interrupt(ctx, signal);
            }
        }
        used
    }

    fn on_eof(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        if token == self.stdin {
            // The parent went away: stop now.
            self.stress.end(ctx);
        } else {
            ctx.close_when_flushed(token);
        }
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<ProbeState>, token: Token) {
        self.stress.on_deadline(ctx, token)
    }

    /// A signal sent to the worker itself (not through the parent): end with a report.
    fn on_signal(&mut self, ctx: &mut Ctx<ProbeState>, signal: i32) -> SignalAction {
        self.stress.on_signal(ctx, signal)
    }

    fn on_timer(&mut self, ctx: &mut Ctx<ProbeState>, key: u64) {
        if key == PROGRESS_TIMER {
            emit(json!({"progress": self.stress.progress().to_json()}));
        } else {
            self.stress.on_timer(ctx, key);
            self.tell_when_connected();
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<ProbeState>, token: Token, closed: Closed<ProbeState>) {
        if token == self.stdin {
            // Stdin failed rather than ended: the parent is gone all the same.
            self.stress.end(ctx);
        } else {
            self.stress.on_close(ctx, token, closed);
            self.tell_when_connected();
        }
    }
}

/// Run as a worker: stdin and stdout are socket pairs to the parent.
pub fn run_as_worker(opts: &StressOptions) -> io::Result<()> {
    let mut stress = Stress::new(plan(opts)?);
    stress.auto_hold = false;
    let mut event_loop: EventLoop<ProbeState> = EventLoop::new(LoopConfig::default())?;
    event_loop.handle_signals()?;
    let ctx = event_loop.ctx();
    let stdin = add_to_loop(ctx, stdin_from_parent()?, ProbeState::default())?;
    ctx.timer_every(PROGRESS_EVERY, PROGRESS_TIMER);
    let mut worker = Worker {
        stress,
        stdin,
        said_connected: false,
    };
    worker.stress.start(ctx);
    worker.tell_when_connected();
    event_loop.run(&mut worker)?;
    let mut report = worker.stress.report;
    report.client_rss_kb = rss_kb("self").unwrap_or(0);
    emit(json!({"report": report.to_json(true)}));
    Ok(())
}
