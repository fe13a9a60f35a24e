//! The simulated world's availability service and rules engine: the drawn
//! roster and settings, served by the same pure logic as the server's
//! embedded services (`tour_dispatcher::embedded`).
//!
//! Faults (latency, errors, stalls, duplicates) are not here: the world
//! wraps these answers in them.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use tour_dispatcher::core::{Candidate, RuleRequest, Slot, Timestamp, Window};
use tour_dispatcher::embedded::{self, AvailabilityConfig, Hours, Roster, RulesConfig};

/// One agent of the roster, as a scenario draws and a trace stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: CompactString,
    pub zipcodes: Vec<CompactString>,
    pub languages: Vec<CompactString>,
    /// Working hours, minutes after UTC midnight, `[start, end)`.
    pub hours: (u32, u32),
}

/// The roster and the parameters of both services, answering through the
/// same pure embedded logic the server runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    pub agents: Vec<Agent>,
    pub slot_step_min: u32,
    pub max_tours_per_day: u32,
    pub min_lead_min: u32,
    #[serde(skip)]
    roster: Option<Roster>,
}

impl Services {
    pub fn new(
        agents: Vec<Agent>,
        slot_step_min: u32,
        max_tours_per_day: u32,
        min_lead_min: u32,
    ) -> Self {
        let mut s = Services {
            agents,
            slot_step_min,
            max_tours_per_day,
            min_lead_min,
            roster: None,
        };
        s.index();
        s
    }

    /// Builds the embedded roster (after deserializing). A drawn roster is
    /// always valid; an invalid one read from a trace serves no slots.
    pub fn index(&mut self) {
        let agents = self
            .agents
            .iter()
            .map(|a| embedded::Agent {
                id: a.id.clone(),
                zipcodes: a.zipcodes.clone(),
                languages: a.languages.clone(),
                hours: Hours {
                    start_min: a.hours.0,
                    end_min: a.hours.1,
                },
            })
            .collect();
        self.roster = Roster::from_agents(agents).ok();
    }

    fn roster(&self) -> Option<&Roster> {
        self.roster.as_ref()
    }

    /// Whether `agent` covers `zipcode`.
    pub fn covers(&self, agent: &str, zipcode: &str) -> bool {
        self.roster()
            .is_some_and(|r| r.agents_for(zipcode).any(|a| a.id == agent))
    }

    /// Every zipcode some agent covers, ascending.
    pub fn zipcodes(&self) -> Vec<CompactString> {
        self.roster()
            .map(|r| r.zipcodes().map(CompactString::from).collect())
            .unwrap_or_default()
    }

    /// The availability stream: every slot in (start, agent) order strictly
    /// after `after`, lazily.
    pub fn slots<'a>(
        &'a self,
        zipcode: &str,
        window: Window,
        duration_min: u32,
        after: Option<&Slot>,
    ) -> impl Iterator<Item = Slot> + 'a {
        let config = AvailabilityConfig {
            slot_step_min: self.slot_step_min,
        };
        self.roster()
            .map(|r| embedded::slots(r, &config, zipcode, window, duration_min, after))
            .into_iter()
            .flatten()
    }

    /// The rules' verdict on each candidate, evaluated at `now`.
    pub fn verdicts(
        &self,
        now: Timestamp,
        request: &RuleRequest,
        cands: &[Candidate],
    ) -> Vec<bool> {
        let config = RulesConfig {
            max_tours_per_day: self.max_tours_per_day,
            min_lead_min: self.min_lead_min,
        };
        match self.roster() {
            Some(r) => embedded::evaluate(r, &config, now, request, cands),
            None => vec![false; cands.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tour_dispatcher::core::time::{MS_PER_DAY, MS_PER_MINUTE};

    fn agent(id: &str, zips: &[&str], langs: &[&str], hours: (u32, u32)) -> Agent {
        Agent {
            id: id.into(),
            zipcodes: zips.iter().map(|&z| z.into()).collect(),
            languages: langs.iter().map(|&l| l.into()).collect(),
            hours,
        }
    }

    fn services() -> Services {
        Services::new(
            vec![
                agent("b", &["11111"], &["en"], (9 * 60, 10 * 60)),
                agent("a", &["11111", "22222"], &["es"], (9 * 60, 11 * 60)),
            ],
            15,
            1,
            60,
        )
    }

    const DAY: u64 = 20_000 * MS_PER_DAY;

    fn at(min: u64) -> Timestamp {
        Timestamp(DAY + min * MS_PER_MINUTE)
    }

    #[test]
    fn streams_in_start_then_agent_order_inside_hours_and_window() {
        let s = services();
        let w = Window::new(at(9 * 60), at(12 * 60));
        let got: Vec<(u64, String)> = s
            .slots("11111", w, 30, None)
            .map(|s| ((s.start.0 - DAY) / MS_PER_MINUTE, s.agent.to_string()))
            .collect();
        assert_eq!(got[0], (540, "a".into()));
        assert_eq!(got[1], (540, "b".into()));
        assert_eq!(got.last(), Some(&(630, "a".into())), "a works until 11:00");
        assert_eq!(got.iter().filter(|(_, a)| a == "b").count(), 3);
        let after = Slot {
            start: at(540),
            agent: "a".into(),
        };
        let rest: Vec<Slot> = s.slots("11111", w, 30, Some(&after)).collect();
        assert_eq!(rest.len(), got.len() - 1);
        assert_eq!(s.slots("99999", w, 30, None).count(), 0);
    }

    #[test]
    fn rules_deny_language_full_day_and_short_lead() {
        let s = services();
        let req = RuleRequest {
            zipcode: "11111".into(),
            language: Some("es".into()),
            duration_min: 30,
        };
        let cand = |agent: &str, min: u64, tours: u32| Candidate {
            slot: Slot {
                start: at(min),
                agent: agent.into(),
            },
            tours_that_day: tours,
        };
        let v = s.verdicts(
            at(0),
            &req,
            &[
                cand("a", 600, 0),
                cand("b", 600, 0),
                cand("a", 600, 1),
                cand("a", 30, 0),
            ],
        );
        assert_eq!(v, vec![true, false, false, false]);
    }
}
