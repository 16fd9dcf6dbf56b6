//! Listeners: accepting under edge-triggered epoll without ever getting stuck or spinning.
//!
//! An edge-triggered listener is notified once per transition of its backlog from empty to
//! non-empty, so the reactor must accept until `WouldBlock`. When it has to stop earlier, the
//! backlog may still hold connections and no new edge will come, so the listener stays
//! `pending` and the reactor comes back to it on its own:
//!
//! ```text
//!  stopped because                       | comes back
//! ---------------------------------------+------------------------------------------------
//!  accepted a batch (fairness cap)       | next turn (`hot`: epoll_wait does not block)
//!  max_connections reached               | when a connection closes
//!  async `incoming` full                 | when the application takes a connection
//!  EMFILE / ENFILE / ENOBUFS / ENOMEM    | after a back-off (doubling, capped), or at once
//!                                        | when a connection closes and frees an fd
//! ```
//!
//! The C++ design broke out of its accept loop on EMFILE and waited for the next edge, which
//! never came: the listener was stuck (or, level-triggered, spun the CPU).

use super::{ListenerSpec, Reactor};
use crate::addr::Address;
use crate::codec::Framing;
use crate::config::Config;
use crate::error::catch_panic;
use crate::handler::ConnInfo;
use crate::read_path::ReadState;
use crate::sys;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    pub(crate) addr: Address,
    pub(crate) face: usize,
    pub(crate) framing: Option<Framing>,
    /// The backlog may hold connections nobody will be notified about.
    pub(crate) pending: bool,
    /// Accept again without waiting (a batch was cut short for fairness).
    pub(crate) hot: bool,
    /// Backing off after a resource error until then.
    pub(crate) retry_at: Option<Instant>,
    backoff: Duration,
    /// The resource error was reported and not yet cleared by a successful accept.
    reported: bool,
    /// Removes the socket file of a Unix listener when this closes.
    _path_guard: Option<crate::server::UnixPathGuard>,
}

impl Listener {
    pub(crate) fn new(spec: ListenerSpec, cfg: &Config) -> Listener {
        Listener {
            fd: spec.fd,
            addr: spec.addr,
            face: spec.face,
            framing: spec.framing,
            // Connections may have queued before registration.
            pending: true,
            hot: true,
            retry_at: None,
            backoff: cfg.accept_backoff_min,
            reported: false,
            _path_guard: spec.path_guard,
        }
    }
}

impl Reactor {
    /// Retries pending listeners whose back-off ended, or all of them when a slot freed.
    pub(super) fn accept_due(&mut self, now: Instant) {
        let freed = std::mem::take(&mut self.core.slot_freed);
        for i in 0..self.listeners.len() {
            let Some(l) = self.listeners[i].as_mut() else {
                continue;
            };
            if !l.pending {
                continue;
            }
            if freed {
                l.retry_at = None;
            }
            if l.retry_at.is_some_and(|at| now < at) {
                continue;
            }
            self.accept(i);
        }
    }

    /// Accepts from listener `i` until the backlog is empty or something says stop.
    pub(super) fn accept(&mut self, i: usize) {
        let batch = self.core.cfg.accept_batch.max(1);
        for _ in 0..batch {
            let Some(l) = self.listeners[i].as_mut() else {
                return;
            };
            l.hot = false;
            l.retry_at = None;
            let face = l.face;
            if !self.faces[face].can_accept() {
                // Held back by the async consumer: taking a connection resumes accepting.
                return;
            }
            if !self.core.reserve() {
                // Held back by the limit: the backlog waits in the kernel; a close here sets
                // `slot_freed`. A close on another reactor does not reach this one: look
                // again after the shortest back-off.
                if self.core.group.reactors.len() > 1 {
                    l.retry_at = Some(Instant::now() + self.core.cfg.accept_backoff_min);
                }
                return;
            }
            let accepted = sys::accept(l.fd.as_fd());
            if accepted.is_err() {
                self.core.unreserve();
            }
            match accepted {
                Ok((fd, peer)) => {
                    l.backoff = self.core.cfg.accept_backoff_min;
                    l.reported = false;
                    let local = l.addr.clone();
                    let framing = l.framing.clone();
                    self.open(fd, peer, local, face, framing);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.pending = false;
                    return;
                }
                Err(e) if sys::is_transient_accept_error(&e) => {
                    crate::stats::add(&self.core.shared.counters.accept_errors, 1);
                    continue;
                }
                Err(e) => {
                    let counters = &self.core.shared.counters;
                    crate::stats::add(&counters.accept_errors, 1);
                    crate::stats::add(&counters.accept_backoffs, 1);
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM...: back off, and say so once per episode.
                    let wait = l.backoff;
                    l.retry_at = Some(Instant::now() + wait);
                    l.backoff = (wait * 2).min(self.core.cfg.accept_backoff_max);
                    let first = !std::mem::replace(&mut l.reported, true);
                    let addr = l.addr.clone();
                    if first {
                        let err = io::Error::new(
                            e.kind(),
                            format!("accept on {addr}: {e}; retrying after a back-off"),
                        );
                        self.faces[face].error(&mut self.core, None, err);
                    } else {
                        log::debug!("accept on {addr}: {e}; backing off {:?}", wait);
                    }
                    return;
                }
            }
        }
        if let Some(l) = self.listeners[i].as_mut() {
            l.hot = true;
        }
    }

