//! Out of file descriptors: transfers wait for one instead of failing.
//!
//! Every connection is a descriptor, and so is every file being written with `-o DIR`
//! (opened by the writer thread, which must not be the one to find none left).
//! With `--concurrency 2000` and a soft limit of 1,024 (a common default), `socket()`
//! fails with `EMFILE` for about half the transfers at once; failing those URLs (what the
//! fetcher did, issue 11: 1,879 failures) makes a resource limit look like a network
//! error. The limit is only how many transfers can be *in flight*, so those transfers
//! wait instead. Two ways lead there: the open-file limit read at the first connect,
//! less what is open then and a margin, gives a budget of connections (half of it with
//! `-o DIR`: a file each), and `EMFILE` from `socket()` anyway (another thread, a lower
//! system-wide limit). Either way the transfer waits: first come, first served, in `waiting`, each retried when a connection
//! of the run closes (the loop drops the socket before `on_close`, so a descriptor is
//! free right then), or when a connection goes idle — an idle keep-alive connection to
//! another host is closed to free its descriptor. Only when nothing of ours is open — no connection whose close could
//! free a descriptor — is `EMFILE` a transfer's error: then waiting would be forever.

use std::collections::VecDeque;
use std::io;

use super::fetcher::{Fetcher, Link};
use super::transfer::Phase;
use crate::core::io_util::{open_file_limit, os_error};
use crate::core::{CloseReason, Ctx};

/// Descriptors kept free for what is not a connection or a body's file: the resolver's
/// lookups, a `--record` file, the writer's stdout, the loop's own.
const MARGIN: usize = 32;

/// Transfers waiting for a descriptor to open their connection with.
#[derive(Debug, Default)]
pub struct DescriptorQueue {
    waiting: VecDeque<usize>,
    /// Times a transfer had to wait (logged once).
    pub hits: u64,
    /// Connections that may be open at once, from the open-file limit (computed on
    /// first use).
    budget: Option<usize>,
}

impl DescriptorQueue {
    /// True if another connection may be opened while `open` are: within the budget
    /// the open-file limit leaves, counting a file per connection when bodies go to
    /// files (`with_files`). This is what keeps the *writer's* file creation from
    /// meeting `EMFILE`: sockets alone would take every descriptor first.
    pub fn room(&mut self, open: usize, with_files: bool) -> bool {
        let budget = *self.budget.get_or_insert_with(|| {
            let per_conn = if with_files { 2 } else { 1 };
            (open_file_limit()
                .unwrap_or(usize::MAX)
                .saturating_sub(descriptors_in_use() + MARGIN)
                / per_conn)
                .max(1)
        });
        open < budget
    }
}

/// Descriptors open now (the loop, its waker, stdio, threads' pipes): on Linux, the
/// entries of /proc/self/fd; elsewhere a guess.
fn descriptors_in_use() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(16, |dir| dir.count())
}

/// `EMFILE` (this process's limit) or `ENFILE` (the system's). `Ctx::connect` puts the
/// address in front of the message; `os_error` still finds the number behind it.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(os_error(e), Some(libc::EMFILE) | Some(libc::ENFILE))
}

impl Fetcher {
    /// Transfer `id`'s connect failed for want of a descriptor: wait for one, unless
    /// nothing open could ever free one.
    pub(super) fn wait_for_descriptor(&mut self, ctx: &mut Ctx<Link>, id: usize, e: &io::Error) {
        if ctx.is_empty() {
            let e = format!("connect: {e} (and no connection open to wait for)");
            return self.finish(ctx, id, Some(e));
        }
        if self.descriptors.hits == 0 {
            log::warn!(
                "out of file descriptors ({e}): transfers wait for connections to close \
                 (raise the limit with `ulimit -n`, or lower --concurrency)"
            );
        }
        self.descriptors.hits += 1;
        let t = &mut self.transfers[id];
        // The address was not tried: try it again.
        t.next_addr = t.next_addr.saturating_sub(1);
        t.phase = Phase::Waiting;
        self.descriptors.waiting.push_back(id);
        // An idle keep-alive connection holds a descriptor nobody is using: close it
        // (its `on_close` hands the descriptor on).
        if let Some((host_id, token)) = self.pool.any_idle() {
            self.pool.host(host_id).idle.retain(|&t| t != token);
            ctx.close(token, CloseReason::Done);
        }
    }

    /// Connections became idle: a transfer waiting for a descriptor may reuse one (or,
    /// for another host, have one closed for it).
    pub(super) fn idle_for_descriptors(&mut self, ctx: &mut Ctx<Link>) {
        if !self.descriptors.waiting.is_empty() {
            self.descriptor_freed(ctx);
        }
    }

    /// A connection closed, so a descriptor is free: give it to the first transfer
    /// waiting for one (which may queue again if another thread took it meanwhile).
    pub(super) fn descriptor_freed(&mut self, ctx: &mut Ctx<Link>) {
        while let Some(id) = self.descriptors.waiting.pop_front() {
            if self.transfers.contains(id) {
                return self.dispatch(ctx, id);
            }
        }
    }

    /// Transfer `id` is over: it no longer waits for a descriptor.
    pub(super) fn forget_descriptor_wait(&mut self, id: usize) {
        self.descriptors.waiting.retain(|&w| w != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emfile_is_seen_through_the_address_added() {
        let raw = io::Error::from_raw_os_error(libc::EMFILE);
        let wrapped = crate::core::io_util::with_context(
            io::Error::from_raw_os_error(libc::EMFILE),
            "connect 127.0.0.1:80",
        );
        assert!(out_of_descriptors(&raw) && out_of_descriptors(&wrapped));
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(!out_of_descriptors(&refused));
    }
}
