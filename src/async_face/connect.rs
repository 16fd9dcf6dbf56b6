//! Outbound connections on the async face: [`ServerHandle::connect`].

use super::Connection;
use crate::addr::Address;
use crate::shared::{Command, ServerHandle};
use futures::channel::oneshot;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where the reactor sends the outcome of an async connect.
pub(crate) type ConnectReply = oneshot::Sender<io::Result<Connection>>;

/// The future of [`ServerHandle::connect`]: resolves to the connected [`Connection`] or the
/// connect's error.
///
/// Dropping it before it resolves abandons the connection: if the connect completes anyway,
/// the reactor closes it.
#[derive(Debug)]
#[must_use = "a connect does nothing unless awaited"]
pub struct Connect {
    rx: oneshot::Receiver<io::Result<Connection>>,
}

impl Future for Connect {
    type Output = io::Result<Connection>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(oneshot::Canceled)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server stopped before the connect completed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl ServerHandle {
    /// Opens an outbound connection to `addr` (TCP, IPv4 or IPv6, or a Unix socket path)
    /// through this server's reactor, and resolves to it as a [`Connection`], exactly like
    /// an accepted one: the same ordering, backpressure, half-close and stop guarantees.
    ///
    /// The connect is non-blocking: the reactor starts it, learns of its completion from
    /// `EPOLLOUT` and checks `SO_ERROR`. It fails with the connect's error (`ConnectionRefused`
    /// for a closed port, ...), `TimedOut` after the [connect
    /// timeout](crate::Builder::connect_timeout), or `NotConnected` if the server is stopping.
    /// Await it on any executor.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// use futures::{SinkExt, StreamExt};
    /// use std::io::{Read, Write};
    ///
    /// // Something to connect to.
    /// let upstream = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = upstream.local_addr()?;
    /// let server = epoll_server::Server::builder().build_async()?.spawn()?;
    /// let handle = server.handle();
    /// futures::executor::block_on(async {
    ///     let mut conn = handle.connect(addr).await?;
    ///     conn.send("ping".into()).await?;
    ///     let (mut peer, _) = upstream.accept()?;
    ///     let mut got = [0u8; 4];
    ///     peer.read_exact(&mut got)?;
    ///     assert_eq!(&got, b"ping");
    ///     peer.write_all(b"pong")?;
    ///     assert_eq!(&conn.next().await.unwrap()?[..], b"pong");
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// server.stop_and_join()
    /// # }
    /// ```
    pub fn connect(&self, addr: impl Into<Address>) -> Connect {
        let (tx, rx) = oneshot::channel();
        // With several reactors, connects are spread over them in turn.
        let reactor = self.group.next_for_connect();
        reactor.push(Command::Connect(addr.into(), tx));
        if reactor.is_finished() {
            // The loop is over (or ends right now and may have missed this command): drop the
            // queue, so the reply is dropped and the future fails instead of waiting forever.
            reactor.discard_commands();
        }
        Connect { rx }
    }
}
