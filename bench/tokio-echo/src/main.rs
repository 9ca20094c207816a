//! tokio-echo: the tokio baseline for bench/echo.sh, following tokio's
//! `examples/echo.rs`: an accept loop that spawns one task per connection; the task reads
//! into a 1 KiB buffer (the example's `vec![0; 1024]`) and `write_all`s it back.
//!
//! Differences from the example, kept to what the bench needs: the port comes from
//! argv[1] on 127.0.0.1, the line "listening on tcp ADDR" is printed when ready, SIGTERM
//! ends the process, and TCP_NODELAY is set on accepted sockets as netloop and c_echo do
//! (one setsockopt per accept, none per message). Runtime: `#[tokio::main]`, the
//! multi-threaded default; its worker count follows the CPU affinity (1 under `taskset -c 0`).

use std::io::Write;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: tokio-echo PORT")?
        .parse()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on tcp {}", listener.local_addr()?);
    std::io::stdout().flush()?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (mut socket, _) = tokio::select! {
            r = listener.accept() => r?,
            _ = term.recv() => return Ok(()),
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0; 1024];
            // In a loop, read data from the socket and write the data back.
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(_) => return,
                };
                if socket.write_all(&buf[0..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
