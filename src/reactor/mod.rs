//! The reactor: one thread, one epoll instance, every socket of a server.
//!
//! One turn of the loop:
//!
//! 1. allow wake-ups (see [`crate::shared`]), then `epoll_wait` — without blocking if commands,
//!    budget-limited connections or listeners with a backlog are waiting;
//! 2. dispatch the events: listeners accept, connections read (through [`crate::read_path`]) and
//!    mark their output for flushing;
//! 3. run the commands from other threads;
//! 4. give connections that spent their read budget last turn another turn;
//! 5. retry listeners held back by fd exhaustion or limits when allowed;
//! 6. settle: flush every connection with new output (one `sendmsg` for all its buffers) and tell
//!    the faces about connections that closed, until neither produces more work.
//!
//! Faces ([`Face`]) turn these events into user-visible ones: callbacks on this thread, or
//! channel items for async tasks. Both share this loop.

mod accept;
mod conn;
mod core;
mod pool;
mod wheel;

use self::accept::Listener;
use self::conn::SocketSource;
pub(crate) use self::conn::{Closing, Conn, Extra, Framer, MAX_IOV, PAUSE_CONSUMER, PAUSE_USER};
use self::core::Due;
pub(crate) use self::core::{connect_error, Closed, Core};
use crate::addr::Address;
use crate::codec::{decode_all, decode_eof_all};
use crate::config::Config;
use crate::error::{catch_panic, CloseReason};
use crate::handler::ConnInfo;
use crate::id::ConnId;
use crate::read_path::Step;
use crate::shared::{Command, Shared};
use crate::sys::{self, Epoll, Event};
use bytes::Bytes;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Instant;

/// epoll data of the wake-up eventfd.
const WAKER_TOKEN: u64 = u64::MAX;
/// epoll data of listener `i` is `LISTENER_BASE - i`; connection tokens stay below 2^63.
const LISTENER_BASE: u64 = u64::MAX - 1;

/// How the reactor hands events to the user: the internal interface both faces implement.
pub(crate) trait Face: Send {
    /// The server listens on `addrs`.
    fn listening(&mut self, core: &mut Core, addrs: &[Address]) {
        let _ = (core, addrs);
    }
    /// A connection was accepted on one of this face's listeners.
    fn opened(&mut self, core: &mut Core, info: ConnInfo);
    /// An outbound connection of this face completed (a failed one ends in `closed`, with
    /// `Closed::connect_to` set).
    fn connected(&mut self, core: &mut Core, info: ConnInfo) {
        self.opened(core, info);
    }
    /// Someone awaits outbound connection `id` (the async face's `ServerHandle::connect`).
    fn watch_connect(&mut self, id: ConnId, reply: crate::async_face::ConnectReply) {
        let _ = (id, reply);
    }
    /// Connection `id`'s output drained to the low-water mark after passing the high-water mark.
    fn drained(&mut self, core: &mut Core, id: ConnId) {
        let _ = (core, id);
    }
    /// A frame arrived. Returning it back means the consumer is full: the reactor parks it,
    /// pauses reading, and offers it again after an `InboundResume` command.
    fn received(&mut self, core: &mut Core, id: ConnId, frame: Bytes) -> Option<Bytes>;
    /// The peer ended its output (clean end of file, all frames delivered).
    fn read_finished(&mut self, core: &mut Core, id: ConnId);
    /// A connection ended.
    fn closed(&mut self, core: &mut Core, closed: Closed);
    /// A server-level error (e.g. accept failing), or a connection-level one.
    fn error(&mut self, core: &mut Core, id: Option<ConnId>, err: io::Error);
    /// The loop turn's reading is done: hand over what was held back to batch wake-ups.
    fn end_turn(&mut self, core: &mut Core) {
        let _ = core;
    }
    /// The idle tick.
    fn idle(&mut self, core: &mut Core) {
        let _ = core;
    }
    /// The user timer of connection `id` fired.
    fn timer(&mut self, core: &mut Core, id: ConnId) {
        let _ = (core, id);
    }
    /// The last `Incoming` is gone: close what it buffered; refuse what comes later.
    fn incoming_dropped(&mut self, core: &mut Core) {
        let _ = core;
    }
    /// The reactor thread is unwinding: end every hand-off without calling user code.
    fn abandon(&mut self) {}
    /// Whether the face's own per-turn lists kept more than `keep` entries of room.
    fn buffers_grown(&self, keep: usize) -> bool {
        let _ = keep;
        false
    }
    /// Gives back the room of the face's per-turn lists past `keep` entries (the server is
    /// quiet).
    fn trim_buffers(&mut self, keep: usize) {
        let _ = keep;
    }
    /// Whether the face can take another connection now (the async face's `incoming` is bounded).
    fn can_accept(&self) -> bool {
        true
    }
    /// The server began stopping: listeners are closed.
    fn stopping(&mut self, core: &mut Core) {
        let _ = core;
    }
    /// The server stopped; every connection is closed.
    fn shutdown(&mut self, core: &mut Core) {
        let _ = core;
    }
}

