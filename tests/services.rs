//! The line services (echo, upper, hello) end to end over TCP: big payloads, many
//! concurrent clients, byte-exact transforms, and the seeds' Python clients unchanged.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::{connect, read_n, read_to_eof, Server, TIMEOUT};

/// Python's `bytes.upper()`: only a-z change.
fn python_upper(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|&b| if b.is_ascii_lowercase() { b - 32 } else { b })
        .collect()
}

#[test]
fn echo_one_mib_random_payload_byte_identical() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let payload = common::pseudo_random_bytes(0x5eed_0001, 1024 * 1024);
    let mut reader = connect(server.addr());
    let mut writer = reader.try_clone().unwrap();
    let to_send = payload.clone();
    // The echo fills both directions' buffers: write from one thread, read in another.
    let sender = std::thread::spawn(move || {
        for chunk in to_send.chunks(50_000) {
            writer.write_all(chunk).expect("write payload");
        }
        writer.shutdown(Shutdown::Write).expect("shutdown write");
    });
    let echoed = read_to_eof(&mut reader);
    sender.join().expect("sender thread");
    assert_eq!(echoed.len(), payload.len(), "echoed length");
    if let Some(i) = echoed.iter().zip(&payload).position(|(a, b)| a != b) {
        panic!("echo differs from the payload first at byte {i}");
    }
}

#[test]
fn echo_500_concurrent_clients_100_messages_each() {
    const THREADS: usize = 10;
    const PER_THREAD: usize = 50;
    const MESSAGES: usize = 100;
    let mut server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let addr = server.addr();
    let started = Instant::now();
    // Every client is connected before any message is sent, so all 500 are open at once.
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut clients: Vec<TcpStream> = (0..PER_THREAD).map(|_| connect(addr)).collect();
                barrier.wait();
                for m in 0..MESSAGES {
                    let messages: Vec<Vec<u8>> = (0..PER_THREAD)
                        .map(|c| {
                            let id = t * PER_THREAD + c;
                            let mut msg = format!("client {id} message {m}:").into_bytes();
                            let extra = (id * 7 + m * 13) % 64;
                            msg.extend(common::pseudo_random_bytes((id * 1000 + m) as u64, extra));
                            msg.push(b'\n');
                            msg
                        })
                        .collect();
                    // Send on every socket, then collect every reply: the server sees
                    // PER_THREAD requests in flight from this thread at once.
                    for (client, msg) in clients.iter_mut().zip(&messages) {
                        client.write_all(msg).expect("write message");
                    }
                    for (c, (client, msg)) in clients.iter_mut().zip(&messages).enumerate() {
                        let reply = read_n(client, msg.len());
                        assert_eq!(
                            &reply,
                            msg,
                            "client {} message {m}: wrong reply",
                            t * PER_THREAD + c
                        );
                    }
                }
                for client in &mut clients {
                    client.shutdown(Shutdown::Write).unwrap();
                    assert_eq!(read_to_eof(client), b"", "nothing after the last reply");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < 2 * TIMEOUT,
        "500x100 round trips took {elapsed:?}"
    );
    server.signal(libc::SIGTERM);
    let (status, stderr) = server.wait_exit();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("accepted=500 peak_open=500 "), "{stderr}");
}

#[test]
fn upper_changes_only_ascii_letters() {
    let server = Server::start(&["upper", "--listen", "127.0.0.1:0"]);
    let mut client = connect(server.addr());
    client.write_all(b"hello World 123 \xe4\xbd\xa0").unwrap();
    assert_eq!(read_n(&mut client, 19), b"HELLO WORLD 123 \xe4\xbd\xa0");

    // Every byte value: only a-z move, like Python's bytes.upper().
    let all: Vec<u8> = (0..=255u8).collect();
    client.write_all(&all).unwrap();
    let reply = read_n(&mut client, all.len());
    assert_eq!(reply, python_upper(&all));
    assert_eq!(
        &reply[b'a' as usize..=b'z' as usize],
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    );
    assert_eq!(
        &reply[0xe0..],
        &all[0xe0..],
        "Latin-1 letters are not ASCII"
    );
}

#[test]
fn hello_welcome_bare_message_and_lines() {
    let server = Server::start(&["hello", "--listen", "127.0.0.1:0"]);
    let mut client = connect(server.addr());
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");

    // Seed 003's classic client: a bare message, no newline, answered bare.
    client.write_all(b"Michael").unwrap();
    assert_eq!(read_n(&mut client, 15), b"Hello, Michael!");

    // Lines get lines; a \r before the \n is dropped.
    client.write_all(b"a\r\nb\n").unwrap();
    let expected = b"Hello, a!\nHello, b!\n";
    assert_eq!(read_n(&mut client, expected.len()), expected);

    // Non-ASCII names pass through as bytes.
    client.write_all("世界\n".as_bytes()).unwrap();
    let expected = "Hello, 世界!\n".as_bytes();
    assert_eq!(read_n(&mut client, expected.len()), expected);
}

