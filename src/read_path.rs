//! The read path: the state machine that turns read outcomes into delivered bytes and state changes.
//!
//! It owns no socket and no buffer: a [`ReadSource`] (a real socket, or a scripted double in tests
//! and fuzz targets) supplies the outcomes, and the caller supplies the scratch buffer and does the
//! delivery between steps. The reactor drives every connection through [`ReadState::step`]; the
//! `read_path` fuzz target drives the same code with arbitrary scripts.
//!
//! # Edge-triggered draining
//!
//! Under `EPOLLET` the kernel reports a socket readable once per transition, so the reader must
//! drain it: keep reading until `WouldBlock` (or a short read, see below), treat `Ok(0)` as the
//! peer's end of file, and retry `Interrupted`. When it stops early — its per-turn budget is spent
//! or the consumer is paused — the socket still holds data and no new edge will come, so it stays
//! [`readable`](ReadState::is_readable) and the reactor must come back on its own.
//!
//! A read that returns fewer bytes than asked on a stream socket means the receive queue is empty
//! at that instant, so it counts as drained and saves the `WouldBlock` system call (tokio does the
//! same since tokio-rs/tokio#4840). If more data arrives after it, that arrival is a new edge.
//! The exceptions:
//! - the peer's end of file: when it arrived together with the last data, its edge was the one
//!   just consumed, so after [`on_hangup`](ReadState::on_hangup) the reader goes on to `Ok(0)`;
//! - TCP urgent data: `recv` stops short at the urgent mark although more data follows, and the
//!   data after the mark brings no new edge. So after [`on_urgent`](ReadState::on_urgent)
//!   (`EPOLLPRI`) a short read does not count as drained until a read says `WouldBlock`.
//!
//! ```text
//!  state       | outcome of one read           | step returned    | next state
//! -------------+-------------------------------+------------------+-------------------------
//!  readable    | Ok(n), n == buf.len()         | Data(n)          | readable
//!  readable    | Ok(n), n <  buf.len()         | Data(n)          | drained (if short reads drain)
//!  readable    | Ok(0)                         | Eof              | finished
//!  readable    | Err(WouldBlock)               | Drained          | drained
//!  readable    | Err(Interrupted)              | (read again)     | readable
//!  readable    | Err(e)                        | Error(e)         | finished
//!  readable    | budget spent this turn        | Yield            | readable (reschedule)
//!  paused      | —                             | Paused           | paused (resume reschedules)
//!  drained     | —                             | Drained          | drained (an edge re-arms)
//!  finished    | —                             | Finished         | finished
//! ```

use std::io;

/// Something the read path can read from: a non-blocking socket, or a double in tests.
pub trait ReadSource {
    /// Reads into `buf`, with the meaning of `read(2)` on a non-blocking stream socket:
    /// `Ok(0)` is end of file, `WouldBlock` means nothing to read now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// What one call to [`ReadState::step`] produced.
#[derive(Debug)]
pub enum Step {
    /// `n` bytes were read into the front of the scratch buffer; deliver them, then step again.
    Data(usize),
    /// The socket is drained; wait for the next readiness edge.
    Drained,
    /// This turn's byte budget is spent while the socket may still hold data: come back next turn.
    Yield,
    /// Reading is paused; [`ReadState::resume`] says when to come back.
    Paused,
    /// The peer closed its write side. Reported once; the read side is finished.
    Eof,
    /// Reading failed. Reported once; the read side is finished.
    Error(io::Error),
    /// The read side already finished (after `Eof` or `Error`); nothing more will be read.
    Finished,
}

/// Per-connection read state. See the [module docs](self) for the transitions.
#[derive(Debug, Clone)]
pub struct ReadState {
    readable: bool,
    /// The peer's end of file (or a hang-up) was signalled: it sits behind the data, so a
    /// short read no longer proves the socket drained.
    hup: bool,
    /// Urgent data was signalled and not yet read past: a short read may have stopped at its mark.
    urgent: bool,
    finished: bool,
    paused: u8,
    // u32: a connection's state stays small; budgets above 4 GiB per turn make no sense.
    turn_bytes: u32,
    budget: u32,
    short_read_drains: bool,
}

impl ReadState {
    /// A fresh connection: assumed readable (data may have arrived before registration),
    /// with `budget` bytes allowed per turn.
    ///
    /// `short_read_drains` enables the short-read shortcut, valid for stream sockets under
    /// edge-triggered epoll.
    pub fn new(budget: usize, short_read_drains: bool) -> ReadState {
        ReadState {
            readable: true,
            hup: false,
            urgent: false,
            finished: false,
            paused: 0,
            turn_bytes: 0,
            budget: budget.clamp(1, u32::MAX as usize) as u32,
            short_read_drains,
        }
    }

