//! An edge-triggered epoll TCP server that runs on its own thread, with two faces over one core:
//! callbacks on the reactor thread, or a `Stream`/`Sink` per connection for any async executor.
//!
//! # Threading model
//!
//! A server is one reactor thread (or the thread that calls [`Server::run`]) that owns every
//! socket: the listeners, each accepted or outbound connection, an eventfd for wake-ups. It
//! accepts, connects, reads, and closes. Other threads talk to the reactor through handles
//! ([`ServerHandle`], [`ConnHandle`]) and the async halves, whose requests go through one queue
//! and one eventfd, with wake-ups coalesced. The one thing another thread does on a socket is
//! *write-through*: a send that finds nothing queued for its connection is written at once
//! from the sending thread, with one non-blocking `sendmsg` under the connection's output lock,
//! and only what the kernel does not take is queued for the reactor. The reactor revokes that
//! access, under the same lock, before it closes the socket.
//!
//! # Who owns what
//!
//! With the callback face, a [`Handler`] runs on the reactor thread: it receives each
//! connection's bytes and answers through a [`Context`]. Output is queued per connection, in
//! order, and written with one vectored `sendmsg(MSG_NOSIGNAL)` per turn; queued output is
//! bounded (a send past the hard limit is refused and handed back) and reading from a connection
//! pauses while its output is above the high-water mark.
//!
//! # The edge-triggered guarantee
//!
//! Every fd is registered once, edge-triggered, for read and write readiness. The reactor reads
//! until the socket is drained (or until the per-turn budget is spent, and then comes back to it
//! on its own), so no readiness is ever lost and one flooding peer cannot starve the others.
//! Accepting works the same way and never gets stuck after `EMFILE`: the listener backs off and
//! retries. See the `read_path` module for the read state machine.
//!
//! # Example
//!
//! ```no_run
//! use bytes::Bytes;
//! use epoll_server::{Context, ConnId, Handler, Server};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
//!         if ctx.send(conn, data).is_err() {
//!             ctx.close(conn);
//!         }
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     let server = Server::builder().bind("127.0.0.1:7878")?.build(Echo)?;
//!     epoll_server::stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
//!     server.run()
//! }
//! ```

#![deny(unsafe_code, unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![doc(test(attr(deny(warnings))))]

mod addr;
mod async_face;
mod buf_queue;
pub mod codec;
mod config;
mod error;
// The hand-offs' atomic steps, public only for the loom models (tests/loom_handoff.rs).
mod handler;
#[cfg(not(epoll_server_loom))]
mod handoff;
#[cfg(epoll_server_loom)]
#[doc(hidden)]
pub mod handoff;
mod id;
mod reactor;
pub mod read_path;
mod server;
mod shared;
mod signal;
mod stats;
mod sync;
// The one module allowed to call libc: every `unsafe` block of the crate is here.
#[allow(unsafe_code)]
mod sys;

pub use crate::addr::{Address, AddressParseError, PeerCredentials};
pub use crate::async_face::{
    Connect, Connection, Inbound, Incoming, IoReadHalf, IoStream, IoWriteHalf, Outbound,
    IO_WRITE_CHUNK,
};
pub use crate::config::Timeout;
pub use crate::error::{CloseReason, SendError, SendErrorKind};
pub use crate::handler::{ConnInfo, Context, Handler};
pub use crate::id::ConnId;
pub use crate::server::{make_listener, AcceptSpread, Builder, Server, ServerThread};
pub use crate::shared::{ConnHandle, ServerHandle, Stopped};
pub use crate::signal::stop_on_signals;
pub use crate::stats::{ClosedBy, Stats};
pub use crate::sys::FdLimit;
pub use bytes::Bytes;

/// The README's examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
