//! The `http` scenario's peer server, and (when `wrk` is installed) the
//! scenario itself through the driver.

use bench::driver::Server;
use bench::servers::{Proto, ServerCmd};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn hyper_tokio() -> ServerCmd {
    ServerCmd {
        name: "hyper_tokio".into(),
        program: env!("CARGO_BIN_EXE_hyper_tokio").into(),
        args: vec![],
        proto: Proto::Http,
    }
}

fn exchange(server: &Server, request: &str) -> String {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn hyper_tokio_answers_hello_echo_and_404() {
    let server = Server::start(&hyper_tokio()).unwrap();
    bench::http::check_hello(server.addr).unwrap();
    let r = exchange(
        &server,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello, echo",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("hello, echo"), "{r}");
    let r = exchange(
        &server,
        "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    server.stop().unwrap();
}

#[test]
fn http_scenario_runs_through_the_driver_when_wrk_is_installed() {
    let wrk = Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if wrk.is_err() {
        eprintln!("wrk is not installed: skipping the driver run of the http scenario");
        return;
    }
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_hyper_tokio"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = std::env::temp_dir().join(format!("bench-http-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--smoke",
            "--no-perf",
            "--scenarios",
            "http",
            "--servers",
            "hyper_tokio",
        ])
        .arg("--out")
        .arg(&out)
        .env("BENCH_BIN_DIR", bin_dir)
        .output()
        .expect("run the bench driver");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "driver failed:\n{stderr}\n{stdout}");
    assert!(stdout.contains("### http"), "{stdout}");
    assert!(stdout.contains("| hyper_tokio |"), "{stdout}");
    assert!(stderr.contains("no wrk errors: OK"), "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}
