//! Traces: what a run fed the core, as data.
//!
//! # Simulator traces
//!
//! `tour-sim run --trace-out FILE` writes one JSON document ([`Trace`]):
//! the format version, the seed, the core's configuration, the scenario the
//! seed drew, the initial durable records, every event — `(now, Input)`,
//! `Restart { records }` where a crash happened, `Quiet` where the liveness
//! phase ended — a running hash of the core's outputs, and the choice list
//! that `tour-sim shrink` shrinks.
//!
//! # Production traces (`tour-dispatcher --record-trace FILE`)
//!
//! JSON lines, appended as the server runs (a file may hold several runs):
//!
//! ```text
//! {"format": 1, "config": <core::Config>, "records": [<core::Record>, ...], "now": <ms>, "source": "server"}
//! {"now": <ms since the Unix epoch>, "input": <core::Input>, "outputs_hash": "<16 hex digits>"}
//! ...
//! ```
//!
//! - A header line opens each run of the process: `format` is [`FORMAT`];
//!   `config` is the core's `Config` exactly as given to `Dispatcher::restore`
//!   (secret included, so replayed ids and hashes match); `records` (default
//!   empty) the durable records it was restored from, in journal order; `now`
//!   (optional) the time of the restore. Other members are ignored. A header
//!   after the first is a restart: replay restores a fresh core from its
//!   `records` and goes on.
//! - Every other line is one input, with the `now` it was handled at, in the
//!   order `Dispatcher::handle` saw them (`Tick`s included: they fire
//!   timers). `outputs_hash` (optional) is the running [`OutputHash`] of every
//!   output of this process so far — it starts afresh at each header — and
//!   replay checks it line by line.
//! - `Input`, `Config` and `Record` use their serde derive (externally tagged
//!   enums).
//!
//! `tour-sim replay FILE` accepts either form: it feeds the inputs to a fresh
//! core, checks every invariant with the same checker as the simulator, and
//! compares the output hash when the trace carries one.

use crate::invariant::Violation;
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::io;
use tour_dispatcher::core::{Config, Input, Output, Record, Timestamp};

/// The trace format version, in sim traces and production headers alike.
pub const FORMAT: u32 = 1;

/// One thing that happened to the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `handle(now, input)`; a production trace also says what the running
    /// hash of this process's outputs was after it.
    Input {
        now: Timestamp,
        input: Input,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outputs_hash: Option<String>,
    },
    /// The process crashed; a fresh one restored from `records`.
    Restart {
        now: Timestamp,
        records: Vec<Record>,
    },
    /// The world was quiet at the end of the liveness phase: everything
    /// must be answered and settled.
    Quiet { now: Timestamp },
}

impl Event {
    /// When it happened.
    pub fn now(&self) -> Timestamp {
        match self {
            Event::Input { now, .. } | Event::Restart { now, .. } | Event::Quiet { now } => *now,
        }
    }
}

/// A whole run, replayable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    pub config: Config,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<Scenario>,
    #[serde(default)]
    pub initial: Vec<Record>,
    /// When the core was created or restored from `initial` (default: the
    /// first event's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Timestamp>,
    pub events: Vec<Event>,
    /// The running hash of every output, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Violation>,
}

/// Why a trace file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is neither a tour-sim trace nor a --record-trace file: line {line}: {source}")]
    Parse {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}: trace format {found} is not supported (this tour-sim reads format {FORMAT})")]
    Format { path: String, found: u32 },
    #[error("{path} is empty")]
    Empty { path: String },
}

#[derive(Deserialize)]
struct Header {
    format: u32,
    config: Config,
    #[serde(default)]
    records: Vec<Record>,
    #[serde(default)]
    now: Option<Timestamp>,
}

