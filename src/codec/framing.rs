//! `Framing`: the codec choice a server configuration holds.

use super::{Decoder, Encoder, LengthPrefixed, LengthWidth, Lines, Raw};
use std::fmt;
use std::sync::Arc;

/// Makes a fresh decoder for each connection.
pub type DecoderFactory = Arc<dyn Fn() -> Box<dyn Decoder> + Send + Sync>;

/// Makes a fresh encoder for each connection.
pub type EncoderFactory = Arc<dyn Fn() -> Box<dyn Encoder> + Send + Sync>;

/// Which framing a server uses; makes a fresh decoder and encoder per
/// connection.
///
/// Cheap to clone: a custom framing shares its constructors.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use epoll_server::codec::{decode_all, Framing, LengthWidth, Lines};
///
/// # fn main() -> std::io::Result<()> {
/// let lines = Framing::lines(1024);
/// let mut decoder = lines.new_decoder();
/// let mut buf = BytesMut::from(&b"ping\n"[..]);
/// let mut frames = Vec::new();
/// decode_all(decoder.as_mut(), &mut buf, &mut frames)?;
/// assert_eq!(frames, [&b"ping"[..]]);
///
/// assert!(Framing::raw().is_raw());
/// assert!(!Framing::length_prefixed(LengthWidth::U32, 1 << 20).is_raw());
///
/// // A configured codec converts too.
/// let crlf: Framing = Lines::new().with_crlf(true).into();
/// assert_eq!(crlf.new_decoder().max_buffered(), Lines::DEFAULT_MAX_LINE_LENGTH + 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Framing {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Raw,
    Lines(Lines),
    LengthPrefixed(LengthPrefixed),
    Custom {
        decoder: DecoderFactory,
        encoder: EncoderFactory,
    },
}

impl Framing {
    /// No framing: each read is a frame, see [`Raw`].
    pub fn raw() -> Framing {
        Framing { kind: Kind::Raw }
    }

    /// Newline-delimited frames of at most `max_line_length` bytes, see
    /// [`Lines`].
    pub fn lines(max_line_length: usize) -> Framing {
        Lines::new().with_max_line_length(max_line_length).into()
    }

    /// Frames after a `width` length header, of at most `max_frame_length`
    /// bytes (capped at what the header can express), see [`LengthPrefixed`].
    pub fn length_prefixed(width: LengthWidth, max_frame_length: usize) -> Framing {
        LengthPrefixed::new(width)
            .with_max_frame_length(max_frame_length)
            .into()
    }

    /// Your own codec: `decoder` and `encoder` are called once per connection.
    ///
    /// See the [module docs](super) for an example.
    pub fn custom<D, E, FD, FE>(decoder: FD, encoder: FE) -> Framing
    where
        D: Decoder,
        E: Encoder,
        FD: Fn() -> D + Send + Sync + 'static,
        FE: Fn() -> E + Send + Sync + 'static,
    {
        Framing {
            kind: Kind::Custom {
                decoder: Arc::new(move || Box::new(decoder()) as Box<dyn Decoder>),
                encoder: Arc::new(move || Box::new(encoder()) as Box<dyn Encoder>),
            },
        }
    }

    /// Your own codec from already boxed factories.
    pub fn from_factories(decoder: DecoderFactory, encoder: EncoderFactory) -> Framing {
        Framing {
            kind: Kind::Custom { decoder, encoder },
        }
    }

    /// A fresh decoder for a new connection.
    pub fn new_decoder(&self) -> Box<dyn Decoder> {
        match &self.kind {
            Kind::Raw => Box::new(Raw),
            Kind::Lines(lines) => Box::new(lines.fresh()),
            Kind::LengthPrefixed(codec) => Box::new(codec.fresh()),
            Kind::Custom { decoder, .. } => decoder(),
        }
    }

    /// A fresh encoder for a new connection.
    pub fn new_encoder(&self) -> Box<dyn Encoder> {
        match &self.kind {
            Kind::Raw => Box::new(Raw),
            Kind::Lines(lines) => Box::new(lines.fresh()),
            Kind::LengthPrefixed(codec) => Box::new(codec.fresh()),
            Kind::Custom { encoder, .. } => encoder(),
        }
    }

    /// Whether this is [`Framing::raw`], so the reactor can hand each read on
    /// as it is instead of decoding.
    pub fn is_raw(&self) -> bool {
        matches!(self.kind, Kind::Raw)
    }
}

impl Default for Framing {
    /// [`Framing::raw`].
    fn default() -> Framing {
        Framing::raw()
    }
}

impl From<Raw> for Framing {
    fn from(_: Raw) -> Framing {
        Framing::raw()
    }
}

impl From<Lines> for Framing {
    /// Each connection gets a fresh copy of `lines`'s settings.
    fn from(lines: Lines) -> Framing {
        Framing {
            kind: Kind::Lines(lines.fresh()),
        }
    }
}

impl From<LengthPrefixed> for Framing {
    /// Each connection gets a fresh copy of `codec`'s settings.
    fn from(codec: LengthPrefixed) -> Framing {
        Framing {
            kind: Kind::LengthPrefixed(codec.fresh()),
        }
    }
}

impl fmt::Debug for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Raw => f.write_str("Framing::Raw"),
            Kind::Lines(lines) => f
                .debug_struct("Framing::Lines")
                .field("max_line_length", &lines.max_line_length())
                .field("crlf", &lines.is_crlf())
                .finish(),
            Kind::LengthPrefixed(codec) => f
                .debug_struct("Framing::LengthPrefixed")
                .field("width", &codec.width())
                .field("max_frame_length", &codec.max_frame_length())
                .finish(),
            Kind::Custom { .. } => f.write_str("Framing::Custom"),
        }
    }
}
