//! Unix domain stream sockets on both faces: listening, peer credentials, stale and live
//! socket files, removal on stop, already-bound listeners.

mod common;

use common::{Event, Recorder, TIMEOUT};
use epoll_server::{Address, Server};
use futures::{SinkExt, StreamExt};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh socket path in the temp directory, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "epoll-server-test-{}-{name}-{n}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn unix_client(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the Unix listener");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// This process's pid, effective uid and gid (`/proc/self` belongs to them).
fn me() -> (i32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self").expect("/proc/self");
    (std::process::id() as i32, meta.uid(), meta.gid())
}

#[test]
fn callback_face_serves_a_unix_socket_with_the_peers_credentials() {
    let path = TempPath::new("callback");
    let (recorder, events) = Recorder::echo();
    let server = Server::builder()
        .bind_unix(&path.0)
        .unwrap()
        .build(recorder)
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(server.addresses(), &[Address::unix(&path.0)]);
    assert!(server.local_addrs().is_empty(), "no TCP listener");
    let listening = events.wait("on_listening", |e| match e {
        Event::Listening(a) => Some(a.clone()),
        _ => None,
    });
    assert_eq!(listening, vec![Address::unix(&path.0)]);

    let mut client = unix_client(&path.0);
    client.write_all(b"over a unix socket").unwrap();
    let mut reply = [0u8; 18];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"over a unix socket");

    let info = events.open();
    assert_eq!(info.local, Address::unix(&path.0));
    assert_eq!(
        info.peer,
        Address::Unix(None),
        "the client never bound a path"
    );
    assert!(!info.outbound);
    let cred = info.peer_credentials.expect("SO_PEERCRED for a Unix peer");
    assert_eq!((cred.pid, cred.uid, cred.gid), me());
    server.stop_and_join().unwrap();
}

#[test]
fn tcp_connections_have_no_peer_credentials() {
    let (server, events) = common::echo_server();
    let mut client = common::connect(server.local_addr());
    common::assert_echo(&mut client, b"tcp");
    let info = events.open();
    assert_eq!(info.peer_credentials, None);
    assert_eq!(info.peer, client.local_addr().unwrap());
}

#[test]
fn async_face_serves_a_unix_socket() {
    let path = TempPath::new("async");
    let server = Server::builder()
        .bind_unix_async(&path.0)
        .unwrap()
        .build_async()
        .unwrap();
    let mut incoming = server.incoming();
    let server = server.spawn().unwrap();
    let client_path = path.0.clone();
    let client = std::thread::spawn(move || {
        let mut c = unix_client(&client_path);
        c.write_all(b"ping").unwrap();
        let mut reply = [0u8; 4];
        c.read_exact(&mut reply).unwrap();
        reply
    });
    futures::executor::block_on(async {
        let mut conn = incoming.next().await.expect("a connection");
        assert_eq!(conn.local_addr(), &Address::unix(&path.0));
        let cred = conn.info().peer_credentials.expect("credentials");
        assert_eq!(cred.pid, me().0);
        let got = conn.next().await.unwrap().unwrap();
        assert_eq!(&got[..], b"ping");
        conn.send("pong".into()).await.unwrap();
        conn.close().await.unwrap();
    });
    assert_eq!(&common_join(client), b"pong");
    server.stop_and_join().unwrap();
}

fn common_join<T>(h: std::thread::JoinHandle<T>) -> T {
    h.join().expect("client thread panicked")
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let path = TempPath::new("stale");
    // A listener that went away without removing its file, like a crashed process's.
    drop(UnixListener::bind(&path.0).unwrap());
    assert!(path.0.exists(), "std leaves the socket file behind");
    let (recorder, _events) = Recorder::echo();
    let server = Server::builder()
        .bind_unix(&path.0)
        .expect("a stale socket file is replaced")
        .build(recorder)
        .unwrap()
        .spawn()
        .unwrap();
    let mut client = unix_client(&path.0);
    client.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    client.read_exact(&mut b).unwrap();
    server.stop_and_join().unwrap();
}

