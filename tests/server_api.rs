//! The rows of API.md's tables, one by one, against a real server over
//! loopback: statuses, headers, problem types and the `errors` list, and the
//! order in which the checks of `POST /dispatch` run.

mod server_support;

use http::Method;
use serde_json::{json, Value};
use server_support::*;

const MALFORMED: &str = "/problems/malformed-request";

#[tokio::test]
async fn a_created_assignment_has_the_api_shape() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let mut body = good_request("cust-42");
    body["property_id"] = json!("prop-7");
    body["language"] = json!("es");
    let reply = client.dispatch(&body).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(!reply.replayed());
    let a = reply.json();
    let id = a["id"].as_str().unwrap();
    assert!(id.starts_with("asg_") && id.len() == 17, "{id}");
    assert_eq!(
        reply.header("location"),
        Some(format!("/assignments/{id}").as_str())
    );
    let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent_id",
            "customer_id",
            "end",
            "id",
            "property_id",
            "start",
            "status",
            "zipcode"
        ]
    );
    assert_eq!(a["status"], "confirmed");
    assert_eq!(a["customer_id"], "cust-42");
    assert_eq!(a["property_id"], "prop-7");
    assert_eq!(a["zipcode"], "94107");
    // The earliest start, and at 09:00 the only demo agent of 9410x who
    // speaks Spanish is ag-9410x-1.
    let (start, _) = window(1, 9.0, 12.0);
    assert_eq!(a["start"].as_str().unwrap(), start.as_str());
    assert!(a["start"].as_str().unwrap().ends_with('Z'));
    assert!(a["end"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        millis(a["end"].as_str().unwrap()) - millis(a["start"].as_str().unwrap()),
        30 * 60_000
    );
    assert_eq!(a["agent_id"], "ag-9410x-1");

    let read = client.get(&format!("/assignments/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.header("content-type"), Some("application/json"));
    assert_eq!(read.json(), a);
    server.stop().await;
}

#[tokio::test]
async fn property_id_is_omitted_when_absent_or_null() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let a = client.dispatch(&good_request("c1")).await;
    assert_eq!(a.status, 201);
    assert!(a.json().get("property_id").is_none());
    let mut body = good_request("c2");
    body["property_id"] = Value::Null;
    body["language"] = Value::Null;
    let b = client.dispatch(&body).await;
    assert_eq!(b.status, 201, "null in an optional field is absent: {b:?}");
    assert!(b.json().get("property_id").is_none());
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let valid = serde_json::to_string(&good_request("c")).unwrap();
    let with_duration = |d: &str| {
        valid.replace(
            "\"duration_minutes\":30",
            &format!("\"duration_minutes\":{d}"),
        )
    };
    let bodies = [
        "not json".to_owned(),
        "".to_owned(),
        "[1, 2]".to_owned(),
        "\"a string\"".to_owned(),
        "null".to_owned(),
        format!("{valid} {{}}"),
        with_duration("\"30\""),
        with_duration("30.5"),
        with_duration("30.0"),
        with_duration("3e1"),
        with_duration("true"),
        valid.replace("\"customer_id\":\"c\"", "\"customer_id\":42"),
        valid.replace("\"zipcode\":\"94107\"", "\"zipcode\":94107"),
        valid.replace("{\"customer_id\"", "{\"extra\":1,\"customer_id\""),
        valid.replace("{\"customer_id\"", "{\"zipcode\":\"94107\",\"customer_id\""),
        valid.replace("\"window\":{", "\"window\":{\"middle\":\"x\","),
        valid.replace("\"window\":{\"", "\"window\":{\"end\":\"x\",\""),
        json!({"customer_id": "c", "window": "tomorrow"}).to_string(),
    ];
    for body in bodies {
        assert!(body != valid);
        let reply = client.dispatch_raw(body.clone(), &[]).await;
        assert_eq!(reply.status, 400, "{body}: {reply:?}");
        assert_eq!(reply.problem_type(), MALFORMED, "{body}");
        assert!(reply.json().get("errors").is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_headers_are_400() {
    let server = TestServer::start(&["--max-timeout-ms", "5000"]).await;
    let client = server.client();
    let body = good_request("c");
    let long_key = "k".repeat(256);
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("idempotency-key", "")],
        vec![("idempotency-key", "has space")],
        vec![("idempotency-key", long_key.as_str())],
        vec![("idempotency-key", "\"\"")],
        vec![("idempotency-key", "a"), ("idempotency-key", "b")],
        vec![("x-request-timeout-ms", "0")],
        vec![("x-request-timeout-ms", "5001")],
        vec![("x-request-timeout-ms", "-5")],
        vec![("x-request-timeout-ms", "1.5")],
        vec![("x-request-timeout-ms", "soon")],
    ];
    for headers in cases {
        let reply = client.dispatch_with(&body, &headers).await;
        assert_eq!(reply.status, 400, "{headers:?}: {reply:?}");
        assert_eq!(reply.problem_type(), MALFORMED, "{headers:?}");
    }
    let longest = "k".repeat(255);
    let ok = client
        .dispatch_with(
            &body,
            &[
                ("idempotency-key", longest.as_str()),
                ("x-request-timeout-ms", "5000"),
            ],
        )
        .await;
    assert_eq!(ok.status, 201, "{ok:?}");
    server.stop().await;
}

#[tokio::test]
async fn content_type_must_be_json() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let body = serde_json::to_vec(&good_request("c")).unwrap();
    for headers in [
        vec![("content-type", "text/plain")],
        vec![("content-type", "application/x-www-form-urlencoded")],
        vec![],
    ] {
        let reply = client
            .send(Method::POST, "/dispatch", &headers, body.clone())
            .await;
        assert_eq!(reply.status, 415, "{headers:?}");
        assert_eq!(reply.problem_type(), "/problems/unsupported-media-type");
    }
    // A content coding the server does not decode is a 415 too, and says
    // which coding it takes.
    let reply = client
        .send(
            Method::POST,
            "/dispatch",
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, 415, "{reply:?}");
    assert_eq!(reply.problem_type(), "/problems/unsupported-media-type");
    assert_eq!(reply.header("accept-encoding"), Some("identity"));
    let reply = client
        .send(
            Method::POST,
            "/dispatch",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("content-encoding", "identity"),
            ],
            body,
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_16_kib_are_413() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let text = serde_json::to_string(&good_request("c")).unwrap();
    let padded = |len: usize| format!("{text}{}", " ".repeat(len - text.len()));
    let reply = client.dispatch_raw(padded(16 * 1024 + 1), &[]).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.problem_type(), "/problems/payload-too-large");
    let reply = client.dispatch_raw(padded(16 * 1024), &[]).await;
    assert_eq!(reply.status, 201, "exactly 16 KiB is fine: {reply:?}");
    server.stop().await;
}

