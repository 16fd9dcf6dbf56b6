//! The errors a caller may need to match on; everything the OS reports stays an `io::Error`.

use bytes::Bytes;
use std::{fmt, io};

/// Why a connection closed, as the close callback and the async face report it.
#[derive(Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (end of file) and everything queued for it was written.
    PeerClosed,
    /// The peer reset the connection; output still queued was dropped.
    Reset,
    /// This side closed it (a close through a context, a handle, or the async halves being dropped),
    /// after writing what was queued.
    Local,
    /// An error closed it: a socket error, a codec error (kind `InvalidData`), or a panicking handler.
    Error(io::Error),
    /// The server stopped; queued output was written up to the shut-down deadline.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Reset => f.write_str("reset by peer"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Error(e) => write!(f, "closed on error: {e}"),
            CloseReason::Shutdown => f.write_str("server shut down"),
        }
    }
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendErrorKind {
    /// The connection is closed (or closing, or its write side was shut down).
    Closed,
    /// The connection's queued output would go past its hard limit.
    Full,
    /// The framing's encoder refused the frame (e.g. a line containing a newline, or a frame
    /// over the length-prefixed maximum).
    Invalid,
}

/// A refused send, handing the message back like a channel's send error.
///
/// # Examples
///
/// ```
/// use epoll_server::{SendError, SendErrorKind};
/// use bytes::Bytes;
///
/// let err = SendError::new(SendErrorKind::Full, Bytes::from_static(b"hello"));
/// assert_eq!(err.kind(), SendErrorKind::Full);
/// assert_eq!(&err.into_inner()[..], b"hello");
/// ```
pub struct SendError {
    kind: SendErrorKind,
    message: Bytes,
}

impl SendError {
    /// A refusal of `message` for `kind`.
    pub fn new(kind: SendErrorKind, message: Bytes) -> SendError {
        SendError { kind, message }
    }

    /// Why the send was refused.
    pub fn kind(&self) -> SendErrorKind {
        self.kind
    }

    /// The message that was not sent.
    pub fn into_inner(self) -> Bytes {
        self.message
    }
}

impl fmt::Debug for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("kind", &self.kind)
            .field("len", &self.message.len())
            .finish()
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SendErrorKind::Closed => write!(
                f,
                "send of {} bytes on a closed connection",
                self.message.len()
            ),
            SendErrorKind::Full => write!(
                f,
                "send of {} bytes refused: the connection's output queue is at its limit",
                self.message.len()
            ),
            SendErrorKind::Invalid => write!(
                f,
                "send of {} bytes refused: the framing cannot encode it",
                self.message.len()
            ),
        }
    }
}

impl std::error::Error for SendError {}

impl From<SendError> for io::Error {
    fn from(e: SendError) -> io::Error {
        let kind = match e.kind {
            SendErrorKind::Closed => io::ErrorKind::NotConnected,
            SendErrorKind::Full => io::ErrorKind::WouldBlock,
            SendErrorKind::Invalid => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e.to_string())
    }
}
