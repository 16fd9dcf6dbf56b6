//! Framing: turning the inbound byte stream into frames, and frames into
//! buffers to write.
//!
//! This module is pure: no file descriptors, no channels. The reactor appends
//! what it reads to a per-connection [`BytesMut`] and asks a [`Decoder`] for
//! whole frames; outbound frames go through an [`Encoder`] that only adds
//! headers or terminators around the payload, never copying it.
//!
//! # The decode contract
//!
//! ```text
//!            read(2) appends              decode() until Ok(None)
//!  socket ───────────────────▶ buf ─────────────────────────────────▶ frames
//!                               │  Ok(Some(frame)): frame removed from the front of buf
//!                               │  Ok(None):        buf kept, wait for more bytes
//!                               │  Err(InvalidData): close the connection
//!                               ▼
//!                        at end of input: decode_eof() once
//!                           Ok(Some(last)) / Ok(None) / Err(UnexpectedEof)
//! ```
//!
//! - Between calls the caller only ever *appends* to `buf`; the decoder may
//!   remember how far it has looked (so scanning stays linear).
//! - After `decode` returns `Ok(None)`, fewer than [`Decoder::max_buffered`]
//!   bytes remain in `buf`, so a reader that never lets `buf` grow past that
//!   bound keeps memory bounded and can always read at least one more byte.
//! - An error is final: the connection is closed, nothing after it counts.
//!   Calling `decode` again returns an error again.
//!
//! # Built-in codecs
//!
//! | codec | inbound frame | outbound frame |
//! | --- | --- | --- |
//! | [`Raw`] | whatever one read returned | written as is |
//! | [`Lines`] | bytes up to `\n`, without the `\n` or `\r\n` | the line, then `\n` (or `\r\n`) |
//! | [`LengthPrefixed`] | a big-endian `u16`/`u32` length, then that many bytes | the header, then the frame |
//!
//! [`Framing`] picks one of these (or your own) in a server configuration
//! and makes a fresh decoder and encoder for each connection.
//!
//! # Your own decoder
//!
//! Implement [`Decoder`] (and [`Encoder`]) and hand constructors to
//! [`Framing::custom`]. Here, frames are fixed-size records of 4 bytes:
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use epoll_server::codec::{decode_all, Decoder, Encoder, Framing};
//! use std::io;
//!
//! #[derive(Debug)]
//! struct Records;
//!
//! impl Decoder for Records {
//!     fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
//!         if buf.len() < 4 {
//!             return Ok(None);
//!         }
//!         Ok(Some(buf.split_to(4).freeze()))
//!     }
//!
//!     fn max_buffered(&self) -> usize {
//!         4
//!     }
//! }
//!
//! impl Encoder for Records {
//!     fn encode(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> io::Result<()> {
//!         if frame.len() != 4 {
//!             return Err(io::Error::new(io::ErrorKind::InvalidInput, "record is not 4 bytes"));
//!         }
//!         out.push(frame);
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> io::Result<()> {
//! let framing = Framing::custom(|| Records, || Records);
//! let mut decoder = framing.new_decoder();
//! let mut buf = BytesMut::from(&b"abcdefgh12"[..]);
//! let mut frames = Vec::new();
//! decode_all(decoder.as_mut(), &mut buf, &mut frames)?;
//! assert_eq!(frames, [&b"abcd"[..], &b"efgh"[..]]);
//! assert_eq!(&buf[..], b"12");
//!
//! // "12" is a truncated record: the default decode_eof reports it.
//! let err = decoder.decode_eof(&mut buf).unwrap_err();
//! assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
//! # Ok(())
//! # }
//! ```

use bytes::{Bytes, BytesMut};
use std::io;

mod error;
mod framing;
mod length_prefixed;
mod lines;
mod raw;

pub use error::FrameError;
pub use framing::{DecoderFactory, EncoderFactory, Framing};
pub use length_prefixed::{LengthPrefixed, LengthWidth};
pub use lines::Lines;
pub use raw::Raw;

/// Splits an inbound byte stream into frames.
///
/// The reactor appends the bytes it reads to `buf` and calls
/// [`decode`](Decoder::decode) until it returns `Ok(None)`; see the
/// [module docs](self) for the whole contract and an example implementation.
pub trait Decoder: Send + 'static {
    /// Removes one whole frame from the front of `buf` and returns it;
    /// `Ok(None)` if more bytes are needed.
    ///
    /// Between calls the caller only appends to `buf`.
    ///
    /// # Errors
    ///
    /// Malformed input gives an error of kind [`io::ErrorKind::InvalidData`],
    /// which closes the connection.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>>;

    /// Called once at end of input, after `decode` returned `Ok(None)`, with
    /// what is left in `buf`.
    ///
    /// Returns a last frame if the codec allows one (e.g. a final line without
    /// newline for [`Lines`]), and `Ok(None)` when `buf` is empty.
    ///
    /// The default calls `decode` once more and treats any bytes still left
    /// as a truncated frame.
    ///
    /// # Errors
    ///
    /// A truncated frame gives an error of kind
    /// [`io::ErrorKind::UnexpectedEof`]; malformed input gives
    /// [`io::ErrorKind::InvalidData`] as in `decode`.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated {
                buffered: buf.len(),
            }
            .unexpected_eof()),
        }
    }

    /// Upper bound of bytes this decoder may keep buffered before it must
    /// produce a frame or fail.
    ///
    /// After `decode` returns `Ok(None)`, `buf` holds fewer bytes than this.
    /// The reactor reads no more than this minus what is buffered, so memory
    /// per connection stays bounded. `usize::MAX` means no bound (as for
    /// [`Raw`], which never keeps anything).
    fn max_buffered(&self) -> usize;
}

