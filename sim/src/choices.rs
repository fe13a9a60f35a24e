//! The one source of every decision the simulated world makes.
//!
//! A world never calls a random number generator directly: it asks a
//! [`Choices`] for a number below a bound. Three sources plug in:
//!
//! - [`Seeded`]: a ChaCha8 stream from a `u64` seed (`tour-sim run`);
//! - [`Recorded`]: a list of earlier choices (`tour-sim shrink` replays an
//!   edited list and re-simulates, so a shrunk run is always a coherent world);
//! - [`Bytes`]: a fuzzer's bytes (the scenario fuzz target).
//!
//! Convention, relied on by shrinking: when a recorded list or the fuzzer's
//! bytes run out, every further choice is `0`, and the world is written so
//! that `0` is always the simple answer — no fault, no more clients, the
//! smallest size. Lowering a value therefore simplifies the world, and an
//! exhausted list ends it.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Where the world's decisions come from.
pub trait Choices {
    /// A number in `0..bound` (`0` when `bound` is 0 or 1).
    fn below(&mut self, bound: u64) -> u64;

    /// The choices drawn so far, when this source records them.
    fn recorded(&self) -> Option<&[u64]> {
        None
    }

    /// Takes the recorded choices out (empty when not recording).
    fn take_recorded(&mut self) -> Vec<u64> {
        Vec::new()
    }
}

/// Helpers every world uses on top of [`Choices::below`].
pub trait ChoicesExt: Choices {
    /// True with probability `per_million / 1_000_000`; a `0` choice is
    /// always false (no fault).
    fn chance(&mut self, per_million: u32) -> bool {
        if per_million == 0 {
            return false;
        }
        self.below(1_000_000) >= 1_000_000 - u64::from(per_million.min(1_000_000))
    }

    /// A number in `lo..=hi`; a `0` choice gives `lo`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// An index into a slice of `len` items; a `0` choice gives the first.
    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Whether a process goes on; only a `0` choice stops it, so a seeded
    /// stream practically never stops while an exhausted list always does.
    fn go_on(&mut self) -> bool {
        self.below(1 << 20) != 0
    }
}

impl<C: Choices + ?Sized> ChoicesExt for C {}

/// A ChaCha8 stream from a seed, optionally recording what it drew.
pub struct Seeded {
    rng: ChaCha8Rng,
    record: Option<Vec<u64>>,
}

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Seeded {
            rng: ChaCha8Rng::seed_from_u64(seed),
            record: None,
        }
    }

    /// Records every choice, for a trace that can be shrunk.
    pub fn recording(seed: u64) -> Self {
        Seeded {
            record: Some(Vec::new()),
            ..Seeded::new(seed)
        }
    }
}

impl Choices for Seeded {
    fn below(&mut self, bound: u64) -> u64 {
        if bound <= 1 {
            return 0;
        }
        // Modulo bias is below 2^-40 for the bounds a world uses, and the
        // result is deterministic, which is all that matters here.
        let v = self.rng.next_u64() % bound;
        if let Some(r) = &mut self.record {
            r.push(v);
        }
        v
    }

    fn recorded(&self) -> Option<&[u64]> {
        self.record.as_deref()
    }

    fn take_recorded(&mut self) -> Vec<u64> {
        self.record.take().unwrap_or_default()
    }
}

/// Replays a list of choices; past its end every choice is `0`. A recorded
/// value too large for the bound asked now is clamped to the largest one.
pub struct Recorded {
    list: Vec<u64>,
    next: usize,
    drawn: Vec<u64>,
}

impl Recorded {
    pub fn new(list: Vec<u64>) -> Self {
        Recorded {
            list,
            next: 0,
            drawn: Vec::new(),
        }
    }
}

impl Choices for Recorded {
    fn below(&mut self, bound: u64) -> u64 {
        if bound <= 1 {
            return 0;
        }
        let v = self.list.get(self.next).map_or(0, |&v| v.min(bound - 1));
        self.next += 1;
        self.drawn.push(v);
        v
    }

    fn recorded(&self) -> Option<&[u64]> {
        Some(&self.drawn)
    }

    fn take_recorded(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.drawn)
    }
}

/// A fuzzer's bytes: each choice reads just enough bytes (big-endian) for
/// its bound; past the end every choice is `0`.
pub struct Bytes<'a> {
    bytes: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Bytes { bytes }
    }
}

impl Choices for Bytes<'_> {
    fn below(&mut self, bound: u64) -> u64 {
        if bound <= 1 {
            return 0;
        }
        let width = (64 - (bound - 1).leading_zeros()).div_ceil(8) as usize;
        let take = width.min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(take);
        self.bytes = rest;
        let v = head.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        v.min(bound - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_in_bounds() {
        let (mut a, mut b) = (Seeded::recording(7), Seeded::new(7));
        for bound in 1..500 {
            let (x, y) = (a.below(bound), b.below(bound));
            assert_eq!(x, y);
            assert!(x < bound.max(1));
        }
        assert_eq!(a.recorded().map(<[u64]>::len), Some(498));
    }

    #[test]
    fn recorded_replays_then_gives_zeros_and_clamps() {
        let mut seeded = Seeded::recording(3);
        let first: Vec<u64> = (0..20).map(|_| seeded.below(1000)).collect();
        let mut replay = Recorded::new(seeded.take_recorded());
        let again: Vec<u64> = (0..20).map(|_| replay.below(1000)).collect();
        assert_eq!(first, again);
        assert_eq!(replay.below(1000), 0, "exhausted");
        let mut clamp = Recorded::new(vec![999]);
        assert_eq!(clamp.below(10), 9);
    }

    #[test]
    fn zero_choices_mean_no_fault_and_stop() {
        let mut zeros = Recorded::new(Vec::new());
        assert!(!zeros.chance(999_999));
        assert!(!zeros.go_on());
        assert_eq!(zeros.between(5, 9), 5);
        let mut seeded = Seeded::new(1);
        assert!((0..1000).filter(|_| seeded.chance(500_000)).count() > 400);
    }

    #[test]
    fn bytes_read_just_enough() {
        let mut b = Bytes::new(&[0x01, 0x02, 0x03]);
        assert_eq!(b.below(256), 1);
        assert_eq!(b.below(65_536), 0x0203);
        assert_eq!(b.below(10), 0, "exhausted");
    }
}
