//! The chat example (`examples/chat.rs`), run as a real program with real clients:
//! broadcast, nicknames, the idle kick, the tick, and a client that never reads while
//! another floods the room, with the server's memory watched all along.
//!
//! Every wait is bounded (`common::TIMEOUT` on each read), and nothing depends on how
//! fast this machine is: when one thing must happen before another, it is because the
//! server's own timers are ordered that way (a 0.1 s tick fires before a 1 s kick), or
//! because the test waits for a line that proves it. The server is killed when its guard
//! is dropped, even when an assertion fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::ExampleServer;

/// Options that keep the tick and the kick out of tests about something else.
const QUIET: [&str; 4] = ["--tick", "3600", "--kick-after", "3600"];

fn start(args: &[&str]) -> ExampleServer {
    let mut all = vec!["127.0.0.1:0"];
    all.extend_from_slice(args);
    ExampleServer::start("chat", &all)
}

/// A chat client over a blocking socket (reads time out after `common::TIMEOUT`).
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    nick: String,
}

impl Client {
    /// Connect, read the welcome line and learn our nickname from it.
    #[track_caller]
    fn join(addr: SocketAddr) -> Client {
        let stream = common::connect(addr);
        // Lines go out at once (no Nagle delay waiting for the server's ACK).
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let writer = stream.try_clone().expect("clone socket");
        let mut client = Client {
            reader: BufReader::new(stream),
            writer,
            nick: String::new(),
        };
        let welcome = client.expect(|l| l.starts_with("* welcome, you are "));
        client.nick = welcome["* welcome, you are ".len()..]
            .split('.')
            .next()
            .expect("nick in welcome")
            .to_string();
        client
    }

    #[track_caller]
    fn say(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("{}: send {line:?}: {e}", self.nick));
    }

    /// The next line (without its newline), or `None` at EOF.
    #[track_caller]
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
            Err(e) => panic!("{}: read: {e}", self.nick),
        }
    }

    /// Read lines up to and including the first that matches; returns them all.
    #[track_caller]
    fn lines_until(&mut self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let Some(line) = self.line() else {
                panic!("{}: EOF before the expected line; got {seen:?}", self.nick);
            };
            let done = want(&line);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Read lines up to the first that matches, and return that one.
    #[track_caller]
    fn expect(&mut self, want: impl Fn(&str) -> bool) -> String {
        self.lines_until(want).pop().expect("at least one line")
    }

    /// Every line until EOF.
    #[track_caller]
    fn lines_to_eof(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.line()).collect()
    }
}

#[test]
fn a_line_reaches_everyone_but_its_sender() {
    let server = start(&QUIET);
    let mut a = Client::join(server.addr);
    let mut b = Client::join(server.addr);
    let mut c = Client::join(server.addr);
    // Joins are announced to those already there.
    a.expect(|l| l == format!("* {} joined", c.nick));
    b.expect(|l| l == format!("* {} joined", c.nick));

    a.say("hello there");
    let said = format!("<{}> hello there", a.nick);
    assert_eq!(b.expect(|l| l.starts_with('<')), said);
    assert_eq!(c.expect(|l| l.starts_with('<')), said);
    // The server answers a's lines in order, so anything "hello there" sent back to a
    // would come before the answer to /who.
    a.say("/who");
    let before_who = a.lines_until(|l| l.starts_with("* here: "));
    assert!(
        !before_who.iter().any(|l| l.contains("hello there")),
        "the sender got its own line: {before_who:?}"
    );
    let here = before_who.last().expect("who line");
    for nick in [&a.nick, &b.nick, &c.nick] {
        assert!(here.contains(nick.as_str()), "{nick} missing from {here}");
    }
}

