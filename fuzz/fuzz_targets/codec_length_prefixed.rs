//! `LengthPrefixed` with a u16 (flag bit 0 clear) or u32 header: any split of
//! the input decodes like the whole input, and like a plain model; an
//! over-limit header ends decoding with `InvalidData` naming the limit.

#![no_main]

mod common;

use bytes::Bytes;
use common::{check_split_invariance, Input, Outcome};
use epoll_server::codec::{Decoder, LengthPrefixed, LengthWidth};
use libfuzzer_sys::fuzz_target;
use std::io::ErrorKind;

/// The framing rules written plainly.
fn model(mut data: &[u8], width: LengthWidth, max: usize) -> Outcome {
    let header_len = width.header_len();
    let mut frames = Vec::new();
    let end = loop {
        if data.is_empty() {
            break Ok(());
        }
        let truncated = (
            ErrorKind::UnexpectedEof,
            format!("input ended inside a frame ({} bytes buffered)", data.len()),
        );
        if data.len() < header_len {
            break Err(truncated);
        }
        let length = data[..header_len]
            .iter()
            .fold(0u64, |n, &b| n << 8 | u64::from(b));
        if length > max as u64 {
            let message = format!("frame of {length} bytes exceeds the limit of {max} bytes");
            break Err((ErrorKind::InvalidData, message));
        }
        let body = &data[header_len..];
        let length = length as usize;
        if body.len() < length {
            break Err(truncated);
        }
        frames.push(Bytes::copy_from_slice(&body[..length]));
        data = &body[length..];
    };
    Outcome { frames, end }
}

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let width = if input.variant {
        LengthWidth::U32
    } else {
        LengthWidth::U16
    };
    let codec = match input.limit {
        Some(max) => LengthPrefixed::new(width).with_max_frame_length(max),
        None => LengthPrefixed::new(width),
    };
    let expected = model(input.data, width, codec.max_frame_length());
    check_split_invariance(
        || Box::new(codec.clone()) as Box<dyn Decoder>,
        &input,
        &expected,
    );
});
