//! Slot generation: the candidate start times the embedded availability
//! service streams for a zipcode, a window and a duration.
//!
//! A slot is a start time on the `slot_step_min` grid (aligned to the UTC
//! hour, hence to UTC midnight) and an agent covering the zipcode, such that
//! `[start, start + duration)` lies inside both the agent's hours and the
//! window. Slots come in `(start, agent id)` order, lazily: the iterator walks
//! the grid and, at each start time, the zipcode's agents in id order, so a
//! long window costs nothing until it is read. The service knows nothing of
//! bookings.

use crate::core::time::{MS_PER_DAY, MS_PER_MINUTE};
use crate::core::{Slot, Timestamp, Window};
use crate::embedded::roster::{Agent, Hours, Roster};

/// How the grid of start times is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvailabilityConfig {
    /// Minutes between two start times; divides 60.
    pub slot_step_min: u32,
}

impl Default for AvailabilityConfig {
    fn default() -> Self {
        AvailabilityConfig { slot_step_min: 15 }
    }
}

/// An availability setting out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AvailabilityConfigError {
    #[error("the slot step must divide 60 minutes (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60), got {0}")]
    StepDoesNotDivideHour(u32),
}

impl AvailabilityConfig {
    pub fn new(slot_step_min: u32) -> Result<Self, AvailabilityConfigError> {
        let config = AvailabilityConfig { slot_step_min };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), AvailabilityConfigError> {
        match self.slot_step_min {
            step if step > 0 && 60 % step == 0 => Ok(()),
            step => Err(AvailabilityConfigError::StepDoesNotDivideHour(step)),
        }
    }
}

impl Hours {
    /// Whether `[start, start + duration_ms)` lies inside these hours. Hours
    /// repeat every UTC day; only whole-day hours let a tour cross midnight.
    pub fn covers(&self, start: Timestamp, duration_ms: u64) -> bool {
        if self.is_whole_day() {
            return true;
        }
        let offset = start.as_millis() % MS_PER_DAY;
        offset >= u64::from(self.start_min) * MS_PER_MINUTE
            && offset + duration_ms <= u64::from(self.end_min) * MS_PER_MINUTE
    }
}

/// The slots for `zipcode` in `window` lasting `duration_min`, in
/// `(start, agent id)` order, strictly after `after` when given.
///
/// An invalid `config` (see [`AvailabilityConfig::validate`]) or a zero
/// duration yields no slots.
pub fn slots<'a>(
    roster: &'a Roster,
    config: &AvailabilityConfig,
    zipcode: &str,
    window: Window,
    duration_min: u32,
    after: Option<&Slot>,
) -> Slots<'a> {
    let agents = roster.agents();
    let members = roster.members(zipcode);
    let duration_ms = u64::from(duration_min) * MS_PER_MINUTE;
    let step_ms = u64::from(config.slot_step_min) * MS_PER_MINUTE;
    let mut slots = Slots {
        agents,
        members,
        duration_ms,
        step_ms,
        next_start: Some(Timestamp::MAX),
        last_start: Timestamp::ZERO,
        next_member: 0,
    };
    let last_start = window.end.as_millis().checked_sub(duration_ms);
    if config.validate().is_err() || duration_ms == 0 || members.is_empty() {
        return slots;
    }
    let Some(last_start) = last_start else {
        return slots;
    };
    slots.last_start = Timestamp(last_start);
    slots.next_start = grid_at_or_after(window.start, step_ms);
    if let (Some(after), Some(first)) = (after, slots.next_start) {
        if after.start >= first {
            match grid_at_or_after(after.start, step_ms) {
                Some(start) if start == after.start => {
                    slots.next_start = Some(start);
                    slots.next_member =
                        members.partition_point(|&i| agents[i].id.as_str() <= after.agent.as_str());
                }
                later => slots.next_start = later,
            }
        }
    }
    slots
}

