//! The roster: which agents exist, the zipcodes each covers, the languages
//! each speaks and the UTC hours each works (every day).
//!
//! A roster comes from a JSON file ([`Roster::from_json`]), from code
//! ([`Roster::from_agents`], for the simulator) or is the built-in demo
//! ([`Roster::demo`]). Every way goes through the same validation, so a
//! [`Roster`] is always valid: unique ids of 1–64 characters of
//! `A-Z a-z 0-9 . _ -`, zipcodes of exactly 5 ASCII digits, languages of two
//! lowercase ASCII letters, and hours with `end` later than `start` (`24:00`
//! allowed as an end only).
//!
//! # The demo roster
//!
//! It covers 300 zipcodes: every zipcode from 94100 to 94199 (San Francisco),
//! from 10000 to 10099 (New York) and from 60600 to 60699 (Chicago). Each
//! block of ten zipcodes (for example 94100–94109, written `9410x`) has four
//! agents, and each region one more agent covering all its hundred zipcodes,
//! so every covered zipcode has five agents:
//!
//! | id | zipcodes | hours (UTC) | languages |
//! |---|---|---|---|
//! | `ag-9410x-1` | 94100–94109 | 00:00–24:00 | en, es |
//! | `ag-9410x-2` | 94100–94109 | 08:00–16:00 | en, fr |
//! | `ag-9410x-3` | 94100–94109 | 13:00–21:00 | en, zh |
//! | `ag-9410x-4` | 94100–94109 | 16:00–24:00 | es, pt |
//! | `ag-941xx` | 94100–94199 | 10:00–18:00 | en, ja |
//!
//! and likewise for every other block (`ag-9411x-1`, …, `ag-1000x-1`, …,
//! `ag-6069x-4`) and region (`ag-100xx`, `ag-606xx`). Every covered zipcode
//! thus has an agent at any time of day who speaks `en` and `es`.

use crate::core::request::{is_id, is_language, is_zipcode};
use compact_str::{format_compact, CompactString};
use rustc_hash::FxBuildHasher;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

const MINUTES_PER_DAY: u32 = 24 * 60;

/// The UTC working hours of an agent, every day: `[start_min, end_min)` in
/// minutes after midnight; `end_min` may be 1440 (`24:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Hours {
    pub start_min: u32,
    pub end_min: u32,
}

impl Hours {
    /// Whether the hours are the whole day, so that a tour may run across
    /// midnight.
    pub fn is_whole_day(&self) -> bool {
        self.start_min == 0 && self.end_min == MINUTES_PER_DAY
    }
}

/// One agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    pub id: CompactString,
    pub zipcodes: Vec<CompactString>,
    pub languages: Vec<CompactString>,
    pub hours: Hours,
}

impl Agent {
    pub fn speaks(&self, language: &str) -> bool {
        self.languages.iter().any(|l| l == language)
    }
}

/// What is wrong with one field of one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentProblem {
    #[error("must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadId,
    #[error("must be exactly 5 ASCII digits")]
    BadZipcode,
    #[error("must be two lowercase ASCII letters, e.g. \"en\"")]
    BadLanguage,
    #[error("must be a UTC time \"HH:MM\" from 00:00 to 23:59")]
    BadStart,
    #[error("must be a UTC time \"HH:MM\" from 00:01 to 24:00")]
    BadEnd,
    #[error("must be later than hours.start")]
    EndNotAfterStart,
}

/// Why a roster was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    #[error("the roster must be a JSON object {{\"agents\": [...]}} and nothing else: {0}")]
    Syntax(String),
    #[error("agents[{index}]: {message}")]
    Shape { index: usize, message: String },
    #[error("agents[{index}] (id {id:?}): {field} {problem}")]
    Invalid {
        index: usize,
        id: CompactString,
        field: String,
        problem: AgentProblem,
    },
    #[error("agents[{index}]: id {id:?} is already used by agents[{first}]; ids must be unique")]
    DuplicateId {
        index: usize,
        id: CompactString,
        first: usize,
    },
}

