//! A tiny driver for core tests: feeds inputs at chosen times and keeps a
//! readable log of every input and output.

#![allow(dead_code)]

use tour_dispatcher::core::render::{input_line, output_line};
use tour_dispatcher::core::*;

/// 2027-01-01T00:00:00Z.
pub const T0: u64 = 1_798_761_600_000;
pub const MIN: u64 = 60_000;
pub const HOUR: u64 = 60 * MIN;
/// 2027-01-02T09:00:00Z, a slot start on the day after T0.
pub const NINE: u64 = T0 + 33 * HOUR;

pub struct Harness {
    pub d: Dispatcher,
    pub now: u64,
    pub log: Vec<String>,
    pub outputs: Vec<Output>,
}

pub fn config() -> Config {
    Config {
        shards: 1,
        secret: Secret::new(7, 11),
        ..Config::default()
    }
}

impl Harness {
    pub fn new(config: Config) -> Self {
        Harness {
            d: Dispatcher::new(config).expect("valid config"),
            now: T0,
            log: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Feeds `input` at `T0 + at_ms` and returns the outputs it produced.
    pub fn at(&mut self, at_ms: u64, input: Input) -> Vec<Output> {
        self.now = T0 + at_ms;
        self.log
            .push(format!("{:>6} in   {}", at_ms, input_line(&input)));
        self.d.handle(Timestamp(self.now), input);
        let mut out = Vec::new();
        while let Some(o) = self.d.poll_output() {
            self.log
                .push(format!("{:>6}  out {}", at_ms, output_line(&o)));
            out.push(o);
        }
        self.outputs.extend(out.clone());
        out
    }

    pub fn submit(
        &mut self,
        at_ms: u64,
        ticket: u64,
        body: RawRequest,
        key: Option<&str>,
        deadline_ms: u64,
    ) -> Vec<Output> {
        let input = Input::Submit {
            ticket: Ticket(ticket),
            body,
            idempotency_key: key.map(str::to_string),
            deadline: Timestamp(T0 + deadline_ms),
        };
        self.at(at_ms, input)
    }

    pub fn text(&self) -> String {
        self.log.join("\n")
    }
}

/// A valid request for zipcode 94107 on 2027-01-02 09:00–12:00 UTC, 30 min.
pub fn body() -> RawRequest {
    RawRequest {
        customer_id: Some("cust-42".into()),
        duration_minutes: Some(30),
        language: None,
        property_id: Some("prop-7".into()),
        window: Some(RawWindow {
            start: Some("2027-01-02T09:00:00Z".into()),
            end: Some("2027-01-02T12:00:00Z".into()),
        }),
        zipcode: Some("94107".into()),
    }
}

pub fn slot(agent: &str, start: u64) -> Slot {
    Slot {
        start: Timestamp(start),
        agent: agent.into(),
    }
}

pub fn fetch_call(outputs: &[Output]) -> Option<(CallId, Option<Slot>)> {
    outputs.iter().find_map(|o| match o {
        Output::FetchAvailability { call, after, .. } => Some((*call, after.clone())),
        _ => None,
    })
}

pub fn rules_call(outputs: &[Output]) -> Option<(CallId, Vec<Candidate>)> {
    outputs.iter().find_map(|o| match o {
        Output::CheckRules {
            call, candidates, ..
        } => Some((*call, candidates.clone())),
        _ => None,
    })
}

pub fn persisted_seq(outputs: &[Output]) -> Option<(u64, Record)> {
    outputs.iter().find_map(|o| match o {
        Output::Persist { seq, record } => Some((*seq, record.clone())),
        _ => None,
    })
}

pub fn responses(outputs: &[Output]) -> Vec<(u64, Response, bool)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Respond {
                ticket,
                response,
                replayed,
            } => Some((ticket.0, response.clone(), *replayed)),
            _ => None,
        })
        .collect()
}

pub fn status_of(outputs: &[Output], ticket: u64) -> Option<u16> {
    responses(outputs)
        .into_iter()
        .find(|(t, _, _)| *t == ticket)
        .map(|(_, r, _)| r.status())
}