/// The first grid point at or after `t`; `None` past the end of time.
fn grid_at_or_after(t: Timestamp, step_ms: u64) -> Option<Timestamp> {
    t.as_millis()
        .div_ceil(step_ms)
        .checked_mul(step_ms)
        .map(Timestamp)
}

/// The lazy stream of [`slots`].
#[derive(Clone, Debug)]
pub struct Slots<'a> {
    agents: &'a [Agent],
    /// Indices into `agents` of the zipcode's agents, in id order.
    members: &'a [usize],
    duration_ms: u64,
    step_ms: u64,
    /// The grid start being walked; `None` once past the end of time.
    next_start: Option<Timestamp>,
    /// The latest start whose tour still ends inside the window.
    last_start: Timestamp,
    /// Position in `members` at `next_start`.
    next_member: usize,
}

impl Iterator for Slots<'_> {
    type Item = Slot;

    fn next(&mut self) -> Option<Slot> {
        while let Some(start) = self.next_start.filter(|&s| s <= self.last_start) {
            while let Some(&i) = self.members.get(self.next_member) {
                self.next_member += 1;
                let agent = &self.agents[i];
                if agent.hours.covers(start, self.duration_ms) {
                    return Some(Slot {
                        start,
                        agent: agent.id.clone(),
                    });
                }
            }
            self.next_member = 0;
            self.next_start = start.as_millis().checked_add(self.step_ms).map(Timestamp);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::roster::Agent;
    use proptest::prelude::*;

    const MIN: u64 = MS_PER_MINUTE;
    /// 2027-03-01T00:00:00Z.
    const DAY0: u64 = 1_803_859_200_000;

    fn agent(id: &str, start_min: u32, end_min: u32) -> Agent {
        Agent {
            id: id.into(),
            zipcodes: vec!["94107".into()],
            languages: vec!["en".into()],
            hours: Hours { start_min, end_min },
        }
    }

    fn roster(agents: Vec<Agent>) -> Roster {
        Roster::from_agents(agents).unwrap()
    }

    fn at(minutes: u64) -> Timestamp {
        Timestamp(DAY0 + minutes * MIN)
    }

    fn window(start_min: u64, end_min: u64) -> Window {
        Window::new(at(start_min), at(end_min))
    }

    fn step(slot_step_min: u32) -> AvailabilityConfig {
        AvailabilityConfig::new(slot_step_min).unwrap()
    }

    /// `(minutes after DAY0, agent)` of every slot.
    fn list(
        roster: &Roster,
        config: AvailabilityConfig,
        window: Window,
        duration_min: u32,
        after: Option<&Slot>,
    ) -> Vec<(u64, String)> {
        slots(roster, &config, "94107", window, duration_min, after)
            .map(|s| ((s.start.as_millis() - DAY0) / MIN, s.agent.to_string()))
            .collect()
    }

    fn starts(list: &[(u64, String)]) -> Vec<u64> {
        list.iter().map(|(m, _)| *m).collect()
    }

    #[test]
    fn the_step_must_divide_an_hour() {
        for good in [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60] {
            assert!(AvailabilityConfig::new(good).is_ok(), "{good}");
        }
        for bad in [0, 7, 25, 45, 90, 120] {
            assert_eq!(
                AvailabilityConfig::new(bad),
                Err(AvailabilityConfigError::StepDoesNotDivideHour(bad))
            );
        }
        assert_eq!(AvailabilityConfig::default().slot_step_min, 15);
        let invalid = AvailabilityConfig { slot_step_min: 0 };
        let whole_day = roster(vec![agent("a", 0, 1440)]);
        assert!(list(&whole_day, invalid, window(0, 600), 30, None).is_empty());
    }

    #[test]
    fn starts_lie_on_the_hour_aligned_grid() {
        let whole_day = roster(vec![agent("a", 0, 1440)]);
        for step_min in [5u32, 10, 15, 20, 30, 60] {
            // The window starts 7 minutes and 1 ms past 09:00.
            let w = Window::new(at(9 * 60 + 7).plus_ms(1), at(11 * 60 + 7));
            let got = starts(&list(&whole_day, step(step_min), w, 30, None));
            let step_min = u64::from(step_min);
            let first = (9 * 60 + 8u64).div_ceil(step_min) * step_min;
            let want: Vec<u64> = (first..=10 * 60 + 37).step_by(step_min as usize).collect();
            assert_eq!(got, want, "step {step_min}");
            assert!(got.iter().all(|m| (m % 60) % step_min == 0));
        }
    }

    #[test]
    fn tours_stay_inside_the_hours() {
        let nine_to_five = roster(vec![agent("a", 9 * 60, 17 * 60)]);
        let got = starts(&list(&nine_to_five, step(30), window(0, 1440), 60, None));
        let want: Vec<u64> = (9 * 60..=16 * 60).step_by(30).collect();
        assert_eq!(got, want, "first at 09:00, last ending at 17:00");
    }

    #[test]
    fn an_end_of_24_00_reaches_midnight_but_not_past_it() {
        let evening = roster(vec![agent("a", 22 * 60, 1440)]);
        let got = starts(&list(&evening, step(30), window(0, 2 * 1440), 60, None));
        assert_eq!(
            got,
            [
                22 * 60,
                22 * 60 + 30,
                23 * 60,
                1440 + 22 * 60,
                1440 + 22 * 60 + 30,
                1440 + 23 * 60
            ]
        );
        let whole_day = roster(vec![agent("a", 0, 1440)]);
        let across = starts(&list(
            &whole_day,
            step(30),
            window(23 * 60, 25 * 60),
            60,
            None,
        ));
        assert_eq!(
            across,
            [23 * 60, 23 * 60 + 30, 24 * 60],
            "whole days join up"
        );
    }

    #[test]
    fn tours_stay_inside_the_window() {
        let whole_day = roster(vec![agent("a", 0, 1440)]);
        let got = starts(&list(&whole_day, step(15), window(600, 690), 30, None));
        assert_eq!(
            got,
            [600, 615, 630, 645, 660],
            "the last ends at the window's end"
        );
        let exact = list(&whole_day, step(15), window(600, 630), 30, None);
        assert_eq!(starts(&exact), [600]);
        assert!(list(&whole_day, step(15), window(600, 629), 30, None).is_empty());
        assert!(list(&whole_day, step(15), window(601, 631), 30, None).is_empty());
    }

    #[test]
    fn multi_day_windows_repeat_the_hours_each_day() {
        let morning = roster(vec![agent("a", 9 * 60, 10 * 60)]);
        let got = starts(&list(&morning, step(30), window(0, 14 * 1440), 30, None));
        let want: Vec<u64> = (0..14)
            .flat_map(|d| [d * 1440 + 540, d * 1440 + 570])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn ordered_by_start_then_agent_id() {
        let team = roster(vec![
            agent("c", 9 * 60, 12 * 60),
            agent("a", 10 * 60, 12 * 60),
            agent("b", 9 * 60, 12 * 60),
        ]);
        let got = list(&team, step(30), window(9 * 60, 10 * 60 + 30), 30, None);
        let want = [(540, "b"), (540, "c"), (570, "b"), (570, "c")]
            .into_iter()
            .chain([(600, "a"), (600, "b"), (600, "c")]);
        assert_eq!(
            got,
            want.map(|(m, a)| (m, a.to_string())).collect::<Vec<_>>()
        );
    }

    #[test]
    fn other_zipcodes_and_zero_durations_give_nothing() {
        let whole_day = roster(vec![agent("a", 0, 1440)]);
        let config = step(15);
        let w = window(0, 1440);
        assert_eq!(slots(&whole_day, &config, "10001", w, 30, None).count(), 0);
        assert_eq!(slots(&whole_day, &config, "94107", w, 0, None).count(), 0);
        let end_of_time = Window::new(Timestamp(u64::MAX - 10 * MIN), Timestamp::MAX);
        assert_eq!(
            slots(&whole_day, &config, "94107", end_of_time, 5, None).count(),
            0
        );
    }

    #[test]
    fn after_resumes_between_agents_of_one_start() {
        let team = roster(vec![
            agent("a", 0, 1440),
            agent("b", 0, 1440),
            agent("c", 0, 1440),
        ]);
        let w = window(0, 60);
        let after = Slot {
            start: at(15),
            agent: "b".into(),
        };
        let got = list(&team, step(15), w, 30, Some(&after));
        let want = [(15, "c"), (30, "a"), (30, "b"), (30, "c")];
        assert_eq!(got, want.map(|(m, a)| (m, a.to_string())).to_vec());
        let unknown_agent = Slot {
            start: at(30),
            agent: "bb".into(),
        };
        assert_eq!(
            starts(&list(&team, step(15), w, 30, Some(&unknown_agent))),
            [30]
        );
        let off_grid = Slot {
            start: at(14),
            agent: "z".into(),
        };
        assert_eq!(
            starts(&list(&team, step(15), w, 30, Some(&off_grid))).len(),
            6
        );
        let before_window = Slot {
            start: at(0).minus_ms(MIN),
            agent: "a".into(),
        };
        assert_eq!(list(&team, step(15), w, 30, Some(&before_window)).len(), 9);
    }

    fn arb_agents() -> impl Strategy<Value = Vec<Agent>> {
        let hours = (0u32..1440).prop_flat_map(|s| (Just(s), s + 1..=1440));
        proptest::collection::vec(hours, 1..6).prop_map(|hours| {
            hours
                .into_iter()
                .enumerate()
                .map(|(i, (s, e))| agent(&format!("ag-{i}"), s, e))
                .collect()
        })
    }

    proptest! {
        /// The lazy walk agrees with checking every minute of the window.
        #[test]
        fn matches_brute_force(
            agents in arb_agents(),
            step_min in prop::sample::select(vec![5u32, 10, 15, 20, 30, 60]),
            start_min in 0u64..3 * 1440,
            len_min in 0u64..2 * 1440,
            duration_min in 15u32..=240,
        ) {
            let team = roster(agents.clone());
            let w = window(start_min, start_min + len_min);
            let got = list(&team, step(step_min), w, duration_min, None);
            let mut want = Vec::new();
            for m in start_min..=start_min + len_min {
                for a in team.agents() {
                    let in_window = m + u64::from(duration_min) <= start_min + len_min;
                    let on_grid = m % u64::from(step_min) == 0;
                    let tod = (m % 1440) as u32;
                    let in_hours = a.hours.is_whole_day()
                        || (tod >= a.hours.start_min && tod + duration_min <= a.hours.end_min);
                    if in_window && on_grid && in_hours {
                        want.push((m, a.id.to_string()));
                    }
                }
            }
            prop_assert_eq!(got, want);
        }

        /// A stream resumed after any slot it gave goes on exactly where it
        /// left off.
        #[test]
        fn resuming_after_a_prefix_gives_the_rest(
            agents in arb_agents(),
            step_min in prop::sample::select(vec![5u32, 10, 15, 20, 30, 60]),
            start_min in 0u64..1440,
            len_min in 0u64..2 * 1440,
            duration_min in 15u32..=240,
            cut in any::<prop::sample::Index>(),
        ) {
            let team = roster(agents);
            let config = step(step_min);
            let w = window(start_min, start_min + len_min);
            let full: Vec<Slot> = slots(&team, &config, "94107", w, duration_min, None).collect();
            prop_assume!(!full.is_empty());
            let k = cut.index(full.len()) + 1;
            let prefix = &full[..k];
            let rest = slots(&team, &config, "94107", w, duration_min, prefix.last());
            let resumed: Vec<Slot> = prefix.iter().cloned().chain(rest).collect();
            prop_assert_eq!(resumed, full);
        }
    }
}