/// A listener before the reactor owns it.
pub(crate) struct ListenerSpec {
    pub(crate) fd: std::os::fd::OwnedFd,
    pub(crate) addr: Address,
    pub(crate) face: usize,
    pub(crate) framing: Option<crate::codec::Framing>,
    /// Removes a Unix listener's socket file when the listener closes.
    pub(crate) path_guard: Option<crate::server::UnixPathGuard>,
    /// The listening socket is shared with other reactors (a `dup` of one socket): register
    /// it with `EPOLLEXCLUSIVE`, so a new connection wakes one reactor, not all.
    pub(crate) exclusive: bool,
}

/// Entries of room a per-turn work list keeps when an idle server trims it.
const TRIM_KEEP: usize = 64;

pub(crate) struct Reactor {
    core: Core,
    faces: Vec<Box<dyn Face>>,
    listeners: Vec<Option<Listener>>,
    /// The read buffer (from `pool`, which takes large reads over without a copy).
    scratch: Vec<u8>,
    pool: Arc<pool::BufPool>,
    events: Vec<Event>,
    last_busy: Instant,
    /// When a wait last returned an event (work lists are trimmed after a quiet period).
    last_event: Instant,
    commands: Vec<Command>,
    frames: Vec<Bytes>,
    next_tick: Option<Instant>,
    deadline: Option<Instant>,
    /// Wheel entries due this turn (kept to reuse the allocation).
    due: Vec<(ConnId, u64)>,
    /// `run` began: from then on, ending without `finish` is abnormal.
    started: bool,
    /// `finish` ran: the drop guard has nothing to do.
    finished: bool,
}

/// The drop guard: if the loop ends without `finish` (a panic in the reactor's own code), every
/// connection's state is marked closed and every waiter woken, so no task hangs on a dead server.
impl Drop for Reactor {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if !self.started {
            // Built and dropped without running: nothing to fail, but waiters may stop waiting.
            self.core.shared.set_finished();
            return;
        }
        log::error!("the reactor thread ended abnormally; failing every connection");
        self.core.fail_all();
        for face in self.faces.iter_mut() {
            face.abandon();
        }
        self.core.shared.set_finished();
        self.core.shared.discard_commands();
        // With several reactors, the others stop too (gracefully, each flushing its own
        // connections): a server missing a reactor is not one to keep serving with, and
        // nothing else would stop them for `join` and `stopped()` to return.
        self.core.group.stop();
    }
}

