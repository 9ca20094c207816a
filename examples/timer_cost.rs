//! `timer_cost`: what pending timers cost a turn of the loop (run by `bench/timers.sh`).
//!
//! Run: `cargo run --release --example timer_cost -- [--timers N] [--idle N]
//! [--secs S] [--rounds R]` (defaults: 10,000, 10,000, 3, 5).
//!
//! One echo loop, three setups, each measured on a fresh loop:
//! - `none`: one client, and not a single timer;
//! - `timers`: the same, with one loop timer pending (due in an hour), then (another
//!   setup) with N of them (due in an hour and later). One timer already changes the
//!   turn: the loop then sleeps with a timeout, and the kernel arms a timer for every
//!   `epoll_wait`. Comparing N timers with one isolates what the number costs;
//!   comparing one with none, what having a timer at all costs;
//! - `idle`: the same, with N idle connections (held by a child process, this program
//!   run with `--hold`) under a one-hour idle timeout, so N idle entries are filed.
//!
//! In each, one client does 64-byte echo round trips for S seconds. The figures are
//! round trips per second and the loop thread's CPU time per round trip: the thread's
//! `CLOCK_THREAD_CPUTIME_ID` between two wake-ups sent by the client around the
//! measured stretch. CPU per round trip barely moves when other work competes for the
//! cores, unlike round trips per second. The setups run interleaved over R rounds, in
//! an order rotated per round, so drift on a shared machine hits them alike; the
//! medians and their ratios to `none` and to one timer are printed. `timers.rs` claims
//! 10,000 idle timers cost a turn nothing: the CPU ratio of N timers (or N idle
//! connections) to one timer near 1.00 says so. Bench-only code.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use netloop::core::listen::{bind_tcp, TcpOptions};
use netloop::{Ctx, EventLoop, Handler, LoopConfig, Token};

/// Far enough ahead never to fire during a run.
const FAR: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Setup {
    None,
    Timers,
    Idle,
}

/// Echo, counting accepted connections and noting the thread's CPU time at each wake.
struct Echo {
    opened: Arc<AtomicUsize>,
    marks: Vec<Duration>,
}

impl Handler for Echo {
    type State = ();

    fn on_open(&mut self, _: &mut Ctx<()>, _: Token) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        ctx.send(token, data);
        data.len()
    }

    fn on_wake(&mut self, ctx: &mut Ctx<()>) {
        self.marks.push(thread_cpu());
        if self.marks.len() == 2 {
            ctx.stop();
        }
    }
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One measured stretch: round trips, wall time, loop thread CPU time.
struct Figures {
    trips: u64,
    wall: Duration,
    cpu: Duration,
}

