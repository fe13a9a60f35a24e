//! The reservation book: per agent, the booked intervals in start order, so
//! that a conflict check (travel buffer included) and the number of tours
//! on a UTC day (which the rules need) are binary searches.
//!
//! An agent's tours are a sorted vector rather than an ordered map: the
//! check runs for every streamed slot, and a binary search over one
//! contiguous array is several times cheaper than a B-tree descent. Beside
//! it, a fence holds every [`FENCE_STRIDE`]th start, so that a search first
//! narrows down within a few hot cache lines and then touches only a few
//! lines of the tours themselves; a busy agent's tours are tens of KB, and
//! each line of them a search touches is a likely cache miss. A booking
//! shifts the agent's later tours by one place. With the default
//! settings (a 365-day horizon, 30 days of retention, 8 tours a day) an
//! agent holds at most about 3,200 tours, a move of about 75 KB at worst;
//! settings that allow many more tours per agent make a busy agent's
//! bookings dearer, never wrong.
//!
//! The book holds bookings whose write is still in flight as well as durable
//! ones: a slot taken by an unfinished booking is not free.

use crate::core::ids::AssignmentId;
use crate::core::time::{Timestamp, Window, MS_PER_DAY};
use compact_str::CompactString;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

/// How many tours one fence post stands for: a search reads the fence,
/// then at most this many tours (6 cache lines).
const FENCE_STRIDE: usize = 16;

/// One agent's tours by start; they never overlap (buffer included).
#[derive(Default, Debug, Clone)]
struct AgentBook {
    tours: Vec<Tour>,
    /// `fence[k]` is `tours[k * FENCE_STRIDE].start`, for every such tour.
    fence: Vec<Timestamp>,
}

#[derive(Clone, Copy, Debug)]
struct Tour {
    start: Timestamp,
    end: Timestamp,
    id: AssignmentId,
}

impl AgentBook {
    fn new(tours: Vec<Tour>) -> Self {
        let mut book = AgentBook {
            tours,
            fence: Vec::new(),
        };
        book.refence(0);
        book
    }

    /// Where the first tour starting at or after `t` is (or would be).
    fn index_of(&self, t: Timestamp) -> usize {
        // Posts before `t`: the answer lies after the last of them and at
        // or before the next one.
        let posts = self.fence.partition_point(|&start| start < t);
        let Some(last_post) = posts.checked_sub(1) else {
            return 0;
        };
        let from = last_post * FENCE_STRIDE + 1;
        let to = (from + FENCE_STRIDE - 1).min(self.tours.len());
        from + self.tours[from..to].partition_point(|tour| tour.start < t)
    }

    /// [`AgentBook::index_of`], trying `near` and the place after it
    /// first: an agent's slots are checked in start order, and each lands on
    /// or just after the place of the one before.
    fn index_near(&self, t: Timestamp, near: usize) -> usize {
        let is_the_place = |i: usize| {
            i <= self.tours.len()
                && i.checked_sub(1).is_none_or(|b| self.tours[b].start < t)
                && self.tours.get(i).is_none_or(|tour| tour.start >= t)
        };
        match [near, near + 1].into_iter().find(|&i| is_the_place(i)) {
            Some(i) => i,
            None => self.index_of(t),
        }
    }

    fn insert(&mut self, at: usize, tour: Tour) {
        self.tours.insert(at, tour);
        self.refence(at);
    }

    fn remove(&mut self, at: usize) {
        self.tours.remove(at);
        self.refence(at);
    }

    /// Rebuilds the fence posts of the tours from index `changed` on.
    fn refence(&mut self, changed: usize) {
        self.fence.truncate(changed.div_ceil(FENCE_STRIDE));
        let next = self.fence.len() * FENCE_STRIDE;
        let posts = self.tours.get(next..).unwrap_or_default();
        self.fence
            .extend(posts.iter().step_by(FENCE_STRIDE).map(|tour| tour.start));
        debug_assert_eq!(self.fence.len(), self.tours.len().div_ceil(FENCE_STRIDE));
    }
}

