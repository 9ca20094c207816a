//! The upload service's side of its disk jobs: handing batches to the pool, collecting
//! results in `on_wake`, cleaning up after uploads nobody waits for any more, and the
//! pauses that keep memory bounded.
//!
//! A result names its connection by token *and* serial number, and its upload by serial
//! number: by the time a job is done, its connection may be gone (and its token reused)
//! or its upload refused. Such an orphan result is not an error, only work to finish:
//! a file still open is handed back to the pool to be removed, a file already stored is
//! logged (its reply has nobody to go to).
//!
//! Pausing is by reasons (`hold` bits): a connection reads while no reason holds it. A
//! paused connection always has its bytes in a job (see `after_input`), so a result, and
//! with it the `on_wake` that lifts the pause, is always on its way.

use std::io;

use log::{debug, warn};
use mio::Token;

use super::report::Warn;
use super::writer::{discard_job, reusable, Done, Outcome, Owner, Writer};
use super::{hold, peer_name, Upload, UploadConn, DEFAULT_IDLE_TIMEOUT};
use super::{POOL_THREADS, RESUME_ALLOWANCE, SPARES, TOTAL_MAX};
use crate::core::{Ctx, Pool};
use crate::proto::frames::Reply;

impl Upload {
    /// The pool, started on first use.
    pub(super) fn pool(&mut self, ctx: &mut Ctx<UploadConn>) -> io::Result<&mut Pool<Done>> {
        if self.pool.is_none() {
            self.pool = Some(Pool::new("upload-disk", POOL_THREADS, ctx.waker()?)?);
        }
        self.pool
            .as_mut()
            .ok_or_else(|| io::Error::other("upload pool missing"))
    }

    /// Hand the upload's next batch to the pool, if one is due.
    pub(super) fn submit(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let Some(state) = ctx.state_mut(token) else {
            return;
        };
        let conn = state.id;
        let Some(job) = state
            .current
            .as_mut()
            .and_then(|w| w.next_job(&self.store, token, conn))
        else {
            return;
        };
        match self.pool(ctx) {
            Ok(pool) => pool.submit(move || job.run()),
            Err(e) => {
                warn!("cannot start the upload disk threads: {e}");
                self.buffered = self.buffered.saturating_sub(job.bytes());
                drop(job); // its `Partial` goes with it; the temporary file too
                self.refuse(ctx, token, format!("server error: {e}"));
            }
        }
    }

    /// Give up on an upload: its bytes leave the budget, its temporary file goes (on
    /// the pool; if a job holds the file, the job's result takes care of it).
    pub(super) fn abandon(&mut self, ctx: &mut Ctx<UploadConn>, writer: Writer, owner: Owner) {
        self.buffered = self.buffered.saturating_sub(writer.pending());
        if let Some(partial) = writer.abandon() {
            match self.pool(ctx) {
                Ok(pool) => pool.submit(discard_job(owner, partial)),
                Err(e) => warn!("cannot start the upload disk threads: {e}"),
            }
        }
    }

