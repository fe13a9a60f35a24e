//! The reservation book: per agent, the booked intervals in start order, so
//! that a conflict check (travel buffer included) and the number of tours
//! on a UTC day (which the rules need) are binary searches.
//!
//! An agent's tours are sorted blocks of a few dozen ([`tours`]) rather
//! than an ordered map: the check runs for every streamed slot, and binary
//! searches over contiguous arrays are several times cheaper than a B-tree
//! descent, while a booking shifts only the later tours of its block.
//!
//! The book holds bookings whose write is still in flight as well as durable
//! ones: a slot taken by an unfinished booking is not free.

mod tours;

use crate::core::ids::AssignmentId;
use crate::core::time::{Timestamp, Window, MS_PER_DAY};
use compact_str::CompactString;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tours::{Tour, Tours};

/// A start time offered for one agent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Slot {
    pub start: Timestamp,
    pub agent: CompactString,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssignmentStatus {
    Confirmed,
    Cancelled,
}

/// An agent assigned to lead a tour.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: AssignmentId,
    pub status: AssignmentStatus,
    pub agent_id: CompactString,
    pub customer_id: CompactString,
    pub property_id: Option<CompactString>,
    pub zipcode: CompactString,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Assignment {
    pub fn interval(&self) -> Window {
        Window::new(self.start, self.end)
    }
}

/// Every agent's booked intervals.
#[derive(Debug, Clone)]
pub struct Book {
    /// Hashed with FxHash: a lookup per streamed slot must be cheap; agent
    /// ids come from the roster, not from clients, and the order is never
    /// iterated into an output.
    agents: HashMap<CompactString, Tours, FxBuildHasher>,
    buffer_ms: u64,
    len: usize,
}

impl Book {
    pub fn new(travel_buffer_ms: u64) -> Self {
        Book {
            agents: HashMap::default(),
            buffer_ms: travel_buffer_ms,
            len: 0,
        }
    }

    /// A book holding `bookings` (in any order), or the first agent and
    /// assignment found to overlap another booking of that agent.
    pub fn from_bookings(
        travel_buffer_ms: u64,
        mut bookings: Vec<(CompactString, Window, AssignmentId)>,
    ) -> Result<Self, (CompactString, AssignmentId)> {
        bookings.sort_unstable_by(|a, b| (&a.0, a.1.start).cmp(&(&b.0, b.1.start)));
        let mut book = Book::new(travel_buffer_ms);
        book.len = bookings.len();
        let mut rest = bookings.as_slice();
        while let Some(first) = rest.first() {
            let n = rest.iter().take_while(|b| b.0 == first.0).count();
            let (mine, others) = rest.split_at(n);
            rest = others;
            for pair in mine.windows(2) {
                if pair[0].1.end.plus_ms(travel_buffer_ms) > pair[1].1.start {
                    return Err((pair[1].0.clone(), pair[1].2));
                }
            }
            let tours: Vec<Tour> = mine
                .iter()
                .map(|(_, iv, id)| Tour {
                    start: iv.start,
                    end: iv.end,
                    id: *id,
                })
                .collect();
            book.agents
                .insert(first.0.clone(), Tours::from_sorted(&tours));
        }
        Ok(book)
    }

    /// Bookings held (in flight and durable).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `agent` can take `interval` without overlapping a booking or
    /// cutting into the travel buffer around it.
    pub fn is_free(&self, agent: &str, interval: Window) -> bool {
        self.agents
            .get(agent)
            .is_none_or(|book| AgentReader::new(book).is_free(interval, self.buffer_ms))
    }

    /// A reader for a run of questions about a few agents.
    pub fn reader(&self) -> BookReader<'_> {
        BookReader {
            book: self,
            agents: Vec::new(),
        }
    }

    /// Books `interval` for `agent`. The caller checked [`Book::is_free`].
    pub fn insert(&mut self, agent: &str, interval: Window, id: AssignmentId) {
        debug_assert!(self.is_free(agent, interval), "double booking of {agent}");
        // Look up before inserting: most agents are known already.
        let book = match self.agents.get_mut(agent) {
            Some(book) => book,
            None => self.agents.entry(agent.into()).or_default(),
        };
        let tour = Tour {
            start: interval.start,
            end: interval.end,
            id,
        };
        book.insert(book.place_of(interval.start), tour);
        self.len += 1;
    }

    /// Frees the booking of `id` at `interval`, if it is there.
    pub fn remove(&mut self, agent: &str, interval: Window, id: AssignmentId) -> bool {
        let Some(book) = self.agents.get_mut(agent) else {
            return false;
        };
        if !book.remove(interval.start, id) {
            return false;
        }
        if book.is_empty() {
            self.agents.remove(agent);
        }
        self.len -= 1;
        true
    }

    /// Tours of `agent` starting on UTC `day`.
    pub fn tours_on(&self, agent: &str, day: u32) -> u32 {
        self.agents
            .get(agent)
            .map_or(0, |book| AgentReader::new(book).tours_on(day))
    }

    /// Every booking as (agent, interval, id), by agent then start, for checks.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Window, AssignmentId)> + '_ {
        let mut agents: Vec<(&CompactString, &Tours)> = self.agents.iter().collect();
        agents.sort_unstable_by_key(|(agent, _)| *agent);
        agents.into_iter().flat_map(|(agent, tours)| {
            tours
                .iter()
                .map(move |t| (agent.as_str(), Window::new(t.start, t.end), t.id))
        })
    }
}

