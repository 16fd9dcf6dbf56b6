//! `Lines`: any split of the input decodes like the whole input, and like a
//! plain model of the line rules; an overlong line ends decoding with
//! `InvalidData` naming the limit.

#![no_main]

mod common;

use bytes::Bytes;
use common::{check_split_invariance, Input, Outcome};
use epoll_server::codec::{Decoder, Lines};
use libfuzzer_sys::fuzz_target;
use std::io::ErrorKind;

/// The line rules written plainly: split on '\n', strip one '\r' before it,
/// the bytes after the last '\n' are a final line.
fn model(mut data: &[u8], max: usize) -> Outcome {
    let mut frames = Vec::new();
    while !data.is_empty() {
        let (mut line, rest) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &data[data.len()..]),
        };
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.len() > max {
            let message = format!("line longer than {max} bytes");
            return Outcome {
                frames,
                end: Err((ErrorKind::InvalidData, message)),
            };
        }
        frames.push(Bytes::copy_from_slice(line));
        data = rest;
    }
    Outcome {
        frames,
        end: Ok(()),
    }
}

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let crlf = input.variant;
    let codec = match input.limit {
        Some(max) => Lines::new().with_max_line_length(max),
        None => Lines::new(),
    }
    .with_crlf(crlf);
    let max = codec.max_line_length();
    let expected = model(input.data, max);
    check_split_invariance(
        || Box::new(codec.clone()) as Box<dyn Decoder>,
        &input,
        &expected,
    );
});
