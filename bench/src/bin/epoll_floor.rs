//! The floor: a plain single-threaded edge-triggered epoll echo server on libc.
//!
//! Nothing a library could remove: one `epoll_wait` loop; every socket
//! registered once with `EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`; reads
//! drain until `EAGAIN` into one shared 64 KiB buffer and each chunk is
//! written straight back. An unwritten remainder is queued, reading stops
//! (the same backpressure as an async `read` / `write_all` loop), and the
//! next `EPOLLOUT` edge flushes it and resumes reading.
//!
//! Per-connection read loop (edge-triggered, so every path ends at `EAGAIN`
//! or with the connection closed):
//!
//! | state        | event       | action                                   | next         |
//! |--------------|-------------|------------------------------------------|--------------|
//! | reading      | IN/RDHUP    | read → write back; `EAGAIN`              | reading      |
//! | reading      | partial send| queue the rest                           | blocked      |
//! | blocked      | OUT         | flush queue; empty → read again          | reading      |
//! | any          | read 0 / err| close                                    | closed       |
//!
//! Usage: `epoll_floor <addr>`; prints `listening on <addr>`; SIGTERM exits 0.

use bench::sys::{self, cvt, Epoll};
use std::io;
use std::net::TcpListener;
use std::os::fd::{IntoRawFd, RawFd};

const LISTENER: u64 = u64::MAX;

struct Conn {
    fd: RawFd,
    /// Unwritten echo bytes; non-empty means "blocked on EPOLLOUT".
    pending: Vec<u8>,
    sent: usize,
}

fn accept_all(ep: &Epoll, lfd: RawFd, conns: &mut Vec<Option<Conn>>, free: &mut Vec<usize>) {
    loop {
        // SAFETY: null address pointers are allowed; lfd is our listening socket.
        let fd = unsafe {
            libc::accept4(
                lfd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        let fd = match cvt(fd) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            Err(e) => {
                // EMFILE and friends: report, and let the next edge retry.
                eprintln!("epoll_floor: accept4: {e}");
                return;
            }
        };
        let _ = sys::set_nodelay(fd);
        let slot = free.pop().unwrap_or_else(|| {
            conns.push(None);
            conns.len() - 1
        });
        let ev = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if ep.add(fd, ev, slot as u64).is_err() {
            sys::close(fd);
            free.push(slot);
            continue;
        }
        conns[slot] = Some(Conn {
            fd,
            pending: Vec::new(),
            sent: 0,
        });
    }
}

/// Flushes the queue; `Ok(true)` when it emptied.
fn flush(c: &mut Conn) -> io::Result<bool> {
    while c.sent < c.pending.len() {
        match sys::send(c.fd, &c.pending[c.sent..]) {
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.pending.clear();
    c.sent = 0;
    Ok(true)
}

/// Reads until `EAGAIN`, echoing each chunk; `Ok(false)` when the peer is gone.
fn read_echo(c: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    while c.pending.is_empty() {
        let n = match sys::read(c.fd, buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            match sys::send(c.fd, &buf[off..n]) {
                Ok(k) => off += k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.pending.extend_from_slice(&buf[off..n]);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(true)
}

fn main() -> io::Result<()> {
    let addr = sys::server_start();
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let lfd = listener.into_raw_fd();
    let ep = Epoll::new()?;
    ep.add(lfd, (libc::EPOLLIN | libc::EPOLLET) as u32, LISTENER)?;
    sys::announce(local);

    let mut buf = vec![0u8; bench::BUF_SIZE];
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    loop {
        let n = ep.wait(&mut events, -1)?;
        for ev in &events[..n] {
            let (token, bits) = (ev.u64, ev.events);
            if token == LISTENER {
                accept_all(&ep, lfd, &mut conns, &mut free);
                continue;
            }
            let slot = token as usize;
            let Some(c) = conns[slot].as_mut() else {
                continue;
            };
            let readable =
                (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
            let mut want_read = bits & readable != 0;
            let mut alive = true;
            if bits & libc::EPOLLOUT as u32 != 0 && !c.pending.is_empty() {
                match flush(c) {
                    // Reading stopped while blocked; under ET no new edge
                    // comes for bytes already buffered, so read now.
                    Ok(true) => want_read = true,
                    Ok(false) => {}
                    Err(_) => alive = false,
                }
            }
            if alive && want_read && c.pending.is_empty() {
                alive = matches!(read_echo(c, &mut buf), Ok(true));
            }
            if !alive {
                // close() removes the fd from the epoll set too.
                sys::close(c.fd);
                conns[slot] = None;
                free.push(slot);
            }
        }
    }
}
