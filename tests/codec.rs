//! The framing codecs, with no sockets: edge cases byte by byte, and property
//! tests that any split of the input into reads decodes the same frames.

use bytes::{Bytes, BytesMut};
use epoll_server::codec::{
    decode_all, Decoder, Encoder, FrameError, Framing, LengthPrefixed, LengthWidth, Lines, Raw,
};
use proptest::prelude::*;
use std::io::{self, ErrorKind};

/// What a decoder made of a whole input: its frames, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Bytes>,
    /// `Ok` if the input ended cleanly, else the first error's kind and message.
    end: Result<(), (ErrorKind, String)>,
}

fn describe(err: io::Error) -> (ErrorKind, String) {
    (err.kind(), err.to_string())
}

/// Feeds `chunks` one read at a time, as the reactor does, then ends the input.
/// Checks after each read that the decoder left less than `max_buffered()`.
fn run<'a>(decoder: &mut dyn Decoder, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        if let Err(err) = decode_all(decoder, &mut buf, &mut frames) {
            return Outcome {
                frames,
                end: Err(describe(err)),
            };
        }
        assert!(
            buf.len() < decoder.max_buffered(),
            "{} bytes buffered, max_buffered() is {}",
            buf.len(),
            decoder.max_buffered()
        );
    }
    let end = match decoder.decode_eof(&mut buf) {
        Ok(Some(frame)) => {
            frames.push(frame);
            // A second call at end of input has nothing more to give.
            decoder
                .decode_eof(&mut buf)
                .map(|last| assert_eq!(last, None))
        }
        Ok(None) => Ok(()),
        Err(err) => Err(err),
    };
    Outcome {
        frames,
        end: end.map_err(describe),
    }
}

/// Cuts `data` at `points` (any order, clamped to its length).
fn split<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = points.iter().map(|&p| p.min(data.len())).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([data.len()]) {
        chunks.push(&data[start..point]);
        start = point;
    }
    chunks
}

fn one_byte_at_a_time(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.chunks(1)
}

fn lines(max: usize) -> Lines {
    Lines::new().with_max_line_length(max)
}