#[test]
fn hello_exit_closes_after_earlier_replies() {
    let server = Server::start(&["hello", "--listen", "127.0.0.1:0"]);

    // `exit` alone: the connection ends, nothing more is said.
    let mut client = connect(server.addr());
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");
    client.write_all(b"exit").unwrap();
    assert_eq!(read_to_eof(&mut client), b"");

    // Replies before `exit` in the same read are sent; what follows it is not.
    let mut client = connect(server.addr());
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");
    client.write_all(b"a\nexit\nb\n").unwrap();
    assert_eq!(read_to_eof(&mut client), b"Hello, a!\n");

    // `exit\r\n` from a telnet-style client counts too.
    let mut client = connect(server.addr());
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");
    client.write_all(b"Tracy\n").unwrap();
    assert_eq!(read_n(&mut client, 14), b"Hello, Tracy!\n");
    client.write_all(b"exit\r\n").unwrap();
    assert_eq!(read_to_eof(&mut client), b"");
}

#[test]
fn echo_suffix_is_appended_to_each_reply() {
    let suffix = " 我收到了";
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--suffix", suffix]);
    let mut client = connect(server.addr());
    for message in ["hello", "Michael", "你好"] {
        client.write_all(message.as_bytes()).unwrap();
        let expected = format!("{message}{suffix}").into_bytes();
        assert_eq!(
            read_n(&mut client, expected.len()),
            expected,
            "reply to {message:?}"
        );
    }
}

#[test]
fn suffix_with_another_service_is_refused() {
    let out = common::run_netloop(
        &["serve", "upper", "--listen", "127.0.0.1:0", "--suffix", "x"],
        b"",
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("--suffix"), "{}", out.stderr);
}

// Python clients written the way the seeds write them: blocking socket, send, recv.

const PY_ECHO_SUFFIX_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(('127.0.0.1', int(sys.argv[1])))
s.send('hello'.encode('utf-8'))
print(s.recv(1024).decode('utf-8'))
s.close()
"#;

const PY_HELLO_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(('127.0.0.1', int(sys.argv[1])))
print(s.recv(1024).decode('utf-8'), end='')
for data in [b'Michael', b'Tracy', b'Sarah']:
    s.send(data)
    print(s.recv(1024).decode('utf-8'))
s.send(b'exit')
print(repr(s.recv(1024)))
s.close()
"#;

const PY_UPPER_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(('127.0.0.1', int(sys.argv[1])))
data = bytes(range(256)) + 'hello 你好'.encode('utf-8')
s.sendall(data)
got = b''
while len(got) < len(data):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
s.close()
print('ok' if got == data.upper() else 'MISMATCH %r' % got)
"#;

const PY_UDP_HELLO_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(20)
for data in [b'Michael', b'Tracy', b'Sarah']:
    s.sendto(data, ('127.0.0.1', int(sys.argv[1])))
    print(s.recv(1024).decode('utf-8'))
s.close()
"#;

/// Run a Python script with the port as its argument; None when python3 is missing.
fn run_python(script: &str, port: u16) -> Option<common::RunOutput> {
    if !common::python3_available() {
        return None;
    }
    let port = port.to_string();
    Some(common::run_bounded(
        std::path::Path::new("python3"),
        &["-c", script, &port],
        b"",
    ))
}

#[test]
fn python_seed_style_clients_work_unchanged() {
    if !common::python3_available() {
        eprintln!("python3 not found: skipping the Python client check");
        return;
    }
    let check = |script: &str, port: u16, expected: &str| {
        let out = run_python(script, port).expect("python3");
        assert!(out.status.success(), "python failed: {}", out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    };

    let echo = Server::start(&["echo", "--listen", "127.0.0.1:0", "--suffix", " 我收到了"]);
    check(
        PY_ECHO_SUFFIX_CLIENT,
        echo.addr().port(),
        "hello 我收到了\n",
    );

    let hello = Server::start(&["hello", "--listen", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    check(
        PY_HELLO_CLIENT,
        hello.addr().port(),
        "Welcome!\nHello, Michael!\nHello, Tracy!\nHello, Sarah!\nb''\n",
    );
    check(
        PY_UDP_HELLO_CLIENT,
        hello.udp[0].port(),
        "Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n",
    );

    let upper = Server::start(&["upper", "--listen", "127.0.0.1:0"]);
    check(PY_UPPER_CLIENT, upper.addr().port(), "ok\n");
}
