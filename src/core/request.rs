//! A dispatch request: the body as the client sent it ([`RawRequest`]), its
//! canonical form for idempotency, and validation into a [`DispatchRequest`]
//! that lists every invalid field at once.

use crate::core::config::Config;
use crate::core::ids::{Fingerprint, Secret};
use crate::core::time::{Timestamp, Window, MS_PER_DAY, MS_PER_MINUTE};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The parsed but unvalidated body of `POST /dispatch`. The server has
/// already refused bad JSON, wrong types, unknown and duplicate members
/// (400); every value check happens in [`validate`].
///
/// Fields are declared in lexicographic order and `None` is skipped, so the
/// JSON serialization of this struct is the RFC 8785 canonical form of the
/// payload (with `null` members counting as absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<RawWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipcode: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

impl RawRequest {
    /// The RFC 8785 canonical JSON of the payload: what the idempotency
    /// fingerprint is taken over.
    pub fn canonical_json(&self) -> Vec<u8> {
        // Serializing plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The keyed hash of [`RawRequest::canonical_json`], computed without
    /// building the text.
    pub fn fingerprint(&self, secret: &Secret) -> Fingerprint {
        let mut sink = secret.payload_hasher();
        // Writing into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut sink, self);
        sink.finish()
    }
}

/// A request that passed validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRequest {
    pub customer_id: CompactString,
    pub property_id: Option<CompactString>,
    pub zipcode: CompactString,
    pub window: Window,
    pub duration_min: u32,
    pub language: Option<CompactString>,
}

impl DispatchRequest {
    pub fn duration_ms(&self) -> u64 {
        u64::from(self.duration_min) * MS_PER_MINUTE
    }
}

/// A field of the request body, named as in the API's `errors[].field`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Field {
    CustomerId,
    PropertyId,
    Zipcode,
    Window,
    WindowStart,
    WindowEnd,
    DurationMinutes,
    Language,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::CustomerId => "customer_id",
            Field::PropertyId => "property_id",
            Field::Zipcode => "zipcode",
            Field::Window => "window",
            Field::WindowStart => "window.start",
            Field::WindowEnd => "window.end",
            Field::DurationMinutes => "duration_minutes",
            Field::Language => "language",
        }
    }
}

/// What is wrong with a field. Small and `Copy`, so a remembered 422 costs a
/// few bytes; the message is rendered from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Problem {
    Missing,
    BadId,
    BadZipcode,
    BadDateTime,
    EndNotAfterStart,
    WindowTooLong,
    EndInPast,
    BeyondHorizon { days: u32 },
    DurationOutOfRange,
    LongerThanWindow,
    BadLanguage,
}

/// One invalid or missing field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FieldError {
    pub field: Field,
    pub problem: Problem,
}

impl FieldError {
    pub fn message(&self) -> String {
        match self.problem {
            Problem::Missing => "is required".into(),
            Problem::BadId => "must be 1 to 64 characters of A-Z a-z 0-9 . _ -".into(),
            Problem::BadZipcode => "must be exactly 5 ASCII digits".into(),
            Problem::BadDateTime => {
                "must be an RFC 3339 date-time with an offset, e.g. 2027-03-01T09:00:00Z".into()
            }
            Problem::EndNotAfterStart => "must be later than window.start".into(),
            Problem::WindowTooLong => "the window may span at most 14 days".into(),
            Problem::EndInPast => "must be in the future".into(),
            Problem::BeyondHorizon { days: 1 } => "must be at most 1 day from now".into(),
            Problem::BeyondHorizon { days } => format!("must be at most {days} days from now"),
            Problem::DurationOutOfRange => "must be an integer from 15 to 240".into(),
            Problem::LongerThanWindow => "must not be longer than the window".into(),
            Problem::BadLanguage => "must be two lowercase ASCII letters, e.g. \"en\"".into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.name(), self.message())
    }
}

pub const MIN_DURATION_MIN: i64 = 15;
pub const MAX_DURATION_MIN: i64 = 240;
pub const MAX_WINDOW_MS: u64 = 14 * MS_PER_DAY;

