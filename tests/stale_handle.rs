//! A handle or id kept after its connection closed never reaches a newer connection, even
//! one that reuses the same slot or fd number.

mod common;

use common::{assert_echo, assert_nothing_to_read, connect, Event, Recorder};
use epoll_server::{Builder, CloseReason, ConnHandle, ConnId, SendErrorKind};
use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn handle_of_closed_connection_refuses_send_and_never_reaches_a_new_one() {
    let (handles_tx, handles) = mpsc::channel::<ConnHandle>();
    let (handler, events) = Recorder::echo();
    let handler = handler.on_open(move |ctx, info| {
        let _ = handles_tx.send(ctx.handle(info.id).expect("open connection has a handle"));
    });
    let server = common::spawn(Builder::new(), handler);
    let addr = server.local_addr();

    let mut a = connect(addr);
    let a_handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    assert_echo(&mut a, b"a is alive");
    assert!(!a_handle.is_closed());
    drop(a);
    let a_id = events.open().id;
    assert_eq!(a_id, a_handle.id());
    assert!(matches!(events.closed(a_id), CloseReason::PeerClosed));
    assert!(
        a_handle.is_closed(),
        "handle of a closed connection says open"
    );

    // B takes A's place: the lowest free fd, and A's free slot.
    let mut b = connect(addr);
    let b_handle = handles.recv_timeout(common::TIMEOUT).unwrap();
    let b_id = events.open().id;
    assert_ne!(b_id, a_id, "a new connection must get a new id");
    assert_eq!(b_handle.id(), b_id);

    let err = a_handle
        .send("stale")
        .expect_err("send through a stale handle");
    assert_eq!(err.kind(), SendErrorKind::Closed);
    assert_eq!(
        &err.into_inner()[..],
        b"stale",
        "the refused message comes back"
    );
    a_handle.close(); // must not close B
    a_handle.pause_reading(); // must not pause B
    assert_eq!(a_handle.queued_bytes(), 0);

    assert_nothing_to_read(&mut b, Duration::from_millis(200));
    assert_echo(&mut b, b"b still works");
    assert!(!b_handle.is_closed());
    b_handle.send("via b's handle").unwrap();
    let mut got = [0u8; 14];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"via b's handle");
    server.stop_and_join().unwrap();
}

#[test]
fn id_of_closed_connection_is_refused_by_context() {
    // The handler keeps the first connection's id and, when asked by a later connection, tries
    // to use it and reports what happened.
    let (report_tx, reports) = mpsc::channel();
    let mut first: Option<ConnId> = None;
    let (handler, events) = Recorder::new(move |ctx, conn, data| {
        let a = *first.get_or_insert(conn);
        if &data[..] == b"poke" {
            let sent = ctx.send(a, "stale").map_err(|e| (e.kind(), e.into_inner()));
            let _ = report_tx.send((
                sent,
                ctx.is_open(a),
                ctx.queued_bytes(a),
                ctx.handle(a).is_some(),
                ctx.connection_count(),
            ));
            ctx.pause_reading(a);
            ctx.close(a);
            ctx.send(conn, "poked").unwrap();
        } else {
            common::echo(ctx, conn, data);
        }
    });
    let server = common::spawn(Builder::new(), handler);
    let addr = server.local_addr();

    let mut a = connect(addr);
    assert_echo(&mut a, b"first");
    let a_id = events.open().id;
    drop(a);
    assert!(matches!(events.closed(a_id), CloseReason::PeerClosed));

    let mut b = connect(addr);
    let b_id = events.open().id;
    assert_ne!(a_id, b_id);
    std::io::Write::write_all(&mut b, b"poke").unwrap();
    let (sent, open, queued, has_handle, count) = reports.recv_timeout(common::TIMEOUT).unwrap();
    assert_eq!(sent, Err((SendErrorKind::Closed, "stale".into())));
    assert!(!open, "is_open on a closed connection's id");
    assert_eq!(queued, None);
    assert!(!has_handle, "handle() on a closed connection's id");
    assert_eq!(count, 1);

    let mut got = [0u8; 5];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"poked");
    // Nothing of "stale" reached B, and the close and pause aimed at A did not touch it.
    assert_nothing_to_read(&mut b, Duration::from_millis(200));
    assert_echo(&mut b, b"b is alive");
    events.assert_none_within(
        Duration::ZERO,
        "B closed",
        |e| matches!(e, Event::Close(id, _) if *id == b_id),
    );
    server.stop_and_join().unwrap();
}