/// A valid set of agents, sorted by id, indexed by zipcode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roster {
    agents: Vec<Agent>,
    /// zipcode -> indices into `agents`, ascending (so in id order), unique.
    by_zipcode: BTreeMap<CompactString, Vec<usize>>,
    /// id -> index into `agents`: the rules look up every candidate.
    by_id: HashMap<CompactString, usize, FxBuildHasher>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile<'a> {
    /// Each agent as its text, parsed on its own so that an error names its
    /// index (and a repeated member is refused, as a `Value` would not).
    #[serde(borrow)]
    agents: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    id: CompactString,
    zipcodes: Vec<CompactString>,
    languages: Vec<CompactString>,
    hours: HoursFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoursFile {
    start: String,
    end: String,
}

impl Roster {
    /// Parses and validates a roster file (format in the API).
    pub fn from_json(text: &str) -> Result<Roster, RosterError> {
        let file: RosterFile =
            serde_json::from_str(text).map_err(|e| RosterError::Syntax(e.to_string()))?;
        let agents = file
            .agents
            .into_iter()
            .enumerate()
            .map(|(index, agent)| agent_from_json(index, agent, text))
            .collect::<Result<Vec<_>, _>>()?;
        Roster::from_agents(agents)
    }

    /// Validates `agents` (errors name their index in this list) and builds
    /// the roster.
    pub fn from_agents(mut agents: Vec<Agent>) -> Result<Roster, RosterError> {
        let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
        for (index, agent) in agents.iter().enumerate() {
            validate_agent(index, agent)?;
            if let Some(&first) = first_index.get(agent.id.as_str()) {
                return Err(RosterError::DuplicateId {
                    index,
                    id: agent.id.clone(),
                    first,
                });
            }
            first_index.insert(&agent.id, index);
        }
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_zipcode: BTreeMap<CompactString, Vec<usize>> = BTreeMap::new();
        for (i, agent) in agents.iter().enumerate() {
            for zipcode in &agent.zipcodes {
                let members = by_zipcode.entry(zipcode.clone()).or_default();
                // An agent listing a zipcode twice is indexed once.
                if members.last() != Some(&i) {
                    members.push(i);
                }
            }
        }
        let by_id = agents
            .iter()
            .enumerate()
            .map(|(i, agent)| (agent.id.clone(), i))
            .collect();
        Ok(Roster {
            agents,
            by_zipcode,
            by_id,
        })
    }

    /// The built-in demo roster (see the module documentation).
    pub fn demo() -> Roster {
        let mut agents = Vec::new();
        for region in ["941", "100", "606"] {
            for block in 0..10 {
                let zipcodes: Vec<CompactString> = (0..10)
                    .map(|z| format_compact!("{region}{block}{z}"))
                    .collect();
                for (k, (start, end, languages)) in DEMO_SHIFTS.iter().enumerate() {
                    agents.push(demo_agent(
                        format_compact!("ag-{region}{block}x-{}", k + 1),
                        zipcodes.clone(),
                        (*start, *end),
                        languages,
                    ));
                }
            }
            let zipcodes = (0..100)
                .map(|z| format_compact!("{region}{z:02}"))
                .collect();
            agents.push(demo_agent(
                format_compact!("ag-{region}xx"),
                zipcodes,
                (10 * 60, 18 * 60),
                &["en", "ja"],
            ));
        }
        Roster::from_agents(agents).expect("the demo roster is valid")
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.by_id.get(id).map(|&i| &self.agents[i])
    }

