//! The core API on real loopback sockets: an `EventLoop` runs in this process, on its own
//! thread, with a small `Handler` (`Probe`) that obeys commands sent to it as lines by
//! plain `std::net` clients, and reports every callback it gets, in order, on a channel.
//!
//! Timers, deadlines, idle timeouts, close reasons, the outbound queue's limits,
//! `tokens`/`iter` and `pause_reading` are checked through what the handler was told and
//! in which order, never through how long something took: where one thing must come
//! before another, the loop's own clock orders them (a timer due at 100 ms fires before
//! one due at 300 ms), and every wait is bounded by `common::TIMEOUT`.
//!
//! Commands (one per line): `timer MS KEY`, `every MS KEY`, `cancel KEY`, `deadline MS`,
//! `nodeadline`, `bye-idle` (send `bye`, then `close_after_flush(IdleTimeout)`), `flood`
//! (send 16 KiB chunks until `send` says `Closed`), `list` (report `tokens` and `iter`),
//! `pause` (`pause_reading` this connection; the rest of the input is left unconsumed),
//! `resume` (`resume_reading` every paused connection), `big KIB` (send that much; if
//! `send` says `OverWatermark`, leave the rest of the input unconsumed), `echo TEXT`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use netloop::core::listen::{bind_tcp, TcpOptions};
use netloop::{Closed, Ctx, EventLoop, Handler, LoopConfig, SendStatus, TimerId, Token};

use common::TIMEOUT;

/// What the handler was told (or did), in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Open(Token, Option<SocketAddr>),
    Line(Token, String),
    Timer(u64),
    Cancelled(u64, bool),
    Deadline(Token),
    Idle(Token),
    /// `send`'s answers to `flood`, with the queue depth after each.
    Flooded(Vec<(SendStatus, usize)>),
    /// `tokens()`, and `iter()` as (token, lines seen), at a `list`.
    Listed(Vec<Token>, Vec<(Token, u32)>),
    Paused(Token),
    Resumed(Vec<Token>),
    Close {
        token: Token,
        peer: Option<SocketAddr>,
        /// `CloseReason` in its `Debug` form: `PeerClosed`, `IdleTimeout`, ...
        reason: String,
        unsent: usize,
        /// Whether the loop still held the slot (lingering) when `on_close` came.
        slot_kept: bool,
    },
}

/// The key of the backstop timer that ends the loop whatever a test does.
const BACKSTOP: u64 = u64::MAX;

/// The test handler. Its per-connection state counts the lines received.
struct Probe {
    seen: Sender<Seen>,
    timers: HashMap<u64, TimerId>,
    paused: Vec<Token>,
}

impl Probe {
    fn report(&self, seen: Seen) {
        let _ = self.seen.send(seen); // the test may be gone already
    }

