//! Happy eyeballs (RFC 8305): connecting to a host with several addresses without
//! waiting out a dead one.
//!
//! A host's addresses are put in the RFC's order once, when they are known (`order`):
//! IPv6 and IPv4 interleaved, IPv6 first. A new connection for a transfer starts with
//! the first address and, if more are left, a loop timer of `ATTEMPT_DELAY` (250 ms,
//! the RFC's recommended "Connection Attempt Delay"). If the timer comes before the
//! connect completed, the next address's connect starts *beside* it, and so on: the
//! connects race on the one loop, each its own non-blocking socket with its own connect
//! deadline (`--connect-timeout`). A connect that fails (refused, unreachable, timed
//! out) starts the next address at once, without waiting for the timer. The first to
//! complete (`on_open`) wins: the others are closed, the timer cancelled, and the
//! winner carries the request. Only when every address has failed does the transfer
//! fail (or wait for its `--retry`), with the last error seen.
//!
//! So an address whose SYNs vanish (a dead host, a blackholed route, a listener whose
//! backlog is full) costs 250 ms per attempt, not the whole connect timeout, and the
//! winning address is tried first by the host's next connections (`Pool::prefer`).
//!
//! Readiness rule relied on: a non-blocking connect's outcome is a writable event
//! (`on_open`) or `on_close` with `ConnectFailed`; a racing connect carries its
//! transfer's id in its `Link`, and a connect that is no longer in its transfer's race
//! (the race was won, or the transfer is gone and its id reused) is simply closed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::debug;

use super::descriptors::out_of_descriptors;
use super::fetcher::{Fetcher, Link};
use super::net::{timer_key, RACE};
use super::output::Destination;
use super::pool::Addrs;
use super::report::io_text;
use super::transfer::Phase;
use crate::core::{CloseReason, Ctx, Target, Token};

