//! The `http_request` target: an arbitrary method, path, headers and body
//! through the server's checks before the core ([`decode`]), then the
//! core's validation, without a socket.
//!
//! Properties: no panic; every answer given before the core has a status
//! API.md allows for that path and method (404 unknown path, 405 with
//! `Allow`, and for `POST /dispatch` 413 over 16 KiB before anything else,
//! then 415 without a JSON content type or with a content coding other than
//! `identity`, then 400), rendered as an RFC 9457 problem whose `status` is
//! the HTTP status; a submission that passed has no content coding but
//! `identity`, a well-formed key and timeout, its body's canonical JSON parses back to
//! the same body, and validation answers a valid request or a 422 listing
//! fields; an assignment id that parses prints back to itself.

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use std::future::Future;
use tour_dispatcher::core::{validate, AssignmentId, Config, Response, Timestamp};
use tour_dispatcher::server::body::parse_dispatch;
use tour_dispatcher::server::headers::{is_json, is_unencoded, MAX_KEY_LEN};
use tour_dispatcher::server::http::{decode, Decoded, Submission};
use tour_dispatcher::server::render::{render, Reply, PROBLEM_JSON};
use tour_dispatcher::server::settings::MAX_BODY_BYTES;

const MAX_TIMEOUT_MS: u64 = 30_000;
/// When the core validates: 2027-03-01T00:00:00Z.
const NOW: Timestamp = Timestamp(1_803_945_600_000);
const KNOWN_PATHS: [&str; 6] = [
    "/dispatch",
    "/livez",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

#[derive(Arbitrary, Debug)]
enum MethodPlan {
    Get,
    Head,
    Post,
    Delete,
    Put,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum PathPlan {
    Known(u8),
    Assignment(String),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum NamePlan {
    ContentType,
    ContentEncoding,
    IdempotencyKey,
    Timeout,
    ContentLength,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum ValuePlan {
    Json,
    Text(String),
    Bytes(Vec<u8>),
}

/// A JSON value, written by hand so that duplicate members, exponents and
/// fractions are all within reach; two levels deep at most (the body and
/// its window), so that drawing one never recurses.
#[derive(Arbitrary, Debug)]
enum Json {
    Scalar(Scalar),
    Object(Vec<(String, Scalar)>),
    Array(Vec<Scalar>),
}

#[derive(Arbitrary, Debug)]
enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    /// Digits as written: `30.0`, `3e1`, `-0`.
    Number(String),
    Str(String),
    DateTime(u16),
}

#[derive(Arbitrary, Debug)]
enum BodyPlan {
    Raw(Vec<u8>),
    Members(Vec<(MemberPlan, Json)>),
    /// Padding up to past the limit.
    Large(u16),
}

#[derive(Arbitrary, Debug)]
enum MemberPlan {
    Known(u8),
    Any(String),
}

const MEMBERS: [&str; 9] = [
    "customer_id",
    "property_id",
    "zipcode",
    "window",
    "start",
    "end",
    "duration_minutes",
    "language",
    "extra",
];

#[derive(Arbitrary, Debug)]
struct Request {
    method: MethodPlan,
    path: PathPlan,
    headers: Vec<(NamePlan, ValuePlan)>,
    body: BodyPlan,
}

pub fn run(data: &[u8]) {
    let Ok(plan) = Request::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    // What hyper would refuse before the server sees it is out of scope.
    let Some(method) = method(&plan.method) else {
        return;
    };
    let Ok(uri) = path(&plan.path).parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &plan.headers {
        if let (Some(n), Some(v)) = (header_name(name), header_value(value)) {
            headers.append(n, v);
        }
    }
    let body = body(&plan.body);
    let path = uri.path();
    match decode(&method, path, &headers, &body, MAX_TIMEOUT_MS) {
        Decoded::Answered(reply) => check_refusal(&method, path, &headers, &body, reply),
        Decoded::Submit(submission) => {
            assert!(is_unencoded(&headers), "a coding was let through");
            check_submission(&method, path, &body, &submission)
        }
        Decoded::Routed => check_routed(&method, path),
    }
}

fn check_refusal(method: &Method, path: &str, headers: &HeaderMap, body: &[u8], reply: Reply) {
    let status = reply.status();
    match known(path) {
        None => assert_eq!(status, StatusCode::NOT_FOUND, "{path}"),
        Some(_) if status == StatusCode::METHOD_NOT_ALLOWED => {
            assert!(reply.headers().contains_key(http::header::ALLOW));
        }
        Some("/dispatch") if *method == Method::POST => {
            let expected = if body.len() > MAX_BODY_BYTES {
                Some(StatusCode::PAYLOAD_TOO_LARGE)
            } else if !headers.contains_key(http::header::CONTENT_TYPE)
                || (is_json(headers) && !is_unencoded(headers))
            {
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            } else {
                None
            };
            let allowed = [
                StatusCode::PAYLOAD_TOO_LARGE,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                StatusCode::BAD_REQUEST,
            ];
            assert!(allowed.contains(&status), "{status}");
            if let Some(e) = expected {
                assert_eq!(status, e, "checks out of order");
            }
        }
        Some(p) => panic!("{method} {p} refused with {status}"),
    }
    check_problem(reply);
}

fn check_submission(method: &Method, path: &str, body: &[u8], s: &Submission) {
    assert_eq!((method, path), (&Method::POST, "/dispatch"));
    assert!(body.len() <= MAX_BODY_BYTES);
    if let Some(key) = &s.idempotency_key {
        assert!((1..=MAX_KEY_LEN).contains(&key.len()), "{key:?}");
        assert!(key.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{key:?}");
    }
    if let Some(ms) = s.timeout_ms {
        assert!((1..=MAX_TIMEOUT_MS).contains(&ms), "{ms}");
    }
    let canonical = s.body.canonical_json();
    let reparsed = parse_dispatch(&canonical).expect("the canonical form parses");
    assert_eq!(reparsed, s.body, "{}", String::from_utf8_lossy(&canonical));
    match validate(&s.body, NOW, &Config::default()) {
        Ok(r) => {
            assert!(r.window.start < r.window.end);
            assert!((15..=240).contains(&r.duration_min));
            assert!(r.duration_ms() <= r.window.len_ms());
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal names a field");
            let reply = render(&Response::Invalid(errors), false);
            assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
            check_problem(reply);
        }
    }
}

fn check_routed(method: &Method, path: &str) {
    let Some(known) = known(path) else {
        panic!("{method} {path} routed");
    };
    if let Some(text) = known.strip_prefix("/assignments/") {
        if let Ok(id) = text.parse::<AssignmentId>() {
            assert_eq!(id.to_string().parse::<AssignmentId>(), Ok(id), "{text}");
        }
    }
}

/// The problem body: JSON, with the reply's status, a type and a title.
fn check_problem(reply: Reply) {
    let (parts, body) = reply.into_parts();
    let content_type = parts.headers.get(http::header::CONTENT_TYPE);
    assert_eq!(
        content_type.map(HeaderValue::as_bytes),
        Some(PROBLEM_JSON.as_bytes())
    );
    let bytes = collect(body);
    let problem: serde_json::Value = serde_json::from_slice(&bytes).expect("a problem is JSON");
    assert_eq!(problem["status"], parts.status.as_u16(), "{problem}");
    let kind = problem["type"].as_str().unwrap_or_default();
    assert!(kind.starts_with("/problems/"), "{problem}");
    assert!(problem["title"].is_string(), "{problem}");
}

fn collect(body: Full<Bytes>) -> Bytes {
    let mut future = std::pin::pin!(body.collect());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(collected)) => collected.to_bytes(),
        _ => panic!("a full body is ready at once"),
    }
}

/// The path as the server knows it, if it does.
fn known(path: &str) -> Option<&str> {
    let assignment = path
        .strip_prefix("/assignments/")
        .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    (assignment || KNOWN_PATHS.contains(&path)).then_some(path)
}

fn method(plan: &MethodPlan) -> Option<Method> {
    Some(match plan {
        MethodPlan::Get => Method::GET,
        MethodPlan::Head => Method::HEAD,
        MethodPlan::Post => Method::POST,
        MethodPlan::Delete => Method::DELETE,
        MethodPlan::Put => Method::PUT,
        MethodPlan::Other(s) => Method::from_bytes(s.as_bytes()).ok()?,
    })
}

fn path(plan: &PathPlan) -> String {
    match plan {
        PathPlan::Known(i) => KNOWN_PATHS[usize::from(*i) % KNOWN_PATHS.len()].into(),
        PathPlan::Assignment(id) => format!("/assignments/{id}"),
        PathPlan::Raw(p) => p.clone(),
    }
}

fn header_name(plan: &NamePlan) -> Option<HeaderName> {
    match plan {
        NamePlan::ContentType => Some(http::header::CONTENT_TYPE),
        NamePlan::ContentEncoding => Some(http::header::CONTENT_ENCODING),
        NamePlan::IdempotencyKey => Some(HeaderName::from_static("idempotency-key")),
        NamePlan::Timeout => Some(HeaderName::from_static("x-request-timeout-ms")),
        NamePlan::ContentLength => Some(http::header::CONTENT_LENGTH),
        NamePlan::Raw(s) => HeaderName::from_bytes(s.as_bytes()).ok(),
    }
}

fn header_value(plan: &ValuePlan) -> Option<HeaderValue> {
    match plan {
        ValuePlan::Json => Some(HeaderValue::from_static("application/json")),
        ValuePlan::Text(s) => HeaderValue::from_str(s).ok(),
        ValuePlan::Bytes(b) => HeaderValue::from_bytes(b).ok(),
    }
}

fn body(plan: &BodyPlan) -> Vec<u8> {
    match plan {
        BodyPlan::Raw(b) => b.clone(),
        BodyPlan::Members(members) => {
            let mut text = String::from("{");
            for (i, (name, value)) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                let name = match name {
                    MemberPlan::Known(i) => MEMBERS[usize::from(*i) % MEMBERS.len()],
                    MemberPlan::Any(s) => s,
                };
                text.push_str(&quoted(name));
                text.push(':');
                write_json(&mut text, value);
            }
            text.push('}');
            text.into_bytes()
        }
        BodyPlan::Large(extra) => {
            let mut b = br#"{"zipcode": "94107"}"#.to_vec();
            b.resize(MAX_BODY_BYTES - 64 + usize::from(*extra), b' ');
            b
        }
    }
}

fn write_json(out: &mut String, value: &Json) {
    match value {
        Json::Scalar(s) => write_scalar(out, s),
        Json::Object(members) => {
            out.push('{');
            for (i, (name, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quoted(name));
                out.push(':');
                write_scalar(out, value);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(out, item);
            }
            out.push(']');
        }
    }
}

fn write_scalar(out: &mut String, value: &Scalar) {
    match value {
        Scalar::Null => out.push_str("null"),
        Scalar::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Scalar::Int(n) => out.push_str(&n.to_string()),
        Scalar::Number(s) => out.push_str(s),
        Scalar::Str(s) => out.push_str(&quoted(s)),
        Scalar::DateTime(hours) => {
            let at = NOW.plus_ms(u64::from(*hours) * 3_600_000);
            out.push_str(&quoted(&at.to_rfc3339()));
        }
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
