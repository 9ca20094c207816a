//! Mirrors seed 000's demo 3 client (`000_5c4e0256ea564372.txt`, 实现大文件的传输) and
//! seed 004's upload client (`004_c643266c8558d57a.txt`): a header dict made with
//! `json.dumps`, its length with `struct.pack('i', ...)`, then the file in pieces, then
//! the server's reply.
//!
//! Run: `cargo run --example upload_client -- FILE [PORT]` (default 8080 on 127.0.0.1).
//! Try: start `cargo run --example upload_server` or `cargo run -- serve upload --dir
//! /tmp/up --listen 127.0.0.1:8080` first.
//!
//! The seed blocks in `f.read(buffer)` + `sk.send(content)` until the file is sent. On the
//! loop, sending a piece never blocks: what the kernel does not take is queued, and
//! `on_drained` says the queue is empty again — the moment to read the next piece from
//! disk. So at most one piece is in memory, whatever the file size. The seed never reads
//! the reply; here it is read and checked (`netloop upload` does this for many files).

use std::fs::File;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;

use mio::Token;
use netloop::proto::frames::{decode_object, FrameError, Reply, UploadHeader};
use netloop::{CloseReason, Closed, Ctx, EventLoop, Handler, LoopConfig, Target};

/// The seed's `buffer = 1024`, larger: fewer system calls, same bounded memory.
const PIECE: usize = 64 * 1024;

struct UploadClient {
    file: File,
    left: u64,
    piece: Vec<u8>,
    outcome: Option<Result<String, String>>,
}

impl UploadClient {
    /// seed: `content = f.read(buffer)`, `sk.send(content)`, while bytes are left — but
    /// only while the kernel keeps up (nothing queued); `on_drained` resumes it.
    fn send_more(&mut self, ctx: &mut Ctx<()>, token: Token) {
        while self.left > 0 && ctx.queued(token) == 0 {
            let want = self.piece.len().min(self.left as usize);
            match self.file.read(&mut self.piece[..want]) {
                Ok(0) => return self.fail(ctx, token, "file shrank while sending".into()),
                Ok(n) => {
                    ctx.send(token, &self.piece[..n]);
                    self.left -= n as u64;
                }
                Err(e) => return self.fail(ctx, token, format!("read: {e}")),
            }
        }
    }

    fn fail(&mut self, ctx: &mut Ctx<()>, token: Token, msg: String) {
        self.outcome.get_or_insert(Err(msg));
        ctx.close(token, CloseReason::Done);
        ctx.stop();
    }
}

impl Handler for UploadClient {
    type State = ();

    fn on_open(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.send_more(ctx, token);
    }

    fn on_drained(&mut self, ctx: &mut Ctx<()>, token: Token) {
        self.send_more(ctx, token);
    }

    fn on_data(&mut self, ctx: &mut Ctx<()>, token: Token, data: &mut [u8]) -> usize {
        match decode_object(data, 64 * 1024) {
            Err(FrameError::Incomplete) => 0, // wait for the whole reply frame
            Err(FrameError::Invalid(e)) => {
                self.fail(ctx, token, format!("bad reply: {e}"));
                data.len()
            }
            Ok((obj, used)) => {
                let outcome = match Reply::from_object(&obj) {
                    Ok(Reply::Stored {
                        file_name, sha256, ..
                    }) => Ok(format!("stored as {file_name:?}, sha256 {sha256}")),
                    Ok(Reply::Refused { error }) => Err(format!("refused: {error}")),
                    Err(e) => Err(e),
                };
                self.outcome = Some(outcome);
                ctx.close(token, CloseReason::Done);
                ctx.stop();
                used
            }
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<()>, _: Token, closed: Closed<()>) {
        let why = &closed.reason;
        self.outcome
            .get_or_insert(Err(format!("connection closed: {why}")));
        ctx.stop();
    }
}

fn main() -> io::Result<()> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| io::Error::other("usage: upload_client FILE [PORT]"))?;
    let port: u16 = match args.next() {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::other(format!("not a port: {p}")))?,
        None => 8080,
    };
    let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
    let size = file.metadata()?.len();
    // seed: `head = {'filename': ..., 'filesize': ...}`, `struct.pack('i', len_head)`.
    let name = Path::new(&path)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("file name is not UTF-8"))?;
    let header = UploadHeader {
        file_name: name.into(),
        file_size: size,
    }
    .encode();

    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    let target = Target::Tcp(SocketAddr::from(([127, 0, 0, 1], port)));
    let token = event_loop.ctx().connect(&target, ())?;
    // Queued until the connect completes, then written first.
    event_loop.ctx().send(token, &header);
    let mut client = UploadClient {
        file,
        left: size,
        piece: vec![0; PIECE],
        outcome: None,
    };
    println!("sending {path} ({size} bytes) to {target}");
    event_loop.run(&mut client)?;
    match client.outcome {
        Some(Ok(msg)) => {
            println!("{msg}");
            Ok(())
        }
        Some(Err(msg)) => Err(io::Error::other(msg)),
        None => Err(io::Error::other("no reply")),
    }
}