/// How many agents a [`BookReader`] remembers; past them, one more entry
/// is kept for whichever agent was asked about last. A delivery of slots
/// names a handful of agents.
const READER_AGENTS: usize = 8;

/// Answers a run of questions about a few agents, such as the conflict
/// checks of a delivery of slots or the day counts of a batch of
/// candidates: each agent is looked up once, and each of its searches
/// starts where the one before ended, so that the second and later
/// questions about an agent cost a comparison or two.
pub struct BookReader<'a> {
    book: &'a Book,
    /// Agents with bookings, by id.
    agents: Vec<(&'a str, AgentReader<'a>)>,
}

/// One agent's tours, the block its last search ended in, and the last
/// day counted (a batch asks about each agent's day once per candidate).
struct AgentReader<'a> {
    tours: &'a Tours,
    near: Option<usize>,
    day: Option<(u32, u32)>,
}

impl<'a> AgentReader<'a> {
    fn new(tours: &'a Tours) -> Self {
        AgentReader {
            tours,
            near: None,
            day: None,
        }
    }

    fn is_free(&mut self, interval: Window, buffer_ms: u64) -> bool {
        // Bookings of one agent are disjoint and sorted, so the last one that
        // starts before our end (plus buffer) is the only one that can reach
        // into us.
        let reach = interval.end.plus_ms(buffer_ms);
        let place = match self.near {
            Some(near) => self.tours.place_near(reach, near),
            None => self.tours.place_of(reach),
        };
        self.near = Some(place.block);
        match self.tours.before(place) {
            Some(before) => before.end.plus_ms(buffer_ms) <= interval.start,
            None => true,
        }
    }

    fn tours_on(&mut self, day: u32) -> u32 {
        if let Some((known, tours)) = self.day {
            if known == day {
                return tours;
            }
        }
        let day_start = Timestamp(u64::from(day) * MS_PER_DAY);
        let first = self.tours.place_of(day_start);
        let after = self.tours.place_of(day_start.plus_ms(MS_PER_DAY));
        let tours = self.tours.count_between(first, after) as u32;
        self.day = Some((day, tours));
        tours
    }
}

impl<'a> BookReader<'a> {
    /// As [`Book::is_free`].
    pub fn is_free(&mut self, agent: &str, interval: Window) -> bool {
        let buffer_ms = self.book.buffer_ms;
        self.agent(agent)
            .is_none_or(|tours| tours.is_free(interval, buffer_ms))
    }

    /// As [`Book::tours_on`].
    pub fn tours_on(&mut self, agent: &str, day: u32) -> u32 {
        self.agent(agent).map_or(0, |tours| tours.tours_on(day))
    }

