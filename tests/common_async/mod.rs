//! Helpers for the async-face tests: a per-test watchdog, blocking clients with timeouts,
//! per-connection byte patterns, the echo task, and a look at the kernel's socket queues.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use epoll_server::{Bytes, Connection};
use futures::{SinkExt, StreamExt};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Read and write timeout of every client socket: no test waits on a socket for longer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Aborts the whole test binary if the test that holds it runs past its limit, so a hang
/// becomes a failure with a name instead of a stuck CI job.
pub struct Watchdog {
    _disarm: mpsc::Sender<()>,
}

impl Watchdog {
    pub fn new(test: &'static str, limit: Duration) -> Watchdog {
        let (disarm, armed) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = armed.recv_timeout(limit) {
                eprintln!("watchdog: {test} still running after {limit:?}; aborting");
                std::process::abort();
            }
        });
        Watchdog { _disarm: disarm }
    }
}

/// A blocking client socket with bounded reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .expect("set write timeout");
    stream.set_nodelay(true).expect("set TCP_NODELAY");
    stream
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn pattern_word(seed: u64, index: u64) -> u64 {
    splitmix64(seed.rotate_left(32) ^ splitmix64(index))
}

/// Byte `pos` of the stream named `seed`: streams of different seeds differ, and a byte that is
/// lost, duplicated or moved inside one stream shows up as a mismatch.
pub fn pattern_byte(seed: u64, pos: u64) -> u8 {
    (pattern_word(seed, pos / 8) >> ((pos % 8) * 8)) as u8
}

/// Fills `buf` with stream `seed` starting at `start`.
pub fn fill_pattern(seed: u64, start: u64, buf: &mut [u8]) {
    let mut pos = start;
    let mut rest = buf;
    // Unaligned head, byte by byte; then whole words.
    while pos % 8 != 0 && !rest.is_empty() {
        rest[0] = pattern_byte(seed, pos);
        rest = &mut rest[1..];
        pos += 1;
    }
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        word.copy_from_slice(&pattern_word(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    for b in words.into_remainder() {
        *b = pattern_byte(seed, pos);
        pos += 1;
    }
}

/// `len` bytes of stream `seed` starting at `start`.
pub fn pattern(seed: u64, start: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fill_pattern(seed, start, &mut buf);
    buf
}

/// Checks that `got` is stream `seed` from `start`; names the first wrong byte.
pub fn assert_pattern(what: &str, seed: u64, start: u64, got: &[u8]) {
    let expected = pattern(seed, start, got.len());
    if got == expected.as_slice() {
        return;
    }
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!(
            "{what}: byte {} (of {} checked from offset {start}) is {:#04x}, expected {:#04x}",
            start + i as u64,
            got.len(),
            got[i],
            expected[i]
        );
    }
}

/// Reads exactly `len` bytes (bounded by the socket's read timeout).
pub fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream
        .read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {len} bytes: {e}"));
    buf
}

/// Reads until end of file, failing past `max` bytes (bounded by the socket's read timeout).
pub fn read_to_eof(stream: &mut TcpStream, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                assert!(
                    out.len() <= max,
                    "read {} bytes, more than the {max} expected",
                    out.len()
                );
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading to end of file after {} bytes: {e}", out.len()),
        }
    }
}

/// Writes all of `data` (bounded by the socket's write timeout).
pub fn write_all(stream: &mut TcpStream, data: &[u8]) {
    stream
        .write_all(data)
        .unwrap_or_else(|e| panic!("writing {} bytes: {e}", data.len()));
}

/// Makes `close` send a reset instead of a FIN (`SO_LINGER` with a zero timeout).
pub fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is owned by `stream`, which outlives this call; `linger` is an initialised
    // `libc::linger` on our stack and the length passed is exactly its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast::<libc::c_void>(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
}

/// The echo every executor runs: each inbound buffer goes back out in order; at the peer's end
/// of file the sink is closed (flush, then half-close). Returns the bytes echoed.
pub async fn echo(conn: Connection) -> io::Result<u64> {
    let (mut inbound, mut outbound) = conn.split();
    let mut total = 0;
    while let Some(buf) = inbound.next().await {
        let buf: Bytes = buf?;
        total += buf.len() as u64;
        outbound.feed(buf).await?;
    }
    outbound.close().await?;
    Ok(total)
}

/// One IPv4 TCP socket as `/proc/net/tcp` shows it.
#[derive(Debug, Clone, Copy)]
pub struct SocketQueues {
    /// Bytes written and not yet acknowledged by the peer (for a listener: 0).
    pub tx: u64,
    /// Bytes received and not yet read by the application (for a listener: connections
    /// waiting in the accept queue).
    pub rx: u64,
}

fn proc_port(field: &str) -> Option<u16> {
    u16::from_str_radix(field.rsplit(':').next()?, 16).ok()
}

/// The queues of the IPv4 socket bound to `local` port whose peer is `remote` port (`None`:
/// the listening socket of `local`).
pub fn socket_queues(local: u16, remote: Option<u16>) -> Option<SocketQueues> {
    const LISTEN: &str = "0A";
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || proc_port(f[1]) != Some(local) {
            return None;
        }
        let wanted = match remote {
            None => f[3] == LISTEN,
            Some(port) => f[3] != LISTEN && proc_port(f[2]) == Some(port),
        };
        if !wanted {
            return None;
        }
        let (tx, rx) = f[4].split_once(':')?;
        Some(SocketQueues {
            tx: u64::from_str_radix(tx, 16).ok()?,
            rx: u64::from_str_radix(rx, 16).ok()?,
        })
    })
}

/// Polls `probe` every few milliseconds until it holds or `limit` passes, for states the
/// kernel reaches with no event to wait on. Returns whether it held.
pub fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Joins a thread, re-raising its panic so the test fails with the thread's message.
pub fn join<T>(handle: thread::JoinHandle<T>) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