    /// The agents covering `zipcode`, sorted by id.
    pub fn agents_for<'a>(&'a self, zipcode: &str) -> impl Iterator<Item = &'a Agent> + 'a {
        self.members(zipcode).iter().map(|&i| &self.agents[i])
    }

    /// Every agent, sorted by id.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Every zipcode some agent covers, in ascending order.
    pub fn zipcodes(&self) -> impl Iterator<Item = &str> {
        self.by_zipcode.keys().map(|z| z.as_str())
    }

    /// Indices into [`Roster::agents`] of the agents covering `zipcode`,
    /// ascending.
    pub(crate) fn members(&self, zipcode: &str) -> &[usize] {
        self.by_zipcode
            .get(zipcode)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// (start, end, languages) of the four agents of each demo block.
const DEMO_SHIFTS: [(u32, u32, &[&str]); 4] = [
    (0, 24 * 60, &["en", "es"]),
    (8 * 60, 16 * 60, &["en", "fr"]),
    (13 * 60, 21 * 60, &["en", "zh"]),
    (16 * 60, 24 * 60, &["es", "pt"]),
];

fn demo_agent(
    id: CompactString,
    zipcodes: Vec<CompactString>,
    (start_min, end_min): (u32, u32),
    languages: &[&str],
) -> Agent {
    Agent {
        id,
        zipcodes,
        languages: languages.iter().map(|&l| l.into()).collect(),
        hours: Hours { start_min, end_min },
    }
}

/// Agent `index`, whose text `agent` lies inside the roster file's `file`.
fn agent_from_json(
    index: usize,
    agent: &serde_json::value::RawValue,
    file: &str,
) -> Result<Agent, RosterError> {
    let shape = |e: serde_json::Error| RosterError::Shape {
        index,
        message: at_file_position(&e, agent.get(), file),
    };
    let file: AgentFile = serde_json::from_str(agent.get()).map_err(shape)?;
    let invalid = |field: &str, problem| RosterError::Invalid {
        index,
        id: file.id.clone(),
        field: field.into(),
        problem,
    };
    let start_min = parse_hhmm(&file.hours.start)
        .filter(|&m| m < MINUTES_PER_DAY)
        .ok_or_else(|| invalid("hours.start", AgentProblem::BadStart))?;
    let end_min = parse_hhmm(&file.hours.end)
        .filter(|&m| m > 0)
        .ok_or_else(|| invalid("hours.end", AgentProblem::BadEnd))?;
    Ok(Agent {
        id: file.id,
        zipcodes: file.zipcodes,
        languages: file.languages,
        hours: Hours { start_min, end_min },
    })
}

/// `HH:MM` with two digits each, from 00:00 to 24:00, as minutes.
/// `error`'s message, found parsing `part` (a slice of `file`), with its
/// line and column counted in `file`.
fn at_file_position(error: &serde_json::Error, part: &str, file: &str) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let Some(bare) = message.strip_suffix(&suffix) else {
        return message;
    };
    let offset = (part.as_ptr() as usize).saturating_sub(file.as_ptr() as usize);
    let before = file.get(..offset).unwrap_or_default();
    let base_line = before.matches('\n').count();
    let base_column = before.len() - before.rfind('\n').map_or(0, |at| at + 1);
    let line = base_line + error.line();
    let column = match error.line() {
        1 => base_column + error.column(),
        _ => error.column(),
    };
    format!("{bare} at line {line} column {column}")
}

fn parse_hhmm(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    let digit = |i: usize| match bytes.get(i) {
        Some(b) if b.is_ascii_digit() => Some(u32::from(b - b'0')),
        _ => None,
    };
    if bytes.len() != 5 || bytes[2] != b':' {
        return None;
    }
    let hours = digit(0)? * 10 + digit(1)?;
    let minutes = digit(3)? * 10 + digit(4)?;
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= MINUTES_PER_DAY).then_some(total)
}