fn measure(setup: Setup, n: usize, secs: f64) -> io::Result<Figures> {
    let opened = Arc::new(AtomicUsize::new(0));
    let (ready_tx, ready) = mpsc::channel();
    let counter = Arc::clone(&opened);
    let server = std::thread::spawn(move || -> io::Result<Vec<Duration>> {
        let config = LoopConfig {
            idle_timeout: (setup == Setup::Idle).then_some(FAR),
            ..LoopConfig::default()
        };
        let mut event_loop = EventLoop::new(config)?;
        let opts = TcpOptions {
            backlog: 4096,
            ..TcpOptions::default()
        };
        let listener = bind_tcp(SocketAddr::from(([127, 0, 0, 1], 0)), opts)?;
        let addr = listener.local_addr();
        event_loop.add_listener(listener)?;
        if setup == Setup::Timers {
            for i in 0..n as u64 {
                // Spread out, as real timers are: one entry each in the ordered set.
                event_loop
                    .ctx()
                    .timer_after(FAR + Duration::from_millis(i), i);
            }
        }
        let _ = ready_tx.send((addr, event_loop.waker()?));
        let mut echo = Echo {
            opened: counter,
            marks: Vec::new(),
        };
        event_loop.run(&mut echo)?;
        Ok(echo.marks)
    });
    let (addr, waker) = ready
        .recv()
        .map_err(|_| io::Error::other("the loop thread did not start"))?;
    let addr = addr.ok_or_else(|| io::Error::other("no TCP address"))?;

    let holder = match setup {
        Setup::Idle => Some(hold_idle(addr, n)?),
        _ => None,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < holder.as_ref().map_or(0, |_| n) {
        if Instant::now() > deadline {
            return Err(io::Error::other("idle connections were not all accepted"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    let mut buf = [7u8; 64];
    let mut trip = |client: &mut TcpStream| -> io::Result<()> {
        client.write_all(&buf)?;
        client.read_exact(&mut buf)
    };
    for _ in 0..2000 {
        trip(&mut client)?; // warm up
    }
    waker.wake()?; // mark: start
    let start = Instant::now();
    let mut trips = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..256 {
            trip(&mut client)?;
        }
        trips += 256;
    }
    let wall = start.elapsed();
    waker.wake()?; // mark: end, and stop
    let marks = server
        .join()
        .map_err(|_| io::Error::other("the loop thread panicked"))??;
    if let Some(mut child) = holder {
        let _ = child.kill();
        let _ = child.wait();
    }
    let cpu = match marks[..] {
        [a, b] => b.saturating_sub(a),
        _ => return Err(io::Error::other("missing CPU marks")),
    };
    Ok(Figures { trips, wall, cpu })
}

/// Start this program with `--hold ADDR N`: a child holding N idle connections.
fn hold_idle(addr: SocketAddr, n: usize) -> io::Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--hold", &addr.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "held" {
        let _ = child.kill();
        return Err(io::Error::other(format!("holder failed: {line:?}")));
    }
    Ok(child)
}

/// The child's side: connect N times, say so, keep them until stdin closes.
fn hold(addr: &str, n: &str) -> io::Result<()> {
    let addr: SocketAddr = addr.parse().map_err(io::Error::other)?;
    let n: usize = n.parse().map_err(io::Error::other)?;
    let conns: Vec<TcpStream> = (0..n)
        .map(|_| TcpStream::connect(addr))
        .collect::<io::Result<_>>()
        .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
    println!("held");
    io::stdout().flush()?;
    let _ = io::stdin().read_to_end(&mut Vec::new()); // until the parent is done
    drop(conns);
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, addr, n] = &args[..] {
        if flag == "--hold" {
            return hold(addr, n);
        }
    }
    let (mut timers, mut idle, mut secs, mut rounds) = (10_000usize, 10_000usize, 3.0, 5usize);
    for pair in args.chunks(2) {
        let bad = || io::Error::other(format!("bad option {pair:?}"));
        let value = pair.get(1).ok_or_else(bad)?;
        match pair[0].as_str() {
            "--timers" => timers = value.parse().map_err(|_| bad())?,
            "--idle" => idle = value.parse().map_err(|_| bad())?,
            "--secs" => secs = value.parse().map_err(|_| bad())?,
            "--rounds" => rounds = value.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    let setups = [
        (Setup::None, 0),
        (Setup::Timers, 1),
        (Setup::Timers, timers),
        (Setup::Idle, idle),
    ];
    let mut rate: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    let mut cpu_ns: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
    for round in 1..=rounds {
        // Rotate the order per round, so that no setup always runs first (or after the
        // same other one).
        for k in 0..setups.len() {
            let i = (k + round) % setups.len();
            let (setup, n) = setups[i];
            let f = measure(setup, n, secs)?;
            let per_sec = f.trips as f64 / f.wall.as_secs_f64();
            let ns = f.cpu.as_nanos() as f64 / f.trips as f64;
            println!(
                "round {round} {:<7} n={n:<6} {per_sec:>9.0} round trips/s {ns:>7.0} ns loop CPU/trip",
                format!("{setup:?}").to_lowercase()
            );
            rate[i].push(per_sec);
            cpu_ns[i].push(ns);
        }
    }
    let medians: Vec<(f64, f64)> = (0..setups.len())
        .map(|i| (median(rate[i].clone()), median(cpu_ns[i].clone())))
        .collect();
    let ((none_rate, none_cpu), (_, one_cpu)) = (medians[0], medians[1]);
    println!(
        "\nmedians of {rounds} rounds, {secs} s each, 64-byte echo round trips on one connection:"
    );
    println!(
        "{:<8}{:>8}{:>11}{:>10}{:>13}{:>12}{:>15}",
        "setup", "n", "trips/s", "x none", "CPU ns/trip", "CPU x none", "CPU x 1 timer"
    );
    for (&(setup, n), &(r, c)) in setups.iter().zip(&medians) {
        println!(
            "{:<8}{n:>8}{r:>11.0}{:>10.2}{c:>13.0}{:>12.2}{:>15.2}",
            format!("{setup:?}").to_lowercase(),
            r / none_rate,
            c / none_cpu,
            c / one_cpu
        );
    }
    Ok(())
}
