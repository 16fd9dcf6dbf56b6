//! `Lines`: newline-delimited frames with a length limit.

use super::{Decoder, Encoder, FrameError};
use bytes::{Bytes, BytesMut};
use std::io;

/// Newline-delimited frames: each frame is the bytes up to a `\n`, without
/// the `\n` and without a `\r` right before it, so both `\n` and `\r\n` line
/// ends are accepted. A `\r` anywhere else is part of the line.
///
/// ```text
/// inbound:  h i \r \n \n b y e \n s o
/// frames:   "hi"       ""  "bye"    (then "so" at end of input)
/// ```
///
/// A line longer than [`max_line_length`](Lines::max_line_length) bytes (not
/// counting its line end) is an error of kind
/// [`io::ErrorKind::InvalidData`], `"line longer than N bytes"`. It is
/// reported as soon as the buffer holds more than that without a newline,
/// so a peer that never sends one cannot make the buffer grow.
///
/// At end of input, the bytes after the last newline are a final line (with a
/// trailing `\r` stripped), if there are any.
///
/// Outbound, each frame is followed by `"\n"` (or `"\r\n"`, see
/// [`with_crlf`](Lines::with_crlf)), pushed as a static buffer; the payload
/// is not copied.
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use epoll_server::codec::{decode_all, Decoder, Encoder, Lines};
///
/// # fn main() -> std::io::Result<()> {
/// let mut lines = Lines::new().with_max_line_length(80);
/// let mut buf = BytesMut::from(&b"hi\r\n\nbye\nso"[..]);
/// let mut frames = Vec::new();
/// decode_all(&mut lines, &mut buf, &mut frames)?;
/// assert_eq!(frames, [&b"hi"[..], &b""[..], &b"bye"[..]]);
/// assert_eq!(lines.decode_eof(&mut buf)?, Some(Bytes::from_static(b"so")));
///
/// let mut out = Vec::new();
/// lines.encode(Bytes::from_static(b"hello"), &mut out)?;
/// assert_eq!(out, [&b"hello"[..], &b"\n"[..]]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines {
    max_line_length: usize,
    crlf: bool,
    /// How far into the buffer `decode` has already looked for `\n` without
    /// finding one; the next call starts there, so that decoding a line that
    /// arrives in many small reads costs O(n) overall, not O(n²).
    next_index: usize,
}

impl Lines {
    /// The default [`max_line_length`](Lines::max_line_length): 64 KiB.
    pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

    /// Creates a line codec with the default limit of
    /// [`DEFAULT_MAX_LINE_LENGTH`](Lines::DEFAULT_MAX_LINE_LENGTH) bytes that
    /// writes `\n` line ends.
    pub fn new() -> Lines {
        Lines {
            max_line_length: Self::DEFAULT_MAX_LINE_LENGTH,
            crlf: false,
            next_index: 0,
        }
    }

    /// Sets the longest line accepted or sent, in bytes, not counting the
    /// line end.
    pub fn with_max_line_length(mut self, max_line_length: usize) -> Lines {
        self.max_line_length = max_line_length;
        self
    }

    /// Sets whether [`encode`](Encoder::encode) ends lines with `"\r\n"`
    /// instead of `"\n"`. Decoding accepts both either way.
    pub fn with_crlf(mut self, crlf: bool) -> Lines {
        self.crlf = crlf;
        self
    }

    /// The longest line accepted or sent, in bytes, not counting the line end.
    pub fn max_line_length(&self) -> usize {
        self.max_line_length
    }

    /// Whether [`encode`](Encoder::encode) ends lines with `"\r\n"`.
    pub fn is_crlf(&self) -> bool {
        self.crlf
    }

    /// The same settings, with no decoding progress.
    pub(crate) fn fresh(&self) -> Lines {
        Lines {
            next_index: 0,
            ..self.clone()
        }
    }

    fn too_long(&self) -> io::Error {
        FrameError::LineTooLong {
            limit: self.max_line_length,
        }
        .invalid_data()
    }
}

impl Default for Lines {
    fn default() -> Lines {
        Lines::new()
    }
}

impl Decoder for Lines {
    /// Removes the first whole line from `buf` and returns it without its line
    /// end.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidData`] if the first line is longer than the
    /// limit, or is bound to be (more than the limit already buffered without
    /// a newline). `buf` is left as it was, so calling again fails again.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        // A line within the limit, with its "\r\n", fits in max + 2 bytes:
        // never look further than that, whatever the caller buffered.
        let window = buf.len().min(self.max_line_length.saturating_add(2));
        let start = self.next_index.min(window);
        match buf[start..window].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let newline = start + offset;
                self.next_index = 0;
                let cr = newline > 0 && buf[newline - 1] == b'\r';
                let length = newline - usize::from(cr);
                if length > self.max_line_length {
                    return Err(self.too_long());
                }
                let mut line = buf.split_to(newline + 1);
                line.truncate(length);
                Ok(Some(line.freeze()))
            }
            None => {
                self.next_index = window;
                // The shortest the line can still turn out to be: a trailing
                // '\r' may be the start of its "\r\n".
                let cr = buf[..window].last() == Some(&b'\r');
                if window - usize::from(cr) > self.max_line_length {
                    return Err(self.too_long());
                }
                Ok(None)
            }
        }
    }

    /// Returns the next line as `decode` does, or else the unterminated final
    /// line (without a trailing `\r`) if any bytes are left.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidData`] for a line over the limit, as in
    /// `decode`.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        // `decode` found no newline and checked the length.
        self.next_index = 0;
        let mut line = buf.split();
        if line.last() == Some(&b'\r') {
            line.truncate(line.len() - 1);
        }
        Ok(Some(line.freeze()))
    }

    /// `max_line_length + 2`: a longest line and its `"\r\n"`.
    fn max_buffered(&self) -> usize {
        self.max_line_length.saturating_add(2)
    }
}

impl Encoder for Lines {
    /// Pushes `frame`, then a static `"\n"` (or `"\r\n"`).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `frame` is longer than the limit,
    /// contains `\n`, or ends with `\r`: the peer's decoder would not get the
    /// same line back.
    fn encode(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> io::Result<()> {
        if frame.len() > self.max_line_length {
            return Err(FrameError::LineTooLong {
                limit: self.max_line_length,
            }
            .invalid_input());
        }
        if frame.contains(&b'\n') {
            return Err(FrameError::NewlineInLine.invalid_input());
        }
        if frame.last() == Some(&b'\r') {
            return Err(FrameError::CarriageReturnAtEnd.invalid_input());
        }
        if !frame.is_empty() {
            out.push(frame);
        }
        out.push(Bytes::from_static(if self.crlf { b"\r\n" } else { b"\n" }));
        Ok(())
    }
}