    /// Obey one line; returns false to leave the rest of the input unconsumed for now.
    fn command(&mut self, ctx: &mut Ctx<u32>, token: Token, line: &str) -> bool {
        if let Some(count) = ctx.state_mut(token) {
            *count += 1;
        }
        self.report(Seen::Line(token, line.to_string()));
        let words: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| {
            words
                .get(i)
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match words[0] {
            "timer" => {
                let id = ctx.timer_after(Duration::from_millis(num(1)), num(2));
                self.timers.insert(num(2), id);
            }
            "every" => {
                let id = ctx.timer_every(Duration::from_millis(num(1)), num(2));
                self.timers.insert(num(2), id);
            }
            "cancel" => {
                let cancelled = self
                    .timers
                    .get(&num(1))
                    .is_some_and(|&id| ctx.cancel_timer(id));
                self.report(Seen::Cancelled(num(1), cancelled));
            }
            "deadline" => ctx.set_deadline(token, Duration::from_millis(num(1))),
            "nodeadline" => ctx.clear_deadline(token),
            "bye-idle" => {
                ctx.send(token, b"bye\n");
                ctx.close_after_flush(token, netloop::CloseReason::IdleTimeout);
            }
            "flood" => {
                let chunk = [b'x'; 16 * 1024];
                let mut answers = Vec::new();
                // Bounded, in case the hard cap never comes (160 MB at most).
                for _ in 0..10_000 {
                    let status = ctx.send(token, &chunk);
                    answers.push((status, ctx.queued(token)));
                    if status == SendStatus::Closed {
                        break;
                    }
                }
                self.report(Seen::Flooded(answers));
            }
            "list" => {
                let tokens = ctx.tokens().collect();
                let states = ctx.iter().map(|(t, &n)| (t, n)).collect();
                self.report(Seen::Listed(tokens, states));
            }
            "pause" => {
                ctx.pause_reading(token);
                self.paused.push(token);
                self.report(Seen::Paused(token));
                return false;
            }
            "resume" => {
                let paused = std::mem::take(&mut self.paused);
                for &t in &paused {
                    ctx.resume_reading(t);
                }
                self.report(Seen::Resumed(paused));
            }
            "big" => {
                let reply = vec![b'y'; num(1) as usize * 1024];
                if ctx.send(token, &reply) == SendStatus::OverWatermark {
                    return false; // answer nothing more until the peer has read this
                }
            }
            "echo" => {
                ctx.send(token, format!("{}\n", words[1..].join(" ")).as_bytes());
            }
            _ => {}
        }
        true
    }
}

impl Handler for Probe {
    type State = u32;

    fn on_open(&mut self, ctx: &mut Ctx<u32>, token: Token) {
        let peer = ctx.peer(token).and_then(|p| p.addr());
        self.report(Seen::Open(token, peer));
    }

    fn on_data(&mut self, ctx: &mut Ctx<u32>, token: Token, data: &mut [u8]) -> usize {
        let mut used = 0;
        while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&data[used..used + end]).into_owned();
            used += end + 1;
            if !self.command(ctx, token, &line) {
                break; // paused: the rest waits
            }
        }
        used
    }

    fn on_idle(&mut self, ctx: &mut Ctx<u32>, token: Token) {
        self.report(Seen::Idle(token));
        ctx.send(token, b"idle\n");
        ctx.close_after_flush(token, netloop::CloseReason::IdleTimeout);
    }

    fn on_deadline(&mut self, ctx: &mut Ctx<u32>, token: Token) {
        self.report(Seen::Deadline(token));
        ctx.send(token, b"deadline\n"); // and stay open
    }

    fn on_timer(&mut self, ctx: &mut Ctx<u32>, key: u64) {
        if key == BACKSTOP {
            ctx.stop();
        } else {
            self.report(Seen::Timer(key));
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<u32>, token: Token, closed: Closed<u32>) {
        self.report(Seen::Close {
            token,
            peer: closed.peer.addr(),
            reason: format!("{:?}", closed.reason),
            unsent: closed.unsent,
            slot_kept: ctx.peer(token).is_some(),
        });
    }

    fn on_wake(&mut self, ctx: &mut Ctx<u32>) {
        ctx.stop(); // the test is over
    }
}