fn frames(list: &[&'static [u8]]) -> Vec<Bytes> {
    list.iter().map(|f| Bytes::from_static(f)).collect()
}

fn ok(list: &[&'static [u8]]) -> Outcome {
    Outcome {
        frames: frames(list),
        end: Ok(()),
    }
}

fn failed(list: &[&'static [u8]], kind: ErrorKind, message: &str) -> Outcome {
    Outcome {
        frames: frames(list),
        end: Err((kind, message.to_string())),
    }
}

fn encode(encoder: &mut dyn Encoder, frame: &'static [u8]) -> io::Result<Vec<Bytes>> {
    let mut out = Vec::new();
    encoder.encode(Bytes::from_static(frame), &mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------- Lines ---

#[test]
fn lines_accept_lf_and_crlf() {
    let outcome = run(&mut Lines::new(), [&b"one\ntwo\r\nthree\n"[..]]);
    assert_eq!(outcome, ok(&[b"one", b"two", b"three"]));
}

#[test]
fn empty_lines_are_empty_frames() {
    let outcome = run(&mut Lines::new(), [&b"\n\r\n\n"[..]]);
    assert_eq!(outcome, ok(&[b"", b"", b""]));
}

#[test]
fn carriage_return_not_before_newline_stays_in_the_line() {
    let outcome = run(&mut Lines::new(), [&b"a\rb\n\r\r\n\rx\n"[..]]);
    assert_eq!(outcome, ok(&[b"a\rb", b"\r", b"\rx"]));
}

#[test]
fn line_exactly_at_max_is_accepted() {
    assert_eq!(run(&mut lines(4), [&b"abcd\n"[..]]), ok(&[b"abcd"]));
    assert_eq!(run(&mut lines(4), [&b"abcd\r\n"[..]]), ok(&[b"abcd"]));
    assert_eq!(
        run(&mut lines(4), one_byte_at_a_time(b"abcd\r\n")),
        ok(&[b"abcd"])
    );
    assert_eq!(run(&mut lines(0), [&b"\n\r\n"[..]]), ok(&[b"", b""]));
}

#[test]
fn line_one_over_max_is_refused_naming_the_limit() {
    let expected = failed(&[b"ok"], ErrorKind::InvalidData, "line longer than 4 bytes");
    assert_eq!(run(&mut lines(4), [&b"ok\nabcde\n"[..]]), expected);
    assert_eq!(run(&mut lines(4), [&b"ok\nabcde\r\n"[..]]), expected);
    assert_eq!(
        run(&mut lines(4), one_byte_at_a_time(b"ok\nabcde\n")),
        expected
    );
    let err = lines(8192)
        .decode(&mut BytesMut::from(&[b'x'; 8193][..]))
        .unwrap_err();
    assert_eq!(err.to_string(), "line longer than 8192 bytes");
    assert_eq!(
        FrameError::from_io(&err),
        Some(&FrameError::LineTooLong { limit: 8192 })
    );
}

#[test]
fn overlong_line_is_refused_before_its_newline_arrives() {
    let mut codec = lines(4);
    let mut buf = BytesMut::from(&b"abcd"[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    // "abcd\r" may still be "abcd\r\n": wait.
    buf.extend_from_slice(b"\r");
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    // "abcd\rx" cannot be a line of 4 bytes any more.
    buf.extend_from_slice(b"x");
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);

    let mut buf = BytesMut::from(&b"abcde"[..]);
    assert_eq!(
        lines(4).decode(&mut buf).unwrap_err().kind(),
        ErrorKind::InvalidData
    );
}

#[test]
fn lines_error_is_repeated_and_consumes_nothing() {
    let mut codec = lines(2);
    let mut buf = BytesMut::from(&b"abc\nd\n"[..]);
    assert!(codec.decode(&mut buf).is_err());
    assert_eq!(&buf[..], b"abc\nd\n");
    assert!(codec.decode(&mut buf).is_err());
    assert!(codec.decode_eof(&mut buf).is_err());
}

#[test]
fn final_line_without_newline_is_a_frame_at_eof() {
    assert_eq!(
        run(&mut Lines::new(), [&b"a\nlast"[..]]),
        ok(&[b"a", b"last"])
    );
    assert_eq!(run(&mut Lines::new(), [&b"last\r"[..]]), ok(&[b"last"]));
    assert_eq!(run(&mut Lines::new(), [&b"\r"[..]]), ok(&[b""]));
    assert_eq!(run(&mut Lines::new(), [&b"a\n"[..]]), ok(&[b"a"]));
    assert_eq!(run(&mut Lines::new(), [&b""[..]]), ok(&[]));
    assert_eq!(run(&mut lines(4), [&b"abcd\r"[..]]), ok(&[b"abcd"]));
}

#[test]
fn long_line_fed_byte_by_byte_decodes_in_linear_time() {
    // Rescanning from the start on each call would be ~3 * 10^10 steps here.
    let mut data = vec![b'x'; 256 * 1024];
    data.push(b'\n');
    let mut codec = lines(data.len());
    let outcome = run(&mut codec, one_byte_at_a_time(&data));
    assert_eq!(outcome.end, Ok(()));
    assert_eq!(outcome.frames.len(), 1);
    assert_eq!(outcome.frames[0].len(), 256 * 1024);
}

#[test]
fn lines_max_buffered_leaves_room_for_the_line_end() {
    assert_eq!(lines(10).max_buffered(), 12);
    assert_eq!(lines(usize::MAX).max_buffered(), usize::MAX);
}

#[test]
fn lines_encode_appends_a_static_newline_without_copying() -> io::Result<()> {
    let frame = Bytes::from(b"hello".to_vec());
    let mut out = Vec::new();
    Lines::new().encode(frame.clone(), &mut out)?;
    assert_eq!(out, [&b"hello"[..], &b"\n"[..]]);
    assert_eq!(out[0].as_ptr(), frame.as_ptr());

    assert_eq!(
        encode(&mut Lines::new().with_crlf(true), b"hi")?,
        [&b"hi"[..], &b"\r\n"[..]]
    );
    assert_eq!(encode(&mut Lines::new(), b"")?, [&b"\n"[..]]);
    assert_eq!(encode(&mut lines(2), b"ab")?, [&b"ab"[..], &b"\n"[..]]);
    Ok(())
}

#[test]
fn lines_encode_refuses_what_would_not_decode_back() {
    for (frame, message) in [
        (&b"\n"[..], "line contains a newline"),
        (&b"a\r"[..], "line ends with a carriage return"),
        (&b"abc"[..], "line longer than 2 bytes"),
    ] {
        let mut out = Vec::new();
        let err = lines(2)
            .encode(Bytes::from_static(frame), &mut out)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), message);
        assert!(out.is_empty());
    }
}

// ------------------------------------------------------- LengthPrefixed ---

fn u16_codec(max: usize) -> LengthPrefixed {
    LengthPrefixed::new(LengthWidth::U16).with_max_frame_length(max)
}

fn u32_codec(max: usize) -> LengthPrefixed {
    LengthPrefixed::new(LengthWidth::U32).with_max_frame_length(max)
}

#[test]
fn length_header_split_across_reads() {
    let data = b"\x00\x00\x00\x03abc\x00\x00\x00\x01z";
    for chunks in [
        split(data, &[1]),
        split(data, &[2, 5]),
        split(data, &[3, 9]),
        split(data, &[4, 7, 8]),
    ] {
        assert_eq!(run(&mut u32_codec(100), chunks), ok(&[b"abc", b"z"]));
    }
    assert_eq!(
        run(&mut u32_codec(100), one_byte_at_a_time(data)),
        ok(&[b"abc", b"z"])
    );
    assert_eq!(
        run(&mut u16_codec(100), one_byte_at_a_time(b"\x00\x02hi")),
        ok(&[b"hi"])
    );
}

#[test]
fn zero_length_frames_are_empty_frames() {
    assert_eq!(
        run(&mut u16_codec(0), [&b"\x00\x00\x00\x00"[..]]),
        ok(&[b"", b""])
    );
    assert_eq!(
        run(
            &mut u32_codec(10),
            one_byte_at_a_time(b"\0\0\0\0\0\0\0\x01x\0\0\0\0")
        ),
        ok(&[b"", b"x", b""])
    );
}

#[test]
fn declared_length_over_max_is_refused_without_allocating() {
    let mut codec = u32_codec(1024);
    let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
    let capacity = buf.capacity();
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        "frame of 4294967295 bytes exceeds the limit of 1024 bytes"
    );
    assert_eq!(
        FrameError::from_io(&err),
        Some(&FrameError::FrameTooLong {
            length: u64::from(u32::MAX),
            limit: 1024
        })
    );
    assert_eq!(buf.capacity(), capacity);
    // The header stays: calling again fails again.
    assert_eq!(&buf[..], b"\xff\xff\xff\xff");
    assert!(codec.decode(&mut buf).is_err());

    assert_eq!(
        run(&mut u16_codec(3), [&b"\x00\x01a\x00\x04abcd"[..]]),
        failed(
            &[b"a"],
            ErrorKind::InvalidData,
            "frame of 4 bytes exceeds the limit of 3 bytes"
        )
    );
}

#[test]
fn large_declared_length_within_max_reserves_a_bounded_amount() {
    let mut codec = LengthPrefixed::new(LengthWidth::U32);
    let max = codec.max_frame_length() as u32;
    let mut buf = BytesMut::from(&max.to_be_bytes()[..]);
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(buf.capacity() <= 128 * 1024, "reserved {}", buf.capacity());
}

#[test]
fn u16_limit_is_capped_at_65535() {
    assert_eq!(
        LengthPrefixed::new(LengthWidth::U16).max_frame_length(),
        65535
    );
    assert_eq!(u16_codec(1 << 20).max_frame_length(), 65535);
    assert_eq!(
        LengthPrefixed::new(LengthWidth::U32).max_frame_length(),
        LengthPrefixed::DEFAULT_MAX_FRAME_LENGTH
    );
    assert_eq!(u16_codec(65535).max_buffered(), 65537);
}

#[test]
fn truncated_frame_at_eof_is_unexpected_eof() {
    let cases: [(&[u8], &str); 4] = [
        (b"\x00", "input ended inside a frame (1 bytes buffered)"),
        (
            b"\x00\x00\x00\x02",
            "input ended inside a frame (4 bytes buffered)",
        ),
        (
            b"\x00\x00\x00\x02a",
            "input ended inside a frame (5 bytes buffered)",
        ),
        (
            b"\x00\x00\x00\x01ab",
            "input ended inside a frame (1 bytes buffered)",
        ),
    ];
    for (data, message) in cases {
        let outcome = run(&mut u32_codec(10), [data]);
        assert_eq!(outcome.end, Err((ErrorKind::UnexpectedEof, message.into())));
    }
    assert_eq!(run(&mut u32_codec(10), [&b""[..]]), ok(&[]));
}

#[test]
fn decode_eof_returns_a_whole_frame_still_buffered() -> io::Result<()> {
    let mut codec = u16_codec(10);
    let mut buf = BytesMut::from(&b"\x00\x01a"[..]);
    assert_eq!(codec.decode_eof(&mut buf)?, Some(Bytes::from_static(b"a")));
    assert_eq!(codec.decode_eof(&mut buf)?, None);
    Ok(())
}

#[test]
fn length_prefixed_encode_pushes_header_then_frame() -> io::Result<()> {
    let frame = Bytes::from(b"abc".to_vec());
    let mut out = Vec::new();
    u32_codec(3).encode(frame.clone(), &mut out)?;
    assert_eq!(out, [&b"\x00\x00\x00\x03"[..], &b"abc"[..]]);
    assert_eq!(out[1].as_ptr(), frame.as_ptr());

    assert_eq!(encode(&mut u16_codec(3), b"")?, [&b"\x00\x00"[..]]);

    let err = encode(&mut u16_codec(3), b"abcd").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        err.to_string(),
        "frame of 4 bytes exceeds the limit of 3 bytes"
    );
    Ok(())
}

// ------------------------------------------------------------------ Raw ---

#[test]
fn raw_hands_on_each_read_whole() {
    let outcome = run(&mut Raw::new(), [&b"ab\n"[..], b"", b"c"]);
    assert_eq!(outcome, ok(&[b"ab\n", b"c"]));
    assert_eq!(encode(&mut Raw, b"xy").unwrap(), [&b"xy"[..]]);
    assert!(encode(&mut Raw, b"").unwrap().is_empty());
}

// ------------------------------------------------- Framing, decode_all ---

#[test]
fn framing_makes_independent_decoders() -> io::Result<()> {
    let framing = Framing::lines(16);
    let mut first = framing.new_decoder();
    let mut second = framing.clone().new_decoder();
    let mut buf = BytesMut::from(&b"half"[..]);
    assert_eq!(first.decode(&mut buf)?, None);
    let mut other = BytesMut::from(&b"x\n"[..]);
    assert_eq!(second.decode(&mut other)?, Some(Bytes::from_static(b"x")));
    assert_eq!(first.max_buffered(), 18);
    Ok(())
}

#[test]
fn framing_from_a_used_codec_starts_fresh() -> io::Result<()> {
    let mut used = Lines::new();
    assert_eq!(used.decode(&mut BytesMut::from(&b"abcdef"[..]))?, None);
    let mut decoder = Framing::from(used).new_decoder();
    let mut buf = BytesMut::from(&b"ab\ncdefgh"[..]);
    assert_eq!(decoder.decode(&mut buf)?, Some(Bytes::from_static(b"ab")));

    let mut used = u16_codec(10);
    assert_eq!(used.decode(&mut BytesMut::from(&b"\x00\x05"[..]))?, None);
    let mut decoder = Framing::from(used).new_decoder();
    let mut buf = BytesMut::from(&b"\x00\x01a"[..]);
    assert_eq!(decoder.decode(&mut buf)?, Some(Bytes::from_static(b"a")));
    Ok(())
}

#[test]
fn framing_reports_raw_and_debugs() {
    assert!(Framing::raw().is_raw());
    assert!(Framing::default().is_raw());
    assert!(!Framing::lines(1).is_raw());
    assert!(!Framing::custom(|| Raw, || Raw).is_raw());
    assert_eq!(format!("{:?}", Framing::raw()), "Framing::Raw");
    assert_eq!(
        format!("{:?}", Framing::length_prefixed(LengthWidth::U16, 1 << 20)),
        "Framing::LengthPrefixed { width: U16, max_frame_length: 65535 }"
    );
    assert_eq!(
        format!("{:?}", Framing::custom(|| Raw, || Raw)),
        "Framing::Custom"
    );
}

#[test]
fn codec_types_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<Framing>();
    check::<Lines>();
    check::<LengthPrefixed>();
    check::<Raw>();
    check::<FrameError>();
}

#[test]
fn decode_all_keeps_frames_before_an_error() {
    let mut out = Vec::new();
    let mut buf = BytesMut::from(&b"a\nb\ntoolong\nc\n"[..]);
    let err = decode_all(&mut lines(3), &mut buf, &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidData);
    assert_eq!(out, frames(&[b"a", b"b"]));
}

#[test]
fn decode_all_stops_a_decoder_that_makes_no_progress() {
    #[derive(Debug)]
    struct Stuck;
    impl Decoder for Stuck {
        fn decode(&mut self, _: &mut BytesMut) -> io::Result<Option<Bytes>> {
            Ok(Some(Bytes::new()))
        }
        fn max_buffered(&self) -> usize {
            1
        }
    }
    let err = decode_all(&mut Stuck, &mut BytesMut::new(), &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
}

#[test]
fn default_decode_eof_reports_leftover_bytes() {
    #[derive(Debug)]
    struct Pairs;
    impl Decoder for Pairs {
        fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
            Ok((buf.len() >= 2).then(|| buf.split_to(2).freeze()))
        }
        fn max_buffered(&self) -> usize {
            2
        }
    }
    assert_eq!(run(&mut Pairs, [&b"abcd"[..]]), ok(&[b"ab", b"cd"]));
    assert_eq!(
        run(&mut Pairs, [&b"abc"[..]]),
        failed(
            &[b"ab"],
            ErrorKind::UnexpectedEof,
            "input ended inside a frame (1 bytes buffered)"
        )
    );
}

// ---------------------------------------------------- property tests ---

/// Bytes that often form lines: mostly `a`, `\r` and `\n`.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'a'),
        2 => Just(b'\n'),
        2 => Just(b'\r'),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..200)
}

