//! The only module that calls into libc: every system call the crate makes goes through here.
//!
//! What it offers:
//! - [`Epoll`]: `epoll_create1` / `epoll_ctl` / `epoll_wait` over an owned fd;
//! - [`EventFd`]: the cross-thread wake-up, writable from a signal handler;
//! - sockets: [`listener`], [`unix_listener`], [`accept`], [`connect`], [`recv`],
//!   [`send_vectored`], [`shutdown_write`], [`set_nodelay`], [`local_addr`], [`local_address`],
//!   [`peer_credentials`], [`socket_error`];
//! - process: [`raise_nofile_limit`] and [`install_signal_handler`].
//!
//! Everything above this module takes [`BorrowedFd`] / [`OwnedFd`], never a bare `RawFd` it has to
//! trust, and every failing call becomes an [`io::Error`] through [`cvt`].

use std::ffi::OsString;
use std::io::{self, IoSlice};
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::addr::{Address, PeerCredentials};

/// Maps the `-1` convention of libc to `io::Error::last_os_error()`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for calls returning `ssize_t`.
fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Adds which call failed to an OS error, keeping its kind.
pub(crate) fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// Takes ownership of a descriptor a syscall just returned.
///
/// # Safety
/// `fd` must be a fresh, open descriptor that nothing else owns.
unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Readiness bits, re-exported so callers do not name libc.
pub(crate) const EV_IN: u32 = libc::EPOLLIN as u32;
pub(crate) const EV_OUT: u32 = libc::EPOLLOUT as u32;
pub(crate) const EV_RDHUP: u32 = libc::EPOLLRDHUP as u32;
pub(crate) const EV_HUP: u32 = libc::EPOLLHUP as u32;
pub(crate) const EV_ERR: u32 = libc::EPOLLERR as u32;
pub(crate) const EV_ET: u32 = libc::EPOLLET as u32;
/// Wake only one of the epoll instances waiting on a shared listener (Linux 4.5+).
pub(crate) const EV_EXCLUSIVE: u32 = libc::EPOLLEXCLUSIVE as u32;
/// TCP urgent data arrived (the read stops short at its mark).
pub(crate) const EV_PRI: u32 = libc::EPOLLPRI as u32;

/// One readiness event as `epoll_wait` reports it.
pub(crate) type Event = libc::epoll_event;

/// Returns the `(token, readiness)` pair of an event.
pub(crate) fn event_parts(ev: &Event) -> (u64, u32) {
    (ev.u64, ev.events)
}

