//! End to end: the driver runs every scenario, tiny, against the floor and
//! tokio, and a deliberately broken server makes the run fail.

use bench::driver::{self, Server};
use bench::loadgen::{self, NoProbe, Params, Scenario};
use bench::servers::ServerCmd;
use std::path::PathBuf;
use std::process::Command;

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_epoll_floor"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_scenario_runs_against_floor_and_tokio_through_the_driver() {
    let out = std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id()));
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--smoke",
            "--no-perf",
            "--servers",
            "epoll_floor,tokio_ct,tokio_mt,smol",
        ])
        .arg("--out")
        .arg(&out)
        .env("BENCH_BIN_DIR", bin_dir())
        .output()
        .expect("run the bench driver");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "driver failed:\n{stderr}\n{stdout}");
    for sc in Scenario::ALL {
        assert!(
            stdout.contains(&format!("### {sc}")),
            "no table for {sc}:\n{stdout}"
        );
    }
    assert!(stderr.contains("verified every byte: OK"), "{stderr}");
    // Below each echo table: every server's threads and their CPU in the window.
    assert!(
        stdout.contains("Per-thread CPU (ms in window, median round):")
            && stdout.contains("\n- epoll_floor: epoll_floor ")
            && stdout.contains("\n- tokio_mt: "),
        "{stdout}"
    );
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f.ends_with(".md")), "{files:?}");
    let svg = files
        .iter()
        .find(|f| f.ends_with(".svg"))
        .expect("an svg chart");
    let svg = std::fs::read_to_string(out.join(svg)).unwrap();
    assert!(svg.contains("<svg") && svg.contains("pingpong"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn generator_measures_each_scenario_directly() {
    let cmd = ServerCmd {
        name: "epoll_floor".into(),
        program: env!("CARGO_BIN_EXE_epoll_floor").into(),
        args: vec![],
        proto: bench::servers::Proto::Echo,
    };
    let params = Params::smoke();
    for sc in Scenario::ALL {
        let server = Server::start(&cmd).unwrap();
        let out = loadgen::run(sc, server.addr, &params, &mut NoProbe).unwrap();
        if sc == Scenario::Idle {
            assert_eq!(out.connections, params.idle_connections);
        } else {
            assert!(out.ops > 0, "{sc}: no ops completed");
            assert!(!out.hist.is_empty() && out.hist.len() <= out.ops);
        }
        server.stop().unwrap();
    }
}

#[test]
fn server_that_corrupts_bytes_fails_the_run() {
    // A tiny thread-per-connection echo that flips one bit at stream
    // offset 150 (after the 100-byte warm-up message).
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().take(64) {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    for (i, b) in buf[..n].iter_mut().enumerate() {
                        if total + i == 150 {
                            *b ^= 0x80; // flip one bit after the warm-up
                        }
                    }
                    total += n;
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let params = Params {
        connections: 1,
        ..Params::smoke()
    };
    let err = loadgen::run(Scenario::PingPong, addr, &params, &mut NoProbe).unwrap_err();
    assert!(
        err.0.contains("corrupt echo") && err.0.contains("byte 150"),
        "{err}"
    );
}

#[test]
fn extra_server_spec_parses_and_bad_servers_are_reported() {
    let cmd = ServerCmd::parse("mine=/bin/false --x 1").unwrap();
    assert_eq!(cmd.name, "mine");
    assert_eq!(cmd.args, ["--x", "1"]);
    let err = Server::start(&cmd).unwrap_err();
    assert!(err.contains("exited before printing its address"), "{err}");
    assert!(driver::cpu_time(std::process::id()).is_ok());
    assert!(driver::rss_bytes(std::process::id()).unwrap() > 0);
}
