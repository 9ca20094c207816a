//! The smallest end-to-end check: the binary starts, echoes, and shuts down cleanly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::Server;

#[test]
fn echo_round_trip_and_clean_shutdown() {
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let mut client = TcpStream::connect(server.addr()).unwrap();
    client.set_read_timeout(Some(common::TIMEOUT)).unwrap();
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    drop(client);
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("summary: accepted=1"), "{stderr}");
}