/// An empty event, to size the buffer `epoll_wait` fills.
pub(crate) fn empty_event() -> Event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// An epoll instance (`epoll_create1(EPOLL_CLOEXEC)`).
///
/// # References
/// <https://man7.org/linux/man-pages/man7/epoll.7.html>
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new fd we own.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
            .map_err(|e| context(e, "epoll_create1"))?;
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { owned(fd) };
        Ok(Epoll { fd })
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)` with `token` as the event's data.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
            .map_err(|e| context(e, "epoll_ctl(ADD)"))
    }

    /// `epoll_ctl(EPOLL_CTL_MOD)`: replaces the registered events of `fd`. The kernel checks the
    /// new set's readiness at once, so an edge that came before the call is not lost.
    pub(crate) fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
            .map_err(|e| context(e, "epoll_ctl(MOD)"))
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: both fds are open for the duration of the call; `ev` is a valid epoll_event.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) }).map(drop)
    }

    /// `epoll_wait`: fills `events`, returns how many are valid. `EINTR` is returned as 0 events.
    pub(crate) fn wait(&self, events: &mut [Event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is a valid, writable buffer of `max` epoll_event entries.
        let n =
            unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), max, timeout_ms) };
        match cvt(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(context(e, "epoll_wait")),
        }
    }
}

/// A non-blocking, close-on-exec eventfd used to wake the reactor.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/eventfd.2.html>
#[derive(Debug)]
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: no pointers; a non-negative result is a new fd we own.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
            .map_err(|e| context(e, "eventfd"))?;
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let fd = unsafe { owned(fd) };
        Ok(EventFd { fd })
    }

    /// The fd, for registering with epoll.
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Adds 1 to the counter with `write(2)`: async-signal-safe, no allocation, no lock.
    ///
    /// The reactor never reads the counter back in the common case: the eventfd is registered
    /// edge-triggered and every write raises a new edge (as mio's waker relies on), which saves
    /// a `read(2)` per wake-up. Only if the counter is full (`EAGAIN`, after 2^64-2 wake-ups) is
    /// it reset and written again.
    pub(crate) fn notify(&self) {
        let one: u64 = 1;
        for _ in 0..2 {
            // SAFETY: writes 8 bytes from a live u64 to an fd owned by `self`.
            let n = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    mem::size_of::<u64>(),
                )
            };
            if n >= 0 || errno() != libc::EAGAIN {
                return;
            }
            self.drain();
        }
    }

    /// Resets the counter with `read(2)`; returns whether it was non-zero.
    pub(crate) fn drain(&self) -> bool {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from an fd owned by `self`.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut value as *mut u64).cast(),
                mem::size_of::<u64>(),
            )
        };
        n == mem::size_of::<u64>() as isize
    }
}

/// Converts a socket address into the C representation `bind` and `connect` take.
fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Reads back a socket address the kernel filled in.
fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is aligned for it.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6; storage is aligned for it.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        family => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unsupported address family {family}"),
        )),
    }
}

fn set_int_opt(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size; fd is open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A listening TCP socket: `socket(SOCK_NONBLOCK | SOCK_CLOEXEC)`, `SO_REUSEADDR`, `bind`, `listen(backlog)`.
/// IPv6 sockets are `IPV6_V6ONLY`, so `[::]` and `0.0.0.0` can be bound side by side.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/listen.2.html>
pub(crate) fn listener(addr: &SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    listener_with(addr, backlog, false)
}

/// [`listener`], with `SO_REUSEPORT` set before `bind` if `reuseport`.
fn listener_with(addr: &SocketAddr, backlog: i32, reuseport: bool) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = stream_socket(family, "socket")?;
    use std::os::fd::AsFd;
    set_int_opt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
        .map_err(|e| context(e, "setsockopt(SO_REUSEADDR)"))?;
    if reuseport {
        set_reuseport(fd.as_fd())?;
    }
    if addr.is_ipv6() {
        set_int_opt(fd.as_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(|e| context(e, "setsockopt(IPV6_V6ONLY)"))?;
    }
    let (storage, len) = to_sockaddr(addr);
    bind_and_listen(&fd, &storage, len, backlog, || format!("bind({addr})"))?;
    Ok(fd)
}

/// A new `SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC` socket of `family`; `what` names the
/// call in an error.
fn stream_socket(family: libc::c_int, what: &str) -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a non-negative result is a new fd we own.
    let raw = cvt(unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
    .map_err(|e| context(e, what))?;
    // SAFETY: `raw` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { owned(raw) })
}

/// `bind` to the address in `storage` (`len` bytes of it), then `listen(backlog)`; `bind_what`
/// names the bind in an error.
fn bind_and_listen(
    fd: &OwnedFd,
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
    backlog: i32,
    bind_what: impl FnOnce() -> String,
) -> io::Result<()> {
    // SAFETY: `storage` holds a valid socket address of `len` bytes; fd is open.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
    .map_err(|e| context(e, &bind_what()))?;
    // SAFETY: no pointers; fd is open.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map_err(|e| context(e, "listen"))?;
    Ok(())
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new connection and its peer address (TCP or Unix).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/accept.2.html>
pub(crate) fn accept(listener: BorrowedFd<'_>) -> io::Result<(OwnedFd, Address)> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes; the kernel writes at most that many.
    let raw = cvt(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            storage.as_mut_ptr().cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: `raw` was just returned by accept4 and is owned by nobody else.
    let fd = unsafe { owned(raw) };
    // SAFETY: storage was zeroed and then (partly) filled by the kernel: every byte is initialised.
    let storage = unsafe { storage.assume_init() };
    let peer = from_sockaddr_any(&storage, len)?;
    Ok((fd, peer))
}

/// A Unix domain socket path as a `sockaddr_un` (inside a `sockaddr_storage`) and its length.
fn unix_sockaddr(path: &Path) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "Unix socket path {:?} must be 1 to {} bytes without NUL",
                path,
                sun.sun_path.len() - 1
            ),
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_un.
    unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sun) };
    Ok((storage, len as libc::socklen_t))
}

/// Any address as the C representation `bind` and `connect` take.
fn address_sockaddr(addr: &Address) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    match addr {
        Address::Tcp(a) => Ok(to_sockaddr(a)),
        Address::Unix(Some(path)) => unix_sockaddr(path),
        Address::Unix(None) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an unnamed Unix socket address cannot be bound or connected to",
        )),
    }
}

/// Reads back an address of any supported family the kernel filled in (`len` bytes of it).
fn from_sockaddr_any(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> io::Result<Address> {
    if storage.ss_family as libc::c_int != libc::AF_UNIX {
        return from_sockaddr(storage).map(Address::Tcp);
    }
    // SAFETY: the family says the storage holds a sockaddr_un; storage is aligned for it.
    let sun: &libc::sockaddr_un = unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
    let offset = mem::offset_of!(libc::sockaddr_un, sun_path);
    let path_len = (len as usize)
        .saturating_sub(offset)
        .min(sun.sun_path.len());
    let raw = &sun.sun_path[..path_len];
    // Unnamed (no path) or abstract (leading NUL): no path to give.
    if raw.first().map_or(true, |&c| c == 0) {
        return Ok(Address::Unix(None));
    }
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(Address::from(PathBuf::from(OsString::from_vec(bytes))))
}

/// A listening Unix domain stream socket at `path`: `socket(AF_UNIX, SOCK_NONBLOCK |
/// SOCK_CLOEXEC)`, `bind`, `listen(backlog)`. `bind` fails with `AddrInUse` if the path exists.
pub(crate) fn unix_listener(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let (storage, len) = unix_sockaddr(path)?;
    let fd = stream_socket(libc::AF_UNIX, "socket(AF_UNIX)")?;
    bind_and_listen(&fd, &storage, len, backlog, || {
        format!("bind(unix:{})", path.display())
    })?;
    Ok(fd)
}

/// A non-blocking `connect(2)` to `addr` on a new `SOCK_NONBLOCK | SOCK_CLOEXEC` socket.
///
/// Returns the socket, and the error if the attempt already failed. A TCP connect normally
/// returns `EINPROGRESS` (not an error here): completion is signalled by `EPOLLOUT` and its
/// outcome read with [`socket_error`]. A Unix connect completes or fails at once (`EAGAIN`
/// means the listener's backlog is full). `Err` only if no socket could be made.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/connect.2.html>
pub(crate) fn connect(addr: &Address) -> io::Result<(OwnedFd, Option<io::Error>)> {
    let (storage, len) = address_sockaddr(addr)?;
    let family = match addr {
        Address::Tcp(SocketAddr::V4(_)) => libc::AF_INET,
        Address::Tcp(SocketAddr::V6(_)) => libc::AF_INET6,
        Address::Unix(_) => libc::AF_UNIX,
    };
    let fd = stream_socket(family, "socket")?;
    loop {
        // SAFETY: `storage` holds a valid sockaddr of `len` bytes; fd is open.
        let ret = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&storage as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if ret == 0 {
            return Ok((fd, None));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINPROGRESS) => return Ok((fd, None)),
            Some(libc::EINTR) => continue,
            _ => return Ok((fd, Some(context(err, &format!("connect({addr})"))))),
        }
    }
}

