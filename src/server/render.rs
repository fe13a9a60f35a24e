//! How answers look on the wire: the assignment body, RFC 9457 problem
//! bodies (`application/problem+json` with `type`, `title`, `status`,
//! `detail`, and `errors` for validation), and the headers that go with
//! them (`Location`, `Idempotent-Replayed`, `Retry-After`, `Allow`).

use crate::core::{Assignment, AssignmentStatus, Dependency, FieldError, Response};
use crate::server::headers::IDEMPOTENT_REPLAYED;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::StatusCode;
use http_body_util::Full;
use serde::Serialize;
use utoipa::ToSchema;

/// An HTTP response as the server sends it.
pub type Reply = http::Response<Full<Bytes>>;

pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Every problem type the server answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    MalformedRequest,
    NoAvailability,
    IdempotencyKeyInFlight,
    PayloadTooLarge,
    UnsupportedMediaType,
    Validation,
    IdempotencyKeyReuse,
    Overloaded,
    DependencyUnavailable,
    DeadlineExceeded,
    NotFound,
    MethodNotAllowed,
    NotReady,
    RequestTimeout,
}

impl ProblemType {
    /// The `type` member: a URI reference relative to the server.
    pub fn uri(self) -> &'static str {
        match self {
            ProblemType::MalformedRequest => "/problems/malformed-request",
            ProblemType::NoAvailability => "/problems/no-availability",
            ProblemType::IdempotencyKeyInFlight => "/problems/idempotency-key-in-flight",
            ProblemType::PayloadTooLarge => "/problems/payload-too-large",
            ProblemType::UnsupportedMediaType => "/problems/unsupported-media-type",
            ProblemType::Validation => "/problems/validation",
            ProblemType::IdempotencyKeyReuse => "/problems/idempotency-key-reuse",
            ProblemType::Overloaded => "/problems/overloaded",
            ProblemType::DependencyUnavailable => "/problems/dependency-unavailable",
            ProblemType::DeadlineExceeded => "/problems/deadline-exceeded",
            ProblemType::NotFound => "/problems/not-found",
            ProblemType::MethodNotAllowed => "/problems/method-not-allowed",
            ProblemType::NotReady => "/problems/not-ready",
            ProblemType::RequestTimeout => "/problems/request-timeout",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemType::MalformedRequest => "Malformed request",
            ProblemType::NoAvailability => "No agent available",
            ProblemType::IdempotencyKeyInFlight => "Idempotency key in flight",
            ProblemType::PayloadTooLarge => "Payload too large",
            ProblemType::UnsupportedMediaType => "Unsupported media type",
            ProblemType::Validation => "Invalid request",
            ProblemType::IdempotencyKeyReuse => "Idempotency key reused",
            ProblemType::Overloaded => "Overloaded",
            ProblemType::DependencyUnavailable => "Dependency unavailable",
            ProblemType::DeadlineExceeded => "Deadline exceeded",
            ProblemType::NotFound => "Not found",
            ProblemType::MethodNotAllowed => "Method not allowed",
            ProblemType::NotReady => "Not ready",
            ProblemType::RequestTimeout => "Request timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ProblemType::MalformedRequest => StatusCode::BAD_REQUEST,
            ProblemType::NoAvailability | ProblemType::IdempotencyKeyInFlight => {
                StatusCode::CONFLICT
            }
            ProblemType::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::Validation | ProblemType::IdempotencyKeyReuse => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ProblemType::Overloaded
            | ProblemType::DependencyUnavailable
            | ProblemType::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProblemType::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ProblemType::NotFound => StatusCode::NOT_FOUND,
            ProblemType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemType::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// An assignment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AssignmentBody {
    /// `asg_` and 13 characters.
    #[schema(example = "asg_3k9d0x7m2q4vz")]
    pub id: String,
    /// `confirmed` or `cancelled`.
    #[schema(example = "confirmed")]
    pub status: &'static str,
    #[schema(example = "ag-001")]
    pub agent_id: String,
    #[schema(example = "cust-42")]
    pub customer_id: String,
    /// Omitted when the request had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "prop-7")]
    pub property_id: Option<String>,
    #[schema(example = "94107")]
    pub zipcode: String,
    /// RFC 3339, UTC, with a `Z`.
    #[schema(example = "2027-03-01T09:00:00Z")]
    pub start: String,
    /// RFC 3339, UTC, with a `Z`.
    #[schema(example = "2027-03-01T09:30:00Z")]
    pub end: String,
}

impl From<&Assignment> for AssignmentBody {
    fn from(a: &Assignment) -> Self {
        AssignmentBody {
            id: a.id.to_string(),
            status: match a.status {
                AssignmentStatus::Confirmed => "confirmed",
                AssignmentStatus::Cancelled => "cancelled",
            },
            agent_id: a.agent_id.to_string(),
            customer_id: a.customer_id.to_string(),
            property_id: a.property_id.as_ref().map(ToString::to_string),
            zipcode: a.zipcode.to_string(),
            start: a.start.to_rfc3339(),
            end: a.end.to_rfc3339(),
        }
    }
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemBody {
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub kind: &'static str,
    #[schema(example = "Invalid request")]
    pub title: &'static str,
    #[schema(example = 422)]
    pub status: u16,
    pub detail: String,
    /// Every invalid or missing field (validation problems only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldErrorBody>>,
}

/// One invalid or missing field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldErrorBody {
    #[schema(example = "window.end")]
    pub field: &'static str,
    #[schema(example = "must be in the future")]
    pub message: String,
}

/// A problem answer, built up with its optional headers.
pub struct Problem {
    kind: ProblemType,
    detail: String,
    errors: Option<Vec<FieldErrorBody>>,
    retry_after_s: Option<u32>,
    /// Headers that say how to do better (`Allow`, `Accept-Encoding`).
    hints: Vec<(HeaderName, &'static str)>,
}

impl Problem {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            errors: None,
            retry_after_s: None,
            hints: Vec::new(),
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds.max(1));
        self
    }

