//! The table of servers the driver knows, and how to find their binaries.
//!
//! Adding a server is one [`Builtin`] entry. Every server is run as
//! `<binary> 127.0.0.1:0 [args...]`, must print `listening on <addr>` as its
//! first (flushed) stdout line, raise `RLIMIT_NOFILE` soft to hard, use a
//! 64 KiB read buffer with `TCP_NODELAY`, and exit 0 on SIGTERM.
//! HTTP servers ([`Proto::Http`], for the `http` scenario only) follow the
//! same contract but answer `GET /` with `Hello, World!` instead of echoing.

use std::path::PathBuf;

/// What a server speaks; each scenario runs only the servers of its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Echoes every byte (every scenario but `http`).
    Echo,
    /// HTTP/1.1, `GET /` answered with `Hello, World!` (the `http` scenario).
    Http,
}

/// Where a built-in server's binary comes from.
#[derive(Debug, Clone, Copy)]
pub enum Bin {
    /// A binary of this bench crate (`bench/src/bin/<name>.rs`).
    Bench(&'static str),
    /// An example of the root crate, built with
    /// `cargo build --release --examples` at the workspace root.
    RootExample(&'static str),
}

/// One row of the built-in table.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Short name used in reports and `--servers`.
    pub name: &'static str,
    /// The binary.
    pub bin: Bin,
    /// Arguments after the address.
    pub args: &'static [&'static str],
    /// What it speaks.
    pub proto: Proto,
    /// One line for `--list`.
    pub about: &'static str,
}

/// The floor every ratio is taken against.
pub const FLOOR: &str = "epoll_floor";
/// The popular default every ratio is also taken against.
pub const REFERENCE: &str = "tokio_ct";
/// The `http` scenario's reference: hyper on tokio's own listener.
pub const HTTP_REFERENCE: &str = "hyper_tokio";

/// Every server the driver runs by default, in report order.
///
/// Root-crate examples are skipped (with a note) until they are built.
pub const BUILTIN: &[Builtin] = &[
    Builtin {
        name: FLOOR,
        bin: Bin::Bench("epoll_floor"),
        args: &[],
        proto: Proto::Echo,
        about: "single-threaded edge-triggered epoll echo on raw libc (the floor)",
    },
    Builtin {
        name: REFERENCE,
        bin: Bin::Bench("tokio_echo"),
        args: &["--flavor", "current"],
        proto: Proto::Echo,
        about: "tokio current-thread runtime, task per connection",
    },
    Builtin {
        name: "tokio_mt",
        bin: Bin::Bench("tokio_echo"),
        args: &["--flavor", "multi"],
        proto: Proto::Echo,
        about: "tokio multi-thread runtime (one worker per core), task per connection",
    },
    Builtin {
        name: "smol",
        bin: Bin::Bench("smol_echo"),
        args: &[],
        proto: Proto::Echo,
        about: "smol LocalExecutor in block_on, task per connection",
    },
    Builtin {
        name: "lib_callback",
        bin: Bin::RootExample("echo_callback"),
        args: &[],
        proto: Proto::Echo,
        about: "epoll-server callback echo (examples/echo_callback)",
    },
    Builtin {
        name: "lib_tokio",
        bin: Bin::RootExample("echo"),
        args: &["--executor", "tokio"],
        proto: Proto::Echo,
        about: "epoll-server Stream/Sink echo on tokio (examples/echo)",
    },
    Builtin {
        name: "lib_smol",
        bin: Bin::RootExample("echo"),
        args: &["--executor", "smol"],
        proto: Proto::Echo,
        about: "epoll-server Stream/Sink echo on smol (examples/echo)",
    },
    Builtin {
        name: HTTP_REFERENCE,
        bin: Bin::Bench("hyper_tokio"),
        args: &[],
        proto: Proto::Http,
        about: "http only: hyper 1 HTTP/1.1 on tokio's TcpListener, current-thread runtime",
    },
    Builtin {
        name: "lib_hyper",
        bin: Bin::RootExample("hyper_hello"),
        args: &[],
        proto: Proto::Http,
        about: "http only: hyper 1 on epoll-server's I/O view, tokio current-thread (examples/hyper_hello)",
    },
];

/// A runnable server command.
#[derive(Debug, Clone)]
pub struct ServerCmd {
    /// Name in reports.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Arguments after the address.
    pub args: Vec<String>,
    /// What it speaks.
    pub proto: Proto,
}