/// `getsockopt(SO_PEERCRED)`: the process at the other end of a Unix domain socket.
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<PeerCredentials> {
    // SAFETY: ucred is plain old data; all-zero is a valid value.
    let mut cred: libc::ucred = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into a live ucred.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })
    .map_err(|e| context(e, "getsockopt(SO_PEERCRED)"))?;
    Ok(PeerCredentials {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// `getsockname` as an [`Address`] (TCP or Unix).
pub(crate) fn local_address(fd: BorrowedFd<'_>) -> io::Result<Address> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), storage.as_mut_ptr().cast(), &mut len) })
        .map_err(|e| context(e, "getsockname"))?;
    // SAFETY: zeroed, then filled by the kernel: fully initialised.
    from_sockaddr_any(&unsafe { storage.assume_init() }, len)
}

/// `getsockname`: the local address a socket is bound to.
pub(crate) fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SocketAddr> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` is writable for `len` bytes.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), storage.as_mut_ptr().cast(), &mut len) })
        .map_err(|e| context(e, "getsockname"))?;
    // SAFETY: zeroed, then filled by the kernel: fully initialised.
    from_sockaddr(&unsafe { storage.assume_init() })
}

/// `recv(2)` into `buf`: `Ok(0)` means the peer closed its write side.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid and writable for `buf.len()` bytes; fd is open.
    cvt_size(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `sendmsg(2)` of several buffers at once with `MSG_NOSIGNAL`, so a reset peer gives `EPIPE`
/// instead of killing the process with `SIGPIPE`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/send.2.html>
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain old data; all-zero is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    // SAFETY: msg points at `bufs`, which stay borrowed (and so alive and unmodified) for the call.
    cvt_size(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })
}

/// A connected socket other threads may write to while its owner (the reactor) keeps it open:
/// the owner [`set`](Self::set)s it once it is connected and [`revoke`](Self::revoke)s it
/// before it closes the descriptor, under the lock every writer holds across its `sendmsg`.
/// So a writer never reaches a closed descriptor, or a new socket that reused its number.
#[derive(Debug)]
pub(crate) struct SharedFd {
    /// The descriptor, or -1 while it is not shared (an `Option` would cost 4 more bytes in
    /// every connection's shared state).
    fd: std::sync::Mutex<RawFd>,
}

impl Default for SharedFd {
    fn default() -> SharedFd {
        SharedFd {
            fd: std::sync::Mutex::new(-1),
        }
    }
}

impl SharedFd {
    /// Lets other threads write to `fd` until [`revoke`](Self::revoke). The caller (the
    /// descriptor's owner) must revoke before it closes `fd`.
    pub(crate) fn set(&self, fd: BorrowedFd<'_>) {
        *self.fd.lock().unwrap_or_else(|p| p.into_inner()) = fd.as_raw_fd();
    }

    /// Ends writes from other threads; returns once none is in progress.
    pub(crate) fn revoke(&self) {
        *self.fd.lock().unwrap_or_else(|p| p.into_inner()) = -1;
    }

    /// [`send_vectored`] on the descriptor, or `None` if it is not (or no longer) shared.
    pub(crate) fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> Option<io::Result<usize>> {
        let guard = self.fd.lock().unwrap_or_else(|p| p.into_inner());
        let raw = *guard;
        if raw < 0 {
            return None;
        }
        // SAFETY: `raw` is open: its owner set it while open and revokes it, under this lock,
        // before closing it; the lock is held until the call returns.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        Some(send_vectored(fd, bufs))
    }
}

/// Sets `SO_REUSEPORT` on a socket, so other sockets with it set may bind the same address and
/// the kernel spreads new connections over their listen queues. On a listening socket that was
/// bound without it, it takes effect for the sockets that bind after (Linux joins them into one
/// group when they listen).
pub(crate) fn set_reuseport(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)
        .map_err(|e| context(e, "setsockopt(SO_REUSEPORT)"))
}

/// Another listening socket on `addr` in the `SO_REUSEPORT` group of a socket already
/// listening there (which must have [`set_reuseport`] set): non-blocking, close-on-exec.
pub(crate) fn reuseport_listener(addr: &SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    listener_with(addr, backlog, true)
}

/// `shutdown(SHUT_WR)`: sends FIN after the queued bytes; reading still works.
pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no pointers; fd is open.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) })
        .map(drop)
        .map_err(|e| context(e, "shutdown(SHUT_WR)"))
}

/// `setsockopt(TCP_NODELAY)`.
pub(crate) fn set_nodelay(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on as libc::c_int)
        .map_err(|e| context(e, "setsockopt(TCP_NODELAY)"))
}

/// `setsockopt(SO_LINGER, {on, 0})`: closing the socket then sends a reset (RST) and drops
/// unsent data, so the peer can tell an abandoned transfer from a complete one.
pub(crate) fn set_linger_zero(fd: BorrowedFd<'_>) -> io::Result<()> {
    let value = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: passes a pointer to a live `linger` and its exact size; fd is open.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&value as *const libc::linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })
    .map(drop)
    .map_err(|e| context(e, "setsockopt(SO_LINGER)"))
}

/// `ioctl(SIOCOUTQ)`: bytes in the socket's send queue that the peer has not acknowledged yet.
/// It shrinks while the peer reads, even when the queue is too full for a new write: that is
/// how a stalled-looking flush tells a slow reader from one that stopped.
pub(crate) fn unacked_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut value: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one c_int through the pointer, which points at a live c_int.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCOUTQ,
            &mut value as *mut libc::c_int,
        )
    })?;
    Ok(value.max(0) as usize)
}

/// `getsockopt(SO_ERROR)`: the pending error of a socket, if any.
pub(crate) fn socket_error(fd: BorrowedFd<'_>) -> Option<io::Error> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into a live c_int.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    match ret {
        0 if value != 0 => Some(io::Error::from_raw_os_error(value)),
        0 => None,
        _ => Some(io::Error::last_os_error()),
    }
}

/// The file-descriptor limits obtained for [`Builder::max_fds`](crate::Builder::max_fds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit in force after the call: the number of fds this process may open.
    pub soft: u64,
    /// The hard limit, unchanged by the call.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` toward `wanted`, up to the hard limit. Never lowers either limit.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/getrlimit.2.html>
pub(crate) fn raise_nofile_limit(wanted: u64) -> io::Result<FdLimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one rlimit into a live local.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })
        .map_err(|e| context(e, "getrlimit(RLIMIT_NOFILE)"))?;
    let target = (wanted as libc::rlim_t).min(lim.rlim_max);
    if target > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: reads one rlimit from a live local.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) })
            .map_err(|e| context(e, "setrlimit(RLIMIT_NOFILE)"))?;
        lim.rlim_cur = target;
    }
    Ok(FdLimit {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Installs `handler` for `signal` with `sigaction(SA_RESTART)`.
///
/// The handler must be async-signal-safe.
pub(crate) fn install_signal_handler(
    signal: i32,
    handler: extern "C" fn(libc::c_int),
) -> io::Result<()> {
    // SAFETY: sigaction is plain old data; all-zero is a valid starting value.
    let mut action: libc::sigaction = unsafe { mem::zeroed() };
    action.sa_sigaction = handler as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a live sigset_t.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is fully initialised; the old action is not requested.
    cvt(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })
        .map(drop)
        .map_err(|e| context(e, "sigaction"))
}

/// Asks the C allocator to give freed heap memory back to the kernel (glibc's `malloc_trim`),
/// once an idle server has dropped the room its work lists kept after a burst: without it, the
/// freed memory stays in the process's RSS. A no-op elsewhere, and harmless under another
/// global allocator (glibc then has little to give back).
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointers; it only walks glibc's own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The current thread's last OS error number, for code that must not allocate (signal handlers).
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Restores errno, so a signal handler leaves the interrupted code's errno untouched.
pub(crate) fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() = value };
}