    /// Adds the header `name: value` to the answer.
    pub fn hint(mut self, name: HeaderName, value: &'static str) -> Self {
        self.hints.push((name, value));
        self
    }

    pub fn errors(mut self, errors: &[FieldError]) -> Self {
        self.errors = Some(
            errors
                .iter()
                .map(|e| FieldErrorBody {
                    field: e.field.name(),
                    message: e.message(),
                })
                .collect(),
        );
        self
    }

    /// A 504. The attempt goes on only while a repeat of its key still
    /// waits for it; the detail says so, since such a repeat may book.
    pub fn deadline_exceeded() -> Self {
        Problem::new(
            ProblemType::DeadlineExceeded,
            "the deadline passed before an answer was ready; nothing was booked, \
             unless a repeat with the same Idempotency-Key still waits for the attempt",
        )
    }

    pub fn overloaded(retry_after_s: u32) -> Self {
        Problem::new(
            ProblemType::Overloaded,
            "the server is too busy to take this request now; retry later",
        )
        .retry_after(retry_after_s)
    }

    pub fn not_found() -> Self {
        Problem::new(ProblemType::NotFound, "there is nothing at this address")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Problem::new(
            ProblemType::MethodNotAllowed,
            format!("this resource answers only {allow}"),
        )
        .hint(ALLOW, allow)
    }

