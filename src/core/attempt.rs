//! One attempt at answering a request: the tickets waiting on it and the
//! phase it is in. An attempt gathers candidates from availability streams
//! in batches, asks the rules about each batch, books one slot and waits for
//! the booking to become durable.

use crate::core::book::{Book, Slot};
use crate::core::ids::{AssignmentId, AttemptId, CallId, Ticket};
use crate::core::io::Candidate;
use crate::core::record::{KeyEntry, Record};
use crate::core::request::{DispatchRequest, RawRequest};
use crate::core::time::{Timestamp, Window};

#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: AttemptId,
    pub raw: RawRequest,
    /// `None` only for an attempt that is writing a remembered 422.
    pub request: Option<DispatchRequest>,
    pub key: Option<KeyEntry>,
    pub shard: u32,
    /// Tickets waiting for this attempt's answer, in arrival order.
    pub tickets: Vec<Ticket>,
    /// The ticket that started the attempt; every other one gets its answer
    /// as a replay.
    pub original: Ticket,
    /// Tickets with this key that arrived after every ticket of this attempt
    /// had gone while its write was in flight: they wait for the undo, then
    /// run as a new attempt.
    pub rerun: Vec<Ticket>,
    pub phase: Phase,
}

#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting for room in the shard's full queue, until `until`.
    Waiting {
        until: Timestamp,
    },
    Queued,
    /// Reading an availability stream.
    Fetching(Fetch),
    /// Waiting for the rules' verdicts on a batch.
    Checking {
        call: CallId,
        batch: Batch,
    },
    /// The outcome (a booking or a remembered answer) is being made durable.
    Writing {
        seq: u64,
        record: Record,
    },
    /// Every ticket left while writing; the undo of `booked` (and of the
    /// key) is being made durable.
    Undoing {
        seq: u64,
        booked: Option<AssignmentId>,
    },
}

impl Phase {
    /// The outbound call this phase waits on.
    pub fn call(&self) -> Option<CallId> {
        match self {
            Phase::Fetching(f) => Some(f.call),
            Phase::Checking { call, .. } => Some(*call),
            _ => None,
        }
    }
}

/// The slots gathered for the rules, and where the stream stood.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Usable slots, in stream order, with the facts the rules get.
    pub candidates: Vec<Candidate>,
    /// The stream was cut short because the batch was full: more may follow.
    pub more: bool,
    /// The cursor this batch's stream started after.
    pub started_after: Option<Slot>,
    /// The last slot this batch consumed: the next stream starts after it.
    pub consumed: Option<Slot>,
}

/// Reading one availability stream.
#[derive(Debug, Clone)]
pub struct Fetch {
    pub call: CallId,
    /// Index of the next slot expected from the stream.
    pub next_index: u32,
    /// The stream said it ended after this many slots.
    pub ended_at: Option<u32>,
    pub batch: Batch,
}

/// What a batch of streamed slots did to a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Keep reading.
    More,
    /// The batch is full and the next slot starts later: stop the stream.
    BatchFull,
}

/// The numbers a fetch needs to judge slots.
pub struct SlotRules<'a> {
    pub book: &'a Book,
    pub window: Window,
    pub duration_ms: u64,
    pub max_candidates: usize,
}

impl Fetch {
    pub fn new(call: CallId, after: Option<Slot>) -> Self {
        Fetch {
            call,
            next_index: 0,
            ended_at: None,
            batch: Batch {
                started_after: after.clone(),
                consumed: after,
                ..Batch::default()
            },
        }
    }

