//! The upload service's input: the challenge answer, frames, body bytes, and EOF.
//!
//! All of it runs on the loop thread and none of it touches a file: a header becomes a
//! `Writer` (with only a temporary *name*), body bytes are copied into its pending batch,
//! and the batch goes to the pool (`writer.rs`) when it is big enough, when the read
//! burst ends, or when the body is complete.
//!
//! When the last byte of an upload is decoded, decoding stops and reading pauses until
//! the file is finished and its reply sent, so replies leave in the order the uploads
//! came. Bytes already read past that point (the next header, perhaps more) cannot be
//! left to the loop: a resumed connection is offered new input only, so a pipelined
//! frame that is already here would never be offered again if the client then waits for
//! its reply. So they are kept in `UploadConn::carry` and decoded when the reply is out;
//! while `carry` is not empty, new input is appended to it, so order is kept. Its size is
//! bounded: reading is paused while it holds more than a partial header.

use std::mem;

use log::debug;
use mio::Token;

use super::hold;
use super::jobs::set_hold;
use super::report::Warn;
use super::store::check_file_name;
use super::writer::Writer;
use super::{peer_name, Upload, UploadConn, BATCH, CONN_PENDING_MAX, TOTAL_MAX};
use std::time::Duration;

use crate::core::timers::Millis;
use crate::core::Ctx;
use crate::proto::frames::{FrameError, Item};
use crate::proto::hmac_auth::CHALLENGE_LEN;

/// Why `feed` stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// It needs more bytes (a partial header or answer): the rest is not consumed.
    Incomplete,
    /// An upload is complete and being finished: the rest waits.
    Finishing,
    /// The connection was refused: everything is discarded.
    Refused,
}

impl Upload {
    /// `on_data`: decode, act, and keep what must wait.
    pub(super) fn input(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, data: &[u8]) -> usize {
        let Some(state) = ctx.state_mut(token) else {
            return data.len();
        };
        if state.idle_deferred {
            // The peer sent something: the loop's idle timeout counts again on its own;
            // a header deadline that idle deferral displaced is set again.
            state.idle_deferred = false;
            let since = state.header_since;
            ctx.clear_deadline(token);
            if let Some(since) = since {
                self.arm_header_deadline(ctx, token, since);
            }
        }
        let Some(state) = ctx.state_mut(token) else {
            return data.len();
        };
        if !state.carry.is_empty() {
            let mut carry = mem::take(&mut state.carry);
            carry.extend_from_slice(data);
            self.feed_carry(ctx, token, carry);
            return data.len();
        }
        let (used, stop) = self.feed(ctx, token, data);
        match stop {
            Stop::Refused => data.len(),
            Stop::Finishing => {
                if let Some(state) = ctx.state_mut(token) {
                    state.carry = data[used..].to_vec();
                }
                data.len()
            }
            Stop::Incomplete => {
                self.after_input(ctx, token);
                used // a partial header: the loop keeps it and offers it again with more
            }
        }
    }

    /// Decode what `carry` holds (input read while an upload was being finished, plus
    /// anything appended since); keep what is left of it.
    pub(super) fn feed_carry(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, carry: Vec<u8>) {
        let mut carry = carry;
        let (used, stop) = self.feed(ctx, token, &carry);
        if stop == Stop::Refused {
            return;
        }
        carry.drain(..used);
        if let Some(state) = ctx.state_mut(token) {
            state.carry = if carry.is_empty() { Vec::new() } else { carry };
        }
        if stop == Stop::Incomplete {
            self.after_input(ctx, token);
        }
    }

    /// Decode items from `input` and act on them, until more bytes are needed, an
    /// upload is complete, or the connection is refused. Returns the bytes used.
    fn feed(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, input: &[u8]) -> (usize, Stop) {
        let mut used = 0;
        let now = ctx.now();
        loop {
            let Some(state) = ctx.state_mut(token) else {
                return (input.len(), Stop::Refused);
            };
            if state.refused {
                return (input.len(), Stop::Refused);
            }
            if state.challenge.is_some() {
                match self.authenticate(ctx, token, &input[used..]) {
                    Some(0) => return (used, Stop::Incomplete),
                    Some(n) => {
                        used += n;
                        continue;
                    }
                    None => return (input.len(), Stop::Refused),
                }
            }
            let item = match state.decoder.decode(&input[used..], &self.limits) {
                Err(FrameError::Incomplete) => {
                    // Bytes left over are part of a header (body bytes are always taken).
                    if used < input.len() && state.header_since.is_none() {
                        state.header_since = Some(now);
                        self.arm_header_deadline(ctx, token, now);
                    }
                    return (used, Stop::Incomplete);
                }
                Err(FrameError::Invalid(e)) => {
                    let peer = peer_name(ctx, token);
                    self.report
                        .warn(ctx, Warn::Refused, format_args!("{peer}: refused: {e}"));
                    self.refuse(ctx, token, e.to_string());
                    return (input.len(), Stop::Refused);
                }
                Ok((item, n)) => {
                    used += n;
                    item
                }
            };
            match item {
                Item::Header(header) => {
                    if state.header_since.take().is_some() && !state.idle_deferred {
                        ctx.clear_deadline(token);
                    }
                    if let Err(why) = check_file_name(&header.file_name) {
                        let peer = peer_name(ctx, token);
                        self.report.warn(
                            ctx,
                            Warn::Refused,
                            format_args!("{peer}: refused: {why}"),
                        );
                        self.refuse(ctx, token, why);
                        return (input.len(), Stop::Refused);
                    }
                    let id = self.next_serial();
                    let temp = self.store.temp_path();
                    let writer = Writer::new(id, header.file_name, header.file_size, temp);
                    debug!(
                        "{}: receiving {:?}, {} bytes",
                        peer_name(ctx, token),
                        writer.name,
                        writer.size
                    );
                    if let Some(state) = ctx.state_mut(token) {
                        state.current = Some(Box::new(writer));
                    }
                }
                Item::Body { bytes, last } => {
                    let Some(writer) = state.current.as_mut() else {
                        continue; // cannot happen: the decoder yields a header first
                    };
                    writer.push(bytes, &mut self.spares);
                    self.buffered += bytes.len();
                    if last {
                        writer.set_last();
                        self.submit(ctx, token);
                        set_hold(ctx, token, hold::FINISHING, true);
                        return (used, Stop::Finishing);
                    }
                }
            }
        }
    }