    pub fn into_reply(self) -> Reply {
        let status = self.kind.status();
        let body = ProblemBody {
            kind: self.kind.uri(),
            title: self.kind.title(),
            status: status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut reply = json_reply(status, PROBLEM_JSON, &body);
        let headers = reply.headers_mut();
        if let Some(s) = self.retry_after_s {
            headers.insert(RETRY_AFTER, HeaderValue::from(s));
        }
        for (name, value) in self.hints {
            headers.insert(name, HeaderValue::from_static(value));
        }
        reply
    }
}

/// A JSON body with `status` and `content_type`.
pub fn json_reply(status: StatusCode, content_type: &'static str, body: &impl Serialize) -> Reply {
    // Serializing these plain structs cannot fail.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut reply = http::Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// The answer to a `POST /dispatch` or `DELETE /assignments/{id}`.
pub fn render(response: &Response, replayed: bool) -> Reply {
    let mut reply = match response {
        Response::Assigned(a) => {
            let mut reply = json_reply(StatusCode::CREATED, JSON, &AssignmentBody::from(a));
            if let Ok(location) = HeaderValue::from_str(&format!("/assignments/{}", a.id)) {
                reply.headers_mut().insert(LOCATION, location);
            }
            reply
        }
        Response::Cancelled(a) => json_reply(StatusCode::OK, JSON, &AssignmentBody::from(a)),
        other => problem_for(other).into_reply(),
    };
    if replayed {
        reply
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    reply
}

fn problem_for(response: &Response) -> Problem {
    match response {
        Response::NoAvailability => Problem::new(
            ProblemType::NoAvailability,
            "no agent covering this zipcode is free and allowed anywhere in the window",
        ),
        Response::Invalid(errors) => Problem::new(
            ProblemType::Validation,
            validation_detail(errors),
        )
        .errors(errors),
        Response::KeyReused => Problem::new(
            ProblemType::IdempotencyKeyReuse,
            "this Idempotency-Key was first used with a different payload",
        ),
        Response::KeyInFlight => Problem::new(
            ProblemType::IdempotencyKeyInFlight,
            "too many requests with this Idempotency-Key are already waiting for its running attempt",
        ),
        Response::Overloaded { retry_after_s } => Problem::overloaded(*retry_after_s),
        Response::DependencyUnavailable {
            dependency,
            retry_after_s,
        } => Problem::new(
            ProblemType::DependencyUnavailable,
            format!(
                "the {} failed or could not be reached; retry later",
                dependency_name(*dependency)
            ),
        )
        .retry_after(*retry_after_s),
        Response::DeadlineExceeded => Problem::deadline_exceeded(),
        Response::NotFound => Problem::new(
            ProblemType::NotFound,
            "no assignment has this id (or it is past retention)",
        ),
        Response::Assigned(_) | Response::Cancelled(_) => {
            Problem::new(ProblemType::MalformedRequest, "not a problem")
        }
    }
}

fn dependency_name(d: Dependency) -> &'static str {
    match d {
        Dependency::Availability => "availability service",
        Dependency::Rules => "rules engine",
        Dependency::Journal => "journal",
    }
}

fn validation_detail(errors: &[FieldError]) -> String {
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!("invalid or missing values: {}", listed.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{AssignmentId, Field, Timestamp};
    use http_body_util::BodyExt;

    fn body_json(reply: Reply) -> serde_json::Value {
        let bytes = futures_body(reply);
        serde_json::from_slice(&bytes).unwrap()
    }

    fn futures_body(reply: Reply) -> Bytes {
        // `Full` is ready at once: poll it without a runtime.
        let mut fut = std::pin::pin!(reply.into_body().collect());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::future::Future::poll(fut.as_mut(), &mut cx) {
            std::task::Poll::Ready(Ok(c)) => c.to_bytes(),
            _ => panic!("a full body is ready at once"),
        }
    }

    fn assignment(property: Option<&str>) -> Assignment {
        Assignment {
            id: AssignmentId(7),
            status: AssignmentStatus::Confirmed,
            agent_id: "ag-001".into(),
            customer_id: "cust-42".into(),
            property_id: property.map(Into::into),
            zipcode: "94107".into(),
            start: Timestamp(1_803_891_600_000),
            end: Timestamp(1_803_893_400_000),
        }
    }

    #[test]
    fn created_has_location_and_omits_absent_property() {
        let reply = render(&Response::Assigned(assignment(None)), false);
        assert_eq!(reply.status(), 201);
        let id = AssignmentId(7).to_string();
        assert_eq!(
            reply.headers()[LOCATION],
            format!("/assignments/{id}").as_str()
        );
        assert_eq!(reply.headers()[CONTENT_TYPE], JSON);
        assert!(reply.headers().get(IDEMPOTENT_REPLAYED).is_none());
        let body = body_json(reply);
        assert_eq!(
            body,
            serde_json::json!({"id": id, "status": "confirmed", "agent_id": "ag-001",
                "customer_id": "cust-42", "zipcode": "94107",
                "start": "2027-03-01T09:00:00Z", "end": "2027-03-01T09:30:00Z"})
        );
    }

    #[test]
    fn replays_are_marked() {
        let reply = render(&Response::Assigned(assignment(Some("p"))), true);
        assert_eq!(reply.headers()[IDEMPOTENT_REPLAYED], "true");
        assert_eq!(body_json(reply)["property_id"], "p");
        let reply = render(&Response::NoAvailability, true);
        assert_eq!(reply.status(), 409);
        assert_eq!(reply.headers()[IDEMPOTENT_REPLAYED], "true");
    }

    #[test]
    fn problems_follow_rfc_9457() {
        let cases = [
            (Response::NoAvailability, 409, "/problems/no-availability"),
            (
                Response::KeyInFlight,
                409,
                "/problems/idempotency-key-in-flight",
            ),
            (Response::KeyReused, 422, "/problems/idempotency-key-reuse"),
            (
                Response::Overloaded { retry_after_s: 2 },
                503,
                "/problems/overloaded",
            ),
            (
                Response::DependencyUnavailable {
                    dependency: Dependency::Rules,
                    retry_after_s: 1,
                },
                503,
                "/problems/dependency-unavailable",
            ),
            (
                Response::DeadlineExceeded,
                504,
                "/problems/deadline-exceeded",
            ),
            (Response::NotFound, 404, "/problems/not-found"),
        ];
        for (response, status, kind) in cases {
            let reply = render(&response, false);
            assert_eq!(reply.status(), status);
            assert_eq!(reply.headers()[CONTENT_TYPE], PROBLEM_JSON);
            let retry = reply.headers().get(RETRY_AFTER).cloned();
            assert_eq!(retry.is_some(), status == 503, "{kind}");
            let body = body_json(reply);
            assert_eq!(body["type"], kind);
            assert_eq!(body["status"], status);
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(body.get("errors").is_none());
        }
        let overloaded = render(&Response::Overloaded { retry_after_s: 2 }, false);
        assert_eq!(overloaded.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn validation_lists_every_field() {
        use crate::core::request::Problem as P;
        let errors = vec![
            FieldError {
                field: Field::CustomerId,
                problem: P::Missing,
            },
            FieldError {
                field: Field::WindowEnd,
                problem: P::EndInPast,
            },
        ];
        let reply = render(&Response::Invalid(errors), false);
        assert_eq!(reply.status(), 422);
        let body = body_json(reply);
        assert_eq!(body["type"], "/problems/validation");
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["customer_id", "window.end"]);
        assert!(body["errors"][1]["message"]
            .as_str()
            .unwrap()
            .contains("future"));
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let reply = Problem::method_not_allowed("GET, HEAD").into_reply();
        assert_eq!(reply.status(), 405);
        assert_eq!(reply.headers()[ALLOW], "GET, HEAD");
        assert_eq!(body_json(reply)["type"], "/problems/method-not-allowed");
    }
}