#[test]
fn a_live_socket_is_an_error_and_is_never_stolen() {
    let path = TempPath::new("live");
    let live = UnixListener::bind(&path.0).unwrap();
    let err = Server::builder()
        .bind_unix(&path.0)
        .expect_err("binding over a live socket must fail");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("live"), "{err}");
    // The live server still owns its path and still accepts.
    let _client = UnixStream::connect(&path.0).expect("the live listener still accepts");
    live.set_nonblocking(false).unwrap();
    let (_conn, _) = live.accept().unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_an_error_and_left_alone() {
    let path = TempPath::new("file");
    std::fs::write(&path.0, b"precious").unwrap();
    let err = Server::builder()
        .bind_unix(&path.0)
        .expect_err("not a socket");
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert_eq!(std::fs::read(&path.0).unwrap(), b"precious");
}

#[test]
fn the_socket_file_is_removed_on_graceful_stop() {
    let path = TempPath::new("removed");
    let (recorder, events) = Recorder::echo();
    let server = Server::builder()
        .bind_unix(&path.0)
        .unwrap()
        .build(recorder)
        .unwrap()
        .spawn()
        .unwrap();
    events.wait("on_listening", |e| {
        matches!(e, Event::Listening(_)).then_some(())
    });
    assert!(path.0.exists());
    server.stop_and_join().unwrap();
    assert!(!path.0.exists(), "the socket file is removed on stop");
}

#[test]
fn a_socket_file_replaced_by_another_server_is_not_removed() {
    let path = TempPath::new("replaced");
    let (recorder, _events) = Recorder::echo();
    let server = Server::builder()
        .bind_unix(&path.0)
        .unwrap()
        .build(recorder)
        .unwrap();
    // Someone removes the file and binds their own socket there.
    std::fs::remove_file(&path.0).unwrap();
    let theirs = UnixListener::bind(&path.0).unwrap();
    drop(server);
    assert!(path.0.exists(), "another server's socket file was removed");
    drop(theirs);
}

#[test]
fn an_already_bound_unix_listener_is_served_and_its_file_left_in_place() {
    let path = TempPath::new("given");
    let listener = UnixListener::bind(&path.0).unwrap();
    let (recorder, events) = Recorder::echo();
    let server = Server::builder()
        .unix_listener(listener)
        .unwrap()
        .build(recorder)
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(server.addresses(), &[Address::unix(&path.0)]);
    let mut client = unix_client(&path.0);
    client.write_all(b"given").unwrap();
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"given");
    assert!(events.open().peer_credentials.is_some());
    server.stop_and_join().unwrap();
    assert!(
        path.0.exists(),
        "the caller bound it: the caller removes it"
    );
}

#[test]
fn tcp_and_unix_listeners_side_by_side() {
    let path = TempPath::new("both");
    let tcp: Address = "127.0.0.1:0".parse().unwrap();
    let unix: Address = format!("unix:{}", path.0.display()).parse().unwrap();
    let (recorder, _events) = Recorder::echo();
    let server = Server::builder()
        .bind_address(&tcp)
        .unwrap()
        .bind_address(&unix)
        .unwrap()
        .build(recorder)
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(server.addresses().len(), 2);
    assert_eq!(server.addresses()[1], unix);
    let mut t = common::connect(server.local_addr());
    common::assert_echo(&mut t, b"tcp side");
    let mut u = unix_client(&path.0);
    u.write_all(b"unix side").unwrap();
    let mut reply = [0u8; 9];
    u.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"unix side");
    server.stop_and_join().unwrap();
}

#[test]
fn addresses_parse_and_print() {
    let a: Address = "unix:/run/app.sock".parse().unwrap();
    assert_eq!(a.to_string(), "unix:/run/app.sock");
    assert!(a.is_unix());
    let t: Address = "[::1]:8080".parse().unwrap();
    assert_eq!(t.to_string(), "[::1]:8080");
    assert!("unix:".parse::<Address>().is_err());
    assert!("localhost".parse::<Address>().is_err());
    let too_long = format!("unix:/{}", "x".repeat(200));
    let err = Server::builder()
        .bind_address(&too_long.parse().unwrap())
        .expect_err("a path longer than sun_path");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
}
