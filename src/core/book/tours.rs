//! One agent's tours in start order, kept in blocks of at most
//! [`BLOCK_TOURS`], with each block's first start in a dense array beside
//! them.
//!
//! A search reads the array of first starts (a few hot cache lines) and then
//! one block; a booking shifts the later tours of its block only, and a
//! full block splits in two. A single sorted vector would make every
//! booking shift all of the agent's later tours (tens of KB for a busy
//! agent) and every search touch a cache line per halving of all of them.

use crate::core::ids::AssignmentId;
use crate::core::time::Timestamp;

/// The most tours a block holds; a full block splits in two halves before
/// it takes another.
pub const BLOCK_TOURS: usize = 32;

/// One booked interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tour {
    pub start: Timestamp,
    pub end: Timestamp,
    pub id: AssignmentId,
}

/// A place between tours: before the `at`th tour of block `block` (or
/// after the block's last one when `at` is its length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub block: usize,
    pub at: usize,
}

/// One agent's tours by start; the book keeps them from overlapping.
#[derive(Default, Debug, Clone)]
pub struct Tours {
    /// `firsts[k]` is `blocks[k][0].start`.
    firsts: Vec<Timestamp>,
    /// Non-empty blocks in start order.
    blocks: Vec<Vec<Tour>>,
}

impl Tours {
    /// Tours already in start order.
    pub fn from_sorted(tours: &[Tour]) -> Self {
        debug_assert!(tours.is_sorted_by_key(|tour| tour.start));
        let blocks: Vec<Vec<Tour>> = tours
            .chunks(BLOCK_TOURS / 2)
            .map(<[Tour]>::to_vec)
            .collect();
        let firsts = blocks.iter().map(|block| block[0].start).collect();
        Tours { firsts, blocks }
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tour> + '_ {
        self.blocks.iter().flatten()
    }

    /// The place of the first tour starting at or after `t`.
    pub fn place_of(&self, t: Timestamp) -> Place {
        // The block to search is the last one starting before `t`.
        match self
            .firsts
            .partition_point(|&first| first < t)
            .checked_sub(1)
        {
            Some(block) => self.place_in(block, t),
            None => Place { block: 0, at: 0 },
        }
    }

    /// [`Tours::place_of`], searching block `near` alone when `t` falls in
    /// it: an agent's slots are checked in start order, and most of them
    /// fall in the block of the one before.
    pub fn place_near(&self, t: Timestamp, near: usize) -> Place {
        let starts_before = self.firsts.get(near).is_some_and(|&first| first < t);
        let next_does_not = self.firsts.get(near + 1).is_none_or(|&next| next >= t);
        if starts_before && next_does_not {
            self.place_in(near, t)
        } else {
            self.place_of(t)
        }
    }

    fn place_in(&self, block: usize, t: Timestamp) -> Place {
        let at = self.blocks[block].partition_point(|tour| tour.start < t);
        Place { block, at }
    }

    /// The tour just before `place`.
    pub fn before(&self, place: Place) -> Option<&Tour> {
        match place.at.checked_sub(1) {
            Some(at) => self.blocks.get(place.block)?.get(at),
            None => self.blocks.get(place.block.checked_sub(1)?)?.last(),
        }
    }

    /// How many tours lie between places `from` and `to` (`from` first).
    pub fn count_between(&self, from: Place, to: Place) -> usize {
        if from.block == to.block {
            return to.at - from.at;
        }
        let rest_of_first = self.blocks[from.block].len() - from.at;
        let whole: usize = self.blocks[from.block + 1..to.block]
            .iter()
            .map(Vec::len)
            .sum();
        rest_of_first + whole + to.at
    }

    /// Puts `tour` at `place`, which [`Tours::place_of`] gave for its start.
    pub fn insert(&mut self, place: Place, tour: Tour) {
        if self.blocks.is_empty() {
            self.firsts.push(tour.start);
            self.blocks.push(vec![tour]);
            return;
        }
        let Place { mut block, mut at } = place;
        if self.blocks[block].len() == BLOCK_TOURS {
            let half = BLOCK_TOURS / 2;
            let second = self.blocks[block].split_off(half);
            self.firsts.insert(block + 1, second[0].start);
            self.blocks.insert(block + 1, second);
            if at > half {
                block += 1;
                at -= half;
            }
        }
        self.blocks[block].insert(at, tour);
        if at == 0 {
            self.firsts[block] = tour.start;
        }
        self.debug_check();
    }

