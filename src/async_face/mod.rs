//! The async face: each connection is a [`Stream`](futures::Stream) of inbound buffers and a
//! [`Sink`](futures::Sink) for outbound ones, handed over with plain wakers (`async-channel`
//! for accepted connections and the command queue, a one-consumer queue per connection for
//! inbound frames), so any executor can drive them (tokio, smol, `futures::executor`, ...). No
//! runtime is inside the crate: the reactor thread does the I/O and the wakers cross to the
//! executor.
//!
//! # Hand-offs
//!
//! - Accepted connections go through a bounded channel ([`Incoming`]). When it is full the
//!   reactor stops accepting (new clients wait in the kernel backlog); taking a connection out
//!   of a full channel sends one `AcceptResume` command.
//! - Inbound frames go through a bounded one-consumer queue per connection (inside the
//!   connection's shared state, see `InboundQueue`), counted in bytes too. When the consumer
//!   lags past the byte or item bound, the reactor parks the frame, sets `inbound_paused` and
//!   stops reading that socket, so the peer feels TCP flow control. The consumer, after taking
//!   an item, sees the flag and sends one `InboundResume`. Both sides set the flag, then
//!   re-check the queue, so a resume is never lost (DESIGN-NOTES §3).
//! - Outbound buffers go through the server's one command queue (an `async-channel` queue),
//!   bounded in bytes per connection by the sink's `poll_ready` (see [`Outbound`]); wake-ups of
//!   the reactor are coalesced across every sink.

mod byte_stream;
mod connect;
mod inbound;
mod outbound;

pub use self::byte_stream::{IoReadHalf, IoStream, IoWriteHalf, IO_WRITE_CHUNK};
pub use self::connect::Connect;
pub(crate) use self::connect::ConnectReply;
pub use self::inbound::Inbound;
pub(crate) use self::inbound::InboundQueue;
use self::inbound::INBOUND_ITEMS;
pub use self::outbound::Outbound;

use crate::addr::Address;
use crate::error::CloseReason;
use crate::handler::ConnInfo;
use crate::id::ConnId;
use crate::reactor::{Closed, Core, Extra, Face};
use crate::shared::{Command, ConnShared, Group};
use bytes::Bytes;
use futures::{Sink, Stream};
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};

/// An accepted connection: a [`Stream`] of inbound buffers and a [`Sink`] for outbound ones.
///
/// [`split`](Self::split) it to read and write from different tasks; both halves are `Send`.
/// Dropping both halves closes the connection once its queued output is written.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct Connection {
    #[pin]
    inbound: Inbound,
    #[pin]
    outbound: Outbound,
}

impl Connection {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.inbound.shared().id
    }

    /// Who the connection is with: addresses, and for Unix sockets the peer's credentials.
    pub fn info(&self) -> &ConnInfo {
        info_of(self.inbound.shared())
    }

    /// The peer's address (for an outbound connection, the address it was connected to).
    pub fn peer_addr(&self) -> &Address {
        &self.info().peer
    }

    /// The local address.
    pub fn local_addr(&self) -> &Address {
        &self.info().local
    }

    /// A thread-safe handle to this connection (send from anywhere, close, pause reading).
    pub fn handle(&self) -> crate::ConnHandle {
        self.outbound.handle()
    }

    /// Splits into the inbound stream and the outbound sink.
    pub fn split(self) -> (Inbound, Outbound) {
        (self.inbound, self.outbound)
    }
}

/// The `ConnInfo` of an async connection (always kept in its shared state).
pub(crate) fn info_of(shared: &ConnShared) -> &ConnInfo {
    shared
        .info
        .as_ref()
        .expect("an async connection's shared state holds its ConnInfo")
}

impl Stream for Connection {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().inbound.poll_next(cx)
    }
}

impl Sink<Bytes> for Connection {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().outbound.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Bytes) -> io::Result<()> {
        self.project().outbound.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().outbound.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().outbound.poll_close(cx)
    }
}

