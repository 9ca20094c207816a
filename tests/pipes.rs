//! Descriptors that are not sockets on the loop: a child process's stdout and stdin as
//! pipe ends (`Stream::PipeIn`, `Stream::PipeOut`), drained like sockets, EOF when the
//! child closes its end.

use std::process::{Command, Stdio};

use mio::unix::pipe;
use netloop::core::{Peer, Stream};
use netloop::{Closed, Ctx, EventLoop, Handler, LoopConfig, Token};

/// Collects what arrives on one pipe and stops the loop when it closes.
#[derive(Default)]
struct Collect {
    output: Vec<u8>,
    reason: Option<String>,
    peer: Option<Peer>,
    /// Every close reason, in order.
    reasons: Vec<String>,
}

impl Handler for Collect {
    type State = ();

    fn on_data(&mut self, _: &mut Ctx<()>, _: Token, data: &mut [u8]) -> usize {
        self.output.extend_from_slice(data);
        data.len()
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, _: Token, closed: Closed<()>) {
        self.reason = Some(closed.reason.to_string());
        self.reasons.push(closed.reason.to_string());
        self.peer = Some(closed.peer);
        if ctx.is_empty() {
            ctx.stop();
        }
    }
}

#[test]
fn a_childs_stdout_is_read_on_the_loop_until_eof() {
    let mut child = Command::new("sh")
        .args(["-c", "printf 'hello from the child'"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let receiver = pipe::Receiver::from(stdout);
    receiver.set_nonblocking(true).expect("non-blocking");

    let mut event_loop = EventLoop::new(LoopConfig::default()).expect("loop");
    event_loop
        .ctx()
        .add_stream(Stream::PipeIn(receiver), Peer::Process(pid), ())
        .expect("add pipe");
    let mut handler = Collect::default();
    for _ in 0..1000 {
        if event_loop.finished() {
            break;
        }
        event_loop.turn(&mut handler).expect("turn");
    }
    assert_eq!(handler.output, b"hello from the child");
    assert_eq!(handler.reason.as_deref(), Some("closed by peer"));
    assert_eq!(handler.peer, Some(Peer::Process(pid)));
    assert!(child.wait().expect("reap").success());
}

#[test]
fn a_childs_stdin_is_written_from_the_loop() {
    let mut child = Command::new("sh")
        .args(["-c", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let pid = child.id();
    let stdin = pipe::Sender::from(child.stdin.take().expect("stdin"));
    stdin.set_nonblocking(true).expect("non-blocking");
    let stdout = pipe::Receiver::from(child.stdout.take().expect("stdout"));
    stdout.set_nonblocking(true).expect("non-blocking");

    let mut event_loop = EventLoop::new(LoopConfig::default()).expect("loop");
    let ctx = event_loop.ctx();
    let to_child = ctx
        .add_stream(Stream::PipeOut(stdin), Peer::Process(pid), ())
        .expect("add stdin");
    ctx.add_stream(Stream::PipeIn(stdout), Peer::Process(pid), ())
        .expect("add stdout");
    // 1 MiB: more than a pipe holds, so the loop must queue and flush on writable edges.
    let data: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    ctx.send(to_child, &data);
    ctx.close_when_flushed(to_child); // closing our end is cat's EOF
    let mut handler = Collect::default();
    for _ in 0..100_000 {
        if event_loop.finished() {
            break;
        }
        event_loop.turn(&mut handler).expect("turn");
    }
    assert!(
        handler.output == data,
        "cat's output differs from its input"
    );
    // Our stdin end closed as done (no lingering, no error), then cat's stdout at EOF.
    assert_eq!(handler.reasons, ["done", "closed by peer"]);
    assert!(child.wait().expect("reap").success());
}
