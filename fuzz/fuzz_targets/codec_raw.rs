//! `Raw`: each non-empty read is one frame, unchanged, and nothing is ever
//! left buffered or reported as an error.

#![no_main]

mod common;

use common::{run, Input};
use epoll_server::codec::{Encoder, Raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let outcome = run(&mut Raw, &input.chunks);
    assert_eq!(outcome.end, Ok(()));
    let reads: Vec<&[u8]> = input
        .chunks
        .iter()
        .copied()
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(outcome.frames, reads);

    let whole = run(&mut Raw, &[input.data]);
    let joined: Vec<u8> = whole.frames.concat();
    assert_eq!(joined, input.data);

    let mut out = Vec::new();
    for frame in outcome.frames {
        Raw.encode(frame, &mut out).expect("raw encode never fails");
    }
    assert_eq!(out.concat(), input.data);
});
