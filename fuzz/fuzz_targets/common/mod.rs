//! What the codec targets share: how fuzz input becomes a codec setting, a
//! split pattern and a byte stream, and the checks every codec must pass.
//!
//! Input layout (bytes):
//!
//! ```text
//! [0] flags   bit 0: codec variant (u16/u32 header); bit 1: use the default limit
//! [1] limit   maximum line/frame length when bit 1 is clear
//! [2] n       number of chunk sizes (n % 16)
//! [3..3+n]    chunk sizes, used in turn until the data runs out (0 = an empty read)
//! [3+n..]     the byte stream
//! ```

// Each target uses part of this module.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use epoll_server::codec::{decode_all, Decoder};
use std::io::{self, ErrorKind};

/// A parsed fuzz input.
pub struct Input<'a> {
    /// Bit 0 of the flags byte.
    pub variant: bool,
    /// The limit, or `None` for the codec's default.
    pub limit: Option<usize>,
    /// The byte stream.
    pub data: &'a [u8],
    /// The byte stream cut into reads.
    pub chunks: Vec<&'a [u8]>,
}

impl<'a> Input<'a> {
    /// Splits raw fuzz bytes into settings, split pattern and data.
    pub fn parse(raw: &'a [u8]) -> Option<Input<'a>> {
        let (&flags, rest) = raw.split_first()?;
        let (&limit, rest) = rest.split_first()?;
        let (&n, rest) = rest.split_first()?;
        let n = usize::from(n % 16).min(rest.len());
        let (sizes, data) = rest.split_at(n);
        Some(Input {
            variant: flags & 1 != 0,
            limit: (flags & 2 == 0).then_some(usize::from(limit)),
            data,
            chunks: chunks(data, sizes),
        })
    }
}

/// Cuts `data` into reads of the given sizes, in turn; one read if no size
/// is positive.
fn chunks<'a>(mut data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.iter().all(|&s| s == 0) {
        return vec![data];
    }
    let mut chunks = Vec::new();
    for &size in sizes.iter().cycle() {
        if data.is_empty() {
            break;
        }
        let (chunk, rest) = data.split_at(usize::from(size).min(data.len()));
        chunks.push(chunk);
        data = rest;
    }
    chunks
}

/// What a decoder made of a whole input: its frames, then how it ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every frame, the one from `decode_eof` included.
    pub frames: Vec<Bytes>,
    /// `Ok` for a clean end, else the first error's kind and message.
    pub end: Result<(), (ErrorKind, String)>,
}

fn describe(err: &io::Error) -> (ErrorKind, String) {
    (err.kind(), err.to_string())
}

/// Feeds `chunks` to `decoder` one read at a time, as the reactor does, then
/// ends the input, checking the buffering bound and that an error is final.
pub fn run(decoder: &mut dyn Decoder, chunks: &[&[u8]]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        let max = decoder.max_buffered();
        assert!(
            buf.len() < max,
            "{} bytes buffered before a read, max_buffered() is {max}",
            buf.len()
        );
        buf.extend_from_slice(chunk);
        assert!(buf.len() <= max.saturating_add(chunk.len()));
        if let Err(err) = decode_all(decoder, &mut buf, &mut frames) {
            assert_final(decoder, &mut buf, &err);
            return Outcome {
                frames,
                end: Err(describe(&err)),
            };
        }
    }
    let end = match decoder.decode_eof(&mut buf) {
        Ok(Some(frame)) => {
            frames.push(frame);
            let again = decoder.decode_eof(&mut buf);
            assert!(matches!(again, Ok(None)), "second decode_eof: {again:?}");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(err) => Err(describe(&err)),
    };
    Outcome { frames, end }
}

/// After `err`, the decoder gives nothing more: only errors.
fn assert_final(decoder: &mut dyn Decoder, buf: &mut BytesMut, err: &io::Error) {
    assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
    let mut more = Vec::new();
    let again = decode_all(decoder, buf, &mut more);
    assert!(more.is_empty(), "frames after an error: {more:?}");
    assert_eq!(again.map_err(|e| describe(&e)), Err(describe(err)));
    let eof = decoder.decode_eof(buf);
    assert!(eof.is_err(), "decode_eof after an error: {eof:?}");
}

/// Checks that reading `input.chunks` gives the same as reading the whole
/// stream at once, and the same as `expected`.
pub fn check_split_invariance(
    new_decoder: impl Fn() -> Box<dyn Decoder>,
    input: &Input<'_>,
    expected: &Outcome,
) {
    let whole = run(new_decoder().as_mut(), &[input.data]);
    assert_eq!(&whole, expected, "whole input disagrees with the model");
    let split = run(new_decoder().as_mut(), &input.chunks);
    assert_eq!(split, whole, "split {:?}", lengths(&input.chunks));
}

fn lengths(chunks: &[&[u8]]) -> Vec<usize> {
    chunks.iter().map(|c| c.len()).collect()
}
