//! Benchmarks `epoll-server` against the servers users would otherwise pick.
//!
//! # Method
//!
//! Every server under test is a separate process started as
//! `<binary> <addr> [args...]` with `addr = 127.0.0.1:0`. It prints
//! `listening on <addr>` as its first stdout line, echoes every byte it
//! receives, and exits 0 on SIGTERM. The driver ([`driver`]) starts one
//! fresh server process per measurement, runs one scenario against it with
//! the single-threaded load generator ([`loadgen`]), and samples the server's
//! CPU time (`/proc/PID/stat`), RSS (`/proc/PID/status`) and, where `perf`
//! works, its system calls, exactly around the timed window. Servers are
//! alternated A B A B over several rounds and medians are reported
//! ([`report`]).
//!
//! The load generator verifies every byte: each connection sends a
//! pseudo-random stream derived from its own seed ([`pattern`]) and checks
//! the echo against the same stream, so loss, duplication, reordering,
//! corruption and cross-connection mix-ups all fail the run.
//!
//! The `http` scenario ([`http`]) is the exception to "our own generator":
//! it drives HTTP servers (`GET /` → `Hello, World!`) with `wrk`, and runs
//! only when asked for (`--scenarios http`).
//!
//! The real-server scenarios ([`real`]: `--scenarios redis,http-plaintext,proxy`)
//! measure the root crate's `redis`, `http_plaintext` and `proxy` examples
//! against `redis-server`, nginx and a direct echo, with `redis-benchmark`,
//! `wrk` and our generator, and report ratios ours / theirs.
//!
//! The `spread` scenario ([`spread`], `--scenarios spread`) measures no speed: it starts the
//! library's callback echo with several reactors and counts how evenly they accepted a burst
//! of connections, for each accept-spread mode.
//!
//! The soak scenario ([`soak`]) is separate: one server process under a
//! steady mix of clients (ping-pong, churn, bulk, slow readers, resets and
//! slowloris clients its timeouts must close) for minutes, its RSS, fds and
//! CPU sampled every few seconds and judged for leaks at the end.
//!
//! Every server gets the same load, the same 64 KiB read buffer, the same
//! socket options (`TCP_NODELAY`) and the same file descriptor limit (soft
//! raised to hard); nothing is tuned per server.

#![warn(missing_docs, rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod driver;
pub mod hist;
pub mod http;
pub mod loadgen;
pub mod pattern;
pub mod real;
pub mod report;
pub mod servers;
pub mod soak;
pub mod spread;
pub mod sys;

/// Read buffer size every echo server uses, and the bulk scenario's write size.
pub const BUF_SIZE: usize = 64 * 1024;
