//! The rules engine: which candidate slots a request may take.
//!
//! A candidate is denied when the request has a language its agent does not
//! speak (an agent missing from the roster speaks none), when its agent
//! already leads `max_tours_per_day` confirmed tours on the UTC day of its
//! start, or when it starts earlier than the evaluation time plus
//! `min_lead_min`. The facts about bookings come with the candidates; the
//! engine keeps no state.

use crate::core::time::MS_PER_MINUTE;
use crate::core::{Candidate, RuleRequest, Timestamp};
use crate::embedded::roster::Roster;

/// The rules' limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// Most confirmed tours one agent leads in one UTC day.
    pub max_tours_per_day: u32,
    /// A tour starts at least this long after the rules evaluate it.
    pub min_lead_min: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            max_tours_per_day: 8,
            min_lead_min: 60,
        }
    }
}

/// The verdict on one candidate, with the reason for a denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allowed,
    Denied(Denial),
}

impl Verdict {
    pub fn is_allowed(self) -> bool {
        self == Verdict::Allowed
    }
}

/// Why a candidate was denied; when several rules deny it, the first in
/// this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum Denial {
    #[error("the agent is not in the roster")]
    UnknownAgent,
    #[error("the agent does not speak the requested language")]
    Language,
    #[error("the agent already leads the most tours allowed that day")]
    DailyLimit,
    #[error("the tour starts too soon")]
    TooSoon,
}

/// One allowed/denied flag per candidate, in order.
pub fn evaluate(
    roster: &Roster,
    config: &RulesConfig,
    now: Timestamp,
    request: &RuleRequest,
    candidates: &[Candidate],
) -> Vec<bool> {
    verdicts(roster, config, now, request, candidates)
        .map(Verdict::is_allowed)
        .collect()
}

/// One [`Verdict`] per candidate, in order.
pub fn explain(
    roster: &Roster,
    config: &RulesConfig,
    now: Timestamp,
    request: &RuleRequest,
    candidates: &[Candidate],
) -> Vec<Verdict> {
    verdicts(roster, config, now, request, candidates).collect()
}

fn verdicts<'a>(
    roster: &'a Roster,
    config: &'a RulesConfig,
    now: Timestamp,
    request: &'a RuleRequest,
    candidates: &'a [Candidate],
) -> impl Iterator<Item = Verdict> + 'a {
    let earliest_start = now.plus_ms(u64::from(config.min_lead_min) * MS_PER_MINUTE);
    candidates
        .iter()
        .map(move |candidate| judge(roster, config, earliest_start, request, candidate))
}

fn judge(
    roster: &Roster,
    config: &RulesConfig,
    earliest_start: Timestamp,
    request: &RuleRequest,
    candidate: &Candidate,
) -> Verdict {
    let Some(agent) = roster.agent(&candidate.slot.agent) else {
        return Verdict::Denied(Denial::UnknownAgent);
    };
    let denial = if request.language.as_ref().is_some_and(|l| !agent.speaks(l)) {
        Some(Denial::Language)
    } else if candidate.tours_that_day >= config.max_tours_per_day {
        Some(Denial::DailyLimit)
    } else if candidate.slot.start < earliest_start {
        Some(Denial::TooSoon)
    } else {
        None
    };
    denial.map_or(Verdict::Allowed, Verdict::Denied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Slot;
    use crate::embedded::roster::{Agent, Hours};

    const NOW: Timestamp = Timestamp(1_803_859_200_000);

    fn roster() -> Roster {
        Roster::from_agents(vec![Agent {
            id: "ag-1".into(),
            zipcodes: vec!["94107".into()],
            languages: vec!["en".into(), "es".into()],
            hours: Hours {
                start_min: 0,
                end_min: 1440,
            },
        }])
        .unwrap()
    }

    fn request(language: Option<&str>) -> RuleRequest {
        RuleRequest {
            zipcode: "94107".into(),
            language: language.map(Into::into),
            duration_min: 30,
        }
    }

    fn candidate(agent: &str, minutes_from_now: u64, tours_that_day: u32) -> Candidate {
        Candidate {
            slot: Slot {
                start: NOW.plus_ms(minutes_from_now * MS_PER_MINUTE),
                agent: agent.into(),
            },
            tours_that_day,
        }
    }

    fn explain_one(language: Option<&str>, candidate: Candidate) -> Verdict {
        let verdicts = explain(
            &roster(),
            &RulesConfig::default(),
            NOW,
            &request(language),
            &[candidate],
        );
        assert_eq!(verdicts.len(), 1);
        verdicts[0]
    }

    #[test]
    fn defaults_match_the_api() {
        let config = RulesConfig::default();
        assert_eq!((config.max_tours_per_day, config.min_lead_min), (8, 60));
    }

    #[test]
    fn language_must_be_spoken_when_asked_for() {
        assert_eq!(
            explain_one(Some("es"), candidate("ag-1", 120, 0)),
            Verdict::Allowed
        );
        assert_eq!(
            explain_one(None, candidate("ag-1", 120, 0)),
            Verdict::Allowed
        );
        assert_eq!(
            explain_one(Some("fr"), candidate("ag-1", 120, 0)),
            Verdict::Denied(Denial::Language)
        );
        assert_eq!(
            explain_one(None, candidate("ag-9", 120, 0)),
            Verdict::Denied(Denial::UnknownAgent)
        );
    }

    #[test]
    fn the_daily_limit_is_inclusive() {
        assert_eq!(
            explain_one(None, candidate("ag-1", 120, 7)),
            Verdict::Allowed
        );
        assert_eq!(
            explain_one(None, candidate("ag-1", 120, 8)),
            Verdict::Denied(Denial::DailyLimit)
        );
        assert_eq!(
            explain_one(None, candidate("ag-1", 120, 9)),
            Verdict::Denied(Denial::DailyLimit)
        );
    }

    #[test]
    fn the_lead_time_boundary_is_allowed() {
        assert_eq!(
            explain_one(None, candidate("ag-1", 60, 0)),
            Verdict::Allowed
        );
        let just_too_soon = Candidate {
            slot: Slot {
                start: NOW.plus_ms(60 * MS_PER_MINUTE - 1),
                agent: "ag-1".into(),
            },
            tours_that_day: 0,
        };
        assert_eq!(
            explain_one(None, just_too_soon),
            Verdict::Denied(Denial::TooSoon)
        );
    }

    #[test]
    fn evaluate_gives_one_flag_per_candidate_in_order() {
        let config = RulesConfig {
            max_tours_per_day: 2,
            min_lead_min: 0,
        };
        let candidates = [
            candidate("ag-1", 0, 1),
            candidate("ag-1", 0, 2),
            candidate("ag-2", 0, 0),
            candidate("ag-1", 30, 0),
        ];
        let flags = evaluate(&roster(), &config, NOW, &request(Some("en")), &candidates);
        assert_eq!(flags, [true, false, false, true]);
        assert!(evaluate(&roster(), &config, NOW, &request(None), &[]).is_empty());
    }
}