/// A loop running `Probe` on its own thread; stopped (through its waker) when dropped.
struct Running {
    addr: SocketAddr,
    seen: Receiver<Seen>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    #[track_caller]
    fn start(config: LoopConfig) -> Running {
        Running::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Like `start`, listening on `listen` (e.g. `[::1]:0`).
    #[track_caller]
    fn start_on(config: LoopConfig, listen: SocketAddr) -> Running {
        let (seen_tx, seen) = channel();
        let (ready_tx, ready) = channel();
        let thread = std::thread::spawn(move || {
            let mut event_loop = EventLoop::new(config)?;
            let listener = bind_tcp(listen, TcpOptions::default())?;
            let addr = listener.local_addr().expect("tcp listener address");
            event_loop.add_listener(listener)?;
            let waker = event_loop.waker()?;
            event_loop.ctx().timer_after(TIMEOUT * 6, BACKSTOP);
            let _ = ready_tx.send((addr, waker));
            let mut probe = Probe {
                seen: seen_tx,
                timers: HashMap::new(),
                paused: Vec::new(),
            };
            event_loop.run(&mut probe)
        });
        let (addr, waker) = ready.recv_timeout(TIMEOUT).expect("loop started");
        Running {
            addr,
            seen,
            waker,
            thread: Some(thread),
        }
    }

    /// A client connected to the loop; returns it with its token (from `on_open`).
    #[track_caller]
    fn client(&self) -> (TcpStream, Token) {
        let stream = common::connect(self.addr);
        let local = stream.local_addr().expect("client address");
        let seen = self.until(|s| matches!(s, Seen::Open(_, Some(peer)) if *peer == local));
        match seen.last() {
            Some(Seen::Open(token, _)) => (stream, *token),
            _ => unreachable!(),
        }
    }

    /// Everything the handler reports, up to and including the first match.
    #[track_caller]
    fn until(&self, want: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        let mut seen = Vec::new();
        loop {
            match self.seen.recv_timeout(TIMEOUT) {
                Ok(s) => {
                    let done = want(&s);
                    seen.push(s);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("waited {TIMEOUT:?} ({e}); saw only {seen:?}"),
            }
        }
    }

    /// The `Close` report for `token`.
    #[track_caller]
    fn close_of(&self, token: Token) -> Seen {
        let want = |s: &Seen| matches!(s, Seen::Close { token: t, .. } if *t == token);
        self.until(want).pop().expect("close")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let result = thread.join();
            if !std::thread::panicking() {
                result.expect("loop thread").expect("loop ran");
            }
        }
    }
}

#[track_caller]
fn say(stream: &mut TcpStream, lines: &str) {
    stream.write_all(lines.as_bytes()).expect("client write");
}

/// Read exactly `text` from the client.
#[track_caller]
fn hear(stream: &mut TcpStream, text: &str) {
    assert_eq!(
        String::from_utf8_lossy(&common::read_n(stream, text.len())),
        text
    );
}

// ----- loop timers -------------------------------------------------------------------------

#[test]
fn a_loop_timer_fires_with_its_key() {
    let running = Running::start(LoopConfig::default());
    let (mut c, _) = running.client();
    say(&mut c, "timer 50 7\n");
    running.until(|s| *s == Seen::Timer(7));
}

#[test]
fn a_cancelled_timer_never_fires() {
    let running = Running::start(LoopConfig::default());
    let (mut c, _) = running.client();
    // Timer 1 is due before timer 2: had the cancel not worked, it would come first.
    say(&mut c, "timer 100 1\ntimer 300 2\ncancel 1\n");
    let seen = running.until(|s| *s == Seen::Timer(2));
    assert!(seen.contains(&Seen::Cancelled(1, true)), "{seen:?}");
    assert!(
        !seen.contains(&Seen::Timer(1)),
        "cancelled timer fired: {seen:?}"
    );
    // Neither a cancelled nor a fired timer is pending any more.
    say(&mut c, "cancel 1\ncancel 2\n");
    running.until(|s| *s == Seen::Cancelled(1, false));
    running.until(|s| *s == Seen::Cancelled(2, false));
}

#[test]
fn a_periodic_timer_repeats_until_cancelled() {
    let running = Running::start(LoopConfig::default());
    let (mut c, _) = running.client();
    say(&mut c, "every 20 9\n");
    for _ in 0..3 {
        running.until(|s| *s == Seen::Timer(9));
    }
    say(&mut c, "cancel 9\n");
    running.until(|s| *s == Seen::Cancelled(9, true));
    // Several periods later (the loop's clock orders them), no tick of 9 since.
    say(&mut c, "timer 200 10\n");
    let seen = running.until(|s| *s == Seen::Timer(10));
    assert!(
        !seen.contains(&Seen::Timer(9)),
        "ticked after cancel: {seen:?}"
    );
}

// ----- on_close: peer, reason, timing ------------------------------------------------------

#[test]
fn on_close_names_the_peer_and_peer_closed() {
    let running = Running::start(LoopConfig::default());
    let (mut c, token) = running.client();
    c.shutdown(Shutdown::Write).expect("client EOF");
    let Seen::Close {
        peer,
        reason,
        unsent,
        ..
    } = running.close_of(token)
    else {
        unreachable!()
    };
    assert_eq!(peer, Some(c.local_addr().expect("client address")));
    assert_eq!(reason, "PeerClosed");
    assert_eq!(unsent, 0);
    assert!(common::read_to_eof(&mut c).is_empty());
}

/// A slot keeps only an IPv4 peer inline; an IPv6 peer's address is kept beside the slab
/// (`Ctx::v6_peers`) and must come back whole, in `peer` and in `on_close`.
#[test]
fn an_ipv6_peer_is_named_whole_while_open_and_at_close() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here ([::1]:0 does not bind): skipping");
        return;
    }
    let running = Running::start_on(LoopConfig::default(), "[::1]:0".parse().expect("addr"));
    // Two clients, so that a second IPv6 peer is kept beside the first.
    let (_first, _) = running.client();
    let (c, token) = running.client(); // `client` matches on_open's peer to ours
    let local = c.local_addr().expect("client address");
    assert!(local.is_ipv6());
    c.shutdown(Shutdown::Write).expect("client EOF");
    let Seen::Close { peer, reason, .. } = running.close_of(token) else {
        unreachable!()
    };
    assert_eq!(peer, Some(local));
    assert_eq!(reason, "PeerClosed");
}

