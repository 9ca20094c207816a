//! The command line as a new user meets it (issue 10): addresses written the ways people
//! write them, values that make no sense refused with the option's name, and `resolve`
//! saying what seed 001's Python says.

mod common;

use std::io::Write;

use common::Server;

#[test]
fn serve_listens_on_port_only_and_host_name_forms() {
    for form in [":0", "0", "localhost:0"] {
        let server = Server::start(&["echo", "--listen", form]);
        let addr = server.addr();
        assert!(addr.ip().is_loopback(), "{form} -> {addr}");
        let mut conn = common::connect(addr);
        conn.write_all(b"ping").expect("send");
        assert_eq!(common::read_n(&mut conn, 4), b"ping");
    }
}

#[test]
fn serve_address_errors_say_what_is_missing() {
    for (form, says) in [
        ("127.0.0.1", "has no port"),
        ("[::1]", "has no port"),
        (":99999", "0 to 65535"),
    ] {
        let out = common::run_netloop(&["serve", "--listen", form], b"");
        assert!(!out.status.success(), "{form}");
        assert!(
            out.stderr.contains(says) && out.stderr.contains("--listen"),
            "{form}: {}",
            out.stderr
        );
    }
}

#[test]
fn zero_where_it_means_nothing_is_refused() {
    for option in ["--max-queue", "--workers", "--max-conns"] {
        let out = common::run_netloop(&["serve", option, "0"], b"");
        assert!(!out.status.success(), "{option} 0 was accepted");
        assert!(
            out.stderr.contains(option) && out.stderr.contains("at least 1"),
            "{option}: {}",
            out.stderr
        );
    }
}

#[test]
fn idle_timeout_zero_means_never() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0", "--idle-timeout", "0"]);
    let mut conn = common::connect(server.addr());
    for i in 0..3 {
        let msg = format!("round {i}");
        conn.write_all(msg.as_bytes()).expect("send");
        assert_eq!(common::read_n(&mut conn, msg.len()), msg.as_bytes());
    }
}

#[test]
fn resolve_says_private_as_python_ipaddress_does() {
    for ip in [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "8.8.8.8",
        "169.254.3.4",
        "fe80::1",
    ] {
        let out = common::run_netloop(&["resolve", ip], b"");
        assert!(out.status.success(), "{}", out.stderr);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let ours = text
            .lines()
            .find_map(|l| l.strip_prefix("private: "))
            .expect("private: line")
            .to_string();
        if !common::python3_available() {
            continue;
        }
        let python = std::process::Command::new("python3")
            .args([
                "-c",
                "import ipaddress,sys; print(ipaddress.ip_address(sys.argv[1]).is_private)",
                ip,
            ])
            .output()
            .expect("run python3");
        let theirs = String::from_utf8_lossy(&python.stdout)
            .trim()
            .to_lowercase();
        assert_eq!(ours, theirs, "{ip}");
    }
}

#[test]
fn resolve_port_out_of_range_says_so() {
    let out = common::run_netloop(&["resolve", "localhost", "99999"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("out of range"), "{}", out.stderr);
}

#[test]
fn serve_upload_dir_that_is_a_file_is_named() {
    let file = common::TempPath::new("not-a-dir");
    std::fs::write(&file.0, b"x").expect("write");
    let out = common::run_netloop(&["serve", "upload", "--dir", file.as_str()], b"");
    assert!(!out.status.success());
    assert!(
        out.stderr.contains(file.as_str()) && out.stderr.contains("not a directory"),
        "{}",
        out.stderr
    );
}

#[test]
fn upload_to_an_echo_server_says_what_the_server_seems_to_be() {
    let server = Server::start(&["echo", "--listen", "127.0.0.1:0"]);
    let file = common::TempPath::new("to-echo.txt");
    std::fs::write(&file.0, b"some bytes").expect("write");
    let to = server.addr().to_string();
    let out = common::run_netloop(&["upload", file.as_str(), "--to", &to], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("echo server"), "{}", out.stderr);
}

#[test]
fn text_typed_at_the_upload_port_gets_a_useful_error() {
    use std::io::Read;
    let dir = common::unique_temp_path("typed");
    let server = Server::start(&[
        "upload",
        "--dir",
        dir.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut conn = common::connect(server.addr());
    conn.write_all(b"hello there\n").expect("send");
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).expect("read the error frame");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("\"ok\":false") && text.contains("netloop upload"),
        "{text}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