fn validate_agent(index: usize, agent: &Agent) -> Result<(), RosterError> {
    let invalid = |field: String, problem| RosterError::Invalid {
        index,
        id: agent.id.clone(),
        field,
        problem,
    };
    if !is_id(&agent.id) {
        return Err(invalid("id".into(), AgentProblem::BadId));
    }
    if let Some(i) = agent.zipcodes.iter().position(|z| !is_zipcode(z)) {
        return Err(invalid(format!("zipcodes[{i}]"), AgentProblem::BadZipcode));
    }
    if let Some(i) = agent.languages.iter().position(|l| !is_language(l)) {
        return Err(invalid(
            format!("languages[{i}]"),
            AgentProblem::BadLanguage,
        ));
    }
    let Hours { start_min, end_min } = agent.hours;
    if start_min >= MINUTES_PER_DAY {
        return Err(invalid("hours.start".into(), AgentProblem::BadStart));
    }
    if end_min == 0 || end_min > MINUTES_PER_DAY {
        return Err(invalid("hours.end".into(), AgentProblem::BadEnd));
    }
    if end_min <= start_min {
        return Err(invalid("hours.end".into(), AgentProblem::EndNotAfterStart));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster_with(agent_json: &str) -> Result<Roster, RosterError> {
        Roster::from_json(&format!(r#"{{"agents": [{agent_json}]}}"#))
    }

    fn agent_json(id: &str, zipcode: &str, language: &str, start: &str, end: &str) -> String {
        format!(
            r#"{{"id": "{id}", "zipcodes": ["{zipcode}"], "languages": ["{language}"],
                 "hours": {{"start": "{start}", "end": "{end}"}}}}"#
        )
    }

    fn ok_agent(id: &str) -> String {
        agent_json(id, "94107", "en", "09:00", "17:00")
    }

    /// The field and problem of an `Invalid` error, or a panic naming the error.
    fn invalid(result: Result<Roster, RosterError>) -> (usize, String, AgentProblem) {
        match result {
            Err(RosterError::Invalid {
                index,
                field,
                problem,
                ..
            }) => (index, field, problem),
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_api_example() {
        let roster = Roster::from_json(
            r#"{"agents": [
              {"id": "ag-001", "zipcodes": ["94107", "94103"], "languages": ["en", "es"],
               "hours": {"start": "09:00", "end": "17:00"}}
            ]}"#,
        )
        .unwrap();
        let agent = roster.agent("ag-001").unwrap();
        assert_eq!(
            agent.hours,
            Hours {
                start_min: 540,
                end_min: 1020
            }
        );
        assert!(agent.speaks("es") && !agent.speaks("fr"));
        assert_eq!(roster.zipcodes().collect::<Vec<_>>(), ["94103", "94107"]);
        assert_eq!(roster.agents_for("94103").count(), 1);
        assert_eq!(roster.agents_for("00000").count(), 0);
    }

    #[test]
    fn agents_are_sorted_by_id_per_zipcode() {
        let roster = Roster::from_json(&format!(
            r#"{{"agents": [{}, {}, {}]}}"#,
            ok_agent("c"),
            ok_agent("a"),
            ok_agent("b")
        ))
        .unwrap();
        let ids: Vec<_> = roster.agents_for("94107").map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(roster.agents()[0].id, "a");
    }

    #[test]
    fn a_zipcode_listed_twice_indexes_the_agent_once() {
        let roster = roster_with(
            r#"{"id": "a", "zipcodes": ["94107", "94107"], "languages": [],
                "hours": {"start": "00:00", "end": "24:00"}}"#,
        )
        .unwrap();
        assert_eq!(roster.agents_for("94107").count(), 1);
    }

    #[test]
    fn ids_must_be_unique() {
        let err = Roster::from_json(&format!(
            r#"{{"agents": [{}, {}, {}]}}"#,
            ok_agent("a"),
            ok_agent("b"),
            ok_agent("a")
        ))
        .unwrap_err();
        assert_eq!(
            err,
            RosterError::DuplicateId {
                index: 2,
                id: "a".into(),
                first: 0
            }
        );
        assert!(err.to_string().contains("agents[2]"), "{err}");
    }

    #[test]
    fn a_shape_error_is_placed_in_the_file() {
        let text = format!(
            "{{\"agents\": [\n  {},\n  {{\"id\": \"b\", \"zipcodes\": [94107]}}\n]}}",
            ok_agent("a")
        );
        let err = Roster::from_json(&text).unwrap_err();
        let RosterError::Shape { index: 1, message } = &err else {
            panic!("{err:?}")
        };
        // Where parsing the whole file at once puts the same error.
        #[derive(serde::Deserialize)]
        struct Whole {
            #[allow(dead_code)]
            agents: Vec<AgentFile>,
        }
        let whole = serde_json::from_str::<Whole>(&text).err().unwrap();
        let at = format!("at line {} column {}", whole.line(), whole.column());
        assert!(whole.line() > 1, "{whole}");
        assert!(message.ends_with(&at), "{message} vs {whole}");
    }

    #[test]
    fn a_repeated_member_of_an_agent_is_refused() {
        let err = roster_with(
            r#"{"id": "a", "id": "b", "zipcodes": ["94107"], "languages": [],
                "hours": {"start": "09:00", "end": "17:00"}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&err, RosterError::Shape { index: 0, message } if message.contains("duplicate field `id`")),
            "{err}"
        );
    }

    #[test]
    fn ids_must_be_1_to_64_of_the_charset() {
        for bad in ["", "a b", "é", "a/b", &"x".repeat(65)] {
            let (_, field, problem) = invalid(roster_with(&ok_agent(bad)));
            assert_eq!(
                (field.as_str(), problem),
                ("id", AgentProblem::BadId),
                "{bad:?}"
            );
        }
        for good in ["A.z_0-9", &"x".repeat(64)] {
            assert!(roster_with(&ok_agent(good)).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn zipcodes_must_be_five_digits() {
        for bad in ["9410", "941077", "9410a", "９４１０７"] {
            let result = roster_with(&agent_json("a", bad, "en", "09:00", "17:00"));
            let (_, field, problem) = invalid(result);
            assert_eq!(
                (field.as_str(), problem),
                ("zipcodes[0]", AgentProblem::BadZipcode),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn languages_must_be_two_lowercase_letters() {
        for bad in ["EN", "e", "eng", "e1"] {
            let result = roster_with(&agent_json("a", "94107", bad, "09:00", "17:00"));
            let (_, field, problem) = invalid(result);
            assert_eq!(
                (field.as_str(), problem),
                ("languages[0]", AgentProblem::BadLanguage),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hours_must_be_hh_mm_with_end_after_start() {
        let cases = [
            ("9:00", "17:00", "hours.start", AgentProblem::BadStart),
            ("09:60", "17:00", "hours.start", AgentProblem::BadStart),
            ("24:00", "24:00", "hours.start", AgentProblem::BadStart),
            ("09h00", "17:00", "hours.start", AgentProblem::BadStart),
            ("09:00", "24:01", "hours.end", AgentProblem::BadEnd),
            ("09:00", "25:00", "hours.end", AgentProblem::BadEnd),
            ("00:00", "00:00", "hours.end", AgentProblem::BadEnd),
            (
                "09:00",
                "09:00",
                "hours.end",
                AgentProblem::EndNotAfterStart,
            ),
            (
                "17:00",
                "09:00",
                "hours.end",
                AgentProblem::EndNotAfterStart,
            ),
        ];
        for (start, end, want_field, want_problem) in cases {
            let result = roster_with(&agent_json("a", "94107", "en", start, end));
            let (_, field, problem) = invalid(result);
            assert_eq!(
                (field.as_str(), problem),
                (want_field, want_problem),
                "{start}-{end}"
            );
        }
        let whole_day = roster_with(&agent_json("a", "94107", "en", "00:00", "24:00")).unwrap();
        assert!(whole_day.agents()[0].hours.is_whole_day());
    }

    #[test]
    fn errors_name_the_agent_and_the_field() {
        let text = format!(
            r#"{{"agents": [{}, {}]}}"#,
            ok_agent("a"),
            agent_json("bob", "94107", "EN", "09:00", "17:00")
        );
        let err = Roster::from_json(&text).unwrap_err();
        assert_eq!(invalid(Err(err.clone())).0, 1);
        let message = err.to_string();
        for part in ["agents[1]", "\"bob\"", "languages[0]", "lowercase"] {
            assert!(message.contains(part), "{message}");
        }
    }

    #[test]
    fn unknown_or_missing_fields_are_refused() {
        let extra = ok_agent("a").replacen('{', r#"{"phone": "1", "#, 1);
        let err = roster_with(&extra).unwrap_err();
        assert!(
            matches!(&err, RosterError::Shape { index: 0, message } if message.contains("phone")),
            "{err}"
        );
        let missing = r#"{"id": "a", "zipcodes": [], "languages": []}"#;
        let err = roster_with(missing).unwrap_err();
        assert!(
            matches!(&err, RosterError::Shape { message, .. } if message.contains("hours")),
            "{err}"
        );
        let extra_hours = ok_agent("a").replace(r#""end""#, r#""lunch": "12:00", "end""#);
        assert!(matches!(
            roster_with(&extra_hours),
            Err(RosterError::Shape { .. })
        ));
        let top = Roster::from_json(r#"{"agents": [], "version": 2}"#).unwrap_err();
        assert!(matches!(top, RosterError::Syntax(_)), "{top}");
        for bad in ["", "[]", "{\"agents\": {}}", "{\"agents\": [1]}"] {
            assert!(Roster::from_json(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn from_agents_validates_like_from_json() {
        let agent = |id: &str, start_min, end_min| Agent {
            id: id.into(),
            zipcodes: vec!["94107".into()],
            languages: vec!["en".into()],
            hours: Hours { start_min, end_min },
        };
        let (_, field, problem) = invalid(Roster::from_agents(vec![agent("a", 1440, 1440)]));
        assert_eq!(
            (field.as_str(), problem),
            ("hours.start", AgentProblem::BadStart)
        );
        let (_, field, problem) = invalid(Roster::from_agents(vec![agent("a", 0, 1441)]));
        assert_eq!(
            (field.as_str(), problem),
            ("hours.end", AgentProblem::BadEnd)
        );
        let (index, _, problem) = invalid(Roster::from_agents(vec![
            agent("a", 0, 60),
            agent("b", 60, 60),
        ]));
        assert_eq!((index, problem), (1, AgentProblem::EndNotAfterStart));
        let (_, _, problem) = invalid(Roster::from_agents(vec![agent("", 0, 60)]));
        assert_eq!(problem, AgentProblem::BadId);
        assert!(Roster::from_agents(vec![agent("a", 0, 1440)]).is_ok());
        assert!(
            Roster::from_agents(vec![]).is_ok(),
            "an empty roster is valid"
        );
    }

    #[test]
    fn demo_covers_the_documented_zipcodes() {
        let roster = Roster::demo();
        assert_eq!(roster, Roster::demo(), "deterministic");
        let expected: Vec<String> = [94100..=94199, 10000..=10099, 60600..=60699]
            .into_iter()
            .flatten()
            .map(|z| format!("{z:05}"))
            .collect();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(roster.zipcodes().collect::<Vec<_>>(), expected_sorted);
        assert_eq!(roster.agents().len(), 3 * (10 * 4 + 1));
        for zipcode in &expected {
            let agents: Vec<&Agent> = roster.agents_for(zipcode).collect();
            assert_eq!(agents.len(), 5, "{zipcode}");
            assert!(
                agents
                    .iter()
                    .any(|a| a.hours.is_whole_day() && a.speaks("en") && a.speaks("es")),
                "{zipcode} has someone at any hour"
            );
        }
        let block: Vec<_> = roster.agents_for("94107").map(|a| a.id.as_str()).collect();
        assert_eq!(
            block,
            [
                "ag-9410x-1",
                "ag-9410x-2",
                "ag-9410x-3",
                "ag-9410x-4",
                "ag-941xx"
            ]
        );
        assert_eq!(roster.agents_for("94099").count(), 0);
    }
}