impl Reactor {
    /// Reactor `index` of `group` (whose shared state at `index` is `shared`).
    pub(crate) fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        group: Arc<crate::shared::Group>,
        index: u16,
        faces: Vec<Box<dyn Face>>,
        specs: Vec<ListenerSpec>,
    ) -> io::Result<Reactor> {
        let epoll = Epoll::new()?;
        let et = sys::EV_IN | sys::EV_ET;
        epoll.add(shared.eventfd().as_fd(), et, WAKER_TOKEN)?;
        let mut listeners = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let events = if spec.exclusive {
                et | sys::EV_EXCLUSIVE
            } else {
                et
            };
            epoll.add(spec.fd.as_fd(), events, LISTENER_BASE - i as u64)?;
            listeners.push(Some(Listener::new(spec, &cfg)));
        }
        let events = vec![sys::empty_event(); cfg.events_initial.max(1)];
        let pool = pool::BufPool::new(cfg.read_buffer);
        let scratch = pool.get();
        let next_tick = cfg.tick.map(|t| Instant::now() + t);
        crate::stats::set(&shared.counters.event_buffer, events.len() as u64);
        Ok(Reactor {
            core: Core::new(cfg, epoll, shared, group, index),
            faces,
            listeners,
            scratch,
            pool,
            events,
            last_busy: Instant::now(),
            last_event: Instant::now(),
            commands: Vec::new(),
            frames: Vec::new(),
            next_tick,
            deadline: None,
            due: Vec::new(),
            started: false,
            finished: false,
        })
    }

    /// What stops this reactor's server (every reactor of it).
    pub(crate) fn handle_to_stop(&self) -> Arc<crate::shared::Group> {
        self.core.group.clone()
    }

    /// Runs until stopped. Returns an error only if `epoll_wait` itself fails.
    pub(crate) fn run(mut self) -> io::Result<()> {
        self.started = true;
        let no_listener = self.listeners.is_empty();
        for face in 0..self.faces.len() {
            let face_addrs: Vec<Address> = self
                .listeners
                .iter()
                .flatten()
                .filter(|l| l.face == face)
                .map(|l| l.addr.clone())
                .collect();
            if !face_addrs.is_empty() || (face == 0 && no_listener) {
                self.faces[face].listening(&mut self.core, &face_addrs);
            }
        }
        self.settle();
        let result = self.run_loop();
        self.finish();
        result
    }

    fn run_loop(&mut self) -> io::Result<()> {
        loop {
            if self.core.shared.is_stop_requested() && !self.core.stopping {
                self.begin_stop();
            }
            if self.core.stopping {
                let expired = self.deadline.is_some_and(|d| Instant::now() >= d);
                if self.core.len() == 0 || expired {
                    return Ok(());
                }
            }
            let now = Instant::now();
            let timeout = self.timeout(now);
            let commands_waiting =
                self.core.shared.prepare_sleep() || !self.core.deferred.is_empty();
            let timeout = if commands_waiting { 0 } else { timeout };
            let n = self.core.epoll.wait(&mut self.events, timeout)?;
            self.core.shared.awake();
            let counters = &self.core.shared.counters;
            crate::stats::add(&counters.loop_turns, 1);
            crate::stats::add(&counters.events, n as u64);
            let now = Instant::now();
            self.core.set_now(now);
            // Idle means no event, no command and no connection left to read from: a loop
            // that is draining connections turn after turn (timeout 0, no new edges) is busy.
            let busy = n > 0 || commands_waiting || !self.core.ready.is_empty();
            if let (Some(t), Some(tick)) = (self.next_tick, self.core.cfg.tick) {
                if busy || self.core.stopping {
                    self.next_tick = Some(now + tick);
                } else if now >= t {
                    self.next_tick = Some(now + tick);
                    self.faces[0].idle(&mut self.core);
                }
            }
            let ready = std::mem::take(&mut self.core.ready);
            for i in 0..n {
                let (token, bits) = sys::event_parts(&self.events[i]);
                self.dispatch(token, bits);
            }
            self.run_commands();
            for id in ready {
                if let Some(conn) = self.core.get_mut(id) {
                    conn.in_ready = false;
                    self.read_turn(id);
                }
            }
            self.accept_due(now);
            self.expire_deadlines();
            self.settle();
            self.resize_events(n, now);
        }
    }

    /// Handles the wheel entries that came due: user timers, timeouts, close lingers.
    fn expire_deadlines(&mut self) {
        let mut due = std::mem::take(&mut self.due);
        self.core.wheel.expire(self.core.now_ms, &mut due);
        for (id, tick) in due.drain(..) {
            match self.core.check_due(id, tick) {
                None => {}
                Some(Due::Timer) => {
                    let Some(face) = self.core.get(id).map(|c| c.face()) else {
                        continue;
                    };
                    self.faces[face].timer(&mut self.core, id);
                    self.core.arm(id);
                }
                Some(Due::TimedOut { reset: true }) => {
                    log::debug!("connection {id}: no write progress in time; resetting");
                    // A stop gave the connection its deadline: it ends as part of the stop.
                    let stopping = self
                        .core
                        .get(id)
                        .is_some_and(|c| matches!(c.closing, Some(Closing::Shutdown)));
                    let reason = if stopping {
                        CloseReason::Shutdown
                    } else {
                        CloseReason::TimedOut
                    };
                    self.core.reset(id, reason);
                }
                Some(Due::TimedOut { reset: false }) => {
                    log::debug!("connection {id}: timed out waiting for the peer");
                    self.core.close(id, CloseReason::TimedOut);
                    // Queued output still goes out, under the linger time.
                    self.core.arm(id);
                }
            }
        }
        self.due = due;
    }

    /// Milliseconds `epoll_wait` may block: until the next tick, accept retry, connection
    /// deadline or stop deadline.
    fn timeout(&self, now: Instant) -> i32 {
        if !self.core.ready.is_empty() || self.listeners.iter().flatten().any(|l| l.hot) {
            return 0;
        }
        // A connection closed after this turn's accepts: a listener held back by a limit or
        // by fd exhaustion may accept now, and no edge will say so.
        if self.core.slot_freed && self.listeners.iter().flatten().any(|l| l.pending) {
            return 0;
        }
        // While stopping, the idle tick does not fire, so it must not shorten the wait either
        // (a tick time in the past would make every wait return at once: a spin).
        let mut next: Option<Instant> = self.next_tick.filter(|_| !self.core.stopping);
        if self.events.len() > self.core.cfg.events_initial {
            // A grown event buffer shrinks after a quiet period: wake up for it even when
            // nothing else would, so an idle server gives the memory back.
            let at = self.last_busy + self.core.cfg.events_shrink_after;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        if self.buffers_grown() {
            // So do the turn's work lists, once no event came for that long.
            let at = self.last_event + self.core.cfg.events_shrink_after;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        for l in self.listeners.iter().flatten() {
            if let Some(at) = l.retry_at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let wheel = self
            .core
            .wheel
            .next_due_ms()
            .map(|ms| self.core.instant_of(ms));
        for d in [self.deadline, wheel].into_iter().flatten() {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
        match next {
            None => -1,
            Some(at) => {
                let ms = at.saturating_duration_since(now).as_micros().div_ceil(1000);
                ms.min(i32::MAX as u128) as i32
            }
        }
    }

    fn dispatch(&mut self, token: u64, bits: u32) {
        if token == WAKER_TOKEN {
            // Nothing to read back: each eventfd write is its own edge (see `EventFd::notify`),
            // and the commands it announced are taken after this batch.
            return;
        }
        if token > LISTENER_BASE - self.listeners.len() as u64 {
            let i = (LISTENER_BASE - token) as usize;
            if let Some(l) = self.listeners[i].as_mut() {
                l.pending = true;
                self.accept(i);
            }
            return;
        }
        let Some(id) = self.core.id_of_token(token) else {
            // A stale event for a connection closed earlier in this batch.
            return;
        };
        if self.core.get(id).is_some_and(|c| c.connecting) && !self.complete_connect(id, bits) {
            return;
        }
        let conn = self
            .core
            .get_mut(id)
            .expect("the token names a live connection");
        if bits & sys::EV_PRI != 0 {
            conn.read.on_urgent();
        }
        let hangup = bits & (sys::EV_ERR | sys::EV_HUP) != 0;
        let read_bits = hangup || bits & (sys::EV_IN | sys::EV_RDHUP | sys::EV_PRI) != 0;
        if hangup || bits & sys::EV_RDHUP != 0 {
            // HUP/ERR can arrive without EPOLLIN (smol-rs/smol#134): reading finds the EOF or error.
            conn.read.on_hangup();
        } else if bits & sys::EV_IN != 0 {
            conn.read.on_readable();
        }
        if hangup || bits & sys::EV_OUT != 0 {
            conn.writable = true;
            if !conn.out.is_empty() || conn.closing.is_some() || conn.shut_wr_pending {
                self.core.mark_dirty(id);
            }
        }
        let Some(conn) = self.core.get_mut(id) else {
            return;
        };
        if read_bits && conn.read.wants_read() {
            // A write-only event does not read: a connection with data left behind is on the
            // ready list already.
            self.read_turn(id);
        } else if bits & sys::EV_ERR != 0 && !conn.read.is_finished() {
            // Reading is paused and the socket failed: nothing else would notice.
            if let Some(e) = sys::socket_error(conn.fd.as_fd()) {
                self.core.abort(id, core::reason_for(e));
            }
        }
    }

    /// An outbound connection's socket reported `bits`: if the connect completed, tell the face
    /// and return whether the connection is still open (then the event is handled as usual);
    /// if it failed, end it (the face hears of the failure in `closed`).
    fn complete_connect(&mut self, id: ConnId, bits: u32) -> bool {
        let now_ms = self.core.now_ms;
        let Some(conn) = self.core.get_mut(id) else {
            return false;
        };
        if bits & (sys::EV_OUT | sys::EV_ERR | sys::EV_HUP) == 0 {
            return false;
        }
        let to = conn
            .extra
            .as_ref()
            .and_then(|e| e.connect_to.as_deref().cloned())
            .expect("a connecting connection knows where to");
        if let Some(e) = sys::socket_error(conn.fd.as_fd()) {
            let e = sys::context(e, &format!("connect({to})"));
            self.core.abort(id, CloseReason::Error(e));
            return false;
        }
        conn.connecting = false;
        conn.writable = true;
        conn.set_last_in(now_ms);
        if let Some(extra) = conn.extra.as_mut() {
            extra.connect_to = None;
        }
        let fd = conn.fd.as_fd();
        if let Some(s) = conn.extra.as_ref().and_then(|e| e.shared.as_ref()) {
            // Handles taken while it connected may write directly from now on.
            s.fd.set(fd);
        }
        let local = sys::local_address(fd).unwrap_or_else(|e| {
            log::debug!("{e}");
            match &to {
                Address::Tcp(a) if a.is_ipv4() => {
                    Address::Tcp((std::net::Ipv4Addr::UNSPECIFIED, 0).into())
                }
                Address::Tcp(_) => Address::Tcp((std::net::Ipv6Addr::UNSPECIFIED, 0).into()),
                Address::Unix(_) => Address::Unix(None),
            }
        });
        let peer_credentials = if to.is_unix() {
            sys::peer_credentials(fd)
                .map_err(|e| log::debug!("{e}"))
                .ok()
        } else {
            None
        };
        let face = conn.face();
        self.core.shared.counters.connected();
        if !self.core.stopping {
            // Idle and other timeouts start now.
            self.core.arm(id);
        }
        let info = ConnInfo {
            id,
            peer: to,
            local,
            peer_credentials,
            outbound: true,
        };
        self.faces[face].connected(&mut self.core, info);
        self.core.get(id).is_some()
    }

    /// One read turn of connection `id`: read, deliver, until drained, paused, out of budget or done.
    fn read_turn(&mut self, id: ConnId) {
        let Some(conn) = self.core.get_mut(id) else {
            return;
        };
        if conn.connecting {
            // Not connected yet: the connect's completion event reads.
            return;
        }
        conn.read.begin_turn();
        let now_ms = self.core.now_ms;
        loop {
            let Some(conn) = self.core.get_mut(id) else {
                return;
            };
            let buffered = match conn.extra.as_ref().and_then(|e| e.framer.as_ref()) {
                None => None,
                Some(f) => {
                    match catch_panic("the framing's decoder", || f.decoder.max_buffered()) {
                        Ok(max) => Some((f.buf.len(), max)),
                        Err(e) => {
                            self.core.abort(id, CloseReason::Error(e));
                            return;
                        }
                    }
                }
            };
            let limit = match buffered {
                Some((len, max)) => max
                    .saturating_sub(len)
                    .saturating_add(1)
                    .min(self.scratch.len()),
                None => self.scratch.len(),
            };
            let step = conn.read.step(
                &mut SocketSource(conn.fd.as_fd()),
                &mut self.scratch[..limit],
            );
            match step {
                Step::Data(n) => {
                    conn.set_last_in(now_ms);
                    conn.got_first_byte = true;
                    crate::stats::add(&self.core.shared.counters.bytes_read, n as u64);
                    if !self.decode(id, n) {
                        return;
                    }
                }
                Step::Drained | Step::Paused | Step::Finished => return,
                Step::Yield => {
                    self.core.mark_ready(id);
                    return;
                }
                Step::Eof => {
                    self.end_of_input(id);
                    return;
                }
                Step::Error(e) => {
                    self.core.abort(id, core::reason_for(e));
                    return;
                }
            }
        }
    }

    /// Turns the `n` bytes just read into frames and delivers them. Returns false if the
    /// connection ended.
    fn decode(&mut self, id: ConnId, n: usize) -> bool {
        let Some(conn) = self.core.get_mut(id) else {
            return false;
        };
        let mut frames = std::mem::take(&mut self.frames);
        let mut failed = None;
        match conn.extra.as_mut().and_then(|e| e.framer.as_mut()) {
            None => frames.push(self.pool.take(&mut self.scratch, n)),
            Some(framer) => {
                framer.buf.extend_from_slice(&self.scratch[..n]);
                // A panicking decoder is user code failing for this connection only.
                failed = catch_panic("the framing's decoder", || {
                    decode_all(&mut *framer.decoder, &mut framer.buf, &mut frames)
                })
                .and_then(|r| r)
                .err();
            }
        }
        let alive = self.deliver(id, &mut frames);
        self.frames = frames;
        if let Some(e) = failed {
            self.core.abort(id, CloseReason::Error(e));
            return false;
        }
        alive
    }

    /// Offers `frames` to the connection's face in order; parks what it cannot take.
    fn deliver(&mut self, id: ConnId, frames: &mut Vec<Bytes>) -> bool {
        for frame in frames.drain(..) {
            let Some(conn) = self.core.get_mut(id) else {
                return false;
            };
            let face = conn.face();
            let rejected = if conn.has_parked() {
                Some(frame)
            } else {
                self.faces[face].received(&mut self.core, id, frame)
            };
            if let Some(frame) = rejected {
                let Some(conn) = self.core.get_mut(id) else {
                    return false;
                };
                conn.extra().parked.push_back(frame);
                conn.read.pause(PAUSE_CONSUMER);
                self.core.note_backpressure(id);
            }
        }
        self.core.get(id).is_some()
    }

    /// The peer closed its write side: flush the decoder, then tell the face.
    fn end_of_input(&mut self, id: ConnId) {
        let Some(conn) = self.core.get_mut(id) else {
            return;
        };
        let mut frames = std::mem::take(&mut self.frames);
        let mut failed = None;
        if let Some(framer) = conn.extra.as_mut().and_then(|e| e.framer.as_mut()) {
            failed = catch_panic("the framing's decoder", || {
                decode_eof_all(&mut *framer.decoder, &mut framer.buf, &mut frames)
            })
            .and_then(|r| r)
            .err();
        }
        let alive = self.deliver(id, &mut frames);
        self.frames = frames;
        if let Some(e) = failed {
            self.core.abort(id, CloseReason::Error(e));
        } else if alive {
            // With frames parked, `inbound_resume` reports the end once they are delivered.
            if let Some(face) = self
                .core
                .get(id)
                .filter(|c| !c.has_parked())
                .map(|c| c.face())
            {
                self.faces[face].read_finished(&mut self.core, id);
            }
        }
    }

    fn run_commands(&mut self) {
        let mut commands = std::mem::take(&mut self.commands);
        // Commands a send took out of the queue early come first: they are older.
        commands.append(&mut self.core.deferred);
        self.core.shared.take_commands(&mut commands);
        for cmd in commands.drain(..) {
            match cmd {
                Command::Send(id, msg) => self.core.push_remote(id, [msg]),
                Command::SendParts(id, pieces) => self.core.push_remote(id, pieces),
                Command::Close(id) => {
                    self.core.close(id, CloseReason::Local);
                    self.core.command_done(id);
                }
                Command::Release(id) => self.core.close(id, CloseReason::Local),
                Command::Pause(id) => {
                    self.core.pause_reading(id, PAUSE_USER);
                    self.core.command_done(id);
                }
                Command::Resume(id) => {
                    self.core.resume_reading(id, PAUSE_USER);
                    self.core.command_done(id);
                }
                Command::ShutdownWrite(id) => self.core.shutdown_write(id),
                Command::InboundResume(id) => self.inbound_resume(id),
                Command::AcceptResume => self.core.slot_freed = true,
                Command::Fail(id, e) => self.core.abort(id, CloseReason::Error(e)),
                Command::SetTimeout(id, which, after) => {
                    self.core.set_timeout(id, which, after);
                    self.core.command_done(id);
                }
                Command::IncomingDropped => self.incoming_dropped(),
                Command::InjectPanic => panic!("panic injected by ServerHandle::inject_panic"),
                Command::SendTo(id, msg) => {
                    if let Err(e) = self.core.send(id, msg) {
                        log::debug!("send to {id} (routed by id): {e}");
                    }
                }
                Command::CloseId(id) => self.core.close(id, CloseReason::Local),
                Command::PauseId(id) => self.core.pause_reading(id, PAUSE_USER),
                Command::ResumeId(id) => self.core.resume_reading(id, PAUSE_USER),
                Command::Connect(addr, reply) => {
                    let face = crate::server::ASYNC_FACE;
                    match self.core.connect(&addr, face) {
                        Ok(id) => self.faces[face].watch_connect(id, reply),
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
        }
        self.commands = commands;
    }

    /// Nobody will take async connections any more: close the async listeners (new clients
    /// are refused by the kernel) and the connections buffered for `Incoming`.
    fn incoming_dropped(&mut self) {
        let mut closed = Vec::new();
        for slot in self.listeners.iter_mut() {
            if slot
                .as_ref()
                .is_some_and(|l| l.face == crate::server::ASYNC_FACE)
            {
                closed.extend(slot.take().map(|l| l.addr.to_string()));
            }
        }
        if !closed.is_empty() {
            log::warn!(
                "every Incoming was dropped: closing the async listeners {closed:?} \
                 (take Server::incoming() before spawn or run to serve them)"
            );
        }
        self.faces[crate::server::ASYNC_FACE].incoming_dropped(&mut self.core);
    }

    /// The async consumer caught up: offer the parked frames, then read again.
    fn inbound_resume(&mut self, id: ConnId) {
        let Some(conn) = self.core.get_mut(id) else {
            return;
        };
        if let Some(s) = conn.shared() {
            s.inbound_paused.clear();
        }
        let mut frames: Vec<Bytes> = match conn.extra.as_mut() {
            Some(e) => e.parked.drain(..).collect(),
            None => Vec::new(),
        };
        if !self.deliver(id, &mut frames) {
            return;
        }
        let Some(conn) = self.core.get_mut(id) else {
            return;
        };
        if !conn.has_parked() {
            if conn.read.is_finished() && conn.closing.is_none() {
                // End of file came while frames were parked; report it now that they are delivered.
                let face = conn.face();
                self.faces[face].read_finished(&mut self.core, id);
            } else {
                self.core.resume_reading(id, PAUSE_CONSUMER);
            }
        }
    }

    /// Flushes dirty connections and reports closed ones until neither makes more work.
    fn settle(&mut self) {
        loop {
            for face in self.faces.iter_mut() {
                face.end_turn(&mut self.core);
            }
            if self.core.dirty.is_empty() && self.core.closed.is_empty() {
                return;
            }
            let dirty = std::mem::take(&mut self.core.dirty);
            for id in dirty {
                self.core.flush(id);
            }
            let drained = std::mem::take(&mut self.core.drained);
            for id in drained {
                if let Some(face) = self.core.get(id).map(|c| c.face()) {
                    self.faces[face].drained(&mut self.core, id);
                }
            }
            let closed = std::mem::take(&mut self.core.closed);
            for c in closed {
                let face = c.face;
                self.faces[face].closed(&mut self.core, c);
            }
        }
    }

    fn begin_stop(&mut self) {
        self.core.stopping = true;
        self.deadline = Some(Instant::now() + self.core.cfg.shutdown_deadline);
        // Close listeners first, so the kernel stops completing handshakes nobody will accept.
        for l in self.listeners.iter_mut() {
            *l = None;
        }
        for face in self.faces.iter_mut() {
            face.stopping(&mut self.core);
        }
        for id in self.core.ids() {
            self.core.close(id, CloseReason::Shutdown);
        }
        self.settle();
    }

    fn finish(&mut self) {
        for id in self.core.ids() {
            // Output still queued at the deadline is lost: reset, so the peer can tell.
            if self.core.get(id).is_some_and(|c| !c.out.is_empty()) {
                self.core.reset(id, CloseReason::Shutdown);
            } else {
                self.core.abort(id, CloseReason::Shutdown);
            }
        }
        self.settle();
        for face in self.faces.iter_mut() {
            face.shutdown(&mut self.core);
        }
        self.finished = true;
        self.core.shared.set_finished();
        // Commands sent meanwhile (a connect's reply among them) are dropped, so nobody waits
        // on them; a handle that queues one after this sees `is_finished` and drops it itself.
        self.core.shared.discard_commands();
    }

    /// Whether a work list of the loop turn kept more room than [`TRIM_KEEP`] entries after a
    /// burst (an accept storm of 10,000 connections leaves lists that big behind).
    fn buffers_grown(&self) -> bool {
        let own = [
            self.commands.capacity(),
            self.frames.capacity(),
            self.due.capacity(),
        ];
        own.iter().any(|&c| c > TRIM_KEEP)
            || self.core.buffers_grown(TRIM_KEEP)
            || self.faces.iter().any(|f| f.buffers_grown(TRIM_KEEP))
    }

    /// Gives back the room of the turn's work lists past [`TRIM_KEEP`] entries.
    fn trim_buffers(&mut self) {
        self.commands.shrink_to(TRIM_KEEP);
        self.frames.shrink_to(TRIM_KEEP);
        self.due.shrink_to(TRIM_KEEP);
        self.core.trim_buffers(TRIM_KEEP);
        for face in &mut self.faces {
            face.trim_buffers(TRIM_KEEP);
        }
        sys::release_free_memory();
    }

    /// Doubles the event buffer when a wait filled it; halves it after a quiet period. Trims
    /// the turn's work lists once no event came for that period.
    fn resize_events(&mut self, n: usize, now: Instant) {
        if n > 0 {
            self.last_event = now;
        } else if now.duration_since(self.last_event) >= self.core.cfg.events_shrink_after
            && self.buffers_grown()
        {
            self.trim_buffers();
        }
        let len = self.events.len();
        let cfg = &self.core.cfg;
        if n == len && len < cfg.events_max {
            self.events
                .resize((len * 2).min(cfg.events_max), sys::empty_event());
            self.last_busy = now;
        } else if n > len / 4 {
            self.last_busy = now;
        } else if len > cfg.events_initial
            && now.duration_since(self.last_busy) >= cfg.events_shrink_after
        {
            self.events.truncate((len / 2).max(cfg.events_initial));
            self.events.shrink_to_fit();
            self.last_busy = now;
        }
        if self.events.len() != len {
            let counters = &self.core.shared.counters;
            crate::stats::set(&counters.event_buffer, self.events.len() as u64);
        }
    }
}