/// State the [`Incoming`] stream shares with the reactors (one queue for all of them).
#[derive(Debug)]
struct AcceptGate {
    group: Arc<Group>,
    /// By reactor: it stopped accepting because `incoming` was full.
    paused: Box<[AtomicBool]>,
    /// Reactors whose async face still delivers: the queue closes when the last one stops.
    live: AtomicUsize,
}

/// Tells every reactor when the last [`Incoming`] is dropped.
#[derive(Debug)]
struct IncomingAlive(Arc<Group>);

impl Drop for IncomingAlive {
    fn drop(&mut self) {
        for r in self.0.reactors.iter() {
            r.push(Command::IncomingDropped);
        }
    }
}

/// The stream of accepted connections of a server's async listeners. It ends when the server
/// stops. It is bounded: while the application does not take connections, the server stops
/// accepting and new clients wait in the kernel's backlog.
///
/// Clones share one queue. When the last clone is dropped (including the one the
/// [`Server`](crate::Server) holds until it runs), nobody can take async connections any more:
/// the connections waiting in the queue are closed, and the async listeners are closed too,
/// so new clients are refused by the kernel instead of waiting forever (a warning is logged).
///
/// With several [reactors](crate::Builder::reactors), it merges every reactor's connections.
#[derive(Debug)]
pub struct Incoming {
    // Boxed so `Incoming` is `Unpin`.
    rx: Pin<Box<async_channel::Receiver<Connection>>>,
    gate: Arc<AcceptGate>,
    _alive: Arc<IncomingAlive>,
}

impl Clone for Incoming {
    fn clone(&self) -> Incoming {
        Incoming {
            rx: Box::pin(self.rx.as_ref().get_ref().clone()),
            gate: self.gate.clone(),
            _alive: self._alive.clone(),
        }
    }
}

impl Stream for Incoming {
    type Item = Connection;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Connection>> {
        let item = self.rx.as_mut().poll_next(cx);
        if let Poll::Ready(Some(_)) = item {
            for (flag, reactor) in self.gate.paused.iter().zip(self.gate.group.reactors.iter()) {
                if flag.load(SeqCst) && flag.swap(false, SeqCst) {
                    reactor.push(Command::AcceptResume);
                }
            }
        }
        item
    }
}

/// The reactor side of the async face.
pub(crate) struct AsyncFace {
    tx: async_channel::Sender<Connection>,
    /// To close the connections left in the queue when every `Incoming` is gone.
    rx: async_channel::Receiver<Connection>,
    /// Every `Incoming` is gone: new async connections are closed at once.
    abandoned: bool,
    gate: Arc<AcceptGate>,
    /// This reactor's index (its flag in the gate).
    index: usize,
    /// This face stopped delivering (and counted itself out of `gate.live`).
    ended: bool,
    /// Frames accepted this turn, delivered at its end.
    pending: Vec<(ConnId, Bytes)>,
    /// Outbound connects in progress, and where their outcome goes.
    connects: HashMap<ConnId, ConnectReply>,
}

impl AsyncFace {
    /// The async face of every reactor of `group`, and the one `Incoming` they all feed.
    pub(crate) fn for_group(group: &Arc<Group>, capacity: usize) -> (Vec<AsyncFace>, Incoming) {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        let n = group.reactors.len();
        let gate = Arc::new(AcceptGate {
            group: group.clone(),
            paused: (0..n).map(|_| AtomicBool::new(false)).collect(),
            live: AtomicUsize::new(n),
        });
        let faces = (0..n)
            .map(|index| AsyncFace {
                tx: tx.clone(),
                rx: rx.clone(),
                abandoned: false,
                gate: gate.clone(),
                index,
                ended: false,
                pending: Vec::new(),
                connects: HashMap::new(),
            })
            .collect();
        let alive = Arc::new(IncomingAlive(group.clone()));
        (
            faces,
            Incoming {
                rx: Box::pin(rx),
                gate,
                _alive: alive,
            },
        )
    }

