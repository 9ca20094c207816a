//! Mirrors seed 000's demo 3 server (`000_5c4e0256ea564372.txt`, 实现大文件的传输) and
//! seed 004's upload server (`004_c643266c8558d57a.txt`, 案例-客户端向服务端传输文件): read
//! a 4-byte `struct` length, a JSON header, then `file_size` bytes into a file.
//!
//! Run: `cargo run --example upload_server [PORT] [DIR]` (default 8080 on 127.0.0.1, into
//! `netloop-uploads` in the system's temporary directory, never the current one).
//! Try: `cargo run --example upload_client -- FILE`, `cargo run -- upload FILE --to
//! 127.0.0.1:8080`, or the seeds' own Python clients, unchanged.
//!
//! The seed blocks in `conn.recv(4)`, `conn.recv(head_len)` and a `recv(1024)` loop, for
//! one client at a time, and trusts everything: `open(head["filename"], "wb")` writes
//! wherever the name points. Here each piece is an event on the loop, for every client at
//! once: `on_data` hands the bytes to `frames::UploadDecoder`, which says "incomplete"
//! until a whole header is there (the loop keeps the bytes) and passes body bytes through
//! as they come; `store` checks the name and writes to a temporary file that is linked
//! into place only when complete.
//!
//! To stay one screen long, this example writes, `fsync`s and links on the loop thread,
//! as the seed does in its one thread: while one client's file is flushed to disk, every
//! other client waits. `netloop serve upload` does that disk work on an offload pool
//! instead, keeps replies in order, bounds memory, and adds authentication and limits:
//! see `src/services/upload/`.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use mio::Token;
use netloop::core::listen::{bind_tcp, Listener, TcpOptions};
use netloop::proto::frames::{FrameError, Item, Limits, Reply, UploadDecoder};
use netloop::services::upload::store::{check_file_name, Partial, Store};
use netloop::{Ctx, EventLoop, Handler, LoopConfig};

/// Per connection: where we are in the stream, and the file being written.
#[derive(Default)]
struct Receiving {
    decoder: UploadDecoder,
    file: Option<Partial>,
}

struct UploadServer {
    store: Store,
}

impl UploadServer {
    /// seed: the body of its `while True` — one header, or a piece of one file.
    fn step(&mut self, state: &mut Receiving, item: Item<'_>) -> Result<Option<Reply>, String> {
        match item {
            // seed: `head = json.loads(head_json)`, `open(head["filename"], mode="wb")`.
            Item::Header(h) => {
                check_file_name(&h.file_name)?;
                println!("receiving {:?} ({} bytes)", h.file_name, h.file_size);
                let file = self.store.begin(&h.file_name, h.file_size);
                state.file = Some(file.map_err(|e| e.to_string())?);
                Ok(None)
            }
            // seed: `content = conn.recv(buffer)`, `f.write(content)`.
            Item::Body { bytes, last } => {
                let file = state.file.as_mut().ok_or("body before header")?;
                file.write(bytes).map_err(|e| e.to_string())?;
                if !last {
                    return Ok(None);
                }
                let file = state.file.take().ok_or("no file")?;
                let stored = self.store.finish(file).map_err(|e| e.to_string())?;
                println!("stored {:?}, sha256 {}", stored.name, stored.sha256);
                Ok(Some(Reply::Stored {
                    file_name: stored.name,
                    bytes: stored.bytes,
                    sha256: stored.sha256,
                }))
            }
        }
    }
}

impl Handler for UploadServer {
    type State = Receiving;

    fn on_data(&mut self, ctx: &mut Ctx<Receiving>, token: Token, data: &mut [u8]) -> usize {
        let Some(mut state) = ctx.state_mut(token).map(std::mem::take) else {
            return data.len();
        };
        let mut used = 0;
        let outcome = loop {
            match state.decoder.decode(&data[used..], &Limits::default()) {
                Err(FrameError::Incomplete) => break Ok(()),
                Err(FrameError::Invalid(e)) => break Err(e.to_string()),
                Ok((item, n)) => {
                    used += n;
                    match self.step(&mut state, item) {
                        Ok(Some(reply)) => {
                            ctx.send(token, &reply.encode());
                        }
                        Ok(None) => {}
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        if let Err(error) = outcome {
            println!("refused: {error}");
            ctx.send(token, &Reply::Refused { error }.encode());
            ctx.close_when_flushed(token);
            return data.len(); // `state` (and any partial file) is dropped: nothing stays
        }
        if let Some(slot) = ctx.state_mut(token) {
            *slot = state;
        }
        used // the loop keeps the rest (part of a header) and offers it again
    }
}

fn main() -> io::Result<()> {
    env_logger::init();
    let mut args = std::env::args().skip(1);
    let port: u16 = match args.next() {
        Some(p) => p
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "PORT"))?,
        None => 8080,
    };
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("netloop-uploads"));
    let mut server = UploadServer {
        store: Store::open(&dir)?,
    };
    let mut event_loop = EventLoop::new(LoopConfig::default())?;
    let listener = bind_tcp(
        SocketAddr::from(([127, 0, 0, 1], port)),
        TcpOptions::default(),
    )?;
    if let Listener::Tcp(_, local) = &listener {
        println!(
            "upload_server listening on {local}, storing in {}",
            dir.display()
        );
        println!(
            "try: cargo run --example upload_client -- FILE {}",
            local.port()
        );
    }
    event_loop.add_listener(listener)?;
    event_loop.handle_signals()?;
    event_loop.run(&mut server)
}
