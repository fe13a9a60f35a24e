//! Sharding by zipcode: a consistent-hash ring with virtual nodes. Each
//! shard owns `vnodes` points on a 64-bit circle; a zipcode belongs to the
//! shard of the first point at or after its hash. Adding a shard moves only
//! the zipcodes that now fall on its points, about 1/(n+1) of them.
//!
//! The hash is [`stable_hash64`], fixed across builds and Rust versions, so
//! a zipcode lands on the same shard in every process and every replay.

use crate::core::ids::stable_hash64;

#[derive(Debug, Clone)]
pub struct Ring {
    /// (point, shard), sorted by point.
    points: Vec<(u64, u32)>,
}

impl Ring {
    pub fn new(shards: u32, vnodes: u32) -> Self {
        assert!(shards > 0 && vnodes > 0, "a ring needs at least one point");
        let mut points: Vec<(u64, u32)> = (0..shards)
            .flat_map(|shard| (0..vnodes).map(move |v| (point(shard, v), shard)))
            .collect();
        // Ties between points are broken by shard so the order is total.
        points.sort_unstable();
        Ring { points }
    }

    /// The shard that owns `zipcode`.
    pub fn shard_of(&self, zipcode: &str) -> u32 {
        let h = stable_hash64(zipcode.as_bytes());
        let i = self.points.partition_point(|&(p, _)| p < h);
        self.points.get(i).unwrap_or(&self.points[0]).1
    }
}

fn point(shard: u32, vnode: u32) -> u64 {
    let mut bytes = [0u8; 13];
    bytes[..5].copy_from_slice(b"vnode");
    bytes[5..9].copy_from_slice(&shard.to_le_bytes());
    bytes[9..].copy_from_slice(&vnode.to_le_bytes());
    stable_hash64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zipcodes() -> impl Iterator<Item = String> {
        (0..100_000).step_by(7).map(|z| format!("{z:05}"))
    }

    #[test]
    fn placement_is_pinned() {
        // If this changes, every deployed shard assignment moves.
        let ring = Ring::new(8, 64);
        let placed: Vec<u32> = ["94107", "94103", "10001", "60601", "00000"]
            .iter()
            .map(|z| ring.shard_of(z))
            .collect();
        assert_eq!(placed, PINNED_PLACEMENT);
    }

    const PINNED_PLACEMENT: [u32; 5] = [2, 0, 0, 3, 2];

    #[test]
    fn spreads_zipcodes_evenly_enough() {
        let ring = Ring::new(8, 64);
        let mut counts = [0u32; 8];
        let mut total = 0;
        for z in zipcodes() {
            counts[ring.shard_of(&z) as usize] += 1;
            total += 1;
        }
        let fair = total / 8;
        for c in counts {
            assert!(c > fair / 2 && c < fair * 2, "{counts:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Adding a shard moves about 1/(n+1) of the zipcodes, and only to it.
        #[test]
        fn adding_a_shard_moves_about_one_in_n_plus_one(n in 1u32..16, vnodes in 32u32..160) {
            let before = Ring::new(n, vnodes);
            let after = Ring::new(n + 1, vnodes);
            let (mut moved, mut total) = (0u32, 0u32);
            for z in zipcodes() {
                let (a, b) = (before.shard_of(&z), after.shard_of(&z));
                if a != b {
                    prop_assert_eq!(b, n, "a zipcode moved between old shards");
                    moved += 1;
                }
                total += 1;
            }
            let share = f64::from(moved) / f64::from(total);
            let ideal = 1.0 / f64::from(n + 1);
            prop_assert!(share > ideal * 0.5 && share < ideal * 1.6,
                "moved {share:.3}, ideal {ideal:.3}");
        }
    }
}