    /// Takes away the tour starting at `start` if its id is `id`.
    pub fn remove(&mut self, start: Timestamp, id: AssignmentId) -> bool {
        let mut place = self.place_of(start);
        if self
            .blocks
            .get(place.block)
            .is_some_and(|b| place.at == b.len())
        {
            place = Place {
                block: place.block + 1,
                at: 0,
            };
        }
        let Some(block) = self.blocks.get_mut(place.block) else {
            return false;
        };
        match block.get(place.at) {
            Some(tour) if tour.start == start && tour.id == id => {}
            _ => return false,
        }
        block.remove(place.at);
        if block.is_empty() {
            self.blocks.remove(place.block);
            self.firsts.remove(place.block);
        } else if place.at == 0 {
            self.firsts[place.block] = block[0].start;
        }
        self.debug_check();
        true
    }

    fn debug_check(&self) {
        debug_assert_eq!(self.firsts.len(), self.blocks.len());
        debug_assert!(self
            .blocks
            .iter()
            .zip(&self.firsts)
            .all(|(block, &first)| !block.is_empty()
                && block.len() <= BLOCK_TOURS
                && block[0].start == first));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tour(start: u64) -> Tour {
        Tour {
            start: Timestamp(start),
            end: Timestamp(start + 1),
            id: AssignmentId(start),
        }
    }

    /// The tours in a plain sorted vector, and the tours in blocks, answer
    /// every search alike.
    fn check_against(tours: &Tours, plain: &[Tour], probes: &[u64]) -> Result<(), TestCaseError> {
        prop_assert_eq!(tours.iter().copied().collect::<Vec<_>>(), plain.to_vec());
        prop_assert!(tours
            .blocks
            .iter()
            .all(|b| !b.is_empty() && b.len() <= BLOCK_TOURS));
        for (block, &first) in tours.blocks.iter().zip(&tours.firsts) {
            prop_assert_eq!(block[0].start, first);
        }
        let start = Place { block: 0, at: 0 };
        for &t in probes {
            let t = Timestamp(t);
            let rank = plain.partition_point(|tour| tour.start < t);
            let place = tours.place_of(t);
            prop_assert_eq!(tours.count_between(start, place), rank);
            prop_assert_eq!(tours.before(place), rank.checked_sub(1).map(|i| &plain[i]));
            for near in 0..tours.blocks.len() + 1 {
                prop_assert_eq!(tours.place_near(t, near), place);
            }
        }
        Ok(())
    }

    proptest! {
        /// Inserts and removals in any order keep the blocks sorted, full
        /// enough and searchable, with splits and emptied blocks on the way.
        #[test]
        fn blocks_answer_as_one_sorted_vector(
            steps in proptest::collection::vec((0u64..2_000, any::<bool>()), 1..400),
            probes in proptest::collection::vec(0u64..2_100, 1..20),
        ) {
            let mut tours = Tours::default();
            let mut plain: Vec<Tour> = Vec::new();
            for (start, insert) in steps {
                let t = tour(start);
                let held = plain.binary_search_by_key(&t.start, |x| x.start);
                match (insert, held) {
                    (true, Err(at)) => {
                        tours.insert(tours.place_of(t.start), t);
                        plain.insert(at, t);
                    }
                    (false, Ok(at)) => {
                        prop_assert!(tours.remove(t.start, t.id));
                        plain.remove(at);
                    }
                    (false, Err(_)) => prop_assert!(!tours.remove(t.start, t.id)),
                    (true, Ok(_)) => prop_assert!(!tours.remove(t.start, AssignmentId(u64::MAX))),
                }
            }
            check_against(&tours, &plain, &probes)?;
            let rebuilt = Tours::from_sorted(&plain);
            check_against(&rebuilt, &plain, &probes)?;
        }
    }

    #[test]
    fn a_full_block_splits_and_an_empty_one_goes() {
        let mut tours = Tours::default();
        for start in 0..BLOCK_TOURS as u64 + 1 {
            tours.insert(tours.place_of(Timestamp(start)), tour(start));
        }
        assert_eq!(tours.blocks.len(), 2);
        for start in 0..BLOCK_TOURS as u64 / 2 {
            assert!(tours.remove(Timestamp(start), AssignmentId(start)));
        }
        assert_eq!(tours.blocks.len(), 1);
        assert_eq!(tours.firsts, vec![Timestamp(BLOCK_TOURS as u64 / 2)]);
    }
}