/// Every agent's booked intervals.
#[derive(Debug, Clone)]
pub struct Book {
    /// Hashed with FxHash: a lookup per streamed slot must be cheap; agent
    /// ids come from the roster, not from clients, and the order is never
    /// iterated into an output.
    agents: HashMap<CompactString, AgentBook, FxBuildHasher>,
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
            let tours = mine
                .iter()
                .map(|(_, iv, id)| Tour {
                    start: iv.start,
                    end: iv.end,
                    id: *id,
                })
                .collect();
            book.agents.insert(first.0.clone(), AgentBook::new(tours));
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
            last: 0,
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
        let at = book.index_of(interval.start);
        let tour = Tour {
            start: interval.start,
            end: interval.end,
            id,
        };
        book.insert(at, tour);
        self.len += 1;
    }

    /// Frees the booking of `id` at `interval`, if it is there.
    pub fn remove(&mut self, agent: &str, interval: Window, id: AssignmentId) -> bool {
        let Some(book) = self.agents.get_mut(agent) else {
            return false;
        };
        let at = book.index_of(interval.start);
        match book.tours.get(at) {
            Some(tour) if tour.start == interval.start && tour.id == id => {}
            _ => return false,
        }
        book.remove(at);
        if book.tours.is_empty() {
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
        let mut agents: Vec<(&CompactString, &AgentBook)> = self.agents.iter().collect();
        agents.sort_unstable_by_key(|(agent, _)| *agent);
        agents.into_iter().flat_map(|(agent, b)| {
            b.tours
                .iter()
                .map(move |t| (agent.as_str(), Window::new(t.start, t.end), t.id))
        })
    }
}

/// How many agents a [`BookReader`] remembers; past them, one more entry
/// is kept for whichever agent was asked about last. A delivery of slots
/// names a handful of agents. The bound is the reader's own, not the
/// service's: a reader lives for one delivery or one batch.
const READER_AGENTS: usize = 8;

/// Answers a run of questions about a few agents, such as the conflict
/// checks of a delivery of slots or the day counts of a batch of
/// candidates. The first [`READER_AGENTS`] agents asked about are
/// remembered (with or without bookings): each is looked up once, and each
/// of its conflict checks first tries the place where the one before
/// ended, so that the second and later checks of an agent cost a comparison
/// or two. Any later agent takes one spare entry, which the next such agent
/// replaces: a delivery that names more agents still gets the right
/// answers, at the price of a lookup and a full search for most of them.
pub struct BookReader<'a> {
    book: &'a Book,
    /// Agents asked about, by id, and their tours if they have any.
    agents: Vec<(CompactString, Option<AgentReader<'a>>)>,
    /// Where in `agents` the last question's agent is.
    last: usize,
}

/// One agent's tours, where its last conflict check's search ended, and
/// the last day counted (a batch asks about each agent's day once per
/// candidate).
struct AgentReader<'a> {
    book: &'a AgentBook,
    near: Option<usize>,
    day: Option<(u32, u32)>,
}

impl<'a> AgentReader<'a> {
    fn new(book: &'a AgentBook) -> Self {
        AgentReader {
            book,
            near: None,
            day: None,
        }
    }

    /// Where the first tour starting at or after `t` is.
    fn index_of(&mut self, t: Timestamp) -> usize {
        let at = match self.near {
            Some(near) => self.book.index_near(t, near),
            None => self.book.index_of(t),
        };
        self.near = Some(at);
        at
    }