/// Mostly well-formed length-prefixed input, sometimes with a garbage tail.
fn length_prefixed_bytes(width: LengthWidth) -> impl Strategy<Value = Vec<u8>> {
    let frame = prop::collection::vec(any::<u8>(), 0..40);
    (
        prop::collection::vec(frame, 0..6),
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(move |(frames, tail)| {
            let mut data = Vec::new();
            for frame in frames {
                let len = frame.len() as u32;
                match width {
                    LengthWidth::U16 => data.extend_from_slice(&(len as u16).to_be_bytes()),
                    LengthWidth::U32 => data.extend_from_slice(&len.to_be_bytes()),
                }
                data.extend_from_slice(&frame);
            }
            data.extend_from_slice(&tail);
            data
        })
}

fn width() -> impl Strategy<Value = LengthWidth> {
    prop_oneof![Just(LengthWidth::U16), Just(LengthWidth::U32)]
}

fn split_points() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..256usize, 0..12)
}

/// A line `Lines` can send: no `\n`, not ending in `\r`.
fn sendable_line() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(b'a'), Just(b'\r'), any::<u8>()], 0..30).prop_map(
        |mut line| {
            line.retain(|&b| b != b'\n');
            if line.last() == Some(&b'\r') {
                line.push(b'.');
            }
            line
        },
    )
}

