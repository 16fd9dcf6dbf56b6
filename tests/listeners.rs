//! Listening: IPv4 and IPv6, several listeners on one server, listeners made elsewhere, the
//! socket options of `make_listener`, the fd limit, and the connection limit.

mod common;

use common::{assert_echo, assert_nothing_to_read, connect, Event, Recorder};
use epoll_server::{make_listener, Builder, CloseReason, FdLimit, Server};
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Whether this machine can bind the IPv6 loopback.
fn ipv6_available() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("IPv6 loopback unavailable ({e}); skipping the IPv6 part");
            false
        }
    }
}

/// An integer socket option.
fn sockopt(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> libc::c_int {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals of the sizes passed; the fd is borrowed open.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(ret, 0, "getsockopt: {}", io::Error::last_os_error());
    value
}

/// The open-file flags of one of our fds, from `/proc/self/fdinfo`.
fn fd_flags(fd: BorrowedFd<'_>) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("fdinfo has a flags line");
    u32::from_str_radix(flags.trim(), 8).unwrap()
}

fn nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a live local.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

fn set_soft_nofile(soft: u64) {
    let (_, hard) = nofile();
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one fully initialised rlimit from a live local.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

#[test]
fn serves_ipv4_loopback() {
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler);
    assert!(server.local_addr().is_ipv4());
    assert_ne!(server.local_addr().port(), 0, "the real port is known");
    let mut client = connect(server.local_addr());
    assert_echo(&mut client, b"over IPv4");
    assert_eq!(events.open().local, server.local_addr());
    server.stop_and_join().unwrap();
}

#[test]
fn serves_ipv6_loopback_when_available() {
    if !ipv6_available() {
        return;
    }
    let (handler, events) = Recorder::echo();
    let server = Builder::new()
        .bind("[::1]:0")
        .unwrap()
        .build(handler)
        .unwrap()
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    assert!(addr.is_ipv6() && addr.port() != 0, "{addr}");
    let mut client = connect(addr);
    assert_echo(&mut client, b"over IPv6");
    let info = events.open();
    assert_eq!(info.peer, client.local_addr().unwrap());
    assert_eq!(info.local, addr);
    server.stop_and_join().unwrap();
}

#[test]
fn one_server_serves_several_listeners() {
    let (handler, events) = Recorder::echo();
    let mut builder = Builder::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .bind("127.0.0.1:0")
        .unwrap();
    if ipv6_available() {
        builder = builder.bind("[::1]:0").unwrap();
    }
    let server = builder.build(handler).unwrap().spawn().unwrap();
    let addrs = server.local_addrs().to_vec();
    assert!(addrs.len() >= 2);
    assert_ne!(addrs[0], addrs[1], "two listeners, two ports");
    match events.next() {
        Event::Listening(got) => assert_eq!(got, addrs, "on_listening gets every address"),
        other => panic!("expected on_listening, got {other:?}"),
    }
    for addr in &addrs {
        let mut client = connect(*addr);
        assert_echo(&mut client, format!("via {addr}").as_bytes());
        assert_eq!(
            events.open().local,
            *addr,
            "on_open names the listener's address"
        );
    }
    server.stop_and_join().unwrap();
}

#[test]
fn serves_listeners_made_elsewhere() {
    // A plain blocking std listener: the server switches it to non-blocking.
    let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let std_addr = std_listener.local_addr().unwrap();
    let made = make_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let made_addr = made.local_addr().unwrap();
    let (handler, events) = Recorder::echo();
    let server = Builder::new()
        .listener(std_listener)
        .unwrap()
        .listener(made)
        .unwrap()
        .build(handler)
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(server.local_addrs(), &[std_addr, made_addr]);
    for addr in [std_addr, made_addr] {
        // Two clients each: a blocking listener would hang the reactor on the second accept.
        let mut a = connect(addr);
        let mut b = connect(addr);
        assert_echo(&mut a, b"first");
        assert_echo(&mut b, b"second");
    }
    for _ in 0..4 {
        events.open();
    }
    server.stop_and_join().unwrap();
}

#[test]
fn make_listener_sets_reuseaddr_nonblocking_and_cloexec() {
    let listener = make_listener("127.0.0.1:0".parse().unwrap(), 8).unwrap();
    let fd = std::os::fd::AsFd::as_fd(&listener);
    assert_eq!(
        sockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR),
        1,
        "SO_REUSEADDR"
    );
    assert_eq!(
        sockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN),
        1,
        "listening"
    );
    let flags = fd_flags(fd);
    assert_ne!(
        flags & libc::O_NONBLOCK as u32,
        0,
        "O_NONBLOCK (flags {flags:o})"
    );
    assert_ne!(
        flags & libc::O_CLOEXEC as u32,
        0,
        "O_CLOEXEC (flags {flags:o})"
    );
    // Non-blocking in practice: nothing to accept is WouldBlock, not a hang.
    let err = listener.accept().expect_err("nothing to accept");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

    if ipv6_available() {
        let v6 = make_listener("[::1]:0".parse().unwrap(), 8).unwrap();
        let fd = std::os::fd::AsFd::as_fd(&v6);
        assert_eq!(
            sockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
            1,
            "v6-only"
        );
        assert_eq!(sockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
    }
}

