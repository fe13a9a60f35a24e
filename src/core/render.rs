//! One-line, human-readable renderings of inputs and outputs, for snapshot
//! tests, the simulator's minimal failures and debugging. Stable: tests
//! compare them as text.

use crate::core::book::Slot;
use crate::core::io::{Input, Output, Response};
use crate::core::record::{Record, Remembered};
use crate::core::request::RawRequest;
use std::fmt::Write;

/// `Submit #1 key=k zip=94107 ...`, one line.
pub fn input_line(input: &Input) -> String {
    match input {
        Input::Submit {
            ticket,
            body,
            idempotency_key,
            deadline,
        } => {
            let key = idempotency_key
                .as_deref()
                .map(|k| format!(" key={k}"))
                .unwrap_or_default();
            format!(
                "Submit #{}{key} {} deadline={}",
                ticket.0,
                body_line(body),
                deadline.0
            )
        }
        Input::ClientGone { ticket } => format!("ClientGone #{}", ticket.0),
        Input::SlotsStreamed {
            call,
            first_index,
            slots,
        } => {
            let list: Vec<String> = slots.iter().map(slot_text).collect();
            format!(
                "SlotsStreamed c{} from={} [{}]",
                call.0,
                first_index,
                list.join(", ")
            )
        }
        Input::StreamEnded {
            call,
            count,
            result,
        } => match result {
            Ok(()) => format!("StreamEnded c{} count={count}", call.0),
            Err(e) => format!("StreamEnded c{} count={count} error={e:?}", call.0),
        },
        Input::RuleVerdicts { call, result } => match result {
            Ok(v) => {
                let marks: String = v.iter().map(|&ok| if ok { 'Y' } else { 'n' }).collect();
                format!("RuleVerdicts c{} {marks}", call.0)
            }
            Err(e) => format!("RuleVerdicts c{} error={e:?}", call.0),
        },
        Input::Persisted { upto } => format!("Persisted upto={upto}"),
        Input::PersistFailed { from } => format!("PersistFailed from={from}"),
        Input::CancelAssignment { ticket, id } => format!("CancelAssignment #{} {id}", ticket.0),
        Input::Drain { deadline } => format!("Drain deadline={}", deadline.0),
        Input::Tick => "Tick".into(),
    }
}

/// `Respond #1 201 asg_... agent=...`, one line.
pub fn output_line(output: &Output) -> String {
    match output {
        Output::FetchAvailability {
            call,
            zipcode,
            window,
            duration_min,
            after,
            deadline,
        } => {
            let after = after.as_ref().map(slot_text).unwrap_or_else(|| "-".into());
            format!(
                "FetchAvailability c{} zip={zipcode} window={}..{} dur={duration_min} after={after} deadline={}",
                call.0, window.start.0, window.end.0, deadline.0
            )
        }
        Output::CheckRules {
            call,
            candidates,
            deadline,
            ..
        } => {
            let list: Vec<String> = candidates
                .iter()
                .map(|c| format!("{}/{}", slot_text(&c.slot), c.tours_that_day))
                .collect();
            format!(
                "CheckRules c{} [{}] deadline={}",
                call.0,
                list.join(", "),
                deadline.0
            )
        }
        Output::CancelCall { call, reason } => format!("CancelCall c{} {reason:?}", call.0),
        Output::Persist { seq, record } => format!("Persist {seq} {}", record_line(record)),
        Output::Respond {
            ticket,
            response,
            replayed,
        } => {
            let replay = if *replayed { " (replayed)" } else { "" };
            format!("Respond #{} {}{replay}", ticket.0, response_line(response))
        }
    }
}

pub fn response_line(response: &Response) -> String {
    let status = response.status();
    match response {
        Response::Assigned(a) | Response::Cancelled(a) => format!(
            "{status} {} {:?} agent={} {}..{}",
            a.id, a.status, a.agent_id, a.start.0, a.end.0
        ),
        Response::Invalid(errors) => {
            let list: Vec<String> = errors.iter().map(|e| e.field.name().to_string()).collect();
            format!("{status} invalid [{}]", list.join(", "))
        }
        other => format!("{status} {:?}", other.outcome()),
    }
}

pub fn record_line(record: &Record) -> String {
    match record {
        Record::Booked { assignment: a, key } => format!(
            "Booked {} agent={} {}..{}{}",
            a.id,
            a.agent_id,
            a.start.0,
            a.end.0,
            if key.is_some() { " +key" } else { "" }
        ),
        Record::Answered { answer, .. } => match answer {
            Remembered::NoAvailability => "Answered no-availability".into(),
            Remembered::Invalid(e) => format!("Answered invalid({})", e.len()),
        },
        Record::Cancelled { id } => format!("Cancelled {id}"),
        Record::Undone { id, key } => {
            let id = id.map(|i| i.to_string()).unwrap_or_else(|| "-".into());
            format!("Undone {id}{}", if key.is_some() { " +key" } else { "" })
        }
        Record::Sequence { next } => format!("Sequence next={next}"),
    }
}

fn slot_text(slot: &Slot) -> String {
    format!("{}@{}", slot.agent, slot.start.0)
}

fn body_line(body: &RawRequest) -> String {
    let mut line = String::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let _ = write!(
        line,
        "cust={} zip={}",
        opt(&body.customer_id),
        opt(&body.zipcode)
    );
    if let Some(w) = &body.window {
        let _ = write!(line, " window={}..{}", opt(&w.start), opt(&w.end));
    }
    if let Some(d) = body.duration_minutes {
        let _ = write!(line, " dur={d}");
    }
    if let Some(l) = &body.language {
        let _ = write!(line, " lang={l}");
    }
    line
}