fn concat(buffers: &[Bytes]) -> Vec<u8> {
    buffers.iter().flat_map(|b| b.iter().copied()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lines_decode_the_same_however_the_input_is_split(
        data in prop_oneof![line_bytes(), prop::collection::vec(any::<u8>(), 0..100)],
        max in 0..24usize,
        points in split_points(),
    ) {
        let whole = run(&mut lines(max), [&data[..]]);
        prop_assert_eq!(&run(&mut lines(max), split(&data, &points)), &whole);
        prop_assert_eq!(&run(&mut lines(max), one_byte_at_a_time(&data)), &whole);
    }

    #[test]
    fn length_prefixed_decodes_the_same_however_the_input_is_split(
        (width, data) in width().prop_flat_map(|w| (Just(w), prop_oneof![
            length_prefixed_bytes(w),
            prop::collection::vec(any::<u8>(), 0..100),
        ])),
        max in 0..48usize,
        points in split_points(),
    ) {
        let codec = || LengthPrefixed::new(width).with_max_frame_length(max);
        let whole = run(&mut codec(), [&data[..]]);
        prop_assert_eq!(&run(&mut codec(), split(&data, &points)), &whole);
        prop_assert_eq!(&run(&mut codec(), one_byte_at_a_time(&data)), &whole);
    }

    #[test]
    fn raw_frames_concatenate_to_the_input(
        data in prop::collection::vec(any::<u8>(), 0..200),
        points in split_points(),
    ) {
        let chunks = split(&data, &points);
        let outcome = run(&mut Raw, chunks.iter().copied());
        prop_assert_eq!(outcome.end, Ok(()));
        prop_assert!(outcome.frames.iter().all(|f| !f.is_empty()));
        let expected: Vec<&[u8]> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        prop_assert_eq!(outcome.frames, expected);
    }

    #[test]
    fn lines_round_trip(
        sent in prop::collection::vec(sendable_line(), 0..8),
        crlf in any::<bool>(),
        points in split_points(),
    ) {
        let mut encoder = lines(40).with_crlf(crlf);
        let mut wire = Vec::new();
        for line in &sent {
            encoder.encode(Bytes::from(line.clone()), &mut wire).unwrap();
        }
        let wire = concat(&wire);
        let outcome = run(&mut lines(40), split(&wire, &points));
        prop_assert_eq!(outcome.end, Ok(()));
        prop_assert_eq!(outcome.frames, sent);
    }

    #[test]
    fn length_prefixed_round_trip(
        width in width(),
        sent in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
        points in split_points(),
    ) {
        let codec = || LengthPrefixed::new(width).with_max_frame_length(40);
        let mut encoder = codec();
        let mut wire = Vec::new();
        for frame in &sent {
            encoder.encode(Bytes::from(frame.clone()), &mut wire).unwrap();
        }
        let wire = concat(&wire);
        let outcome = run(&mut codec(), split(&wire, &points));
        prop_assert_eq!(outcome.end, Ok(()));
        prop_assert_eq!(outcome.frames, sent);
    }

    #[test]
    fn raw_round_trip(data in prop::collection::vec(any::<u8>(), 0..100)) {
        let mut wire = Vec::new();
        Raw.encode(Bytes::from(data.clone()), &mut wire).unwrap();
        prop_assert_eq!(concat(&wire), data);
    }
}