    /// Registers an accepted socket and tells its face.
    fn open(
        &mut self,
        fd: OwnedFd,
        peer: Address,
        listen_addr: Address,
        face: usize,
        framing: Option<Framing>,
    ) {
        let cfg = &self.core.cfg;
        let mut peer_credentials = None;
        let local = match listen_addr {
            Address::Tcp(listen) => {
                self.core.tune_tcp(fd.as_fd());
                if listen.ip().is_unspecified() {
                    Address::Tcp(sys::local_addr(fd.as_fd()).unwrap_or(listen))
                } else {
                    Address::Tcp(listen)
                }
            }
            unix @ Address::Unix(_) => {
                peer_credentials = sys::peer_credentials(fd.as_fd())
                    .map_err(|e| log::debug!("{e}"))
                    .ok();
                unix
            }
        };
        let read = ReadState::new(cfg.read_budget, true);
        let mut conn = super::Conn::new(fd, face, read, self.core.now_ms);
        if let Some(framing) = framing.filter(|f| !f.is_raw()) {
            // The factories are user code: a panic there refuses this connection only.
            let made = catch_panic("the framing's factory", || {
                (framing.new_decoder(), framing.new_encoder())
            });
            match made {
                Ok((decoder, encoder)) => {
                    let extra = conn.extra();
                    extra.framer = Some(Box::new(super::Framer {
                        decoder,
                        buf: bytes::BytesMut::new(),
                    }));
                    extra.encoder = Some(encoder);
                }
                Err(e) => {
                    if let Err(e) = sys::set_linger_zero(conn.fd.as_fd()) {
                        log::debug!("{e}");
                    }
                    drop(conn);
                    self.core.unreserve();
                    let err =
                        io::Error::new(e.kind(), format!("connection from {peer} refused: {e}"));
                    self.faces[face].error(&mut self.core, None, err);
                    return;
                }
            }
        }
        let arm = self.core.cfg.timeouts.on_open();
        let id = self.core.insert(conn);
        self.core.shared.counters.opened();
        let conn = self.core.get(id).expect("just inserted");
        // No `EPOLLOUT` yet (see `conn`): a new socket is writable, and would report it at once.
        let events = super::core::CONN_EVENTS;
        if let Err(e) = self.core.epoll.add(conn.fd.as_fd(), events, id.token()) {
            self.core.abort(
                id,
                crate::error::CloseReason::Error(io::Error::new(e.kind(), e.to_string())),
            );
            // Never opened as far as the face knows: drop the close event, report the error.
            self.core.closed.pop();
            self.faces[face].error(&mut self.core, None, e);
            return;
        }
        if arm {
            self.core.arm(id);
        }
        // No read now: adding a socket that already holds data reports it at once (the
        // kernel polls it on EPOLL_CTL_ADD), so the first edge covers early bytes.
        let info = ConnInfo {
            id,
            peer,
            local,
            peer_credentials,
            outbound: false,
        };
        self.faces[face].opened(&mut self.core, info);
    }
}