/// `close_after_flush` closes with the given reason, and `on_close` comes when the flush
/// is done, while the loop still lingers (the client has not sent its EOF), not after.
#[test]
fn close_after_flush_gives_its_reason_and_on_close_comes_before_lingering_ends() {
    let running = Running::start(LoopConfig::default());
    let (mut c, token) = running.client();
    say(&mut c, "bye-idle\n");
    // The notice, then our FIN; the client keeps its socket open, sending no EOF.
    assert_eq!(common::read_to_eof(&mut c), b"bye\n");
    let Seen::Close {
        peer,
        reason,
        unsent,
        slot_kept,
        ..
    } = running.close_of(token)
    else {
        unreachable!()
    };
    assert_eq!(reason, "IdleTimeout");
    assert_eq!(peer, Some(c.local_addr().expect("client address")));
    assert_eq!(unsent, 0);
    assert!(
        slot_kept,
        "on_close came only after the lingering close ended"
    );
    // A lingering connection is no longer listed as open.
    let (mut other, other_token) = running.client();
    say(&mut other, "list\n");
    let seen = running.until(|s| matches!(s, Seen::Listed(..)));
    assert_eq!(
        seen.last(),
        Some(&Seen::Listed(vec![other_token], vec![(other_token, 1)]))
    );
    drop(c);
}

#[test]
fn the_idle_timeout_calls_on_idle_which_can_say_why() {
    let config = LoopConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..LoopConfig::default()
    };
    let running = Running::start(config);
    let (mut c, token) = running.client();
    assert_eq!(common::read_to_eof(&mut c), b"idle\n");
    let seen = running.until(|s| matches!(s, Seen::Close { .. }));
    assert_eq!(seen[0], Seen::Idle(token));
    assert!(matches!(&seen[1], Seen::Close { reason, .. } if reason == "IdleTimeout"));
}

// ----- the outbound queue's limits ---------------------------------------------------------