    /// A job's result came back.
    pub(super) fn job_done(&mut self, ctx: &mut Ctx<UploadConn>, mut done: Done) {
        self.buffered = self.buffered.saturating_sub(done.bytes);
        let buffer = std::mem::take(&mut done.buffer);
        if reusable(buffer.capacity()) && self.spares.len() < SPARES {
            self.spares.push(buffer);
        }
        let Owner { token, conn, .. } = done.owner;
        let live = ctx
            .state(token)
            .is_some_and(|s| s.id == conn && owner_of(s, token) == done.owner);
        if !live {
            return self.orphan(ctx, done);
        }
        let peer = peer_name(ctx, token);
        match done.outcome {
            Outcome::Written(partial) => {
                if let Some(writer) = ctx.state_mut(token).and_then(|s| s.current.as_mut()) {
                    writer.written(partial);
                }
                self.submit(ctx, token);
                // The waiting batch just went to the pool: room again.
                set_hold(ctx, token, hold::FULL, false);
            }
            Outcome::Stored(stored) => {
                debug!(
                    "{peer}: stored {:?} ({} bytes, sha256 {})",
                    stored.name, stored.bytes, stored.sha256
                );
                self.stored += 1;
                self.bytes += stored.bytes;
                self.report.stored(stored.bytes);
                let reply = Reply::Stored {
                    file_name: stored.name,
                    bytes: stored.bytes,
                    sha256: stored.sha256,
                };
                ctx.send(token, &reply.encode());
                if let Some(state) = ctx.state_mut(token) {
                    state.current = None;
                }
                // The next frames may go on now, starting with those already read.
                set_hold(ctx, token, hold::FINISHING, false);
                let carry = ctx
                    .state_mut(token)
                    .map(|s| std::mem::take(&mut s.carry))
                    .unwrap_or_default();
                if !carry.is_empty() {
                    self.feed_carry(ctx, token, carry);
                }
            }
            Outcome::Failed(e) => {
                let name = ctx
                    .state(token)
                    .and_then(|s| s.current.as_ref())
                    .map(|w| w.name.clone())
                    .unwrap_or_default();
                // The log gets the paths, the client the file name and the cause.
                self.report.warn(
                    ctx,
                    Warn::Store,
                    format_args!("{peer}: cannot store {name:?}: {e}"),
                );
                let cause = io::Error::from(e.kind());
                self.refuse(ctx, token, format!("cannot store {name:?}: {cause}"));
            }
            Outcome::Discarded => {}
        }
    }

    /// A result nobody waits for: its connection closed, or refused the upload.
    pub(super) fn orphan(&mut self, ctx: &mut Ctx<UploadConn>, done: Done) {
        match done.outcome {
            Outcome::Written(partial) => {
                if let Ok(pool) = self.pool(ctx) {
                    pool.submit(discard_job(done.owner, partial));
                }
            }
            Outcome::Stored(stored) => {
                // The last byte had arrived: the file is whole and in place, only the
                // reply is lost.
                debug!(
                    "stored {:?} ({} bytes), but its connection closed before the reply",
                    stored.name, stored.bytes
                );
                self.stored += 1;
                self.bytes += stored.bytes;
                self.report.stored(stored.bytes);
            }
            Outcome::Failed(e) => debug!("abandoned upload: {e}"),
            Outcome::Discarded => {}
        }
    }

    /// Resume connections paused for the total budget, oldest first, while it has room.
    pub(super) fn release_budget(&mut self, ctx: &mut Ctx<UploadConn>) {
        if self.buffered >= TOTAL_MAX / 4 * 3 {
            return;
        }
        let mut room = TOTAL_MAX - self.buffered;
        while room >= RESUME_ALLOWANCE {
            let Some((token, id)) = self.waiting.pop_front() else {
                return;
            };
            let paused = ctx
                .state(token)
                .is_some_and(|s| s.id == id && s.hold & hold::BUDGET != 0);
            if paused {
                set_hold(ctx, token, hold::BUDGET, false);
                room -= RESUME_ALLOWANCE;
            }
        }
    }
}

/// Pause or resume reading for one reason; the connection reads while no reason holds.
pub(super) fn set_hold(ctx: &mut Ctx<UploadConn>, token: Token, bit: u8, on: bool) {
    let Some(state) = ctx.state_mut(token) else {
        return;
    };
    if state.refused {
        return;
    }
    let before = state.hold != 0;
    if on {
        state.hold |= bit;
    } else {
        state.hold &= !bit;
    }
    match (before, state.hold != 0) {
        (false, true) => ctx.pause_reading(token),
        (true, false) => {
            if state.idle_deferred {
                // Its idle time counts from now, when it can send again.
                let idle = ctx.config().idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
                ctx.set_deadline(token, idle);
            }
            ctx.resume_reading(token);
        }
        _ => {}
    }
}

/// The address of the connection's current upload's jobs.
pub(super) fn owner_of(state: &UploadConn, token: Token) -> Owner {
    Owner {
        token,
        conn: state.id,
        upload: state.current.as_ref().map_or(0, |w| w.id),
    }
}
