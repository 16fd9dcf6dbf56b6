//! Stopping a server from a signal handler.

use crate::shared::{Group, ServerHandle};
use crate::sys;
use std::io;
use std::sync::{Arc, OnceLock};

/// Servers to stop when a registered signal arrives. Reading a set `OnceLock` is a plain atomic
/// load, so the signal handler takes no lock and allocates nothing.
static SERVERS: [OnceLock<&'static Group>; 32] = [const { OnceLock::new() }; 32];

extern "C" fn on_signal(_signal: libc::c_int) {
    let saved = sys::errno();
    for slot in &SERVERS {
        if let Some(server) = slot.get() {
            server.stop();
        }
    }
    sys::set_errno(saved);
}

/// Installs a handler for each of `signals` (e.g. `libc::SIGINT`, `libc::SIGTERM`) that stops the
/// server behind `handle` gracefully, the way [`ServerHandle::stop`] does.
///
/// Signal handlers belong to the process, not to a server: when one of these signals arrives,
/// **every server registered with `stop_on_signals` in this process stops**, whichever signals
/// each was registered with. To stop servers selectively, handle the signal yourself (for
/// example with `signal-hook` or tokio's `signal`) and call [`ServerHandle::stop`] on the ones
/// you mean.
///
/// The handler only does async-signal-safe work: an atomic store and a `write(2)` to the
/// server's eventfd, then it restores `errno`. The handler replaces any previous handler of those
/// signals for the whole process; up to 32 servers per process can be registered, and a
/// registered server's wake-up fd stays open for the life of the process.
///
/// # Errors
///
/// An error if 32 servers are already registered or `sigaction` fails.
///
/// # Examples
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use epoll_server::{stop_on_signals, Context, ConnId, Handler, Server};
/// use bytes::Bytes;
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, data: Bytes) {
///         let _ = ctx.send(conn, data);
///     }
/// }
///
/// let server = Server::builder().bind("127.0.0.1:7878")?.build(Echo)?;
/// stop_on_signals(&server.handle(), &[libc::SIGINT, libc::SIGTERM])?;
/// server.run() // returns after Ctrl-C, once queued output is written
/// # }
/// ```
pub fn stop_on_signals(handle: &ServerHandle, signals: &[i32]) -> io::Result<()> {
    let leaked: &'static Arc<Group> = Box::leak(Box::new(handle.group.clone()));
    let server: &'static Group = leaked;
    if !SERVERS.iter().any(|slot| slot.set(server).is_ok()) {
        return Err(io::Error::other(
            "stop_on_signals: 32 servers are already registered",
        ));
    }
    for &signal in signals {
        sys::install_signal_handler(signal, on_signal)?;
    }
    Ok(())
}
