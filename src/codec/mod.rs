//! Framing: turning an inbound byte stream into frames, and frames into outbound buffers.

use bytes::{Bytes, BytesMut};
use std::io;

/// Splits an inbound byte stream into frames.
pub trait Decoder: Send + 'static {
    /// Removes one whole frame from the front of `buf`; `Ok(None)` if more bytes are needed.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>>;
    /// Called once at end of input with what is left in `buf`.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bytes remaining at end of stream",
            )),
        }
    }
    /// Upper bound of bytes this decoder may keep buffered.
    fn max_buffered(&self) -> usize;
}

/// Which framing a listener's connections use.
#[derive(Clone, Default)]
pub struct Framing {
    make: Option<std::sync::Arc<dyn Fn() -> Box<dyn Decoder> + Send + Sync>>,
}

impl std::fmt::Debug for Framing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Framing")
    }
}

impl Framing {
    /// Raw chunks.
    pub fn raw() -> Framing {
        Framing { make: None }
    }
    /// Whether frames are the chunks as read.
    pub fn is_raw(&self) -> bool {
        self.make.is_none()
    }
    /// A fresh decoder for a new connection.
    pub fn new_decoder(&self) -> Box<dyn Decoder> {
        (self.make.as_ref().expect("not raw"))()
    }
}
