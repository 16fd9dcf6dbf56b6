//! `Raw`: no framing at all.

use super::{Decoder, Encoder};
use bytes::{Bytes, BytesMut};
use std::io;

/// No framing: every chunk as it was read is a frame, and frames are written
/// as they are.
///
/// Frame boundaries depend on how the kernel happened to deliver the bytes,
/// so `Raw` suits byte-stream protocols (proxies, echo) where the application
/// does its own parsing. [`Framing::is_raw`](super::Framing::is_raw) lets the
/// reactor skip the decode step entirely.
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use epoll_server::codec::{Decoder, Encoder, Raw};
///
/// # fn main() -> std::io::Result<()> {
/// let mut raw = Raw::new();
/// let mut buf = BytesMut::from(&b"any bytes\n at all"[..]);
/// assert_eq!(raw.decode(&mut buf)?, Some(Bytes::from_static(b"any bytes\n at all")));
/// assert_eq!(raw.decode(&mut buf)?, None);
///
/// let mut out = Vec::new();
/// raw.encode(Bytes::from_static(b"reply"), &mut out)?;
/// assert_eq!(out, [Bytes::from_static(b"reply")]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw;

impl Raw {
    /// Creates the raw codec.
    pub fn new() -> Raw {
        Raw
    }
}

impl Decoder for Raw {
    /// Returns everything buffered as one frame, or `Ok(None)` if `buf` is
    /// empty. Never fails.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(buf.split().freeze()))
    }

    /// `usize::MAX`: `Raw` never keeps bytes buffered.
    fn max_buffered(&self) -> usize {
        usize::MAX
    }
}

impl Encoder for Raw {
    /// Pushes `frame` unchanged; an empty frame pushes nothing. Never fails.
    fn encode(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> io::Result<()> {
        if !frame.is_empty() {
            out.push(frame);
        }
        Ok(())
    }
}