impl ServerCmd {
    /// Parses `NAME=PATH [ARGS...]` (arguments split on whitespace): an echo server.
    pub fn parse(spec: &str) -> Result<ServerCmd, String> {
        let (name, cmd) = spec
            .split_once('=')
            .ok_or_else(|| format!("--server wants NAME=PATH [ARGS], got {spec:?}"))?;
        let mut words = cmd.split_whitespace();
        let program = words
            .next()
            .ok_or_else(|| format!("--server {name}= has no program"))?;
        Ok(ServerCmd {
            name: name.to_string(),
            program: PathBuf::from(program),
            args: words.map(str::to_string).collect(),
            proto: Proto::Echo,
        })
    }
}

/// Directory holding this crate's binaries: `$BENCH_BIN_DIR`, else the
/// directory of the running executable (its parent when run from `deps/`,
/// as integration tests are).
pub fn bench_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BENCH_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Directory holding the root crate's release examples:
/// `$BENCH_EXAMPLES_DIR`, else `$CARGO_TARGET_DIR/release/examples`, else
/// `<workspace>/target/release/examples`.
pub fn root_examples_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BENCH_EXAMPLES_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("release").join("examples")
}

/// Warns (once per binary) when a release example is older than the library's sources or
/// examples: the bench runs what is built, so a stale binary measures old code.
fn warn_if_stale(program: &std::path::Path) {
    use std::sync::Mutex;
    static WARNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let Ok(built) = program.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let newest = ["src", "examples"]
        .iter()
        .filter_map(|d| newest_mtime(&root.join(d)))
        .max();
    if newest.is_some_and(|n| n > built) {
        let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
        if !warned.iter().any(|p| p == program) {
            warned.push(program.to_path_buf());
            eprintln!(
                "bench: warning: {} is older than the library's sources; it measures the code \
                 it was built from (run `cargo build --release --examples` first)",
                program.display()
            );
        }
    }
}

/// The newest modification time of any file under `dir`.
fn newest_mtime(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

impl Builtin {
    /// The command to run, or why it cannot run (binary not built).
    pub fn resolve(&self) -> Result<ServerCmd, String> {
        let program = match self.bin {
            Bin::Bench(b) => bench_bin_dir().join(b),
            Bin::RootExample(e) => root_examples_dir().join(e),
        };
        if !program.is_file() {
            let hint = match self.bin {
                Bin::Bench(_) => "build the bench crate's binaries (cargo build -p bench --bins)",
                Bin::RootExample(_) => {
                    "run `cargo build --release --examples` at the workspace root"
                }
            };
            return Err(format!("{} not found ({hint})", program.display()));
        }
        if let Bin::RootExample(_) = self.bin {
            warn_if_stale(&program);
        }
        Ok(ServerCmd {
            name: self.name.to_string(),
            program,
            args: self.args.iter().map(|s| s.to_string()).collect(),
            proto: self.proto,
        })
    }
}

impl Builtin {
    /// Whether this is one of the library's own echo servers (`lib_callback`, `lib_tokio`,
    /// `lib_smol`), which take `--reactors N`.
    pub fn takes_reactors(&self) -> bool {
        matches!(self.bin, Bin::RootExample(_)) && self.proto == Proto::Echo
    }
}

/// `cmd` once per reactor count, with `--reactors N` after its arguments; named `NAME_rN`
/// when there are several counts, `NAME` when there is one.
pub fn with_reactors(cmd: &ServerCmd, reactors: &[usize]) -> Vec<ServerCmd> {
    reactors
        .iter()
        .map(|&n| {
            let mut c = cmd.clone();
            c.args.extend(["--reactors".to_string(), n.to_string()]);
            if reactors.len() > 1 {
                c.name = format!("{}_r{n}", cmd.name);
            }
            c
        })
        .collect()
}

/// Looks a built-in up by name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTIN.iter().find(|b| b.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_echo_servers_take_reactors() {
        let ours: Vec<&str> = BUILTIN
            .iter()
            .filter(|b| b.takes_reactors())
            .map(|b| b.name)
            .collect();
        assert_eq!(ours, ["lib_callback", "lib_tokio", "lib_smol"]);
    }

    #[test]
    fn reactor_counts_append_the_flag_and_name_each_run() {
        let cmd = ServerCmd {
            name: "lib_tokio".into(),
            program: "echo".into(),
            args: vec!["--executor".into(), "tokio".into()],
            proto: Proto::Echo,
        };
        let one = with_reactors(&cmd, &[2]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "lib_tokio");
        assert_eq!(one[0].args, ["--executor", "tokio", "--reactors", "2"]);
        let two = with_reactors(&cmd, &[1, 2]);
        let names: Vec<&str> = two.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["lib_tokio_r1", "lib_tokio_r2"]);
        assert_eq!(two[0].args, ["--executor", "tokio", "--reactors", "1"]);
    }
}
