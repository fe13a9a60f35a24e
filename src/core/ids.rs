//! Identifiers and the stable, keyed hashes behind them.
//!
//! Every hash here is SipHash-1-3 from the `siphasher` crate, whose output is
//! fixed by its specification: it does not change across builds, platforms or
//! Rust versions (unlike `std`'s `DefaultHasher`). Hashes that a client could
//! aim at (idempotency keys) and ids a client should not guess (assignment
//! ids) are keyed with the [`Secret`] from the configuration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use siphasher::sip::SipHasher13;
use siphasher::sip128::{Hasher128, SipHasher13 as SipHasher13x128};
use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

/// A request waiting for an answer; allocated by the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ticket(pub u64);

/// An outbound call (an availability stream or a rules check); allocated by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallId(pub u64);

/// One attempt at answering a request (the tickets that share an
/// idempotency key share one attempt); allocated by the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(pub u64);

/// The key of the keyed hashes: idempotency-key hashing, payload
/// fingerprints and assignment ids. The server creates one at random the
/// first time and keeps it in the data directory.
#[derive(Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Secret {
    pub k0: u64,
    pub k1: u64,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key itself, not even in traces' debug output.
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub const fn new(k0: u64, k1: u64) -> Self {
        Secret { k0, k1 }
    }

    /// SipHash-1-3, 128 bits, keyed, over `domain` then `bytes`. The domain
    /// keeps hashes made for different purposes apart.
    pub fn hash128(&self, domain: &[u8], bytes: &[u8]) -> u128 {
        let mut h = SipHasher13x128::new_with_keys(self.k0, self.k1);
        h.write(domain);
        h.write_u8(0xff);
        h.write(bytes);
        h.finish128().as_u128()
    }

    /// A streaming hasher for payload fingerprints.
    pub fn payload_hasher(&self) -> PayloadHasher {
        let mut h = SipHasher13x128::new_with_keys(self.k0, self.k1);
        h.write(b"payload");
        h.write_u8(0xff);
        PayloadHasher(h)
    }

    fn hash64(&self, domain: u8, word: u64) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(domain);
        h.write_u64(word);
        h.finish()
    }
}

/// A hasher for keys that are already uniformly distributed (keyed hashes,
/// permuted ids): it keeps their low 64 bits. Deterministic, unlike std's
/// default `RandomState`.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

pub use crate::core::prehashed_map::PrehashedMap;

/// Unkeyed 64-bit hash for placement (the shard ring): SipHash-1-3 with
/// constant keys, stable everywhere.
pub fn stable_hash64(bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(0x7475_6f72_2d64_6973, 0x7061_7463_6865_7221);
    h.write(bytes);
    h.finish()
}

macro_rules! hex128 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u128);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:032x})", stringify!($name), self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&format!("{:032x}", self.0))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                if text.len() != 32 {
                    return Err(serde::de::Error::custom("expected 32 hex digits"));
                }
                u128::from_str_radix(&text, 16).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex128!(
    /// A client's `Idempotency-Key`, hashed with the secret.
    KeyHash
);
hex128!(
    /// The canonical payload of a request, hashed with the secret.
    Fingerprint
);

impl KeyHash {
    pub fn of(secret: &Secret, client_key: &str) -> Self {
        KeyHash(secret.hash128(b"idempotency-key", client_key.as_bytes()))
    }
}

impl Fingerprint {
    pub fn of(secret: &Secret, canonical_payload: &[u8]) -> Self {
        let mut h = secret.payload_hasher();
        h.0.write(canonical_payload);
        h.finish()
    }
}

/// Hashes a payload as it is written (see [`Fingerprint::of`]).
pub struct PayloadHasher(SipHasher13x128);

impl PayloadHasher {
    pub fn finish(self) -> Fingerprint {
        Fingerprint(self.0.finish128().as_u128())
    }
}

