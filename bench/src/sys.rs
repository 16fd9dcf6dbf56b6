//! The few libc calls the bench crate needs, each wrapped once.
//!
//! Used by the load generator, by the floor server and by every peer server
//! for the common start-up chores (file descriptor limit, signal exit).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

/// Maps a `-1` return to the current `errno` as an [`io::Error`].
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Maps a `-1` return of a size-returning call to an [`io::Error`].
pub fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
///
/// Every server and the generator call this at start, so 10,000 idle
/// connections fit on both sides.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct for the duration of the call.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit struct; setrlimit only reads it.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(lim.rlim_cur)
}

extern "C" fn exit_zero(_signal: libc::c_int) {
    // SAFETY: `_exit` is async-signal-safe and ends the process without
    // running any code that could observe a half-updated state.
    unsafe { libc::_exit(0) }
}

/// Installs a SIGTERM/SIGINT handler that ends the process with status 0.
///
/// Echo servers keep no state worth flushing, so `_exit(0)` from the
/// handler is the simplest correct stop, and the same for every server.
pub fn exit_zero_on_term() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = exit_zero as extern "C" fn(libc::c_int) as usize;
        // SAFETY: `sa.sa_mask` is a valid sigset_t owned by this frame.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised and the handler is async-signal-safe.
        cvt(unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) })?;
    }
    Ok(())
}

/// Sets an integer socket option.
pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the option value points at a live c_int whose size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Turns Nagle off: every server and the generator use `TCP_NODELAY`.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Creates a non-blocking TCP socket, optionally bound to `source` (port 0,
/// chosen at connect time via `IP_BIND_ADDRESS_NO_PORT`), and starts a
/// non-blocking connect to `dest`.
///
/// Returns the fd; the connection completes when it becomes writable.
pub fn connect_nonblocking(dest: SocketAddrV4, source: Option<Ipv4Addr>) -> io::Result<RawFd> {
    connect_nonblocking_with(dest, source, |_| Ok(()))
}

/// [`connect_nonblocking`], calling `before_connect` on the new socket
/// first (for options that must be set before the handshake, such as
/// buffer sizes).
pub fn connect_nonblocking_with(
    dest: SocketAddrV4,
    source: Option<Ipv4Addr>,
    before_connect: impl FnOnce(RawFd) -> io::Result<()>,
) -> io::Result<RawFd> {
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    let res = (|| {
        set_nodelay(fd)?;
        before_connect(fd)?;
        if let Some(ip) = source {
            // Defer port choice to connect(), so the 4-tuple (not the bare
            // port) must be unique and TIME_WAIT reuse on loopback applies.
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
            let sa = sockaddr_in(SocketAddrV4::new(ip, 0));
            // SAFETY: `sa` is a valid sockaddr_in and we pass its exact size.
            cvt(unsafe {
                libc::bind(
                    fd,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            })?;
        }
        let sa = sockaddr_in(dest);
        // SAFETY: `sa` is a valid sockaddr_in and we pass its exact size.
        let ret = unsafe {
            libc::connect(
                fd,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(err);
            }
        }
        Ok(())
    })();
    match res {
        Ok(()) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Sets `SO_LINGER` to on with a zero timeout, so `close` sends a reset
/// (RST) instead of a FIN and drops any unsent data.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
    let lin = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value points at a live linger struct whose size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lin as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Returns the pending socket error (`SO_ERROR`), if any.
pub fn take_socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are live locals of the sizes getsockopt expects.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok((err != 0).then(|| io::Error::from_raw_os_error(err)))
}

/// `read(2)` into `buf`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid writable slice of `buf.len()` bytes.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `send(2)` with `MSG_NOSIGNAL`, so a reset peer gives `EPIPE`, not SIGPIPE.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a valid readable slice of `buf.len()` bytes.
    cvt_size(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
}

/// `close(2)`, ignoring errors (nothing useful can be done about them here).
pub fn close(fd: RawFd) {
    // SAFETY: callers own `fd` and never use it after this call.
    unsafe { libc::close(fd) };
}

/// A thin owner of an epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: RawFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with a constant flag.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self { fd })
    }

    /// `epoll_ctl(ADD)` with the given interest and token.
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event; the epoll fd is owned by self.
        cvt(unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
    }

    /// `epoll_ctl(DEL)`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` is valid (ignored by DEL on modern kernels); fds are live.
        cvt(unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_DEL, fd, &mut ev) }).map(drop)
    }

    /// `epoll_wait` into `events`, retrying on `EINTR`; returns the ready count.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        loop {
            // SAFETY: `events` is a writable buffer of `events.len()` entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.fd,
                    events.as_mut_ptr(),
                    events.len() as libc::c_int,
                    timeout_ms,
                )
            };
            match cvt(n) {
                Ok(n) => return Ok(n as usize),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        close(self.fd);
    }
}

/// CPU time (user + system) this process has used so far.
pub fn self_cpu_time() -> std::time::Duration {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec as u64)
            + std::time::Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A CPU set holding `cpus`.
pub fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c < libc::CPU_SETSIZE as usize {
            // SAFETY: `c` is inside the set (checked above); CPU_SET only writes its bit.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    set
}

/// Binds thread `tid` (0: the calling thread) to the CPUs in `set` (what `taskset -p` does).
/// Threads created afterwards, and processes spawned from the thread, inherit it.
pub fn set_affinity(tid: libc::pid_t, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) })
        .map(drop)
}

/// The CPUs this thread may run on, ascending (`sched_getaffinity`).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid out-parameter.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    cvt(unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) })?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is inside the set; CPU_ISSET only reads its bit.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

/// Clock ticks per second for `/proc/PID/stat` times.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid as libc::pid_t, signal) }).map(drop)
}

/// Prints `listening on <addr>` as the first stdout line and flushes it:
/// the protocol the driver uses to learn the port.
pub fn announce(addr: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// Common server start-up: raise the fd limit and exit 0 on SIGTERM/SIGINT.
///
/// Returns the address argument (first positional, default `127.0.0.1:0`).
pub fn server_start() -> std::net::SocketAddr {
    raise_nofile_limit().expect("raising RLIMIT_NOFILE");
    exit_zero_on_term().expect("installing the SIGTERM handler");
    let arg = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--") && a.contains(':'))
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    arg.parse().expect("address argument must be IP:PORT")
}
