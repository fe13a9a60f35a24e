//! The OpenAPI 3.1 document served at `/openapi.json`, generated with
//! `utoipa` from the response types the server renders and the operations
//! declared below (one annotated item per operation).

use crate::server::render::{AssignmentBody, FieldErrorBody, ProblemBody};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The body of `POST /dispatch`.
#[allow(dead_code)] // documentation only: the server reads the body strictly by hand
#[derive(Serialize, ToSchema)]
pub struct DispatchRequestBody {
    /// 1–64 of `A-Z a-z 0-9 . _ -`.
    #[schema(example = "cust-42")]
    customer_id: String,
    /// Optional; 1–64 of `A-Z a-z 0-9 . _ -`.
    #[schema(example = "prop-7")]
    property_id: Option<String>,
    /// Exactly 5 ASCII digits.
    #[schema(example = "94107")]
    zipcode: String,
    window: WindowBody,
    /// An integer from 15 to 240, not longer than the window.
    #[schema(example = 30, minimum = 15, maximum = 240)]
    duration_minutes: i64,
    /// Optional; two lowercase ASCII letters.
    #[schema(example = "es")]
    language: Option<String>,
}

/// RFC 3339 date-times with an offset; end > start; at most 14 days long;
/// ending in the future and within the horizon.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct WindowBody {
    #[schema(example = "2027-03-01T09:00:00Z")]
    start: String,
    #[schema(example = "2027-03-01T12:00:00Z")]
    end: String,
}

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
pub struct StatusBody {
    #[schema(example = "ok")]
    status: String,
}

/// Assigns an agent to a tour.
#[utoipa::path(
    post,
    path = "/dispatch",
    tag = "dispatch",
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false,
         min_length = 1, pattern = r"^[\x21-\x7E]+$",
         description = "1–255 characters in 0x21–0x7E; `\"abc\"` (the structured-field string) names the same key as `abc`. Repeats within the TTL replay the first answer."),
        ("X-Request-Timeout-Ms" = Option<u64>, Header, nullable = false, minimum = 1,
         description = "The deadline in milliseconds, 1..=--max-timeout-ms (default --default-timeout-ms)."),
    ),
    request_body(content = DispatchRequestBody, content_type = "application/json",
                 description = "At most 16 KiB."),
    responses(
        (status = 201, description = "Assigned. Replays carry `Idempotent-Replayed: true`.",
         body = AssignmentBody,
         headers(("Location" = String, description = "/assignments/{id}"),
                 ("Idempotent-Replayed" = String, description = "`true` on a replayed answer, or on the answer of a running attempt that a repeat waited for"))),
        (status = 400, description = "Malformed request (headers, JSON syntax or types, unknown or duplicate members): `/problems/malformed-request`.",
         body = ProblemBody, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within --header-read-timeout-ms: `/problems/request-timeout`.",
         body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "No agent can take it (`/problems/no-availability`), or the key's running attempt already has --max-joiners waiting (`/problems/idempotency-key-in-flight`).",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Idempotent-Replayed" = String, description = "`true` when replayed, as on the 201"))),
        (status = 413, description = "The body is larger than 16 KiB: `/problems/payload-too-large`.",
         body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "The body is not declared as JSON, or has a Content-Encoding other than `identity`: `/problems/unsupported-media-type`.",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Accept-Encoding" = String, description = "`identity`, when the body's content coding was the trouble"))),
        (status = 422, description = "Invalid or missing values, all listed in `errors` (`/problems/validation`), or the key was used with another payload (`/problems/idempotency-key-reuse`).",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Idempotent-Replayed" = String, description = "`true` when replayed, as on the 201"))),
        (status = 503, description = "Overloaded or draining (`/problems/overloaded`), or availability, rules or the journal failed (`/problems/dependency-unavailable`).",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Whole seconds, at least 1"),
                 ("Idempotent-Replayed" = String, description = "`true` when replayed, as on the 201"))),
        (status = 504, description = "The deadline passed first; nothing was booked unless a repeat of the key still waits for the attempt: `/problems/deadline-exceeded`.",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Idempotent-Replayed" = String, description = "`true` when replayed, as on the 201"))),
    )
)]
#[allow(dead_code)]
fn dispatch() {}

/// Reads an assignment.
#[utoipa::path(
    get,
    path = "/assignments/{id}",
    tag = "assignments",
    params(("id" = String, Path, description = "`asg_` and 13 characters")),
    responses(
        (status = 200, description = "The assignment, `confirmed` or `cancelled`.", body = AssignmentBody),
        (status = 404, description = "Unknown or past retention: `/problems/not-found`.",
         body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The dispatcher's control channel is full (`--inbox-capacity`): `/problems/overloaded`.",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Whole seconds, at least 1"))),
    )
)]
#[allow(dead_code)]
fn get_assignment() {}

/// Cancels an assignment; its time is free again once the cancel is durable.
#[utoipa::path(
    delete,
    path = "/assignments/{id}",
    tag = "assignments",
    params(("id" = String, Path, description = "`asg_` and 13 characters")),
    responses(
        (status = 200, description = "The assignment, now `cancelled` (also when repeated).", body = AssignmentBody),
        (status = 404, description = "Unknown: `/problems/not-found`.",
         body = ProblemBody, content_type = "application/problem+json"),
        (status = 503, description = "The journal cannot write (`/problems/dependency-unavailable`), or the dispatcher's control channel is full (`/problems/overloaded`).",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Whole seconds, at least 1"))),
    )
)]
#[allow(dead_code)]
fn cancel_assignment() {}

/// Liveness (alias `/healthz`).
#[utoipa::path(get, path = "/livez", tag = "operations",
    responses((status = 200, description = "The process runs.", body = StatusBody)))]
#[allow(dead_code)]
fn livez() {}

/// Liveness (alias of `/livez`).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process runs.", body = StatusBody)))]
#[allow(dead_code)]
fn healthz() {}

/// Readiness.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Recovered and accepting.", body = StatusBody),
        (status = 503, description = "Starting, draining, or the journal cannot write: `/problems/not-ready`.",
         body = ProblemBody, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "Whole seconds, at least 1"))),
    ))]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition (OpenMetrics when asked for).",
               body = String, content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
#[allow(dead_code)]
fn openapi() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tour-dispatcher",
        description = "Assigns field agents to property tours."
    ),
    paths(
        dispatch,
        get_assignment,
        cancel_assignment,
        livez,
        healthz,
        readyz,
        metrics,
        openapi
    ),
    components(schemas(
        AssignmentBody,
        ProblemBody,
        FieldErrorBody,
        DispatchRequestBody,
        WindowBody,
        StatusBody
    ))
)]
struct ApiDoc;

/// The document as JSON.
pub fn document() -> Vec<u8> {
    // A document built from static declarations always serializes.
    ApiDoc::openapi().to_json().unwrap_or_default().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_endpoint() {
        let doc: serde_json::Value = serde_json::from_slice(&document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/dispatch",
            "/assignments/{id}",
            "/livez",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path}");
        }
        let dispatch = &doc["paths"]["/dispatch"]["post"]["responses"];
        for status in [
            "201", "400", "408", "409", "413", "415", "422", "503", "504",
        ] {
            assert!(dispatch.get(status).is_some(), "{status}");
        }
        assert!(doc["paths"]["/assignments/{id}"]["delete"].is_object());
        assert!(doc["components"]["schemas"]["AssignmentBody"].is_object());
    }
}
