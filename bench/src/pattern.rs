//! Per-connection pseudo-random byte streams and their verifier.
//!
//! Byte `p` of the stream with seed `s` is byte `p % 8` (little-endian) of
//! `splitmix64(s + (p / 8) * GOLDEN)`. Because the stream is a pure
//! function of `(seed, position)`, the sender regenerates exactly the bytes
//! it still owes after a partial write, and the receiver checks each echoed
//! chunk at the position it should occupy. With one seed per connection,
//! a lost, duplicated, reordered, corrupted or misrouted byte shows up as a
//! mismatch at a precise offset. Generation and checking work eight bytes
//! at a time, so the generator stays cheap next to the servers it measures.

use std::fmt;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed for connection number `conn` of a run with nonce `run`.
pub fn seed_for(run: u64, conn: u64) -> u64 {
    splitmix64(run ^ splitmix64(conn.wrapping_add(1)))
}

/// Eight-byte word number `index` of stream `seed`.
#[inline]
fn word(seed: u64, index: u64) -> u64 {
    splitmix64(seed.wrapping_add(index.wrapping_mul(GOLDEN)))
}

/// Writes stream bytes `[offset, offset + out.len())` of `seed` into `out`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    // Unaligned head.
    while i < out.len() && pos & 7 != 0 {
        out[i] = word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize];
        i += 1;
        pos += 1;
    }
    let mut chunks = out[i..].chunks_exact_mut(8);
    for c in &mut chunks {
        c.copy_from_slice(&word(seed, pos / 8).to_le_bytes());
        pos += 8;
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let w = word(seed, pos / 8).to_le_bytes();
        tail.copy_from_slice(&w[..tail.len()]);
    }
}

/// Where and how an echoed byte differed from the expected stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Stream offset of the first wrong byte.
    pub offset: u64,
    /// The byte the stream has there.
    pub expected: u8,
    /// The byte that arrived.
    pub got: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "byte {} of the stream is {:#04x}, expected {:#04x}",
            self.offset, self.got, self.expected
        )
    }
}

/// Checks that `data` equals stream bytes `[offset, offset + data.len())` of `seed`.
pub fn verify(seed: u64, offset: u64, data: &[u8]) -> Result<(), Mismatch> {
    let mut pos = offset;
    let mut i = 0;
    let check_byte = |pos: u64, got: u8| {
        let expected = word(seed, pos / 8).to_le_bytes()[(pos % 8) as usize];
        if got == expected {
            Ok(())
        } else {
            Err(Mismatch {
                offset: pos,
                expected,
                got,
            })
        }
    };
    while i < data.len() && pos & 7 != 0 {
        check_byte(pos, data[i])?;
        i += 1;
        pos += 1;
    }
    let chunks = data[i..].chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        let got = u64::from_le_bytes(c.try_into().expect("chunk of 8"));
        if got != word(seed, pos / 8) {
            for (k, &b) in c.iter().enumerate() {
                check_byte(pos + k as u64, b)?;
            }
        }
        pos += 8;
    }
    for &b in tail {
        check_byte(pos, b)?;
        pos += 1;
    }
    Ok(())
}

/// Receive-side bookkeeping for one connection's echoed stream.
#[derive(Debug, Clone)]
pub struct Verifier {
    seed: u64,
    received: u64,
}

/// Why an echoed stream is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// A byte differs from the stream.
    Mismatch(Mismatch),
    /// More bytes came back than were sent.
    TooMany {
        /// Bytes sent so far.
        sent: u64,
        /// Bytes received including this chunk.
        received: u64,
    },
    /// The stream ended before every sent byte came back.
    Short {
        /// Bytes sent.
        sent: u64,
        /// Bytes received.
        received: u64,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Mismatch(m) => write!(f, "corrupt echo: {m}"),
            VerifyError::TooMany { sent, received } => {
                write!(
                    f,
                    "echo longer than sent: {received} bytes back, {sent} sent"
                )
            }
            VerifyError::Short { sent, received } => {
                write!(f, "echo ended early: {received} bytes back, {sent} sent")
            }
        }
    }
}

impl std::error::Error for VerifyError {}

impl Verifier {
    /// A verifier expecting the stream `seed` from its start.
    pub fn new(seed: u64) -> Self {
        Self { seed, received: 0 }
    }

    /// Bytes accepted so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Checks the next chunk, given how many bytes were sent in total so far.
    pub fn feed(&mut self, data: &[u8], sent: u64) -> Result<(), VerifyError> {
        let end = self.received + data.len() as u64;
        if end > sent {
            return Err(VerifyError::TooMany {
                sent,
                received: end,
            });
        }
        verify(self.seed, self.received, data).map_err(VerifyError::Mismatch)?;
        self.received = end;
        Ok(())
    }

    /// Checks that everything sent came back (call at end of stream).
    pub fn finish(&self, sent: u64) -> Result<(), VerifyError> {
        if self.received == sent {
            Ok(())
        } else {
            Err(VerifyError::Short {
                sent,
                received: self.received,
            })
        }
    }
}