impl std::io::Write for PayloadHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The public id of an assignment: a keyed permutation (a four-round Feistel
/// network over 64 bits) of its sequence number. Unique because the
/// permutation is a bijection, not guessable without the secret, and
/// deterministic. Rendered as `asg_` and 13 lowercase Crockford base32 digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssignmentId(pub u64);

const FEISTEL_ROUNDS: u8 = 4;
const BASE32: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_DIGITS: usize = 13;
const ID_PREFIX: &str = "asg_";

impl AssignmentId {
    /// The id of the `seq`-th assignment.
    pub fn from_seq(secret: &Secret, seq: u64) -> Self {
        let (mut left, mut right) = ((seq >> 32) as u32, seq as u32);
        for round in 0..FEISTEL_ROUNDS {
            let f = secret.hash64(round, u64::from(right)) as u32;
            (left, right) = (right, left ^ f);
        }
        AssignmentId((u64::from(left) << 32) | u64::from(right))
    }

    /// The sequence number behind this id (the inverse permutation).
    pub fn seq(self, secret: &Secret) -> u64 {
        let (mut left, mut right) = ((self.0 >> 32) as u32, self.0 as u32);
        for round in (0..FEISTEL_ROUNDS).rev() {
            let f = secret.hash64(round, u64::from(left)) as u32;
            (left, right) = (right ^ f, left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }
}

impl fmt::Display for AssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; ID_DIGITS];
        for (i, d) in digits.iter_mut().enumerate() {
            let shift = 5 * (ID_DIGITS - 1 - i);
            *d = BASE32[((self.0 >> shift) & 31) as usize];
        }
        f.write_str(ID_PREFIX)?;
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

/// Why a string is not an assignment id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an assignment id: expected `asg_` and 13 characters of 0-9 a-z (without i, l, o, u)")]
pub struct BadAssignmentId;

impl FromStr for AssignmentId {
    type Err = BadAssignmentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix(ID_PREFIX).ok_or(BadAssignmentId)?;
        if digits.len() != ID_DIGITS {
            return Err(BadAssignmentId);
        }
        let mut value: u128 = 0;
        for b in digits.bytes() {
            let d = BASE32.iter().position(|&c| c == b).ok_or(BadAssignmentId)?;
            value = (value << 5) | d as u128;
        }
        u64::try_from(value)
            .map(AssignmentId)
            .map_err(|_| BadAssignmentId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Secret = Secret::new(1, 2);

    #[test]
    fn stable_hash_is_fixed_across_builds() {
        // Pinned values: if these change, every shard placement moves.
        assert_eq!(stable_hash64(b""), 5_263_962_270_780_884_977);
        assert_ne!(stable_hash64(b"94107"), stable_hash64(b"94103"));
    }

    #[test]
    fn ids_are_distinct_and_invertible() {
        let ids: std::collections::BTreeSet<_> =
            (0..10_000).map(|n| AssignmentId::from_seq(&S, n)).collect();
        assert_eq!(ids.len(), 10_000);
        for n in [0, 1, 2, u64::MAX, 1 << 40] {
            assert_eq!(AssignmentId::from_seq(&S, n).seq(&S), n);
        }
        assert_ne!(
            AssignmentId::from_seq(&S, 1),
            AssignmentId::from_seq(&Secret::new(1, 3), 1)
        );
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "asg_",
            "asg_0000000000000",
            "asg_zzzzzzzzzzzzz",
            "asg_000000000000i",
            "xyz_0000000000001",
        ] {
            if bad == "asg_0000000000000" {
                assert!(bad.parse::<AssignmentId>().is_ok());
            } else {
                assert_eq!(bad.parse::<AssignmentId>(), Err(BadAssignmentId), "{bad}");
            }
        }
    }

    proptest! {
        #[test]
        fn id_text_round_trips(seq: u64) {
            let id = AssignmentId::from_seq(&S, seq);
            let text = id.to_string();
            prop_assert_eq!(text.len(), 17);
            prop_assert_eq!(text.parse::<AssignmentId>(), Ok(id));
            prop_assert_eq!(id.seq(&S), seq);
        }
    }
}