#[test]
fn binding_a_port_in_use_fails_and_names_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Builder::new()
        .bind(addr)
        .expect_err("bind a port that is listening already");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn max_fds_raises_the_soft_limit_and_never_lowers_either_limit() {
    let (soft0, hard) = nofile();
    // Start below the hard limit so there is something to raise.
    let low = (hard / 2).max(1024).min(hard);
    set_soft_nofile(low);

    let build = |builder: Builder| {
        builder
            .bind("127.0.0.1:0")
            .unwrap()
            .build(common::Recorder::echo().0)
            .unwrap()
    };
    let unset = build(Builder::new());
    assert_eq!(unset.fd_limit(), None, "no limit asked, none reported");

    let wanted = low.saturating_add(100);
    let raised: Server = build(Builder::new().max_fds(wanted));
    let expected = FdLimit {
        soft: wanted.min(hard),
        hard,
    };
    assert_eq!(raised.fd_limit(), Some(expected));
    assert_eq!(nofile(), (expected.soft, hard));

    let capped = build(Builder::new().max_fds(u64::MAX));
    assert_eq!(capped.fd_limit(), Some(FdLimit { soft: hard, hard }));
    assert_eq!(
        nofile(),
        (hard, hard),
        "raised up to the hard limit, no further"
    );

    let lower = build(Builder::new().max_fds(16));
    assert_eq!(
        lower.fd_limit(),
        Some(FdLimit { soft: hard, hard }),
        "a smaller max_fds must not lower the soft limit"
    );
    assert_eq!(nofile(), (hard, hard), "neither limit was lowered");
    set_soft_nofile(soft0);
}

#[test]
fn max_connections_holds_back_extra_clients_until_one_closes() {
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new().max_connections(2), handler.quiet());
    let addr = server.local_addr();
    let mut first = connect(addr);
    let first_id = events.open().id;
    let mut second = connect(addr);
    events.open();
    assert_echo(&mut first, b"one");
    assert_echo(&mut second, b"two");

    // The third handshake completes in the kernel, but the server does not take it.
    let mut third = connect(addr);
    third.write_all(b"three").unwrap();
    assert_nothing_to_read(&mut third, Duration::from_millis(300));
    events.assert_none_within(Duration::ZERO, "a third connection opened", |e| {
        matches!(e, Event::Open(_))
    });

    drop(first);
    assert!(matches!(events.closed(first_id), CloseReason::PeerClosed));
    // "Until one closes": the freed place goes to the waiting client at once, not at some
    // later wake-up of the reactor.
    let third_info = events.open_within(
        Duration::from_secs(2),
        "the waiting client, after a connection closed",
    );
    assert_eq!(third_info.peer, third.local_addr().unwrap());
    let mut early = [0u8; 5];
    third.read_exact(&mut early).unwrap();
    assert_eq!(&early, b"three", "bytes sent while waiting are served");
    assert_echo(&mut third, b"and more");
    assert_echo(&mut second, b"two still served");

    // And the limit still holds with the third in.
    let mut fourth = connect(addr);
    fourth.write_all(b"four").unwrap();
    assert_nothing_to_read(&mut fourth, Duration::from_millis(200));
    server.stop_and_join().unwrap();
}