    /// This reactor delivers no more connections; the queue closes (so `Incoming` ends once
    /// drained) when no reactor does.
    fn end(&mut self) {
        if !std::mem::replace(&mut self.ended, true) && self.gate.live.fetch_sub(1, SeqCst) == 1 {
            self.tx.close();
        }
    }

    /// Accepts a frame for the consumer, or gives it back if the consumer is over its bound.
    ///
    /// Accepted frames wait in `pending` until the end of the loop turn (see `end_turn`), so
    /// the frames of one turn wake their consumers together: an executor woken by the first
    /// finds the others ready instead of parking and being woken again. The channel's room is
    /// reserved here (`inbound_pending`), so the delivery at the end of the turn cannot fail.
    fn offer(&mut self, id: ConnId, extra: &mut Extra, frame: Bytes) -> Option<Bytes> {
        let shared = extra.shared.as_ref().filter(|_| extra.inbound)?;
        if shared.inbound.is_consumer_gone() {
            // The application dropped the inbound half: it does not want the bytes.
            return None;
        }
        if shared.inbound_bytes.load(SeqCst) > shared.server.limits.inbound_high
            || shared.inbound.len() + extra.inbound_pending as usize >= INBOUND_ITEMS
        {
            return Some(frame);
        }
        shared.inbound_bytes.fetch_add(frame.len(), SeqCst);
        extra.inbound_pending += 1;
        self.pending.push((id, frame));
        None
    }

    /// Hands the accepted frames of connection `id` (or of every connection) to their channels.
    fn deliver_pending(&mut self, core: &mut Core, only: Option<ConnId>) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain_mut(|(id, frame)| {
            if only.is_some_and(|o| o != *id) {
                return true;
            }
            match core.get_mut(*id) {
                Some(conn) => {
                    if let Some(extra) = conn.extra.as_mut() {
                        extra.inbound_pending -= 1;
                        send_reserved(extra.shared.as_deref(), frame);
                    }
                    false
                }
                // The connection ended this turn: `closed` delivers its frames, before the
                // error that ended it.
                None => true,
            }
        });
        self.pending = pending;
    }
}

/// Hands over a frame whose room was reserved by `offer`.
fn send_reserved(shared: Option<&ConnShared>, frame: &mut Bytes) {
    let frame = std::mem::take(frame);
    let len = frame.len();
    if let Some(shared) = shared {
        if !shared.inbound.push(frame) {
            // Only if the consumer dropped its half meanwhile: nobody will count these bytes out.
            shared.inbound_bytes.fetch_sub(len, SeqCst);
        }
    }
}

impl AsyncFace {
    /// The stream and sink of a connection the reactor just opened.
    fn connection(&mut self, core: &mut Core, info: ConnInfo) -> Option<Connection> {
        let id = info.id;
        let shared = core.conn_shared_with(id, Some(info))?;
        if shared.info.is_none() {
            // Only a new connection becomes an async one, so its shared state is new too.
            log::warn!("connection {id}: no connection info; not handed to the async face");
            return None;
        }
        if let Some(conn) = core.get_mut(id) {
            conn.extra().inbound = true;
        }
        shared.halves.store(2, SeqCst);
        Some(Connection {
            inbound: Inbound::new(shared.clone()),
            outbound: Outbound::new(shared),
        })
    }
}

impl Face for AsyncFace {
    fn opened(&mut self, core: &mut Core, info: ConnInfo) {
        let id = info.id;
        let Some(conn) = self.connection(core, info) else {
            return;
        };
        if self.abandoned {
            core.close(id, CloseReason::Local);
            return;
        }
        if let Err(e) = self.tx.try_send(conn) {
            // Only if the bound was raced past or the server is stopping.
            log::debug!("connection {id} not taken: {e}");
            core.close(id, CloseReason::Local);
        }
    }