#[derive(Deserialize)]
struct Line {
    now: Timestamp,
    input: Input,
    #[serde(default)]
    outputs_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ProductionLine {
    Input(Line),
    Header(Header),
}

impl Trace {
    /// Reads a simulator trace or a production JSON-lines trace.
    pub fn load(path: &str) -> Result<Trace, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            path: path.into(),
            source,
        })?;
        Trace::parse(path, &text)
    }

    /// Parses either trace form; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Trace, TraceError> {
        let trace = match serde_json::from_str::<Trace>(text) {
            Ok(t) => t,
            Err(whole) => Trace::parse_lines(path, text, whole)?,
        };
        if trace.format != FORMAT {
            return Err(TraceError::Format {
                path: path.into(),
                found: trace.format,
            });
        }
        let mut trace = trace;
        if let Some(s) = &mut trace.scenario {
            s.services.index();
        }
        Ok(trace)
    }

    fn parse_lines(path: &str, text: &str, whole: serde_json::Error) -> Result<Trace, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, first)) = lines.next() else {
            return Err(TraceError::Empty { path: path.into() });
        };
        let header: Header = serde_json::from_str(first).map_err(|_| TraceError::Parse {
            path: path.into(),
            line: whole.line(),
            source: whole,
        })?;
        let mut trace = Trace {
            format: header.format,
            seed: None,
            config: header.config,
            scenario: None,
            initial: header.records,
            start: header.now,
            events: Vec::new(),
            outputs_hash: None,
            choices: None,
            failure: None,
        };
        let mut last = header.now.unwrap_or(Timestamp::ZERO);
        for (i, line) in lines {
            let parsed: ProductionLine =
                serde_json::from_str(line).map_err(|source| TraceError::Parse {
                    path: path.into(),
                    line: i + 1,
                    source,
                })?;
            trace.events.push(match parsed {
                ProductionLine::Input(l) => {
                    last = l.now;
                    Event::Input {
                        now: l.now,
                        input: l.input,
                        outputs_hash: l.outputs_hash,
                    }
                }
                ProductionLine::Header(h) => Event::Restart {
                    now: h.now.unwrap_or(last),
                    records: h.records,
                },
            });
        }
        Ok(trace)
    }

    /// Writes the trace as one JSON document.
    pub fn save(&self, path: &str) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, text)
    }

    /// How many inputs it feeds the core.
    pub fn input_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Input { .. }))
            .count()
    }
}

/// The running hash of a run's outputs: SipHash-1-3 with fixed keys over
/// each output's JSON and the time it came out at. Stable across builds.
#[derive(Clone)]
pub struct OutputHash {
    hasher: SipHasher13,
}

impl Default for OutputHash {
    fn default() -> Self {
        OutputHash {
            hasher: SipHasher13::new_with_keys(0x746f_7572_2d73_696d, 0x6f75_7470_7574_7321),
        }
    }
}

struct HashWriter<'a>(&'a mut SipHasher13);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutputHash {
    pub fn add(&mut self, now: Timestamp, output: &Output) {
        self.hasher.write_u64(now.as_millis());
        // Writing into a hasher cannot fail.
        let _ = serde_json::to_writer(HashWriter(&mut self.hasher), output);
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tour_dispatcher::core::Ticket;

    #[test]
    fn reads_a_production_trace_with_a_restart() {
        let config = serde_json::to_string(&Config::default()).unwrap_or_default();
        let text = format!(
            "{{\"format\":1,\"config\":{config}}}\n\
             {{\"now\":5,\"input\":\"Tick\"}}\n\
             {{\"now\":6,\"input\":{{\"ClientGone\":{{\"ticket\":3}}}}}}\n\
             {{\"format\":1,\"config\":{config},\"records\":[{{\"Sequence\":{{\"next\":4}}}}]}}\n"
        );
        let t = Trace::parse("x", &text).expect("parses");
        assert_eq!(t.config, Config::default());
        assert_eq!(
            t.events,
            vec![
                Event::Input {
                    now: Timestamp(5),
                    input: Input::Tick,
                    outputs_hash: None,
                },
                Event::Input {
                    now: Timestamp(6),
                    input: Input::ClientGone { ticket: Ticket(3) },
                    outputs_hash: None,
                },
                Event::Restart {
                    now: Timestamp(6),
                    records: vec![Record::Sequence { next: 4 }]
                },
            ]
        );
    }

    #[test]
    fn refuses_other_formats_and_garbage() {
        let config = serde_json::to_string(&Config::default()).unwrap_or_default();
        let future = format!("{{\"format\":99,\"config\":{config}}}\n");
        assert!(matches!(
            Trace::parse("x", &future),
            Err(TraceError::Format { found: 99, .. })
        ));
        assert!(matches!(
            Trace::parse("x", "nonsense"),
            Err(TraceError::Parse { .. })
        ));
        assert!(matches!(
            Trace::parse("x", ""),
            Err(TraceError::Parse { .. } | TraceError::Empty { .. })
        ));
    }

    #[test]
    fn output_hash_is_order_sensitive() {
        let (mut a, mut b) = (OutputHash::default(), OutputHash::default());
        let x = Output::CancelCall {
            call: tour_dispatcher::core::CallId(1),
            reason: tour_dispatcher::core::CancelReason::BatchFull,
        };
        a.add(Timestamp(1), &x);
        b.add(Timestamp(2), &x);
        assert_ne!(a.hex(), b.hex());
    }
}
