//! The body of `POST /dispatch`, read strictly: JSON syntax, an object,
//! the right JSON type for every member, no unknown member, no duplicate
//! member, and `duration_minutes` an integer (a number with no fraction and
//! no exponent: `30`, not `30.0`, `3e1` or `"30"`). `null` means absent.
//!
//! Everything here is a 400 (`/problems/malformed-request`). Values are not
//! judged here: the core validates them (422) after the idempotency lookup.

use crate::core::{RawRequest, RawWindow};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// Why a body is malformed; the message goes into the problem's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

/// Parses a dispatch request body.
pub fn parse_dispatch(bytes: &[u8]) -> Result<RawRequest, MalformedBody> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = de.deserialize_any(RequestVisitor).map_err(describe)?;
    de.end().map_err(describe)?;
    Ok(raw)
}

fn describe(e: serde_json::Error) -> MalformedBody {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "the body is not valid JSON",
        Category::Data => "the body does not have the expected shape",
    };
    MalformedBody(format!("{what}: {e}"))
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = RawRequest;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRequest, A::Error> {
        let mut raw = RawRequest::default();
        let mut seen = Seen::default();
        while let Some(member) = map.next_key::<Member>()? {
            let name = seen.first_time(member, "")?;
            let path = name.path();
            match name {
                Name::CustomerId => raw.customer_id = string(&mut map, path)?,
                Name::PropertyId => raw.property_id = string(&mut map, path)?,
                Name::Zipcode => raw.zipcode = string(&mut map, path)?,
                Name::Language => raw.language = string(&mut map, path)?,
                Name::DurationMinutes => raw.duration_minutes = integer(&mut map, path)?,
                Name::Window => {
                    raw.window = map
                        .next_value::<Option<WindowBody>>()
                        .map_err(|e| in_member::<A::Error>(path, e))?
                        .map(|w| w.0)
                }
                Name::Start | Name::End => return Err(unknown_member("", name.key())),
            }
        }
        Ok(raw)
    }
}

struct WindowBody(RawWindow);

impl<'de> de::Deserialize<'de> for WindowBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WindowVisitor).map(WindowBody)
    }
}

struct WindowVisitor;

impl<'de> Visitor<'de> for WindowVisitor {
    type Value = RawWindow;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with `start` and `end`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawWindow, A::Error> {
        let mut window = RawWindow::default();
        let mut seen = Seen::default();
        while let Some(member) = map.next_key::<Member>()? {
            let name = seen.first_time(member, "window.")?;
            match name {
                Name::Start => window.start = string(&mut map, name.path())?,
                Name::End => window.end = string(&mut map, name.path())?,
                other => return Err(unknown_member("window.", other.key())),
            }
        }
        Ok(window)
    }
}

/// The member names the body knows, in the request or in its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    CustomerId,
    PropertyId,
    Zipcode,
    Language,
    DurationMinutes,
    Window,
    Start,
    End,
}

impl Name {
    const ALL: [Name; 8] = [
        Name::CustomerId,
        Name::PropertyId,
        Name::Zipcode,
        Name::Language,
        Name::DurationMinutes,
        Name::Window,
        Name::Start,
        Name::End,
    ];

    fn key(self) -> &'static str {
        match self {
            Name::CustomerId => "customer_id",
            Name::PropertyId => "property_id",
            Name::Zipcode => "zipcode",
            Name::Language => "language",
            Name::DurationMinutes => "duration_minutes",
            Name::Window => "window",
            Name::Start => "start",
            Name::End => "end",
        }
    }

    /// The member's path from the top of the body, for error messages.
    fn path(self) -> &'static str {
        match self {
            Name::Start => "window.start",
            Name::End => "window.end",
            other => other.key(),
        }
    }
}

/// A member name as read: a known one, or any other (kept for its error).
/// Read without allocating when the name is known, which it nearly always is.
enum Member {
    Known(Name),
    Unknown(String),
}

impl<'de> de::Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(MemberVisitor)
    }
}

struct MemberVisitor;

impl Visitor<'_> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
        Ok(match Name::ALL.into_iter().find(|name| name.key() == v) {
            Some(name) => Member::Known(name),
            None => Member::Unknown(v.to_owned()),
        })
    }
}

/// The known members seen so far in one object.
#[derive(Default)]
struct Seen(u16);

impl Seen {
    /// The name of `member` if the body knows it and it was not seen in
    /// this object before; `prefix` leads the name in errors. Whether the
    /// name belongs to this object is the caller's to judge.
    fn first_time<E: de::Error>(&mut self, member: Member, prefix: &str) -> Result<Name, E> {
        let name = match member {
            Member::Known(name) => name,
            Member::Unknown(key) => return Err(unknown_member(prefix, &key)),
        };
        let bit = 1 << name as u16;
        if self.0 & bit != 0 {
            return Err(E::custom(format_args!(
                "duplicate member `{prefix}{}`",
                name.key()
            )));
        }
        self.0 |= bit;
        Ok(name)
    }
}