#[tokio::test]
async fn checks_run_in_the_api_order() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let big = "x".repeat(20_000);
    // Method before anything.
    let reply = client
        .send(
            Method::PUT,
            "/dispatch",
            &[("content-type", "text/plain")],
            big.clone(),
        )
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    // Size before content type.
    let reply = client
        .send(
            Method::POST,
            "/dispatch",
            &[("content-type", "text/plain")],
            big,
        )
        .await;
    assert_eq!(reply.status, 413);
    // Content type before headers.
    let reply = client
        .send(
            Method::POST,
            "/dispatch",
            &[
                ("content-type", "text/plain"),
                ("idempotency-key", "bad key"),
            ],
            "{}",
        )
        .await;
    assert_eq!(reply.status, 415);
    // Headers before JSON.
    let reply = client
        .dispatch_raw("not json", &[("x-request-timeout-ms", "0")])
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["detail"]
        .as_str()
        .unwrap()
        .contains("X-Request-Timeout-Ms"));
    // JSON before the key: a 400 never consults the key...
    let body = good_request("c");
    let first = client
        .dispatch_with(&body, &[("idempotency-key", "order")])
        .await;
    assert_eq!(first.status, 201);
    let reply = client
        .dispatch_raw("{", &[("idempotency-key", "order")])
        .await;
    assert_eq!(reply.status, 400);
    let again = client
        .dispatch_with(&body, &[("idempotency-key", "order")])
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.json(), first.json());
    // ...and the key before values: invalid values with a used key are a reuse.
    let invalid = json!({"customer_id": ""});
    let reply = client
        .dispatch_with(&invalid, &[("idempotency-key", "order")])
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.problem_type(), "/problems/idempotency-key-reuse");
    server.stop().await;
}

