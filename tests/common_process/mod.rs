//! The examples as child processes: built on demand in the test's own profile, started on an
//! ephemeral loopback port with their `listening on ADDR` line read, stopped with a signal
//! within a bound, and killed if a test ends early.

// Each test file uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long an example may take to print a line.
const LINE_WITHIN: Duration = Duration::from_secs(10);

/// `target/<profile dir>` of this test binary (`target/<profile dir>/deps/<test binary>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The path of example `name`, built (or brought up to date) with `cargo build --example`
/// once per test process, in this test binary's profile and target directory, so a test
/// never runs a missing or stale binary.
pub fn built_example(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let dir = profile_dir();
    let path = dir.join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built
        .get_or_insert_with(HashSet::new)
        .insert(name.to_string())
    {
        let target_dir = dir.parent().expect("the target directory");
        let profile = dir.file_name().unwrap().to_string_lossy().into_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--quiet", "--example", name, "--target-dir"])
            .arg(target_dir);
        // The `dev` profile builds into `debug`; every other profile into its own name.
        if profile != "debug" {
            build.args(["--profile", &profile]);
        }
        let status = build
            .status()
            .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
        assert!(status.success(), "cargo build --example {name}: {status}");
    }
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A running example; killed if the test ends early.
pub struct Example {
    name: String,
    child: Child,
    /// Its stdout lines; the channel disconnects when the process closes stdout (exits).
    lines: Receiver<String>,
    /// The address from its `listening on` line.
    pub addr: SocketAddr,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Example {
    /// Builds and starts example `name` on `127.0.0.1:0` with `args` after the address, and
    /// reads its `listening on ADDR` line.
    pub fn start(name: &str, args: &[&str]) -> Example {
        Example::start_at(name, "127.0.0.1:0", args)
    }

    /// Builds and starts example `name` listening on `listen` (`127.0.0.1:0` or
    /// `unix:/path`) with `args` after it, and reads its `listening on ADDR` line: for TCP,
    /// `addr` is the bound address; for Unix, the line must name the path.
    pub fn start_at(name: &str, listen: &str, args: &[&str]) -> Example {
        let path = built_example(name);
        let mut child = Command::new(&path)
            .arg(listen)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut example = Example {
            name: name.to_string(),
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
        };
        let first = example.next_line("first");
        let printed = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{name}'s first line is {first:?}"));
        if listen.starts_with("unix:") {
            assert_eq!(printed, listen, "{name} printed another Unix address");
            return example;
        }
        let addr: SocketAddr = printed
            .parse()
            .unwrap_or_else(|e| panic!("{name} printed the address in {first:?}: {e}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0, "{name} printed port 0, not the bound port");
        example.addr = addr;
        example
    }

    /// The next line the example prints (`what` names it in the failure message).
    #[track_caller]
    pub fn next_line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(LINE_WITHIN)
            .unwrap_or_else(|_| panic!("{} printed no {what} line", self.name))
    }

    /// Sends `signal` (a `kill` name such as `TERM`) and returns the exit status, which must
    /// come within `within`.
    pub fn stop_with(mut self, signal: &str, within: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        // The process's stdout closes when it exits.
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} still running {within:?} after SIG{signal}", self.name)
                }
            }
        }
        self.child.wait().expect("reap the example")
    }
}
