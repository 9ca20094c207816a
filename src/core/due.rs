//! What the clock brings: loop timers, handler deadlines, idle timeouts, and the
//! periodic INFO line.
//!
//! `Timers` (`timers.rs`) keeps everything due in one ordered set; here the loop fires
//! what is due at the end of a turn. An idle entry may be stale (the connection was
//! active since it was filed: it is filed again at the true time), or stand for the end
//! of a lingering close or of a flush the peer never read.

use std::time::Duration;

use log::{info, trace};
use mio::Token;

use super::close::CloseReason;
use super::event_loop::EventLoop;
use super::handler::Handler;
use super::record::record;
use super::slot::flags;
use super::timers::{Due, Millis};

impl<S: Default> EventLoop<S> {
    /// Fire everything due by `now`: loop timers, handler deadlines, idle timeouts.
    pub(super) fn fire_due<H: Handler<State = S>>(&mut self, handler: &mut H, now: Millis) {
        while let Some((when, due)) = self.ctx.timers.pop_due(now) {
            match due {
                Due::Timer(id) => {
                    if let Some(key) = self.ctx.timers.fire_timer(id, now) {
                        record!(self.ctx, "timer", key = key);
                        handler.on_timer(&mut self.ctx, key);
                    }
                }
                Due::Deadline(key) => {
                    if self.ctx.timers.take_deadline(key, when) && self.ctx.is_open(Token(key)) {
                        trace!("token {key}: deadline passed");
                        record!(self.ctx, "deadline", conn = key);
                        handler.on_deadline(&mut self.ctx, Token(key));
                    }
                }
                Due::Idle(key) => self.idle_due(handler, key, when, now),
            }
            self.reap(handler);
        }
    }

    fn idle_due<H: Handler<State = S>>(
        &mut self,
        handler: &mut H,
        key: usize,
        when: Millis,
        now: Millis,
    ) {
        let Some(conn) = self.ctx.slab.get_mut(key) else {
            return;
        };
        if conn.idle_filed(now) != Some(when) {
            return; // a stale entry: the connection filed an earlier one since
        }
        conn.set_idle_filed(None);
        match conn.idle_at(now) {
            None => {}
            Some(later) if later > now => {
                // Active since this entry was filed: file it again at the true time.
                self.ctx.timers.file_idle(key, later);
                conn.set_idle_filed(Some(later));
            }
            _ if conn.has(flags::LINGERING) => {
                conn.set_idle_at(None);
                self.ctx.close(Token(key), CloseReason::PeerClosed);
            }
            _ if conn.has(flags::CLOSE_WHEN_FLUSHED) => {
                // The peer did not read what it was owed within `flush_timeout`.
                conn.set_idle_at(None);
                let reason = self.ctx.flushed_close_reason(Token(key));
                self.ctx.close(Token(key), reason);
            }
            _ if conn.has(flags::CLOSING | flags::DETACHED) => {}
            _ => {
                conn.set_idle_at(None);
                trace!("token {key}: idle timeout");
                record!(self.ctx, "idle", conn = key);
                handler.on_idle(&mut self.ctx, Token(key));
            }
        }
    }

    /// One INFO line of what changed since the last one, every `every` (none if nothing
    /// happened): the aggregate that replaces a log line per connection.
    ///
    /// Not a timer, on purpose: any pending timer makes every `epoll_wait` arm a kernel
    /// timer and every turn read the clock, which costs a busy server about 7 % per
    /// round trip (`bench/timers.sh`). A loop with nothing happening has nothing to
    /// report; a busy one checks when the clock was read anyway, or every 256 turns.
    pub(super) fn report(&mut self, every: Duration) {
        let now = self.ctx.clock.now();
        match self.report_at {
            None => self.report_at = Some(self.ctx.clock.after(every)),
            Some(t) if now >= t => {
                if let Some(line) = self.ctx.stats.since(&self.reported) {
                    info!("last {} s: {line}", every.as_secs());
                }
                self.reported = self.ctx.stats.clone();
                self.report_at = Some(self.ctx.clock.after(every));
            }
            Some(_) => {}
        }
    }
}
