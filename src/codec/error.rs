//! The protocol faults a codec reports, carried inside an `io::Error`.

use std::error::Error;
use std::fmt;
use std::io;

/// A framing fault found by one of the built-in codecs.
///
/// Codecs return `io::Error`s so the reactor handles every failure alike; the
/// `io::Error` wraps a `FrameError`, which a caller that needs the details can
/// get back with [`FrameError::from_io`]. Inbound faults have kind
/// [`io::ErrorKind::InvalidData`] (or [`io::ErrorKind::UnexpectedEof`] for a
/// truncated frame); outbound faults have kind [`io::ErrorKind::InvalidInput`].
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use epoll_server::codec::{Decoder, FrameError, Lines};
///
/// let mut lines = Lines::new().with_max_line_length(4);
/// let mut buf = BytesMut::from(&b"too long\n"[..]);
/// let err = lines.decode(&mut buf).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
/// assert_eq!(err.to_string(), "line longer than 4 bytes");
/// assert_eq!(FrameError::from_io(&err), Some(&FrameError::LineTooLong { limit: 4 }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A line has more than `limit` bytes (not counting its `\n` or `\r\n`).
    LineTooLong {
        /// The configured maximum line length.
        limit: usize,
    },
    /// A frame of `length` bytes was declared by a header or offered for
    /// sending, over the `limit`.
    FrameTooLong {
        /// The declared or offered frame length.
        length: u64,
        /// The configured maximum frame length.
        limit: usize,
    },
    /// A line offered for sending contains `\n`, so it would arrive as two.
    NewlineInLine,
    /// A line offered for sending ends with `\r`, which the receiving decoder
    /// would strip as part of a `\r\n` terminator.
    CarriageReturnAtEnd,
    /// The input ended in the middle of a frame.
    Truncated {
        /// How many bytes of the unfinished frame had arrived (header included).
        buffered: usize,
    },
}

impl FrameError {
    /// Returns the `FrameError` inside `err`, if a codec put one there.
    pub fn from_io(err: &io::Error) -> Option<&FrameError> {
        err.get_ref()?.downcast_ref::<FrameError>()
    }

    /// Wraps `self` in an `io::Error` of kind `InvalidData`.
    pub(crate) fn invalid_data(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// Wraps `self` in an `io::Error` of kind `InvalidInput`.
    pub(crate) fn invalid_input(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, self)
    }

    /// Wraps `self` in an `io::Error` of kind `UnexpectedEof`.
    pub(crate) fn unexpected_eof(self) -> io::Error {
        io::Error::new(io::ErrorKind::UnexpectedEof, self)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::LineTooLong { limit } => write!(f, "line longer than {limit} bytes"),
            FrameError::FrameTooLong { length, limit } => {
                write!(
                    f,
                    "frame of {length} bytes exceeds the limit of {limit} bytes"
                )
            }
            FrameError::NewlineInLine => f.write_str("line contains a newline"),
            FrameError::CarriageReturnAtEnd => f.write_str("line ends with a carriage return"),
            FrameError::Truncated { buffered } => {
                write!(f, "input ended inside a frame ({buffered} bytes buffered)")
            }
        }
    }
}

impl Error for FrameError {}