    /// Takes the slots of one delivery that starts at stream index
    /// `first_index`. Slots already seen are skipped; a delivery that leaves
    /// a gap is ignored whole (returns `None`), as is a slot out of order or
    /// outside the window.
    pub fn take(
        &mut self,
        first_index: u32,
        slots: Vec<Slot>,
        rules: &SlotRules<'_>,
    ) -> Option<(Intake, TakeCounts)> {
        if first_index > self.next_index {
            return None;
        }
        let skip = (self.next_index - first_index) as usize;
        let mut counts = TakeCounts::default();
        // Room for what this delivery can add, not for a whole stream
        // delivered at once (a batch closes soon after `max_candidates`).
        let room = rules
            .max_candidates
            .saturating_sub(self.batch.candidates.len())
            + 1;
        self.batch
            .candidates
            .reserve(slots.len().saturating_sub(skip).min(room));
        let mut reader = rules.book.reader();
        for slot in slots.into_iter().skip(skip) {
            self.next_index += 1;
            if self.batch_is_full_before(&slot, rules.max_candidates) {
                self.batch.more = true;
                return Some((Intake::BatchFull, counts));
            }
            let interval = Window::new(slot.start, slot.start.plus_ms(rules.duration_ms));
            let in_order = self.batch.consumed.as_ref().is_none_or(|c| *c < slot);
            if !in_order || !rules.window.contains(&interval) {
                counts.malformed += 1;
                continue;
            }
            self.batch.consumed = Some(slot.clone());
            if reader.is_free(&slot.agent, interval) {
                self.batch.candidates.push(Candidate {
                    slot,
                    tours_that_day: 0,
                });
            } else {
                counts.conflicting += 1;
            }
        }
        Some((Intake::More, counts))
    }

    /// Whether the stream has delivered every slot it said it had.
    pub fn is_complete(&self) -> bool {
        self.ended_at.is_some_and(|n| self.next_index >= n)
    }

    fn batch_is_full_before(&self, next: &Slot, max: usize) -> bool {
        // A start time is never split between batches.
        self.batch.candidates.len() >= max
            && self
                .batch
                .candidates
                .last()
                .is_some_and(|c| c.slot.start < next.start)
    }
}

/// Slots a delivery dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakeCounts {
    pub conflicting: u64,
    pub malformed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MS_PER_MINUTE;

    fn at(min: u64) -> Timestamp {
        Timestamp(min * MS_PER_MINUTE)
    }

    /// Slots at these start minutes, each with its own agent.
    fn slots(starts: &[u64]) -> Vec<Slot> {
        starts
            .iter()
            .enumerate()
            .map(|(i, &m)| Slot {
                start: at(m),
                agent: format!("ag-{i}").into(),
            })
            .collect()
    }

    fn take(starts: &[u64], max_candidates: usize) -> (Fetch, Intake) {
        let book = Book::new(0);
        let rules = SlotRules {
            book: &book,
            window: Window::new(at(0), at(600)),
            duration_ms: 30 * MS_PER_MINUTE,
            max_candidates,
        };
        let mut fetch = Fetch::new(CallId(1), None);
        let (intake, _) = fetch.take(0, slots(starts), &rules).expect("no gap");
        (fetch, intake)
    }

    fn starts(f: &Fetch) -> Vec<u64> {
        let candidates = &f.batch.candidates;
        candidates
            .iter()
            .map(|c| c.slot.start.as_millis() / MS_PER_MINUTE)
            .collect()
    }

    #[test]
    fn a_batch_closes_once_full_at_the_next_start_time_never_within_one() {
        let (f, intake) = take(&[0, 0, 15, 15, 15, 30, 45], 3);
        assert_eq!(intake, Intake::BatchFull);
        assert_eq!(starts(&f), [0, 0, 15, 15, 15], "the 15s stay together");
        assert!(f.batch.more);
        assert_eq!(f.batch.consumed.map(|s| s.start), Some(at(15)));
    }

    #[test]
    fn a_batch_short_of_full_takes_the_whole_stream() {
        let (f, intake) = take(&[0, 15, 30], 4);
        assert_eq!(intake, Intake::More);
        assert_eq!(starts(&f), [0, 15, 30]);
        assert!(!f.batch.more);
    }

    #[test]
    fn slots_out_of_order_or_out_of_the_window_are_dropped_and_the_rest_kept() {
        // 700 ends after the window; 5 comes after 15.
        let (f, intake) = take(&[0, 15, 5, 700, 30], 10);
        assert_eq!(intake, Intake::More);
        assert_eq!(starts(&f), [0, 15, 30]);
        assert_eq!(f.next_index, 5);
    }
}