/// A client that never reads while the handler keeps sending: `send` says
/// `OverWatermark` once the queue passes `max_queue`, and the loop closes the
/// connection (`QueueOverflow`) rather than let it pass `max_queue_hard`.
#[test]
fn send_says_over_watermark_then_the_hard_cap_closes() {
    let config = LoopConfig {
        max_queue: 64 * 1024,
        max_queue_hard: 256 * 1024,
        ..LoopConfig::default()
    };
    let running = Running::start(config);
    let (mut c, token) = running.client();
    say(&mut c, "flood\n");
    let seen = running.until(|s| matches!(s, Seen::Flooded(_)));
    let Some(Seen::Flooded(answers)) = seen.last() else {
        unreachable!()
    };
    let over = answers
        .iter()
        .position(|(status, _)| *status == SendStatus::OverWatermark)
        .expect("an OverWatermark answer");
    assert!(answers[..over]
        .iter()
        .all(|(s, q)| *s == SendStatus::Sent && *q <= 64 * 1024));
    assert!(answers[over].1 > 64 * 1024, "{:?}", answers[over]);
    let (last, middle) = answers[over..].split_last().expect("answers");
    assert_eq!(last.0, SendStatus::Closed, "the hard cap never came");
    assert!(middle
        .iter()
        .all(|(s, q)| *s == SendStatus::OverWatermark && *q <= 256 * 1024));

    let Seen::Close { reason, unsent, .. } = running.close_of(token) else {
        unreachable!()
    };
    assert_eq!(reason, "QueueOverflow");
    assert!(
        unsent > 64 * 1024 && unsent <= 256 * 1024,
        "unsent {unsent}"
    );
    // What the kernel had taken still arrives, then the end (EOF or a reset).
    let mut sink = vec![0u8; 256 * 1024];
    while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
}

// ----- looking at connections --------------------------------------------------------------

#[test]
fn tokens_and_iter_list_the_open_connections() {
    let running = Running::start(LoopConfig::default());
    let (mut a, ta) = running.client();
    let (b, tb) = running.client();
    let (_c, tc) = running.client();
    say(&mut a, "list\n");
    let seen = running.until(|s| matches!(s, Seen::Listed(..)));
    let mut all = vec![ta, tb, tc];
    all.sort();
    assert_eq!(
        seen.last(),
        Some(&Seen::Listed(
            all.clone(),
            all.iter().map(|&t| (t, u32::from(t == ta))).collect()
        ))
    );
    drop(b);
    running.close_of(tb);
    say(&mut a, "list\n");
    let seen = running.until(|s| matches!(s, Seen::Listed(..)));
    let Some(Seen::Listed(tokens, states)) = seen.last() else {
        unreachable!()
    };
    all.retain(|&t| t != tb);
    assert_eq!(tokens, &all);
    assert_eq!(states.len(), 2);
    assert!(states.contains(&(ta, 2)), "{states:?}");
}

// ----- handler deadlines -------------------------------------------------------------------

#[test]
fn a_deadline_calls_on_deadline_not_on_idle() {
    let config = LoopConfig {
        idle_timeout: Some(TIMEOUT),
        ..LoopConfig::default()
    };
    let running = Running::start(config);
    let (mut c, token) = running.client();
    say(&mut c, "deadline 100\n");
    let seen = running.until(|s| *s == Seen::Deadline(token));
    assert!(!seen.contains(&Seen::Idle(token)), "{seen:?}");
    // on_deadline kept the connection open.
    hear(&mut c, "deadline\n");
    say(&mut c, "echo still here\n");
    hear(&mut c, "still here\n");
}

#[test]
fn the_idle_timeout_comes_on_its_own_with_a_later_deadline_pending() {
    let config = LoopConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..LoopConfig::default()
    };
    let running = Running::start(config);
    let (mut c, token) = running.client();
    say(&mut c, "deadline 20000\n");
    let seen = running.until(|s| matches!(s, Seen::Close { .. }));
    assert!(seen.contains(&Seen::Idle(token)), "{seen:?}");
    assert!(!seen.contains(&Seen::Deadline(token)), "{seen:?}");
    assert_eq!(common::read_to_eof(&mut c), b"idle\n");
}