/// RFC 8305's recommended Connection Attempt Delay.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// The addresses in RFC 8305 §4 order: families interleaved, IPv6 first, each family's
/// own order kept.
pub fn order(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.into_iter().partition(|a| a.is_ipv6());
    let mut out = Vec::with_capacity(v6.len() + v4.len());
    let (mut a, mut b) = (v6.into_iter(), v4.into_iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

impl Fetcher {
    /// Open a new connection for transfer `id`: start a connect to its host's next
    /// address, and arm the timer that starts the one after it.
    pub(super) fn connect(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        loop {
            let t = &mut self.transfers[id];
            let host_id = t.host;
            let Addrs::Ready(addrs) = &self.pool.host(host_id).addrs else {
                return self.finish(ctx, id, Some("no address to connect to".into()));
            };
            let Some(&addr) = addrs.get(t.next_addr) else {
                if t.net.racing.is_empty() {
                    let e = t.net.connect_error.take();
                    let e = e.unwrap_or_else(|| "no address left to try".into());
                    return self.fail_transient(ctx, id, e);
                }
                return; // the connects under way decide
            };
            let more = t.next_addr + 1 < addrs.len();
            t.next_addr += 1;
            // Out of descriptors (`descriptors.rs`): a first connect waits for one; a
            // racing one is simply not started (the others go on).
            let with_files = matches!(self.output.destination, Destination::Dir(_));
            if !self.descriptors.room(ctx.len(), with_files) {
                let e = io::Error::from_raw_os_error(libc::EMFILE);
                return self.no_descriptor(ctx, id, &e);
            }
            let link = Link {
                host: host_id,
                transfer: Some(id),
                addr: Some(addr),
                ..Link::default()
            };
            match ctx.connect(&Target::Tcp(addr), link) {
                Ok(token) => {
                    self.pool.host(host_id).open += 1;
                    let t = &mut self.transfers[id];
                    t.net.racing.push(token);
                    t.phase = Phase::Connecting;
                    ctx.set_deadline(token, self.plan.connect_timeout);
                    if let Some(timer) = t.net.race_timer.take() {
                        ctx.cancel_timer(timer);
                    }
                    if more {
                        let key = timer_key(RACE, id, t.serial);
                        t.net.race_timer = Some(ctx.timer_after(ATTEMPT_DELAY, key));
                    }
                    return;
                }
                Err(e) if out_of_descriptors(&e) => return self.no_descriptor(ctx, id, &e),
                // Failed at once (no route): the next address, now.
                Err(e) => self.connect_error(id, addr, &e),
            }
        }
    }

    /// No descriptor for transfer `id`'s next connect: wait for one if nothing races for
    /// it yet, else leave the address for later (a failed racer comes back here).
    fn no_descriptor(&mut self, ctx: &mut Ctx<Link>, id: usize, e: &io::Error) {
        let t = &mut self.transfers[id];
        if t.net.racing.is_empty() {
            return self.wait_for_descriptor(ctx, id, e);
        }
        t.next_addr = t.next_addr.saturating_sub(1);
    }

    /// Remember why the connect to `addr` failed (the last such error is reported).
    fn connect_error(&mut self, id: usize, addr: SocketAddr, e: &io::Error) {
        debug!("connect to {addr}: {e}");
        self.transfers[id].net.connect_error = Some(format!("connect to {addr}: {}", io_text(e)));
    }

    /// The attempt delay of transfer `id` passed with no connect complete: start the
    /// next address beside the ones under way.
    pub(super) fn race_due(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        let Some(t) = self.transfers.get_mut(id) else {
            return;
        };
        t.net.race_timer = None;
        if t.conn.is_none() && !t.net.racing.is_empty() {
            debug!(
                "{}: no connection after {ATTEMPT_DELAY:?}, trying the next address too",
                t.url
            );
            self.connect(ctx, id);
        }
    }

    /// The connect on `token` completed for transfer `id`: true if it wins the race
    /// (the others are closed, and the transfer now owns `token`); false if it is not
    /// in the transfer's race (a stale connect: close it).
    pub(super) fn race_won(&mut self, ctx: &mut Ctx<Link>, id: usize, token: Token) -> bool {
        let Some(t) = self.transfers.get_mut(id) else {
            return false;
        };
        if !t.net.racing.contains(&token) {
            return false;
        }
        t.net.racing.retain(|&r| r != token);
        t.conn = Some(token);
        self.cancel_race(ctx, id);
        true
    }

    /// Close the connects of transfer `id` still racing, and cancel its race timer.
    pub(super) fn cancel_race(&mut self, ctx: &mut Ctx<Link>, id: usize) {
        let Some(t) = self.transfers.get_mut(id) else {
            return;
        };
        if let Some(timer) = t.net.race_timer.take() {
            ctx.cancel_timer(timer);
        }
        for token in t.net.racing.drain(..) {
            if let Some(link) = ctx.state_mut(token) {
                link.transfer = None;
            }
            ctx.close(token, CloseReason::Done);
        }
    }

    /// A connection closed before it connected: if it was racing for its transfer,
    /// try the next address (or fail once none is left) and return true.
    pub(super) fn race_lost(
        &mut self,
        ctx: &mut Ctx<Link>,
        token: Token,
        link: &Link,
        reason: &CloseReason,
    ) -> bool {
        let Some(id) = link.transfer else {
            return false;
        };
        let Some(t) = self.transfers.get_mut(id) else {
            return false;
        };
        if !t.net.racing.contains(&token) {
            return false;
        }
        t.net.racing.retain(|&r| r != token);
        let addr = link
            .addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        match reason {
            CloseReason::ConnectFailed(e) => self.connect_error(id, addr, e),
            other => {
                let e = io::Error::other(other.to_string());
                self.connect_error(id, addr, &e);
            }
        }
        self.connect(ctx, id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_interleave_ipv6_first() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let given = vec![
            a("10.0.0.1:80"),
            a("10.0.0.2:80"),
            a("10.0.0.3:80"),
            a("[2001:db8::1]:80"),
            a("[2001:db8::2]:80"),
        ];
        let want = vec![
            a("[2001:db8::1]:80"),
            a("10.0.0.1:80"),
            a("[2001:db8::2]:80"),
            a("10.0.0.2:80"),
            a("10.0.0.3:80"),
        ];
        assert_eq!(order(given), want);
        assert_eq!(order(vec![a("10.0.0.1:80")]), vec![a("10.0.0.1:80")]);
    }
}
