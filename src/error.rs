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
    /// A timeout closed it: the idle or first-byte timeout (the peer sent nothing for too
    /// long), the write-stall timeout (queued output made no progress for too long; the socket
    /// is reset), or a close whose queued output made no progress within the linger time (the
    /// socket is reset, so the peer can tell the reply was cut short). See
    /// [`Timeout`](crate::Timeout).
    TimedOut,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("closed by peer"),
            CloseReason::Reset => f.write_str("reset by peer"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Error(e) => write!(f, "closed on error: {e}"),
            CloseReason::Shutdown => f.write_str("server shut down"),
            CloseReason::TimedOut => f.write_str("timed out"),
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
    cause: Option<io::Error>,
}

impl SendError {
    /// A refusal of `message` for `kind`.
    pub fn new(kind: SendErrorKind, message: Bytes) -> SendError {
        SendError {
            kind,
            message,
            cause: None,
        }
    }

    /// A refusal of `message` for `kind`, because of `cause`.
    pub(crate) fn with_cause(kind: SendErrorKind, message: Bytes, cause: io::Error) -> SendError {
        SendError {
            kind,
            message,
            cause: Some(cause),
        }
    }

    /// A refusal by the framing's encoder, which said why in `cause`.
    pub(crate) fn invalid(message: Bytes, cause: io::Error) -> SendError {
        SendError {
            kind: SendErrorKind::Invalid,
            message,
            cause: Some(cause),
        }
    }

    /// What caused the refusal, when more than its kind is known: for
    /// [`SendErrorKind::Invalid`], the encoder's own error.
    pub fn cause(&self) -> Option<&io::Error> {
        self.cause.as_ref()
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
            SendErrorKind::Invalid => match &self.cause {
                Some(cause) => write!(
                    f,
                    "send of {} bytes refused by the framing: {cause}",
                    self.message.len()
                ),
                None => write!(
                    f,
                    "send of {} bytes refused: the framing cannot encode it",
                    self.message.len()
                ),
            },
        }
    }
}

impl std::error::Error for SendError {}

impl From<SendError> for io::Error {
    /// The encoder's error keeps its kind (e.g. `InvalidInput`, `InvalidData`).
    fn from(e: SendError) -> io::Error {
        let kind = match (&e.kind, &e.cause) {
            (_, Some(cause)) => cause.kind(),
            (SendErrorKind::Closed, None) => io::ErrorKind::NotConnected,
            (SendErrorKind::Full, None) => io::ErrorKind::WouldBlock,
            (SendErrorKind::Invalid, None) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e.to_string())
    }
}

/// Runs user code (a handler callback, a decoder, an encoder, a framing factory), turning a
/// panic into an `io::Error` that names what panicked, so it closes one connection instead of
/// unwinding through the reactor.
pub(crate) fn catch_panic<R>(what: &str, f: impl FnOnce() -> R) -> io::Result<R> {
    catch_panic_in("", what, f)
}

/// [`catch_panic`] naming the code as `prefix` then `what`: the name is only formatted if
/// something panicked, so the callback path allocates nothing.
pub(crate) fn catch_panic_in<R>(prefix: &str, what: &str, f: impl FnOnce() -> R) -> io::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        io::Error::other(format!("{prefix}{what} panicked: {msg}"))
    })
}