    /// The agent's tours, or `None` if it has no booking.
    fn agent(&mut self, agent: &str) -> Option<&mut AgentReader<'a>> {
        let at = match self.agents.iter().position(|(id, _)| *id == agent) {
            Some(at) => at,
            None => {
                let (id, tours) = self.book.agents.get_key_value(agent)?;
                if self.agents.len() > READER_AGENTS {
                    self.agents.pop();
                }
                self.agents.push((id.as_str(), AgentReader::new(tours)));
                self.agents.len() - 1
            }
        };
        Some(&mut self.agents[at].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MS_PER_MINUTE;
    use proptest::prelude::*;

    fn w(start_min: u64, end_min: u64) -> Window {
        Window::new(
            Timestamp(start_min * MS_PER_MINUTE),
            Timestamp(end_min * MS_PER_MINUTE),
        )
    }

    #[test]
    fn travel_buffer_is_kept_on_both_sides() {
        let mut book = Book::new(15 * MS_PER_MINUTE);
        book.insert("a", w(600, 630), AssignmentId(1));
        assert!(
            !book.is_free("a", w(630, 660)),
            "right after, inside the buffer"
        );
        assert!(
            !book.is_free("a", w(570, 590)),
            "right before, inside the buffer"
        );
        assert!(book.is_free("a", w(645, 675)), "exactly the buffer after");
        assert!(book.is_free("a", w(555, 585)), "exactly the buffer before");
        assert!(book.is_free("b", w(600, 630)), "another agent");
        assert!(!book.is_free("a", w(500, 700)), "covering it");
    }

    #[test]
    fn remove_frees_and_counts_per_day() {
        let mut book = Book::new(0);
        book.insert("a", w(600, 630), AssignmentId(1));
        book.insert("a", w(700, 730), AssignmentId(2));
        assert_eq!(book.tours_on("a", 0), 2);
        assert!(!book.remove("a", w(600, 630), AssignmentId(9)), "wrong id");
        assert!(book.remove("a", w(600, 630), AssignmentId(1)));
        assert_eq!(book.tours_on("a", 0), 1);
        assert!(book.is_free("a", w(600, 630)));
        assert_eq!(book.len(), 1);
        assert!(!book.is_empty());
        assert!(
            !book.remove("a", w(700, 730), AssignmentId(1)),
            "another's id"
        );
        assert!(
            !book.remove("a", w(630, 700), AssignmentId(2)),
            "another start"
        );
        assert!(book.remove("a", w(700, 730), AssignmentId(2)));
        assert!(book.is_empty());
        assert!(book.is_free("a", w(700, 730)));
    }

    proptest! {
        /// The binary searches agree with looking at every booking: the
        /// conflict check, and the tours per UTC day, as bookings come and go.
        #[test]
        fn book_matches_brute_force(
            buffer_min in 0u64..30,
            tries in proptest::collection::vec((0u64..4 * 1440, 1u64..240, 0u8..4), 1..240),
        ) {
            let buffer = buffer_min * MS_PER_MINUTE;
            let mut book = Book::new(buffer);
            let mut held: Vec<(Window, AssignmentId)> = Vec::new();
            for (i, (start, len, drop)) in tries.into_iter().enumerate() {
                // Mostly short tours, so that the agent holds several fence
                // strides of them.
                let len = if drop == 0 { len } else { 1 + len % 20 };
                let drop_one = drop == 1;
                let iv = w(start, start + len);
                let brute = held.iter().all(|(h, _)| {
                    h.end.plus_ms(buffer) <= iv.start || iv.end.plus_ms(buffer) <= h.start
                });
                prop_assert_eq!(book.is_free("a", iv), brute);
                if brute {
                    book.insert("a", iv, AssignmentId(i as u64));
                    held.push((iv, AssignmentId(i as u64)));
                }
                if drop_one && !held.is_empty() {
                    let (h, id) = held.remove(i % held.len());
                    prop_assert!(book.remove("a", h, id));
                }
                for day in 0..5 {
                    let brute = held.iter().filter(|(h, _)| h.start.utc_day() == day).count();
                    prop_assert_eq!(book.tours_on("a", day), brute as u32);
                }
                prop_assert_eq!(book.len(), held.len());
            }
        }

        /// A reader answers as the book does, whatever the order of the
        /// questions and however many agents they name (more than it
        /// remembers, and some with no booking).
        #[test]
        fn a_reader_answers_as_the_book_does(
            tours in proptest::collection::vec((0usize..14, 0u64..3 * 1440), 0..300),
            questions in proptest::collection::vec((0usize..14, 0u64..3 * 1440, any::<bool>()), 1..200),
        ) {
            let agents: Vec<String> = (0..14).map(|a| format!("ag-{a}")).collect();
            let mut book = Book::new(5 * MS_PER_MINUTE);
            for (i, (agent, start)) in tours.into_iter().enumerate() {
                let iv = w(start, start + 10);
                if book.is_free(&agents[agent], iv) {
                    book.insert(&agents[agent], iv, AssignmentId(i as u64));
                }
            }
            let mut reader = book.reader();
            for (agent, start, ask_day) in questions {
                let agent = &agents[agent];
                if ask_day {
                    let day = (start / 1440) as u32;
                    let plain = {
                        let all = book.iter().filter(|(a, iv, _)| *a == agent && iv.start.utc_day() == day);
                        all.count() as u32
                    };
                    prop_assert_eq!(reader.tours_on(agent, day), plain);
                    prop_assert_eq!(book.tours_on(agent, day), plain);
                } else {
                    let iv = w(start, start + 30);
                    prop_assert_eq!(reader.is_free(agent, iv), book.is_free(agent, iv));
                }
            }
        }
    }
}
