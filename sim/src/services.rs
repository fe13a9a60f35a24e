//! The simulated world's availability service and rules engine: a roster of
//! agents, the slot grid they offer, and the rules, with the semantics of the
//! embedded services in API.md (streams in (start, agent) order on a grid
//! aligned to the UTC hour; rules deny a language the agent lacks, a full
//! day, and a start inside the minimum lead).
//!
//! Faults (latency, errors, stalls, duplicates) are not here: the world
//! wraps these answers in them.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tour_dispatcher::core::time::{MS_PER_DAY, MS_PER_MINUTE};
use tour_dispatcher::core::{Candidate, RuleRequest, Slot, Timestamp, Window};

/// One agent of the roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: CompactString,
    pub zipcodes: Vec<CompactString>,
    pub languages: Vec<CompactString>,
    /// Working hours, minutes after UTC midnight, `[start, end)`.
    pub hours: (u32, u32),
}

/// The roster and the parameters of both services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Services {
    pub agents: Vec<Agent>,
    pub slot_step_min: u32,
    pub max_tours_per_day: u32,
    pub min_lead_min: u32,
    /// Agent indexes covering each zipcode, sorted by agent id.
    #[serde(skip)]
    by_zipcode: BTreeMap<CompactString, Vec<usize>>,
}

impl Services {
    pub fn new(
        mut agents: Vec<Agent>,
        slot_step_min: u32,
        max_tours_per_day: u32,
        min_lead_min: u32,
    ) -> Self {
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        let mut s = Services {
            agents,
            slot_step_min: slot_step_min.max(1),
            max_tours_per_day,
            min_lead_min,
            by_zipcode: BTreeMap::new(),
        };
        s.index();
        s
    }

    /// Rebuilds the zipcode index (after deserializing).
    pub fn index(&mut self) {
        self.by_zipcode.clear();
        for (i, a) in self.agents.iter().enumerate() {
            for z in &a.zipcodes {
                self.by_zipcode.entry(z.clone()).or_default().push(i);
            }
        }
    }

    /// Whether `agent` covers `zipcode`.
    pub fn covers(&self, agent: &str, zipcode: &str) -> bool {
        self.by_zipcode
            .get(zipcode)
            .is_some_and(|ix| ix.iter().any(|&i| self.agents[i].id == agent))
    }

    /// Every zipcode some agent covers.
    pub fn zipcodes(&self) -> impl Iterator<Item = &CompactString> {
        self.by_zipcode.keys()
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
        let step = u64::from(self.slot_step_min) * MS_PER_MINUTE;
        let duration = u64::from(duration_min) * MS_PER_MINUTE;
        let agents: &'a [usize] = self.by_zipcode.get(zipcode).map_or(&[], Vec::as_slice);
        let from = after.map_or(window.start, |a| a.start.max(window.start));
        let first = from.as_millis().div_ceil(step) * step;
        let after = after.cloned();
        let last = window.end.as_millis().saturating_sub(duration);
        (first..=last)
            .step_by(step as usize)
            .take_while(move |_| !agents.is_empty())
            .flat_map(move |t| {
                agents
                    .iter()
                    .map(move |&i| &self.agents[i])
                    .filter(move |a| works(a, t, duration))
                    .map(move |a| Slot {
                        start: Timestamp(t),
                        agent: a.id.clone(),
                    })
            })
            .filter(move |s| after.as_ref().is_none_or(|a| a < s))
    }

    /// The rules' verdict on each candidate, evaluated at `now`.
    pub fn verdicts(&self, now: Timestamp, request: &RuleRequest, cands: &[Candidate]) -> Vec<bool> {
        let earliest = now.plus_ms(u64::from(self.min_lead_min) * MS_PER_MINUTE);
        cands
            .iter()
            .map(|c| {
                let speaks = request.language.as_ref().is_none_or(|l| {
                    self.agent(&c.slot.agent)
                        .is_some_and(|a| a.languages.contains(l))
                });
                speaks && c.tours_that_day < self.max_tours_per_day && c.slot.start >= earliest
            })
            .collect()
    }

    fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents
            .binary_search_by(|a| a.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.agents[i])
    }
}

/// Whether `[t, t + duration)` lies inside the agent's hours on its day.
fn works(agent: &Agent, t: u64, duration: u64) -> bool {
    let day_start = t - t % MS_PER_DAY;
    let (from, to) = agent.hours;
    let open = day_start + u64::from(from) * MS_PER_MINUTE;
    let close = day_start + u64::from(to) * MS_PER_MINUTE;
    open <= t && t + duration <= close
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(got.last(), Some(&(600, "a".into())), "a ends at 11:00");
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