#[test]
fn nicknames_are_checked_unique_and_announced() {
    let server = start(&QUIET);
    let mut a = Client::join(server.addr);
    let mut b = Client::join(server.addr);
    assert!(a.nick.starts_with("guest") && b.nick.starts_with("guest"));
    assert_ne!(a.nick, b.nick);

    a.say("/nick alice");
    let renamed = format!("* {} is now alice", a.nick);
    assert_eq!(a.expect(|l| l.contains(" is now ")), renamed);
    assert_eq!(b.expect(|l| l.contains(" is now ")), renamed);
    a.say("hi");
    assert_eq!(b.expect(|l| l.starts_with('<')), "<alice> hi");

    b.say("/nick alice");
    assert_eq!(b.expect(|l| l.starts_with("* ")), "* alice is taken");
    b.say("/nick two words");
    b.expect(|l| l.starts_with("* a nickname is 1 to 20 letters"));
    b.say("/nick bob");
    let renamed = format!("* {} is now bob", b.nick);
    b.expect(|l| l == renamed);
    b.say("/who");
    let here = b.expect(|l| l.starts_with("* here: "));
    assert!(here.contains("alice") && here.contains("bob"), "{here}");
    b.say("/dance");
    b.expect(|l| l == "* commands: /nick NAME, /who, /quit");

    // /quit: a goodbye line, then EOF; the others hear why.
    b.say("/quit");
    assert_eq!(b.lines_to_eof().last().map(String::as_str), Some("* bye"));
    a.expect(|l| l == "* bob left (quit)");
}

#[test]
fn a_silent_client_is_told_then_kicked_and_the_others_hear_why() {
    let server = start(&["--kick-after", "1", "--tick", "3600"]);
    let mut silent = Client::join(server.addr);
    let mut watcher = Client::join(server.addr);
    // The watcher's idle timer restarts now, after the silent client's: it is kicked
    // second (same millisecond: the earlier connection still comes first).
    watcher.say("/who");
    watcher.expect(|l| l.starts_with("* here: "));

    let lines = silent.lines_to_eof();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* you said nothing for 1 s: bye"),
        "the notice must come before EOF: {lines:?}"
    );
    watcher.expect(|l| l == format!("* {} left (idle)", silent.nick));
    let lines = watcher.lines_to_eof();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* you said nothing for 1 s: bye")
    );
}