    /// Records a readiness edge from epoll.
    pub fn on_readable(&mut self) {
        self.readable = true;
    }

    /// Records that epoll reported the peer's end of file or a hang-up (`EPOLLRDHUP`,
    /// `EPOLLHUP`, `EPOLLERR`). The end of file then waits behind the data and comes with no edge
    /// of its own, so from now on only `Ok(0)`, `WouldBlock` or an error end a turn, never a short read.
    pub fn on_hangup(&mut self) {
        self.readable = true;
        self.hup = true;
    }

    /// Records that epoll reported TCP urgent data (`EPOLLPRI`): reads stop short at its mark,
    /// so short reads no longer prove the socket drained until a read says `WouldBlock`.
    pub fn on_urgent(&mut self) {
        self.readable = true;
        self.urgent = true;
    }

    /// Starts a new turn: the byte budget is available again.
    pub fn begin_turn(&mut self) {
        self.turn_bytes = 0;
    }

    /// Pauses reading for `reason` (a bit; several reasons can hold at once).
    pub fn pause(&mut self, reason: u8) {
        self.paused |= reason;
    }

    /// Lifts pause `reason`. Returns `true` when reading is now unpaused and the socket may
    /// hold data nobody will be notified about: the caller must schedule a read turn.
    pub fn resume(&mut self, reason: u8) -> bool {
        let was = self.paused;
        self.paused &= !reason;
        was != 0 && self.paused == 0 && self.wants_read()
    }

    /// Whether reading is paused for any reason.
    pub fn is_paused(&self) -> bool {
        self.paused != 0
    }

    /// Whether `reason` is among the pause reasons in force.
    pub fn is_paused_for(&self, reason: u8) -> bool {
        self.paused & reason != 0
    }

    /// Whether the socket may hold unread data (no `WouldBlock` or short read seen since the last edge).
    pub fn is_readable(&self) -> bool {
        self.readable
    }

    /// Whether end of file or an error was reported.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether a read turn would do anything now.
    pub fn wants_read(&self) -> bool {
        self.readable && !self.finished && self.paused == 0
    }

    /// Bytes read in the current turn.
    pub fn turn_bytes(&self) -> usize {
        self.turn_bytes as usize
    }

    /// Performs at most one successful read into `buf` (never more than the budget left) and
    /// says what happened.
    pub fn step<S: ReadSource + ?Sized>(&mut self, src: &mut S, buf: &mut [u8]) -> Step {
        if self.finished {
            return Step::Finished;
        }
        if self.paused != 0 {
            return Step::Paused;
        }
        if !self.readable {
            return Step::Drained;
        }
        let left = self.budget.saturating_sub(self.turn_bytes) as usize;
        if left == 0 {
            return Step::Yield;
        }
        let want = buf.len().min(left);
        if want == 0 {
            // A zero-length scratch buffer cannot make progress; treat as a spent budget.
            return Step::Yield;
        }
        loop {
            match src.read(&mut buf[..want]) {
                Ok(0) => {
                    self.finished = true;
                    self.readable = false;
                    return Step::Eof;
                }
                Ok(n) => {
                    let n = n.min(want);
                    self.turn_bytes += n as u32;
                    if n < want && self.short_read_drains && !self.hup && !self.urgent {
                        self.readable = false;
                    }
                    return Step::Data(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    self.urgent = false;
                    return Step::Drained;
                }
                Err(e) => {
                    self.finished = true;
                    self.readable = false;
                    return Step::Error(e);
                }
            }
        }
    }
}