#[test]
fn a_cleared_deadline_never_fires() {
    let running = Running::start(LoopConfig::default());
    let (mut c, token) = running.client();
    say(&mut c, "deadline 100\nnodeadline\ntimer 300 5\n");
    let seen = running.until(|s| *s == Seen::Timer(5));
    assert!(!seen.contains(&Seen::Deadline(token)), "{seen:?}");
}

// ----- pause_reading / resume_reading ------------------------------------------------------

#[test]
fn paused_input_waits_for_resume() {
    let running = Running::start(LoopConfig::default());
    let (mut a, ta) = running.client();
    let (mut b, _) = running.client();
    say(&mut a, "pause\n");
    running.until(|s| *s == Seen::Paused(ta));
    say(&mut a, "ping\n");
    // b's round trip comes after a's ping reached the server.
    say(&mut b, "echo sync\n");
    hear(&mut b, "sync\n");
    say(&mut b, "resume\n");
    let seen = running.until(|s| *s == Seen::Line(ta, "ping".into()));
    let resumed = seen
        .iter()
        .position(|s| matches!(s, Seen::Resumed(_)))
        .expect("resume before the ping");
    assert_eq!(seen[resumed], Seen::Resumed(vec![ta]));
    // And a is read normally again.
    say(&mut a, "echo back\n");
    hear(&mut a, "back\n");
}

/// Input a handler left unconsumed when it paused is offered again on `resume_reading`,
/// without the peer sending more. (A bug found by this test: resuming only re-read the
/// socket, which said `WouldBlock`, and the kept line sat in the read buffer; a client
/// that sent two requests at once waited forever for the second answer. Resuming now
/// goes through the deferred path, which offers kept input first.)
#[test]
fn input_left_unconsumed_at_pause_is_offered_after_resume() {
    let running = Running::start(LoopConfig::default());
    let (mut a, ta) = running.client();
    let (mut b, _) = running.client();
    // Both lines in one write: the handler consumes "pause" and leaves "ping" unread.
    say(&mut a, "pause\nping\n");
    running.until(|s| *s == Seen::Paused(ta));
    say(&mut b, "resume\n");
    running.until(|s| matches!(s, Seen::Resumed(_)));
    // Nothing more from a: "ping" must still come.
    say(&mut b, "timer 500 3\n");
    let seen = running.until(|s| *s == Seen::Line(ta, "ping".into()) || *s == Seen::Timer(3));
    assert_eq!(
        seen.last(),
        Some(&Seen::Line(ta, "ping".into())),
        "the kept line was not offered again after resume_reading"
    );
}

/// The same for the loop's own backpressure. A handler that stops consuming when `send`
/// says `OverWatermark` (answering no more requests until the peer has read what it is
/// owed) leaves the next request unconsumed; when the queue drains below the low
/// watermark, the kept request is offered again without the peer sending more.
#[test]
fn input_left_unconsumed_over_the_watermark_is_offered_after_the_drain() {
    let config = LoopConfig {
        max_queue: 64 * 1024,
        max_queue_hard: 16 * 1024 * 1024,
        ..LoopConfig::default()
    };
    let running = Running::start(config);
    let (mut a, ta) = running.client();
    let (mut b, _) = running.client();
    // 8 MiB is more than the kernel takes at once, so the reply goes over the watermark
    // and the handler leaves "echo after" unconsumed.
    say(&mut a, "big 8192\necho after\n");
    running.until(|s| *s == Seen::Line(ta, "big 8192".into()));
    let reply = common::read_n(&mut a, 8192 * 1024);
    assert!(reply.iter().all(|&c| c == b'y'));
    // The queue is drained (a read it all); nothing more from a: "echo after" must come.
    say(&mut b, "timer 500 4\n");
    let seen = running.until(|s| *s == Seen::Line(ta, "echo after".into()) || *s == Seen::Timer(4));
    assert_eq!(
        seen.last(),
        Some(&Seen::Line(ta, "echo after".into())),
        "the kept request was not offered again after the queue drained"
    );
    hear(&mut a, "after\n");
}
