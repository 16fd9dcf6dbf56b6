//! The peer's half-close on the callback face: `Handler::on_peer_eof` keeps the connection open
//! for writing until the handler closes it; the default still answers and closes.

mod common;

use common::{assert_nothing_to_read, connect, read_to_eof, Event, Recorder};
use epoll_server::{Builder, Bytes, CloseReason, ConnHandle, ConnId, Context, Handler};
use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// What the deferring handler reports to the test.
#[derive(Debug)]
enum Report {
    PeerEof(ConnId),
    Closed(ConnId, CloseReason),
}

/// Collects each connection's request; at the peer's end of file hands the request and a
/// handle to a worker instead of closing.
struct Deferred {
    requests: HashMap<ConnId, Vec<u8>>,
    work: mpsc::Sender<(ConnHandle, Vec<u8>)>,
    reports: mpsc::Sender<Report>,
}

impl Handler for Deferred {
    fn on_message(&mut self, _ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
        self.requests
            .entry(conn)
            .or_default()
            .extend_from_slice(&data);
    }

    fn on_peer_eof(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let request = self.requests.remove(&conn).unwrap_or_default();
        let handle = ctx.handle(conn).expect("the connection is still open");
        let _ = self.reports.send(Report::PeerEof(conn));
        let _ = self.work.send((handle, request));
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, conn: ConnId, reason: CloseReason) {
        let _ = self.reports.send(Report::Closed(conn, reason));
    }
}

// Half-close (new API on_peer_eof): a worker thread answers after the client's end of file.
#[test]
fn worker_replies_after_the_peers_end_of_file_when_on_peer_eof_keeps_the_connection() {
    let (work_tx, work) = mpsc::channel::<(ConnHandle, Vec<u8>)>();
    let (reports_tx, reports) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let server = common::spawn(
        Builder::new(),
        Deferred {
            requests: HashMap::new(),
            work: work_tx,
            reports: reports_tx,
        },
    );
    // The worker answers only when the test says so: by then the peer's end of file has been
    // handled for a while and the connection must still be open.
    let worker = thread::spawn(move || {
        let (handle, request) = work.recv_timeout(common::TIMEOUT).expect("work");
        go.recv_timeout(common::TIMEOUT).expect("go");
        let reply = format!("reply to {}", String::from_utf8_lossy(&request));
        handle.send(reply.clone()).expect("the connection is open");
        handle.send(" (second part)").expect("still open");
        handle.close();
    });

    let mut client = connect(server.local_addr());
    client.write_all(b"the request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let id = match reports.recv_timeout(common::TIMEOUT).expect("on_peer_eof") {
        Report::PeerEof(id) => id,
        other => panic!("expected on_peer_eof first, got {other:?}"),
    };
    // Nothing yet, in particular no end of file.
    assert_nothing_to_read(&mut client, Duration::from_millis(200));
    go_tx.send(()).unwrap();
    let reply = read_to_eof(&mut client).expect("the reply, then end of file");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "reply to the request (second part)"
    );
    // Closed by the worker after the peer's end of file: either reading is fair, an error or a
    // timeout is not.
    match reports.recv_timeout(common::TIMEOUT).expect("on_close") {
        Report::Closed(c, CloseReason::Local | CloseReason::PeerClosed) if c == id => {}
        other => panic!("expected on_close({id}, Local or PeerClosed), got {other:?}"),
    }
    worker.join().unwrap();
    server.stop_and_join().unwrap();
}

// Half-close: the default on_peer_eof still writes the answer to the last message, then closes
// with PeerClosed.
#[test]
fn default_on_peer_eof_answers_then_closes_with_peer_closed() {
    let (handler, events) = Recorder::new(|ctx, conn, data| {
        let reply = format!("answer to {}", String::from_utf8_lossy(&data));
        ctx.send(conn, reply).expect("the connection is open");
    });
    let server = common::spawn(Builder::new(), handler);
    let mut client = connect(server.local_addr());
    let id = events.open().id;
    client.write_all(b"question").unwrap();
    events.wait("the question", |e| {
        matches!(e, Event::Message(c, _) if *c == id).then_some(())
    });
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_eof(&mut client).expect("the answer, then end of file"),
        b"answer to question"
    );
    let reason = events.closed(id);
    assert!(
        matches!(reason, CloseReason::PeerClosed),
        "on_close: {reason}"
    );
    server.stop_and_join().unwrap();
}