#[test]
fn ticks_come_to_everyone_but_do_not_keep_a_silent_client() {
    // Ticks every 0.1 s, kick after 1 s: the loop fires its timers in time order, so
    // ticks come first however slow this machine is, and the kick still comes.
    let server = start(&["--tick", "0.1", "--kick-after", "1"]);
    let mut client = Client::join(server.addr);
    let lines = client.lines_to_eof();
    let ticks = lines.iter().filter(|l| l.starts_with("* tick: ")).count();
    assert!(ticks >= 1, "no tick before the kick: {lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("* tick: 1 here, up ")));
    assert_eq!(
        lines.last().map(String::as_str),
        Some("* you said nothing for 1 s: bye")
    );
}

#[test]
fn a_line_longer_than_the_limit_closes_its_sender() {
    let server = start(&QUIET);
    let mut long = Client::join(server.addr);
    let mut other = Client::join(server.addr);
    long.expect(|l| l.ends_with(" joined"));
    // 5,000 bytes with no newline: more than the 4 KiB a line may have.
    let _ = long.writer.write_all(&[b'x'; 5000]);
    other.expect(|l| l == format!("* {} left (line too long)", long.nick));
}

/// One client floods the room with 200 MB while another never reads: the one that
/// never reads is dropped as too slow, the one that reads gets every line in order,
/// and the server's memory stays near its per-client limits the whole time.
#[test]
fn a_client_that_never_reads_is_dropped_and_memory_stays_bounded() {
    // Watermark 1 MiB (hard cap 4 MiB); a client over the watermark gets 1 s to catch up.
    let server = start(&[
        "--max-queue",
        "1048576",
        "--slow-grace",
        "1",
        "--tick",
        "3600",
        "--kick-after",
        "3600",
    ]);
    let mut reader = Client::join(server.addr);
    let sleeper = Client::join(server.addr); // read its welcome; never reads again
    let mut flooder = Client::join(server.addr);
    reader.expect(|l| l == format!("* {} joined", flooder.nick));

    // Sample the server's RSS every 20 ms until the flood is over.
    let pid = server.pid();
    let peak_kb = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_kb, done) = (Arc::clone(&peak_kb), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak_kb.fetch_max(common::rss_kb(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // 200 MB in batches of 256 lines of 1,000 bytes. After each batch the reader reads
    // it all before the next goes out, so the reader is never more than one batch
    // (256 KB, under the watermark) behind, and it must never be skipped: every line
    // arrives, in order. The sleeper falls behind at the first batches.
    const LINE: usize = 1000;
    const BATCH: usize = 256;
    const BATCHES: usize = 200_000_000 / (LINE * BATCH);
    let prefix = format!("<{}> ", flooder.nick);
    let filler = "x".repeat(LINE - 9);
    let mut sleeper_dropped = false;
    let left = format!("* {} left (too slow)", sleeper.nick);
    let mut next_seq = 0usize;
    let mut batch = String::with_capacity(LINE * BATCH);
    for b in 0..BATCHES {
        batch.clear();
        for i in 0..BATCH {
            batch.push_str(&format!("{:08} {filler}\n", b * BATCH + i));
        }
        flooder
            .writer
            .write_all(batch.as_bytes())
            .unwrap_or_else(|e| panic!("flooder cut off at batch {b}: {e}"));
        while next_seq < (b + 1) * BATCH {
            let line = reader.line().expect("reader got EOF during the flood");
            if line == left {
                sleeper_dropped = true;
                continue;
            }
            let Some(text) = line.strip_prefix(&prefix) else {
                continue; // a notice
            };
            assert_eq!(
                text.get(..8),
                Some(format!("{next_seq:08}").as_str()),
                "the reader missed or reordered lines"
            );
            next_seq += 1;
        }
    }
    if !sleeper_dropped {
        reader.expect(|l| l == left);
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak_kb = peak_kb.load(Ordering::Relaxed).max(common::rss_kb(pid));

    // The flooder is still served: it gets answers, and the sleeper is gone.
    flooder.say("/who");
    let here = flooder.expect(|l| l.starts_with("* here: "));
    assert!(!here.contains(&sleeper.nick), "{here}");
    // The server closed the sleeper's connection: reading it ends.
    let mut sleeper_stream = sleeper.reader.into_inner();
    let mut sink = [0u8; 64 * 1024];
    while matches!(sleeper_stream.read(&mut sink), Ok(n) if n > 0) {}

    // The bound: the example's own few MB (about 4 MB in a release build), plus about
    // one watermark (1 MiB) of queue for the sleeper and a batch for the reader, plus
    // slack; even a server relying on the loop's 4 MiB hard cap alone would fit. 200 MB
    // went through: a server that queued everything for the sleeper would pass it by far.
    const BOUND_KB: u64 = 16 * 1024;
    assert!(
        peak_kb < BOUND_KB,
        "server RSS peaked at {peak_kb} KiB (bound {BOUND_KB} KiB)"
    );
    eprintln!("chat flood: server RSS peak {peak_kb} KiB");
}

#[test]
fn sigterm_tells_everyone_and_exits_cleanly() {
    let mut server = start(&QUIET);
    let mut a = Client::join(server.addr);
    let mut b = Client::join(server.addr);
    a.expect(|l| l.ends_with(" joined"));
    server.signal(libc::SIGTERM);
    for client in [&mut a, &mut b] {
        let lines = client.lines_to_eof();
        assert_eq!(
            lines.last().map(String::as_str),
            Some("* the server is shutting down")
        );
    }
    let (status, err) = server.wait_exit();
    assert!(status.success(), "{status}: {err}");
}

#[test]
fn bad_options_are_named() {
    let chat = common::example_bin("chat");
    for (args, says) in [
        (
            &["--tick", "soon"][..],
            "--tick: not a number of seconds > 0: soon",
        ),
        (
            &["--kick-after", "0"],
            "--kick-after: not a number of seconds > 0: 0",
        ),
        (
            &["--max-queue", "-1"],
            "--max-queue: not a byte count > 0: -1",
        ),
        (&["--slow-grace"], "--slow-grace needs a value"),
        (&["--colour"], "unknown option --colour"),
        (
            &["localhost"],
            "not an address like 127.0.0.1:7000: localhost",
        ),
    ] {
        let out = common::run_bounded(&chat, args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("usage: chat"), "{}", out.stderr);
    }
}