    fn is_free(&mut self, interval: Window, buffer_ms: u64) -> bool {
        // Bookings of one agent are disjoint and sorted, so the last one that
        // starts before our end (plus buffer) is the only one that can reach
        // into us.
        let reach = self.index_of(interval.end.plus_ms(buffer_ms));
        match reach.checked_sub(1).map(|i| &self.book.tours[i]) {
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
        let first = self.book.index_of(day_start);
        let after = self.book.index_of(day_start.plus_ms(MS_PER_DAY));
        let tours = (after - first) as u32;
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
        let at = match self.position(agent) {
            Some(at) => at,
            None => {
                let tours = self.book.agents.get(agent).map(AgentReader::new);
                if self.agents.len() > READER_AGENTS {
                    self.agents.pop();
                }
                self.agents.push((agent.into(), tours));
                self.agents.len() - 1
            }
        };
        self.last = at;
        self.agents[at].1.as_mut()
    }

    /// Where `agent` is among the agents remembered. A delivery names its
    /// agents in the same order at every start time, and a batch its
    /// candidates, so the one after the last asked about is tried first:
    /// one comparison of ids per slot rather than a scan.
    fn position(&self, agent: &str) -> Option<usize> {
        let next = (self.last + 1) % self.agents.len().max(1);
        match self.agents.get(next) {
            Some((id, _)) if id == agent => Some(next),
            _ => self.agents.iter().position(|(id, _)| id == agent),
        }
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

    /// A delivery names its agents in turn at every start time, and the
    /// reader tries the agent after the last one first: its answers are
    /// the book's, for a few agents and for more than it remembers.
    #[test]
    fn a_reader_asked_in_turns_answers_as_the_book_does() {
        let agents: Vec<String> = (0..12).map(|a| format!("ag-{a}")).collect();
        let mut book = Book::new(15 * MS_PER_MINUTE);
        for (i, agent) in agents.iter().enumerate() {
            // Each agent busy at its own quarter hour, so that answering
            // about the wrong agent shows.
            let start = 600 + 15 * i as u64;
            book.insert(agent, w(start, start + 30), AssignmentId(i as u64));
        }
        for named in [3, agents.len()] {
            let mut reader = book.reader();
            for start in (480..900).step_by(15) {
                for agent in &agents[..named] {
                    let iv = w(start, start + 30);
                    let free = book.is_free(agent, iv);
                    assert_eq!(reader.is_free(agent, iv), free, "{agent} at {start}");
                    assert_eq!(reader.tours_on(agent, 0), 1, "{agent}");
                }
            }
        }
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
                prop_assert!(reader.agents.len() <= READER_AGENTS + 1);
            }
        }

        /// The fenced search finds what a search of every tour finds, as
        /// tours come and go anywhere.
        #[test]
        fn fenced_search_matches_a_plain_one(
            starts in proptest::collection::btree_set(0u64..10_000, 0..100),
            probes in proptest::collection::vec(0u64..10_100, 1..50),
            changes in proptest::collection::vec((any::<proptest::sample::Index>(), 0u64..10_000, any::<bool>()), 0..40),
        ) {
            let tour = |start: u64| Tour { start: Timestamp(start), end: Timestamp(start + 1), id: AssignmentId(start) };
            let mut book = AgentBook::new(starts.iter().map(|&s| tour(s)).collect());
            // After each change, an insert at its place or a removal.
            for change in changes.iter().map(Some).chain([None]) {
                prop_assert_eq!(book.fence.len(), book.tours.len().div_ceil(FENCE_STRIDE));
                for (k, post) in book.fence.iter().enumerate() {
                    prop_assert_eq!(*post, book.tours[k * FENCE_STRIDE].start);
                }
                for &t in &probes {
                    let plain = book.tours.partition_point(|tour| tour.start < Timestamp(t));
                    prop_assert_eq!(book.index_of(Timestamp(t)), plain);
                }
                match change {
                    Some((_, start, true)) => {
                        let at = book.index_of(Timestamp(*start));
                        book.insert(at, tour(*start));
                    }
                    Some((index, _, false)) if !book.tours.is_empty() => {
                        book.remove(index.index(book.tours.len()));
                    }
                    _ => {}
                }
            }
        }
    }
}