/// Checks every value of `raw` at `now`; returns the valid request or every
/// field error, in field order.
pub fn validate(
    raw: &RawRequest,
    now: Timestamp,
    config: &Config,
) -> Result<DispatchRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fail = |field, problem| errors.push(FieldError { field, problem });

    let customer_id = required(
        raw.customer_id.as_deref(),
        Field::CustomerId,
        is_id,
        Problem::BadId,
        &mut fail,
    );
    let property_id = optional(
        raw.property_id.as_deref(),
        Field::PropertyId,
        is_id,
        Problem::BadId,
        &mut fail,
    );
    let zipcode = required(
        raw.zipcode.as_deref(),
        Field::Zipcode,
        is_zipcode,
        Problem::BadZipcode,
        &mut fail,
    );
    let (window, window_len_ms) = validate_window(raw.window.as_ref(), now, config, &mut fail);
    let duration = match raw.duration_minutes {
        None => {
            fail(Field::DurationMinutes, Problem::Missing);
            None
        }
        Some(d) if !(MIN_DURATION_MIN..=MAX_DURATION_MIN).contains(&d) => {
            fail(Field::DurationMinutes, Problem::DurationOutOfRange);
            None
        }
        Some(d) => {
            let d = d as u32;
            // Judged whenever the window has a length, even one with other
            // errors: a 422 lists every invalid field at once.
            if window_len_ms.is_some_and(|len| u64::from(d) * MS_PER_MINUTE > len) {
                fail(Field::DurationMinutes, Problem::LongerThanWindow);
            }
            Some(d)
        }
    };
    let language = optional(
        raw.language.as_deref(),
        Field::Language,
        is_language,
        Problem::BadLanguage,
        &mut fail,
    );

    match (customer_id, zipcode, window, duration) {
        (Some(customer_id), Some(zipcode), Some(window), Some(duration_min))
            if errors.is_empty() =>
        {
            Ok(DispatchRequest {
                customer_id: customer_id.into(),
                property_id: property_id.map(Into::into),
                zipcode: zipcode.into(),
                window,
                duration_min,
                language: language.map(Into::into),
            })
        }
        _ => Err(errors),
    }
}

fn required<'a>(
    value: Option<&'a str>,
    field: Field,
    ok: fn(&str) -> bool,
    problem: Problem,
    fail: &mut impl FnMut(Field, Problem),
) -> Option<&'a str> {
    match value {
        None => {
            fail(field, Problem::Missing);
            None
        }
        some => optional(some, field, ok, problem, fail),
    }
}

fn optional<'a>(
    value: Option<&'a str>,
    field: Field,
    ok: fn(&str) -> bool,
    problem: Problem,
    fail: &mut impl FnMut(Field, Problem),
) -> Option<&'a str> {
    let v = value?;
    if ok(v) {
        Some(v)
    } else {
        fail(field, problem);
        None
    }
}

/// The window if it is valid, and its length whenever both ends parse and
/// the end comes after the start (valid or not otherwise).
fn validate_window(
    raw: Option<&RawWindow>,
    now: Timestamp,
    config: &Config,
    fail: &mut impl FnMut(Field, Problem),
) -> (Option<Window>, Option<u64>) {
    let Some(raw) = raw else {
        fail(Field::Window, Problem::Missing);
        return (None, None);
    };
    // The start rounds up and the end down to the millisecond, so the window
    // never grows by rounding.
    let start = required_time(raw.start.as_deref(), Field::WindowStart, Rounding::Up, fail);
    let end = required_time(raw.end.as_deref(), Field::WindowEnd, Rounding::Down, fail);
    let len_ms = match (start, end) {
        (Some(start), Some(end)) if end > start => u64::try_from(end - start).ok(),
        _ => None,
    };
    (check_window(start, end, now, config, fail), len_ms)
}

fn check_window(
    start: Option<i128>,
    end: Option<i128>,
    now: Timestamp,
    config: &Config,
    fail: &mut impl FnMut(Field, Problem),
) -> Option<Window> {
    let end = end?;
    let mut ok = true;
    if end <= now.as_millis() as i128 {
        fail(Field::WindowEnd, Problem::EndInPast);
        ok = false;
    } else if end
        > now
            .plus_ms(u64::from(config.horizon_days) * MS_PER_DAY)
            .as_millis() as i128
    {
        fail(
            Field::WindowEnd,
            Problem::BeyondHorizon {
                days: config.horizon_days,
            },
        );
        ok = false;
    }
    let start = start?;
    if end <= start {
        fail(Field::WindowEnd, Problem::EndNotAfterStart);
        return None;
    }
    if end - start > MAX_WINDOW_MS as i128 {
        fail(Field::Window, Problem::WindowTooLong);
        return None;
    }
    if !ok || start < 0 {
        return None;
    }
    Some(Window::new(Timestamp(start as u64), Timestamp(end as u64)))
}

#[derive(Clone, Copy)]
enum Rounding {
    Up,
    Down,
}

fn required_time(
    value: Option<&str>,
    field: Field,
    rounding: Rounding,
    fail: &mut impl FnMut(Field, Problem),
) -> Option<i128> {
    let Some(text) = value else {
        fail(field, Problem::Missing);
        return None;
    };
    let parsed = parse_rfc3339_ms(text, rounding);
    if parsed.is_none() {
        fail(field, Problem::BadDateTime);
    }
    parsed
}

/// Milliseconds since the epoch of an RFC 3339 date-time with an offset.
fn parse_rfc3339_ms(text: &str, rounding: Rounding) -> Option<i128> {
    use ::time::format_description::well_known::Rfc3339;
    // The parser takes any byte between the date and the time; RFC 3339
    // has `T`, and allows `t` and a space.
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let t = ::time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    Some(match rounding {
        Rounding::Down => nanos.div_euclid(1_000_000),
        Rounding::Up => -((-nanos).div_euclid(1_000_000)),
    })
}

/// `A-Z a-z 0-9 . _ -`, 1 to 64 characters.
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Exactly 5 ASCII digits.
pub fn is_zipcode(s: &str) -> bool {
    s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// Two lowercase ASCII letters.
pub fn is_language(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase())
}