    /// Set the connection's handler deadline to the header timeout counted from `since`
    /// (the header's first byte): a trickle of bytes cannot push it back.
    fn arm_header_deadline(&mut self, ctx: &mut Ctx<UploadConn>, token: Token, since: Millis) {
        let spent = Duration::from_millis(ctx.now().saturating_sub(since));
        ctx.set_deadline(token, self.header_timeout.saturating_sub(spent));
    }

    /// After consuming input: pause reading if all uploads together hold too much, send
    /// a big enough batch to the pool, and pause if this connection still holds too much.
    fn after_input(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let Some(state) = ctx.state(token) else {
            return;
        };
        let id = state.id;
        if self.buffered >= TOTAL_MAX && state.hold & hold::BUDGET == 0 {
            debug!(
                "{}: {} bytes held by all uploads, reading paused",
                peer_name(ctx, token),
                self.buffered
            );
            set_hold(ctx, token, hold::BUDGET, true);
            self.waiting.push_back((token, id));
        }
        let Some(state) = ctx.state(token) else {
            return;
        };
        let pending = state.current.as_ref().map_or(0, |w| w.pending());
        // A paused connection gets no burst end to send the rest: send it now. So every
        // paused connection's bytes are in a job, whose result will wake the loop.
        if pending >= BATCH || state.hold != 0 {
            self.submit(ctx, token);
        }
        // Still this much after `submit`: a job is writing the previous batch.
        let pending = ctx
            .state(token)
            .and_then(|s| s.current.as_ref())
            .map_or(0, |w| w.pending());
        set_hold(ctx, token, hold::FULL, pending >= CONN_PENDING_MAX);
    }

    /// Check the 32-byte answer at the start of `data`; returns bytes used (0: wait),
    /// `None` when refused.
    fn authenticate(
        &mut self,
        ctx: &mut Ctx<UploadConn>,
        token: Token,
        data: &[u8],
    ) -> Option<usize> {
        let peer = peer_name(ctx, token);
        let state = ctx.state_mut(token)?;
        let challenge = state.challenge.as_deref().copied()?;
        let Some(answer) = data.get(..CHALLENGE_LEN) else {
            return Some(0); // incomplete: the deadline set in `on_open` still runs
        };
        let secret = self.secret.as_ref()?;
        if secret.verify(&challenge, answer) {
            state.challenge = None;
            ctx.clear_deadline(token);
            debug!("{peer}: authenticated");
            Some(CHALLENGE_LEN)
        } else {
            let message = format_args!("{peer}: authentication failed (wrong answer)");
            self.report.warn(ctx, Warn::AuthFailed, message);
            self.refuse(ctx, token, "authentication failed".into());
            None
        }
    }

    /// `on_eof`: the peer half-closed. Reading is paused while an upload is finished,
    /// so an EOF is only seen between uploads or in the middle of one.
    pub(super) fn eof(&mut self, ctx: &mut Ctx<UploadConn>, token: Token) {
        let peer = peer_name(ctx, token);
        let unconsumed = ctx.unconsumed(token).len();
        let Some(state) = ctx.state_mut(token) else {
            return;
        };
        let unconsumed = unconsumed + state.carry.len();
        let why = if state.refused {
            None
        } else if let Some(w) = &state.current {
            Some(format!(
                "connection ended after {} of {} bytes of {:?}",
                w.received, w.size, w.name
            ))
        } else if state.challenge.is_some() {
            Some("connection ended before the authentication answer".to_string())
        } else if unconsumed > 0 {
            Some(format!(
                "connection ended inside a header ({unconsumed} bytes)"
            ))
        } else {
            None
        };
        match why {
            Some(why) => {
                // The peer only half-closed: it can still read why nothing was stored.
                debug!("{peer}: {why}; discarded");
                self.refuse(ctx, token, why);
            }
            None => ctx.close_when_flushed(token),
        }
    }
}