fn unknown_member<E: de::Error>(prefix: &str, key: &str) -> E {
    E::custom(format_args!("unknown member `{prefix}{key}`"))
}

fn in_member<E: de::Error>(name: &str, e: impl fmt::Display) -> E {
    E::custom(format_args!("`{name}`: {e}"))
}

fn string<'de, A: MapAccess<'de>>(map: &mut A, name: &str) -> Result<Option<String>, A::Error> {
    map.next_value::<Option<String>>()
        .map_err(|e| in_member::<A::Error>(name, e))
}

/// An integer member: read as raw JSON text so that `30.0` and `3e1` (which
/// a float parser would accept) are told apart from `30`. An integer too
/// large for `i64` is still an integer; it saturates, and validation then
/// calls it out of range.
fn integer<'de, A: MapAccess<'de>>(map: &mut A, name: &str) -> Result<Option<i64>, A::Error> {
    let raw: &RawValue = map.next_value()?;
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    let is_integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if !is_integer {
        let kind = if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            "a number with a fraction or an exponent"
        } else {
            "not a number"
        };
        return Err(in_member::<A::Error>(
            name,
            format_args!("must be an integer, got {text} ({kind})"),
        ));
    }
    let negative = text.starts_with('-');
    let value = digits.parse::<i64>().unwrap_or(i64::MAX);
    Ok(Some(if negative { -value } else { value }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> RawRequest {
        parse_dispatch(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn bad(text: &str) -> String {
        match parse_dispatch(text.as_bytes()) {
            Ok(r) => panic!("{text} parsed as {r:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn reads_every_member() {
        let r = ok(r#"{"customer_id":"c","property_id":"p","zipcode":"94107",
            "window":{"start":"a","end":"b"},"duration_minutes":30,"language":"es"}"#);
        assert_eq!(r.customer_id.as_deref(), Some("c"));
        assert_eq!(r.property_id.as_deref(), Some("p"));
        assert_eq!(r.zipcode.as_deref(), Some("94107"));
        assert_eq!(r.duration_minutes, Some(30));
        assert_eq!(r.language.as_deref(), Some("es"));
        let w = r.window.unwrap();
        assert_eq!(
            (w.start.as_deref(), w.end.as_deref()),
            (Some("a"), Some("b"))
        );
    }

    #[test]
    fn null_is_absent_and_missing_is_fine_here() {
        let r = ok(r#"{"customer_id":null,"window":{"start":null},"duration_minutes":null}"#);
        assert_eq!(r.customer_id, None);
        assert_eq!(r.duration_minutes, None);
        assert_eq!(r.window, Some(RawWindow::default()));
        assert_eq!(ok("{}"), RawRequest::default());
        assert_eq!(ok(r#"{"window":null}"#).window, None);
    }

    #[test]
    fn integers_have_no_fraction_or_exponent() {
        assert_eq!(ok(r#"{"duration_minutes":-5}"#).duration_minutes, Some(-5));
        assert_eq!(ok(r#"{"duration_minutes": 0 }"#).duration_minutes, Some(0));
        assert_eq!(
            ok(r#"{"duration_minutes":100000000000000000000}"#).duration_minutes,
            Some(i64::MAX)
        );
        for v in ["30.0", "30.5", "3e1", "3E1", "\"30\"", "true", "[30]", "{}"] {
            let e = bad(&format!(r#"{{"duration_minutes":{v}}}"#));
            assert!(e.contains("duration_minutes"), "{v}: {e}");
        }
    }

    #[test]
    fn refuses_wrong_shapes() {
        for text in [
            "",
            "not json",
            "[]",
            "\"text\"",
            "null",
            "{} {}",
            "{\"customer_id\":5}",
            "{\"window\":\"today\"}",
            "{\"window\":{\"start\":1}}",
            "{\"zipcode\":[\"94107\"]}",
        ] {
            bad(text);
        }
        assert!(bad(r#"{"extra":1}"#).contains("unknown member `extra`"));
        assert!(bad(r#"{"window":{"middle":"x"}}"#).contains("window.middle"));
        assert!(bad(r#"{"zipcode":"1","zipcode":"2"}"#).contains("duplicate member"));
        assert!(bad(r#"{"zipcode":"1","zip\u0063ode":"2"}"#).contains("duplicate member"));
        assert!(
            bad(r#"{"window":{"end":"1","end":"2"}}"#).contains("duplicate member `window.end`")
        );
        // A name of the other object is as unknown as any other.
        assert!(bad(r#"{"start":"1"}"#).contains("unknown member `start`"));
        assert!(bad(r#"{"window":{"zipcode":"1"}}"#).contains("unknown member `window.zipcode`"));
        assert!(bad(r#"{"customer_id":null,"customer_id":null}"#).contains("duplicate"));
        assert!(bad("[1,2]").contains("shape"));
        assert!(bad("{").contains("not valid JSON"));
    }

    #[test]
    fn refuses_invalid_utf8_and_lone_surrogates() {
        assert!(parse_dispatch(b"{\"customer_id\":\"\xff\"}").is_err());
        bad(r#"{"customer_id":"\ud800"}"#);
    }
}