fn error_fields(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 422, "{reply:?}");
    assert_eq!(reply.problem_type(), "/problems/validation");
    let body = reply.json();
    body["errors"]
        .as_array()
        .expect("an errors list")
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            e["field"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn validation_lists_every_invalid_or_missing_field() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let reply = client.dispatch(&json!({})).await;
    assert_eq!(
        error_fields(&reply),
        ["customer_id", "zipcode", "window", "duration_minutes"]
    );
    let reply = client
        .dispatch(&json!({"customer_id": null, "zipcode": null, "window": null, "duration_minutes": null}))
        .await;
    assert_eq!(
        error_fields(&reply),
        ["customer_id", "zipcode", "window", "duration_minutes"],
        "null in a required field is missing"
    );
    let (past_start, past_end) = window(-2, 9.0, 10.0);
    let reply = client
        .dispatch(&json!({
            "customer_id": "", "property_id": "bad id!", "zipcode": "941",
            "window": {"start": past_start, "end": past_end},
            "duration_minutes": 10, "language": "EN",
        }))
        .await;
    assert_eq!(
        error_fields(&reply),
        [
            "customer_id",
            "property_id",
            "zipcode",
            "window.end",
            "duration_minutes",
            "language"
        ]
    );
    let (start, _) = window(1, 9.0, 10.0);
    let reply = client
        .dispatch(&json!({
            "customer_id": "c", "zipcode": "94107",
            "window": {"start": start, "end": "2027-03-01T12:00:00"},
            "duration_minutes": 30,
        }))
        .await;
    assert_eq!(
        error_fields(&reply),
        ["window.end"],
        "no offset: an invalid value"
    );
    let mut long = good_request("c");
    long["duration_minutes"] = json!(241);
    assert_eq!(
        error_fields(&client.dispatch(&long).await),
        ["duration_minutes"]
    );
    let reply = client.dispatch(&request("c", "94107", 1, 9.0, 9.25)).await;
    assert_eq!(
        error_fields(&reply),
        ["duration_minutes"],
        "longer than the window"
    );
    let reply = client
        .dispatch(&request("c", "94107", 400, 9.0, 10.0))
        .await;
    assert_eq!(error_fields(&reply), ["window.end"], "beyond the horizon");
    let reply = client
        .dispatch(&request("c", "94107", 1, 0.0, 24.0 * 15.0))
        .await;
    assert_eq!(error_fields(&reply), ["window"], "more than 14 days");
    server.stop().await;
}

#[tokio::test]
async fn no_agent_is_409_no_availability() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let reply = client.dispatch(&request("c", "99999", 1, 9.0, 12.0)).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.problem_type(), "/problems/no-availability");
    // Nobody in 9410x speaks Japanese at 06:00-07:00 (ag-941xx works 10-18).
    let mut body = request("c", "94107", 1, 6.0, 7.0);
    body["language"] = json!("ja");
    let reply = client.dispatch(&body).await;
    assert_eq!(reply.status, 409);
    assert_eq!(reply.problem_type(), "/problems/no-availability");
    server.stop().await;
}

#[tokio::test]
async fn assignments_read_cancel_and_not_found() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let created = client.dispatch(&good_request("c")).await.json();
    let path = format!("/assignments/{}", created["id"].as_str().unwrap());
    let cancelled = client.delete(&path).await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(cancelled.header("content-type"), Some("application/json"));
    let body = cancelled.json();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["id"], created["id"]);
    assert_eq!(body["start"], created["start"]);
    let again = client.delete(&path).await;
    assert_eq!(again.status, 200, "repeating a cancel is fine");
    assert_eq!(again.json(), body);
    let read = client.get(&path).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["status"], "cancelled");
    for unknown in ["/assignments/asg_0000000000000", "/assignments/nonsense"] {
        let reply = client.get(unknown).await;
        assert_eq!(reply.status, 404, "{unknown}");
        assert_eq!(reply.problem_type(), "/problems/not-found");
        let reply = client.delete(unknown).await;
        assert_eq!(reply.status, 404, "{unknown}");
        assert_eq!(reply.problem_type(), "/problems/not-found");
    }
    server.stop().await;
}

