//! The verifier catches every way an echo can go wrong.

use bench::pattern::{fill, seed_for, verify, Verifier, VerifyError};

fn stream(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    fill(seed, 0, &mut v);
    v
}

/// Feeds `data` to a fresh verifier in `chunk`-byte pieces, as reads would.
fn feed_all(seed: u64, data: &[u8], sent: u64, chunk: usize) -> Result<(), VerifyError> {
    let mut v = Verifier::new(seed);
    for c in data.chunks(chunk) {
        v.feed(c, sent)?;
    }
    v.finish(sent)
}

#[test]
fn fill_is_position_addressable() {
    let seed = seed_for(1, 7);
    let whole = stream(seed, 1000);
    for start in [0usize, 1, 7, 8, 9, 63, 500, 999] {
        for len in [0usize, 1, 3, 8, 17, 1000 - start] {
            let len = len.min(1000 - start);
            let mut part = vec![0; len];
            fill(seed, start as u64, &mut part);
            assert_eq!(part, whole[start..start + len], "start {start} len {len}");
            assert!(verify(seed, start as u64, &part).is_ok());
        }
    }
}

#[test]
fn clean_echo_passes_in_any_chunking() {
    let seed = seed_for(3, 0);
    let data = stream(seed, 70_001);
    for chunk in [1, 5, 8, 13, 4096, 65_536, 70_001] {
        feed_all(seed, &data, data.len() as u64, chunk).unwrap();
    }
}

#[test]
fn flipped_byte_is_caught_at_its_offset() {
    let seed = seed_for(3, 1);
    for pos in [0usize, 5, 8, 4095, 12_345] {
        let mut data = stream(seed, 20_000);
        data[pos] ^= 0x01;
        match feed_all(seed, &data, 20_000, 1000) {
            Err(VerifyError::Mismatch(m)) => assert_eq!(m.offset, pos as u64),
            other => panic!("flip at {pos} not caught: {other:?}"),
        }
    }
}

#[test]
fn dropped_byte_is_caught() {
    let seed = seed_for(3, 2);
    let mut data = stream(seed, 10_000);
    data.remove(4321);
    assert!(matches!(
        feed_all(seed, &data, 10_000, 512),
        Err(VerifyError::Mismatch(_))
    ));
}

#[test]
fn dropped_tail_is_caught_as_short() {
    let seed = seed_for(3, 3);
    let data = stream(seed, 10_000);
    assert!(matches!(
        feed_all(seed, &data[..9_999], 10_000, 512),
        Err(VerifyError::Short { .. })
    ));
}

#[test]
fn duplicated_chunk_is_caught() {
    let seed = seed_for(3, 4);
    let data = stream(seed, 10_000);
    let mut dup = data[..5000].to_vec();
    dup.extend_from_slice(&data[4000..]);
    let err = feed_all(seed, &dup, 10_000, 700).unwrap_err();
    assert!(matches!(err, VerifyError::Mismatch(_)), "{err}");
}

#[test]
fn extra_bytes_beyond_what_was_sent_are_caught() {
    let seed = seed_for(3, 5);
    let data = stream(seed, 10_000);
    assert!(matches!(
        feed_all(seed, &data, 9_000, 1000),
        Err(VerifyError::TooMany { .. })
    ));
}

#[test]
fn reordered_chunks_are_caught() {
    let seed = seed_for(3, 6);
    let data = stream(seed, 8_192);
    let mut swapped = data[4096..].to_vec();
    swapped.extend_from_slice(&data[..4096]);
    assert!(matches!(
        feed_all(seed, &swapped, 8_192, 4096),
        Err(VerifyError::Mismatch(_))
    ));
}

#[test]
fn swapped_connections_are_caught() {
    let (a, b) = (seed_for(9, 0), seed_for(9, 1));
    assert_ne!(a, b);
    let from_b = stream(b, 4096);
    assert!(matches!(
        feed_all(a, &from_b, 4096, 4096),
        Err(VerifyError::Mismatch(_))
    ));
    // Even a single byte from the wrong stream is (almost always) caught:
    // check that the streams differ in nearly every byte.
    let from_a = stream(a, 4096);
    let same = from_a.iter().zip(&from_b).filter(|(x, y)| x == y).count();
    assert!(same < 64, "streams too similar: {same} equal bytes");
}