/// Turns one outbound frame into the buffers to write, without copying the
/// payload.
///
/// For example [`LengthPrefixed`] pushes a small header then the frame
/// itself; the reactor writes the buffers with one `writev(2)`.
pub trait Encoder: Send + 'static {
    /// Pushes the buffers that carry `frame` onto `out`, in order.
    ///
    /// # Errors
    ///
    /// A frame this codec cannot carry (too long, or containing a delimiter)
    /// gives an error of kind [`io::ErrorKind::InvalidInput`] and pushes
    /// nothing.
    fn encode(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> io::Result<()>;
}

/// Decodes frames from `buf` into `out` until the decoder needs more bytes.
///
/// This is the loop the reactor runs after each read, and the entry point of
/// the tests and fuzz targets. Frames decoded before an error stay in `out`.
///
/// # Errors
///
/// Returns the decoder's first error. A decoder that returns an empty frame
/// without consuming any input would loop forever; that is reported as an
/// error of kind [`io::ErrorKind::Other`] instead.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use epoll_server::codec::{decode_all, Lines};
///
/// # fn main() -> std::io::Result<()> {
/// let mut lines = Lines::new();
/// let mut buf = BytesMut::from(&b"one\r\ntwo\nthr"[..]);
/// let mut frames = Vec::new();
/// decode_all(&mut lines, &mut buf, &mut frames)?;
/// assert_eq!(frames, [&b"one"[..], &b"two"[..]]);
/// assert_eq!(&buf[..], b"thr");
/// # Ok(())
/// # }
/// ```
pub fn decode_all(
    decoder: &mut dyn Decoder,
    buf: &mut BytesMut,
    out: &mut Vec<Bytes>,
) -> io::Result<()> {
    drain_frames(buf, out, |buf| decoder.decode(buf))
}

/// Decodes what is left at end of input: calls [`Decoder::decode_eof`] until it returns
/// `Ok(None)`, with the same guard against a decoder that makes no progress as
/// [`decode_all`].
///
/// # Errors
///
/// The decoder's first error (e.g. `UnexpectedEof` for a truncated frame).
pub fn decode_eof_all(
    decoder: &mut dyn Decoder,
    buf: &mut BytesMut,
    out: &mut Vec<Bytes>,
) -> io::Result<()> {
    drain_frames(buf, out, |buf| decoder.decode_eof(buf))
}

/// Pushes frames from `next` onto `out` until it returns `Ok(None)` or an error.
fn drain_frames(
    buf: &mut BytesMut,
    out: &mut Vec<Bytes>,
    mut next: impl FnMut(&mut BytesMut) -> io::Result<Option<Bytes>>,
) -> io::Result<()> {
    loop {
        let before = buf.len();
        match next(buf)? {
            Some(frame) => {
                if frame.is_empty() && buf.len() == before {
                    log::error!("decoder returned an empty frame without consuming input");
                    return Err(io::Error::other(
                        "decoder returned an empty frame without consuming input",
                    ));
                }
                out.push(frame);
            }
            None => return Ok(()),
        }
    }
}
