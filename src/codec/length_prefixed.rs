//! `LengthPrefixed`: a big-endian length header, then the frame.

use super::{Decoder, Encoder, FrameError};
use bytes::{Buf, Bytes, BytesMut};
use std::io;

/// How many bytes each frame's length header has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LengthWidth {
    /// A 2-byte big-endian length: frames of at most 65535 bytes.
    U16,
    /// A 4-byte big-endian length.
    U32,
}

impl LengthWidth {
    /// The size of the header in bytes: 2 or 4.
    pub fn header_len(self) -> usize {
        match self {
            LengthWidth::U16 => 2,
            LengthWidth::U32 => 4,
        }
    }

    /// The largest length the header can express.
    pub fn max_length(self) -> usize {
        match self {
            LengthWidth::U16 => u16::MAX as usize,
            LengthWidth::U32 => usize::try_from(u32::MAX).unwrap_or(usize::MAX),
        }
    }
}

/// Where the decoder is within the current frame.
///
/// ```text
///            header complete, length <= max
///   Head ──────────────────────────────────▶ Data(length)
///    ▲                                            │
///    └──────── `length` bytes buffered: frame ────┘
///   Head ── length > max ──▶ error (header left in buf)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    /// Waiting for a whole header.
    Head,
    /// Header consumed; waiting for this many body bytes.
    Data(usize),
}

/// Frames preceded by a big-endian length header of 2 or 4 bytes.
///
/// ```text
/// inbound:  00 03 'a' 'b' 'c' 00 00 00 01 'z'    (LengthWidth::U16)
/// frames:   "abc"             ""    "z"
/// ```
///
/// The length counts the frame only, not the header. A declared length over
/// [`max_frame_length`](LengthPrefixed::max_frame_length) is an error of kind
/// [`io::ErrorKind::InvalidData`], `"frame of N bytes exceeds the limit of M
/// bytes"`, reported as soon as the header is read: the body is never
/// buffered, and nothing is allocated for it.
///
/// At end of input, a partial header or frame is an error of kind
/// [`io::ErrorKind::UnexpectedEof`].
///
/// Outbound, each frame is pushed after its own small header buffer; the
/// payload is not copied.
///
/// # Examples
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use epoll_server::codec::{decode_all, Encoder, LengthPrefixed, LengthWidth};
///
/// # fn main() -> std::io::Result<()> {
/// let mut codec = LengthPrefixed::new(LengthWidth::U16).with_max_frame_length(1024);
/// let mut out = Vec::new();
/// codec.encode(Bytes::from_static(b"abc"), &mut out)?;
/// assert_eq!(out, [&b"\x00\x03"[..], &b"abc"[..]]);
///
/// let mut buf = BytesMut::from(&b"\x00\x03abc\x00\x00\x00\x01z\x00"[..]);
/// let mut frames = Vec::new();
/// decode_all(&mut codec, &mut buf, &mut frames)?;
/// assert_eq!(frames, [&b"abc"[..], &b""[..], &b"z"[..]]);
///
/// // A header that declares more than the limit is refused at once.
/// let mut buf = BytesMut::from(&b"\xff\xff"[..]);
/// let err = decode_all(&mut codec, &mut buf, &mut frames).unwrap_err();
/// assert_eq!(err.to_string(), "frame of 65535 bytes exceeds the limit of 1024 bytes");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LengthPrefixed {
    width: LengthWidth,
    max_frame_length: usize,
    state: DecodeState,
}

impl LengthPrefixed {
    /// The default [`max_frame_length`](LengthPrefixed::max_frame_length):
    /// 8 MiB, capped at what the header can express.
    pub const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

    /// At most this much is reserved in the buffer for a frame body when its
    /// header arrives; a peer's 4-byte header alone must not make us allocate
    /// megabytes. The rest grows with the bytes actually read.
    const MAX_RESERVE: usize = 64 * 1024;