/// Whether an accept error concerns only the one connection being accepted, so accepting
/// should simply go on (no back-off: fds are not exhausted).
///
/// `accept(2)` says: "Linux accept() passes already-pending network errors on the new socket as
/// an error code from accept() [...] For reliable operation the application should detect the
/// network errors defined for the protocol after accept() and treat them like EAGAIN by
/// retrying. In the case of TCP/IP, these are ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN, ENONET,
/// EHOSTUNREACH, EOPNOTSUPP, and ENETUNREACH." ECONNABORTED (the peer gave up before we took
/// it), EPERM (a firewall rule) and EINTR belong with them.
pub(crate) fn is_transient_accept_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// Whether an error is a connection reset (or a write to a reset or closed connection).
pub(crate) fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNRESET)
            | Some(libc::EPIPE)
            | Some(libc::ETIMEDOUT)
            | Some(libc::ECONNABORTED)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Defect 9 of the review: the network errors `accept(2)` says to treat like EAGAIN made
    /// the listener back off as if fds were exhausted.
    #[test]
    fn accept_errors_of_one_connection_do_not_back_off() {
        for errno in [
            libc::ENETDOWN,
            libc::EPROTO,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::ENONET,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
            libc::ECONNABORTED,
            libc::EINTR,
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(is_transient_accept_error(&e), "{e} should not back off");
        }
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(!is_transient_accept_error(&e), "{e} must back off");
        }
    }
}