    fn connected(&mut self, core: &mut Core, info: ConnInfo) {
        let id = info.id;
        let Some(reply) = self.connects.remove(&id) else {
            core.close(id, CloseReason::Local);
            return;
        };
        let Some(conn) = self.connection(core, info) else {
            return;
        };
        if let Err(Ok(conn)) = reply.send(Ok(conn)) {
            // The `Connect` future was dropped: nobody will use this connection.
            log::debug!("connection {id}: connected, but nobody awaits it any more");
            drop(conn);
            core.close(id, CloseReason::Local);
        }
    }

    fn watch_connect(&mut self, id: ConnId, reply: ConnectReply) {
        self.connects.insert(id, reply);
    }

    fn received(&mut self, core: &mut Core, id: ConnId, frame: Bytes) -> Option<Bytes> {
        let extra = core.get_mut(id)?.extra.as_deref_mut()?;
        let frame = self.offer(id, extra, frame)?;
        // Full: flag the pause, then look again, so a consumer that drained in between is seen.
        if let Some(shared) = extra.shared.as_ref() {
            shared.inbound_paused.pause();
        }
        self.offer(id, extra, frame)
    }

    fn end_turn(&mut self, core: &mut Core) {
        self.deliver_pending(core, None);
    }

    fn read_finished(&mut self, core: &mut Core, id: ConnId) {
        // End of file: the stream ends after its items; the sink keeps working (half-close).
        self.deliver_pending(core, Some(id));
        if let Some(extra) = core.get_mut(id).and_then(|c| c.extra.as_deref_mut()) {
            if std::mem::take(&mut extra.inbound) {
                if let Some(shared) = &extra.shared {
                    shared.inbound.end(extra.parked.drain(..), None);
                }
            }
        }
    }

    fn closed(&mut self, _core: &mut Core, closed: Closed) {
        let id = closed.id;
        if let Some(to) = closed.connect_to {
            if let Some(reply) = self.connects.remove(&id) {
                let _ = reply.send(Err(crate::reactor::connect_error(&to, closed.reason)));
            }
            return;
        }
        // Frames accepted earlier in this turn go first: nothing accepted is dropped.
        self.pending.retain_mut(|(pid, frame)| {
            if *pid != id {
                return true;
            }
            send_reserved(closed.shared.as_deref(), frame);
            false
        });
        if closed.inbound {
            let err = match closed.reason {
                CloseReason::Reset => Some(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                )),
                CloseReason::TimedOut => Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection timed out",
                )),
                CloseReason::Error(e) => Some(e),
                _ => None,
            };
            if let Some(shared) = closed.shared.as_ref() {
                // Frames the consumer had no room for come after the queue's, then the error.
                shared.inbound.end(closed.parked, err);
            }
        }
    }

    fn error(&mut self, _core: &mut Core, id: Option<ConnId>, err: io::Error) {
        match id {
            Some(id) => log::warn!("connection {id}: {err}"),
            None => log::warn!("server: {err}"),
        }
    }

    fn can_accept(&self) -> bool {
        if !self.tx.is_full() {
            return true;
        }
        self.gate.paused[self.index].store(true, SeqCst);
        // Look again after flagging: a consumer that took one in between saw no flag.
        !self.tx.is_full()
    }

    fn stopping(&mut self, _core: &mut Core) {
        // `Incoming` ends once it has yielded what was already accepted (by every reactor).
        self.end();
    }

    fn incoming_dropped(&mut self, core: &mut Core) {
        self.abandoned = true;
        while let Ok(conn) = self.rx.try_recv() {
            core.close(conn.id(), CloseReason::Local);
        }
    }

    fn buffers_grown(&self, keep: usize) -> bool {
        self.pending.capacity() > keep
    }

    fn trim_buffers(&mut self, keep: usize) {
        self.pending.shrink_to(keep);
    }

    fn abandon(&mut self) {
        self.end();
        self.pending.clear();
        // Dropping the replies fails their `Connect` futures.
        self.connects.clear();
    }
}