    /// Creates a codec with `width`-sized headers and the default limit.
    pub fn new(width: LengthWidth) -> LengthPrefixed {
        LengthPrefixed {
            width,
            max_frame_length: Self::DEFAULT_MAX_FRAME_LENGTH.min(width.max_length()),
            state: DecodeState::Head,
        }
    }

    /// Sets the longest frame accepted or sent, in bytes, not counting the
    /// header; capped at what the header can express (65535 for
    /// [`LengthWidth::U16`]).
    pub fn with_max_frame_length(mut self, max_frame_length: usize) -> LengthPrefixed {
        self.max_frame_length = max_frame_length.min(self.width.max_length());
        self
    }

    /// The header width.
    pub fn width(&self) -> LengthWidth {
        self.width
    }

    /// The longest frame accepted or sent, in bytes, not counting the header.
    pub fn max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// The same settings, with no decoding progress.
    pub(crate) fn fresh(&self) -> LengthPrefixed {
        LengthPrefixed {
            state: DecodeState::Head,
            ..self.clone()
        }
    }

    /// Reads the header at the front of `buf`, which holds at least one.
    fn peek_length(&self, buf: &[u8]) -> u64 {
        match self.width {
            LengthWidth::U16 => u64::from(u16::from_be_bytes([buf[0], buf[1]])),
            LengthWidth::U32 => u64::from(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]])),
        }
    }

    fn too_long(&self, length: u64) -> FrameError {
        FrameError::FrameTooLong {
            length,
            limit: self.max_frame_length,
        }
    }
}

impl Decoder for LengthPrefixed {
    /// Removes the first whole frame and its header from `buf` and returns the
    /// frame.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidData`] if a header declares more than the limit.
    /// The header is left in `buf`, so calling again fails again.
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if self.state == DecodeState::Head {
            let header_len = self.width.header_len();
            if buf.len() < header_len {
                return Ok(None);
            }
            let declared = self.peek_length(buf);
            let length = match usize::try_from(declared) {
                Ok(length) if length <= self.max_frame_length => length,
                _ => return Err(self.too_long(declared).invalid_data()),
            };
            buf.advance(header_len);
            self.state = DecodeState::Data(length);
            // `length` is within the limit; reserve at most MAX_RESERVE of it.
            let missing = length.saturating_sub(buf.len());
            buf.reserve(missing.min(Self::MAX_RESERVE));
        }
        match self.state {
            DecodeState::Data(length) if buf.len() >= length => {
                self.state = DecodeState::Head;
                Ok(Some(buf.split_to(length).freeze()))
            }
            _ => Ok(None),
        }
    }

    /// Returns the next frame as `decode` does; `Ok(None)` if the input ended
    /// between frames.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::UnexpectedEof`] if the input ended inside a header or
    /// a frame; [`io::ErrorKind::InvalidData`] as in `decode`.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        let buffered = match self.state {
            DecodeState::Head if buf.is_empty() => return Ok(None),
            DecodeState::Head => buf.len(),
            DecodeState::Data(_) => self.width.header_len() + buf.len(),
        };
        self.state = DecodeState::Head;
        Err(FrameError::Truncated { buffered }.unexpected_eof())
    }

    /// `max_frame_length` plus the header length.
    fn max_buffered(&self) -> usize {
        self.max_frame_length
            .saturating_add(self.width.header_len())
    }
}

impl Encoder for LengthPrefixed {
    /// Pushes a header buffer, then `frame` (unless it is empty).
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if `frame` is longer than the limit.
    fn encode(&mut self, frame: Bytes, out: &mut Vec<Bytes>) -> io::Result<()> {
        let length = frame.len();
        if length > self.max_frame_length {
            return Err(self.too_long(length as u64).invalid_input());
        }
        // Cannot truncate: max_frame_length <= width.max_length().
        let header = match self.width {
            LengthWidth::U16 => Bytes::copy_from_slice(&(length as u16).to_be_bytes()),
            LengthWidth::U32 => Bytes::copy_from_slice(&(length as u32).to_be_bytes()),
        };
        out.push(header);
        if !frame.is_empty() {
            out.push(frame);
        }
        Ok(())
    }
}
