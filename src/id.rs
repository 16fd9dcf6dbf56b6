//! Connection identity.

use std::fmt;

/// Identifies one connection for its whole life, and never another one, server-wide.
///
/// It names the reactor that serves the connection (see
/// [`Builder::reactors`](crate::Builder::reactors); 0 with one reactor), and pairs the slot that
/// reactor keeps the connection in with a 64-bit generation that grows
/// each time the slot is reused, so an id (or a [`ConnHandle`](crate::ConnHandle)) kept after its
/// connection closed can never reach a newer connection that got the same slot or the same fd
/// number: at a million connections a second, all on one slot, the generation would take
/// over half a million years to wrap. Freed slots are reused first-in first-out, so churn
/// spreads over every free slot instead of hammering one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    generation: u64,
    slot: u32,
    reactor: u16,
}

/// Bits of the generation carried in an epoll token (the token's top bit stays clear, so it
/// never equals a reserved listener or wake-up token). A stale event only ever comes from the
/// same `epoll_wait` batch as the close that made it stale, so these bits are plenty there.
const TOKEN_GENERATION_MASK: u64 = 0x7fff_ffff;

impl ConnId {
    pub(crate) fn new(reactor: u16, slot: u32, generation: u64) -> ConnId {
        ConnId {
            generation,
            slot,
            reactor,
        }
    }

    /// The index of the reactor serving this connection (0 with one reactor).
    pub fn reactor(self) -> usize {
        self.reactor as usize
    }

    pub(crate) fn slot(self) -> usize {
        self.slot as usize
    }

    pub(crate) fn generation(self) -> u64 {
        self.generation
    }

    /// The epoll token of this connection: the slot and the low bits of the generation.
    pub(crate) fn token(self) -> u64 {
        ((self.generation & TOKEN_GENERATION_MASK) << 32) | self.slot as u64
    }

    /// Splits an epoll token into its slot and generation bits.
    pub(crate) fn token_parts(token: u64) -> (usize, u64) {
        ((token & 0xffff_ffff) as usize, token >> 32)
    }

    /// Whether a full generation matches the generation bits of a token.
    pub(crate) fn token_matches(generation: u64, token_generation: u64) -> bool {
        generation & TOKEN_GENERATION_MASK == token_generation
    }

    /// The id as one number, e.g. for logs or maps: the generation in the high 64 bits, the
    /// reactor in the next 16, the slot in the low 32.
    pub fn as_u128(self) -> u128 {
        ((self.generation as u128) << 64) | ((self.reactor as u128) << 32) | self.slot as u128
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reactor == 0 {
            write!(f, "ConnId({}.{})", self.slot, self.generation)
        } else {
            write!(
                f,
                "ConnId({}/{}.{})",
                self.reactor, self.slot, self.generation
            )
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reactor == 0 {
            write!(f, "#{}.{}", self.slot, self.generation)
        } else {
            write!(f, "#{}/{}.{}", self.reactor, self.slot, self.generation)
        }
    }
}