/// Defect 8 of the review: slots were reused last-in first-out, so heavy churn concentrated
/// every reuse (and every generation bump) on one slot. Freed slots now wait their turn.
#[test]
fn freed_slots_are_reused_first_in_first_out() {
    let (handler, events) = Recorder::echo();
    let server = common::spawn(Builder::new(), handler);
    let addr = server.local_addr();
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3u8 {
        let mut c = connect(addr);
        assert_echo(&mut c, &[i]);
        ids.push(events.open().id);
        clients.push(c);
    }
    // Free A's slot, then B's: the next connection must get A's slot (first freed).
    let slot = |id: ConnId| {
        id.to_string()
            .trim_start_matches('#')
            .split('.')
            .next()
            .unwrap()
            .to_string()
    };
    for (n, client) in clients.drain(..2).enumerate() {
        drop(client);
        assert!(matches!(events.closed(ids[n]), CloseReason::PeerClosed));
    }
    let mut d = connect(addr);
    assert_echo(&mut d, b"d");
    let d_id = events.open().id;
    assert_eq!(
        slot(d_id),
        slot(ids[0]),
        "{d_id} should reuse {}'s slot",
        ids[0]
    );
    let mut e = connect(addr);
    assert_echo(&mut e, b"e");
    let e_id = events.open().id;
    assert_eq!(
        slot(e_id),
        slot(ids[1]),
        "{e_id} should reuse {}'s slot",
        ids[1]
    );
    assert_ne!(d_id, ids[0]);
}

/// With several reactors, ids carry their reactor: a kept id or handle of a closed connection
/// reaches nobody, not a newer connection in its slot on its reactor, not the connection with
/// the same slot and generation on another reactor, and not through routing from another
/// reactor's callback or the server handle.
#[test]
fn stale_ids_and_handles_reach_nobody_with_several_reactors() {
    use epoll_server::{Bytes, ConnInfo, Context, Handler};
    use std::sync::{Arc, Mutex};

    /// Every handler shares the first connection's id; "poke" sends to it from wherever.
    struct Poker {
        first: Arc<Mutex<Option<ConnId>>>,
        opened: mpsc::Sender<(ConnId, ConnHandle)>,
    }
    impl Handler for Poker {
        fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnInfo) {
            self.first.lock().unwrap().get_or_insert(conn.id);
            let _ = self.opened.send((conn.id, ctx.handle(conn.id).unwrap()));
        }
        fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
            if &data[..] == b"poke" {
                let first = self.first.lock().unwrap().expect("a first connection");
                // Routed to the first connection's reactor if it is another one: accepted
                // there for delivery, then dropped since that connection is gone.
                let _ = ctx.send(first, "stale");
                ctx.send(conn, "poked").unwrap();
            } else {
                common::echo(ctx, conn, data);
            }
        }
    }
    let first = Arc::new(Mutex::new(None));
    let (opened_tx, opened) = mpsc::channel();
    let server = Builder::new()
        .reactors(2)
        .bind("127.0.0.1:0")
        .unwrap()
        .build_with(|_| Poker {
            first: first.clone(),
            opened: opened_tx.clone(),
        })
        .unwrap()
        .spawn()
        .unwrap();
    let addr = server.local_addr();
    let handle = server.handle();

    let mut a = connect(addr);
    let (a_id, a_handle) = opened.recv_timeout(common::TIMEOUT).unwrap();
    assert_echo(&mut a, b"a");
    drop(a);
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while !a_handle.is_closed() {
        assert!(std::time::Instant::now() < deadline, "a never closed");
        std::thread::sleep(Duration::from_millis(2));
    }
    // New connections on both reactors, one of them in a's slot with the next generation.
    let mut others = Vec::new();
    let mut reactors = std::collections::HashSet::new();
    while others.len() < 8 || reactors.len() < 2 {
        assert!(others.len() < 64, "every connection went to one reactor");
        let mut c = connect(addr);
        let (id, _) = opened.recv_timeout(common::TIMEOUT).unwrap();
        assert_ne!(id, a_id, "a stale id was handed out again");
        assert_echo(&mut c, b"hi");
        reactors.insert(id.reactor());
        others.push((id, c));
    }
    // Poke from a connection on the other reactor than a's (routing), and from one on a's.
    for (id, c) in others.iter_mut() {
        if id.reactor() != a_id.reactor() {
            std::io::Write::write_all(c, b"poke").unwrap();
            let mut got = [0u8; 5];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"poked");
            break;
        }
    }
    handle.send(a_id, "stale").unwrap(); // routed by id, then dropped
    assert_eq!(
        a_handle.send("stale").unwrap_err().kind(),
        SendErrorKind::Closed
    );
    handle.close(a_id); // must close nobody
    for (_, c) in others.iter_mut() {
        assert_nothing_to_read(c, Duration::from_millis(50));
        assert_echo(c, b"still here");
    }
    server.stop_and_join().unwrap();
}