#[tokio::test]
async fn operational_endpoints() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    for path in ["/livez", "/healthz", "/readyz"] {
        let reply = client.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    let doc = client.get("/openapi.json").await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("content-type"), Some("application/json"));
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/dispatch"]["post"].is_object());
    for path in [
        "/assignments/{id}",
        "/livez",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    // Every 503 the server sends carries Retry-After, and says so.
    for (path, method) in [
        ("/dispatch", "post"),
        ("/assignments/{id}", "get"),
        ("/assignments/{id}", "delete"),
        ("/readyz", "get"),
    ] {
        let unavailable = &doc["paths"][path][method]["responses"]["503"];
        assert!(
            unavailable["headers"]["Retry-After"].is_object(),
            "{method} {path}: {unavailable}"
        );
    }
    // A repeat may share any answer of its key's attempt, marked replayed.
    let dispatch = &doc["paths"]["/dispatch"]["post"];
    for status in ["201", "409", "422", "503", "504"] {
        let headers = &dispatch["responses"][status]["headers"];
        assert!(headers["Idempotent-Replayed"].is_object(), "{status}");
    }
    // The headers' bounds are in their schemas.
    let parameter = |name: &str| {
        dispatch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(parameter("X-Request-Timeout-Ms")["minimum"], 1);
    assert_eq!(parameter("Idempotency-Key")["minLength"], 1);
    let metrics = client.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for name in [
        "tour_dispatcher_dispatch_total{outcome=\"assigned\"}",
        "tour_dispatcher_cancellations_total",
        "tour_dispatcher_dispatch_duration_seconds_count",
        "tour_dispatcher_shard_queue_depth{shard=\"0\"}",
        "tour_dispatcher_reservations_active",
        "tour_dispatcher_idempotency_keys",
        "tour_dispatcher_dependency_calls_total{dependency=\"availability\",result=\"ok\"}",
    ] {
        assert!(sample(&text, name).is_some(), "{name} in\n{text}");
    }
    let open = client
        .send(
            Method::GET,
            "/metrics",
            &[("accept", "application/openmetrics-text")],
            "",
        )
        .await;
    assert!(open
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(String::from_utf8_lossy(&open.body).ends_with("# EOF\n"));
    server.stop().await;
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let created = client.dispatch(&good_request("c")).await.json();
    let assignment = format!("/assignments/{}", created["id"].as_str().unwrap());
    for path in [
        "/livez",
        "/healthz",
        "/readyz",
        "/openapi.json",
        assignment.as_str(),
        "/assignments/nonsense",
    ] {
        let get = client.get(path).await;
        let head = client.send(Method::HEAD, path, &[], "").await;
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        assert_eq!(
            head.header("content-length"),
            Some(get.body.len().to_string().as_str()),
            "{path}"
        );
        assert!(head.body.is_empty(), "{path}");
    }
    let head = client.send(Method::HEAD, "/metrics", &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow_and_unknown_paths_404() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let cases = [
        (Method::GET, "/dispatch", "POST"),
        (Method::DELETE, "/dispatch", "POST"),
        (Method::HEAD, "/dispatch", "POST"),
        (Method::POST, "/livez", "GET, HEAD"),
        (Method::DELETE, "/healthz", "GET, HEAD"),
        (Method::PUT, "/readyz", "GET, HEAD"),
        (Method::POST, "/metrics", "GET, HEAD"),
        (Method::PATCH, "/openapi.json", "GET, HEAD"),
        (
            Method::POST,
            "/assignments/asg_0000000000000",
            "GET, HEAD, DELETE",
        ),
        (Method::PUT, "/assignments/anything", "GET, HEAD, DELETE"),
    ];
    for (method, path, allow) in cases {
        let reply = client.send(method.clone(), path, &[], "").await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        if method != Method::HEAD {
            assert_eq!(reply.problem_type(), "/problems/method-not-allowed");
        }
    }
    for path in [
        "/",
        "/nope",
        "/dispatch/",
        "/assignments/",
        "/assignments/a/b",
        "/livez/x",
    ] {
        let reply = client.get(path).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.problem_type(), "/problems/not-found");
    }
    server.stop().await;
}
