//! Dispatch behaviour end to end: idempotent replay, joined repeats,
//! concurrent bursts (one booking per key, never a double booking),
//! overload, deadlines, dependency failures, cancels, metrics, graceful
//! shutdown and restarts on a data directory.

mod server_support;

use serde_json::{json, Value};
use server_support::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tour_dispatcher::core::{DependencyError, Slot};
use tour_dispatcher::embedded::{Roster, RulesConfig};
use tour_dispatcher::server;
use tour_dispatcher::server::clock::Clock;
use tour_dispatcher::server::services::{
    AvailabilityQuery, AvailabilityService, BoxFuture, EmbeddedRules, Services, SlotSink,
};

/// The results of spawned tasks, in order.
async fn join_all<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("the task ran"));
    }
    out
}

#[allow(clippy::disallowed_methods)] // timing a request from outside
fn stopwatch() -> Instant {
    Instant::now()
}

/// Sends every body at once, each with a 10 s deadline; their replies and
/// how long each took, in order.
async fn dispatch_together(client: Client, bodies: Vec<Value>) -> Vec<(Reply, Duration)> {
    let tasks = bodies
        .into_iter()
        .map(|body| {
            tokio::spawn(async move {
                let started = stopwatch();
                let timeout = [("x-request-timeout-ms", "10000")];
                let reply = client.dispatch_with(&body, &timeout).await;
                (reply, started.elapsed())
            })
        })
        .collect();
    join_all(tasks).await
}

fn key(k: &str) -> [(&str, &str); 1] {
    [("idempotency-key", k)]
}

// ----- idempotency -----------------------------------------------------------

#[tokio::test]
async fn a_repeat_replays_the_first_answer_whatever_the_key_order() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let (start, end) = window(1, 9.0, 12.0);
    let first_text = format!(
        r#"{{"customer_id":"cust-42","property_id":"prop-7","zipcode":"94107","window":{{"start":"{start}","end":"{end}"}},"duration_minutes":30}}"#
    );
    let first = client
        .dispatch_raw(
            first_text,
            &[
                ("idempotency-key", "order-1"),
                ("x-request-timeout-ms", "3000"),
            ],
        )
        .await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    let reordered = format!(
        "{{ \"duration_minutes\" : 30,\n \"window\": {{\"end\":\"{end}\", \"start\":\"{start}\"}},\n \"zipcode\":\"94107\", \"property_id\":\"prop-7\", \"language\": null, \"customer_id\":\"cust-42\" }}"
    );
    // The quoted structured-field form names the same key; the timeout
    // header is not part of the payload.
    let again = client
        .dispatch_raw(
            reordered,
            &[
                ("idempotency-key", "\"order-1\""),
                ("x-request-timeout-ms", "9000"),
            ],
        )
        .await;
    assert_eq!(again.status, 201);
    assert!(again.replayed());
    assert_eq!(again.body, first.body, "the very same body");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("content-type"), first.header("content-type"));
    // Replays book nothing more.
    assert_eq!(
        client.metric("tour_dispatcher_reservations_active").await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn another_payload_with_the_key_is_refused_and_leaves_it_as_it_was() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let (start, end) = window(1, 9.0, 12.0);
    let body = |start: &str| {
        json!({"customer_id": "c", "zipcode": "94107", "duration_minutes": 30,
               "window": {"start": start, "end": end}})
    };
    let first = client.dispatch_with(&body(&start), &key("k1")).await;
    assert_eq!(first.status, 201);
    // The same instant spelled with +00:00 is another payload.
    let plus = start.replace('Z', "+00:00");
    assert_ne!(plus, start);
    let reuse = client.dispatch_with(&body(&plus), &key("k1")).await;
    assert_eq!(reuse.status, 422);
    assert_eq!(reuse.problem_type(), "/problems/idempotency-key-reuse");
    assert!(reuse.json().get("errors").is_none());
    let again = client.dispatch_with(&body(&start), &key("k1")).await;
    assert_eq!(again.status, 201);
    assert!(again.replayed());
    assert_eq!(again.body, first.body);
    server.stop().await;
}

#[tokio::test]
async fn a_key_past_its_ttl_leaves_the_gauge_on_an_idle_server() {
    let server = TestServer::start(&["--idempotency-ttl-s", "2"]).await;
    let client = server.client();
    let gauge = "tour_dispatcher_idempotency_keys";
    let booked = client
        .dispatch_with(&good_request("c1"), &key("ttl-1"))
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    assert_eq!(client.metric(gauge).await, 1.0);
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    // Only metrics are read meanwhile: the key is gone all the same.
    assert_eq!(client.metric(gauge).await, 0.0);
    assert_eq!(
        client.metric("tour_dispatcher_reservations_active").await,
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn remembered_409_and_422_are_replayed() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let nobody = request("c", "99999", 1, 9.0, 12.0);
    let first = client.dispatch_with(&nobody, &key("k409")).await;
    assert_eq!(first.status, 409);
    let again = client.dispatch_with(&nobody, &key("k409")).await;
    assert_eq!(again.status, 409);
    assert!(again.replayed());
    assert_eq!(again.body, first.body);

    let invalid = json!({"customer_id": "c", "zipcode": "1"});
    let first = client.dispatch_with(&invalid, &key("k422")).await;
    assert_eq!(first.status, 422);
    let again = client.dispatch_with(&invalid, &key("k422")).await;
    assert_eq!(again.status, 422);
    assert!(again.replayed());
    assert_eq!(again.body, first.body, "the same errors list");
    server.stop().await;
}

#[tokio::test]
async fn a_burst_of_duplicates_makes_one_booking() {
    let server = TestServer::start(&["--max-joiners", "64", "--rules-latency-ms", "200"]).await;
    let client = server.client();
    let body = good_request("burst");
    let tasks = (0..20)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { client.dispatch_with(&body, &key("same")).await })
        })
        .collect();
    let replies = join_all(tasks).await;
    let first = &replies[0];
    for r in &replies {
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.json(), first.json());
        assert_eq!(r.header("location"), first.header("location"));
    }
    let originals = replies.iter().filter(|r| !r.replayed()).count();
    assert_eq!(originals, 1, "every answer but the first is a replay");
    assert_eq!(
        client.metric("tour_dispatcher_reservations_active").await,
        1.0
    );
    assert_eq!(client.metric("tour_dispatcher_idempotency_keys").await, 1.0);
    server.stop().await;
}

#[tokio::test]
async fn a_repeat_in_flight_past_max_joiners_is_409() {
    let server = TestServer::start(&["--max-joiners", "0", "--rules-latency-ms", "600"]).await;
    let client = server.client();
    let body = good_request("c");
    let first = {
        let body = body.clone();
        tokio::spawn(async move { client.dispatch_with(&body, &key("busy")).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = client.dispatch_with(&body, &key("busy")).await;
    assert_eq!(second.status, 409);
    assert_eq!(second.problem_type(), "/problems/idempotency-key-in-flight");
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    server.stop().await;
}

#[tokio::test]
async fn a_joined_repeat_gets_504_at_its_own_deadline() {
    let server = TestServer::start(&["--rules-latency-ms", "800"]).await;
    let client = server.client();
    let body = good_request("c");
    let first = {
        let body = body.clone();
        tokio::spawn(async move {
            client
                .dispatch_with(
                    &body,
                    &[("idempotency-key", "j"), ("x-request-timeout-ms", "5000")],
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = stopwatch();
    let short = client
        .dispatch_with(
            &body,
            &[("idempotency-key", "j"), ("x-request-timeout-ms", "150")],
        )
        .await;
    assert_eq!(short.status, 504);
    assert_eq!(short.problem_type(), "/problems/deadline-exceeded");
    assert!(started.elapsed() < Duration::from_millis(1500));
    let first = first.await.unwrap();
    assert_eq!(first.status, 201, "the attempt runs on for the first");
    server.stop().await;
}

#[tokio::test]
async fn a_joined_repeat_outlives_the_first_deadline_and_gets_the_answer() {
    // The availability stream is slower than the first request's deadline;
    // the repeat that joined keeps the attempt (and its stream) running.
    let server = TestServer::start(&["--availability-latency-ms", "700"]).await;
    let client = server.client();
    let body = good_request("c");
    let first = {
        let body = body.clone();
        tokio::spawn(async move {
            client
                .dispatch_with(
                    &body,
                    &[("idempotency-key", "long"), ("x-request-timeout-ms", "300")],
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let joined = client
        .dispatch_with(
            &body,
            &[
                ("idempotency-key", "long"),
                ("x-request-timeout-ms", "5000"),
            ],
        )
        .await;
    let first = first.await.unwrap();
    assert_eq!(first.status, 504);
    assert_eq!(first.problem_type(), "/problems/deadline-exceeded");
    assert_eq!(joined.status, 201, "{:?}", joined.json());
    assert!(joined.replayed());
    let again = client.dispatch_with(&body, &key("long")).await;
    assert_eq!((again.status, again.json()), (201, joined.json()));
    assert!(again.replayed());
    let errors =
        r#"tour_dispatcher_dependency_calls_total{dependency="availability",result="error"}"#;
    assert_eq!(client.metric(errors).await, 0.0);
    server.stop().await;
}

// ----- concurrency and overload -------------------------------------------------

#[tokio::test]
async fn a_burst_of_distinct_requests_never_double_books() {
    let server = TestServer::start(&["--shards", "2", "--shard-concurrency", "8"]).await;
    let client = server.client();
    let bodies = (0..40)
        .map(|i| request(&format!("cust-{i}"), "94107", 2, 9.0, 11.0))
        .collect();
    let replies = dispatch_together(client, bodies).await;
    let mut booked: Vec<Value> = Vec::new();
    for (r, _) in &replies {
        match r.status {
            201 => booked.push(r.json()),
            409 => assert_eq!(r.problem_type(), "/problems/no-availability"),
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    // Three agents work 09:00-11:00 in 9410x; with 30 minute tours and a 15
    // minute buffer they lead seven tours at most.
    assert!(
        booked.len() >= 5 && booked.len() <= 7,
        "{} booked",
        booked.len()
    );
    let (w_start, w_end) = window(2, 9.0, 11.0);
    let buffer = 15 * 60_000;
    for (i, a) in booked.iter().enumerate() {
        let (s, e) = (
            millis(a["start"].as_str().unwrap()),
            millis(a["end"].as_str().unwrap()),
        );
        assert!(s >= millis(&w_start) && e <= millis(&w_end), "{a}");
        for b in &booked[i + 1..] {
            if a["agent_id"] != b["agent_id"] {
                continue;
            }
            let (bs, be) = (
                millis(b["start"].as_str().unwrap()),
                millis(b["end"].as_str().unwrap()),
            );
            assert!(
                e + buffer <= bs || be + buffer <= s,
                "double booking (buffer included): {a} and {b}"
            );
        }
        let read = client
            .get(&format!("/assignments/{}", a["id"].as_str().unwrap()))
            .await;
        assert_eq!(read.status, 200);
        assert_eq!(read.json(), *a);
    }
    assert_eq!(
        client.metric("tour_dispatcher_reservations_active").await,
        booked.len() as f64
    );
    server.stop().await;
}

#[tokio::test]
async fn dispatches_past_the_in_flight_bound_are_refused_at_once() {
    // Eight shards with room to spare: only the in-flight bound can refuse.
    let flags = ["--max-in-flight", "2", "--availability-latency-ms", "1000"];
    let server = TestServer::start(&flags).await;
    let client = server.client();
    let bodies = (0..6)
        .map(|i| request(&format!("c{i}"), &format!("941{:02}", 10 * i), 1, 9.0, 12.0))
        .collect();
    let replies = dispatch_together(client, bodies).await;
    let refused: Vec<_> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!(refused.len(), 4, "two in flight, four refused: {replies:?}");
    for (r, took) in &refused {
        assert_eq!(r.problem_type(), "/problems/overloaded");
        assert!(r.retry_after().is_some_and(|s| s >= 1), "{r:?}");
        assert!(
            *took < Duration::from_millis(700),
            "refused at once, not after {took:?}"
        );
    }
    assert_eq!(replies.iter().filter(|(r, _)| r.status == 201).count(), 2);
    // The permits come back: the next dispatch is served.
    let again = client.dispatch(&request("c9", "94107", 2, 9.0, 12.0)).await;
    assert_eq!(again.status, 201, "{again:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_full_queue_is_503_overloaded_with_retry_after() {
    let flags = [
        "--shards",
        "1",
        "--queue-capacity",
        "1",
        "--max-waiters",
        "0",
        "--enqueue-timeout-ms",
        "0",
        "--availability-latency-ms",
        "1000",
    ];
    let server = TestServer::start(&flags).await;
    let client = server.client();
    let bodies = (0..6)
        .map(|i| request(&format!("c{i}"), "94107", 1, 9.0, 12.0))
        .collect();
    let replies = dispatch_together(client, bodies).await;
    let refused: Vec<_> = replies.iter().filter(|(r, _)| r.status == 503).collect();
    assert!(
        refused.len() >= 3,
        "one runs, one waits, the rest are refused: {replies:?}"
    );
    for (r, took) in &refused {
        assert_eq!(r.problem_type(), "/problems/overloaded");
        assert!(r.retry_after().is_some_and(|s| s >= 1), "{r:?}");
        assert!(
            *took < Duration::from_millis(700),
            "refused at once, not after {took:?}"
        );
    }
    let served = replies.iter().filter(|(r, _)| r.status == 201).count();
    assert_eq!(served + refused.len(), 6);
    assert_eq!(
        client
            .metric("tour_dispatcher_dispatch_total{outcome=\"overloaded\"}")
            .await,
        refused.len() as f64
    );
    server.stop().await;
}

#[tokio::test]
async fn past_max_attempts_a_request_is_503_with_the_configured_retry_after() {
    let flags = [
        "--max-attempts",
        "1",
        "--retry-after-s",
        "7",
        "--availability-latency-ms",
        "1000",
    ];
    let server = TestServer::start(&flags).await;
    let client = server.client();
    // Two requests on two shards' zipcodes, each alive for a second: only
    // one attempt fits.
    let bodies = vec![
        request("c0", "94107", 1, 9.0, 12.0),
        request("c1", "94110", 1, 9.0, 12.0),
    ];
    let mut replies: Vec<Reply> = dispatch_together(client, bodies)
        .await
        .into_iter()
        .map(|(reply, _)| reply)
        .collect();
    replies.sort_by_key(|r| r.status);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 503], "{replies:?}");
    assert_eq!(replies[1].problem_type(), "/problems/overloaded");
    assert_eq!(replies[1].retry_after(), Some(7), "{replies:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_short_deadline_is_504_on_time_and_books_nothing() {
    let dir = scratch_dir("deadline");
    let roster = one_agent_roster(&dir, "12345", "09:00", "10:00");
    let flags = [
        "--roster",
        roster.to_str().unwrap(),
        "--rules-latency-ms",
        "700",
    ];
    let server = TestServer::start(&flags).await;
    let client = server.client();
    // Exactly one slot: 09:00-09:30.
    let body = request("c", "12345", 2, 9.0, 9.5);
    let started = stopwatch();
    let late = client
        .dispatch_with(
            &body,
            &[("idempotency-key", "d"), ("x-request-timeout-ms", "250")],
        )
        .await;
    let took = started.elapsed();
    assert_eq!(late.status, 504);
    assert_eq!(late.problem_type(), "/problems/deadline-exceeded");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_millis(2250), "on time: {took:?}");
    assert_eq!(
        client.metric("tour_dispatcher_reservations_active").await,
        0.0
    );
    // Not remembered: the same key runs anew and takes the only slot.
    let retry = client
        .dispatch_with(
            &body,
            &[("idempotency-key", "d"), ("x-request-timeout-ms", "5000")],
        )
        .await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert!(!retry.replayed());
    assert_eq!(retry.json()["agent_id"], "solo");
    assert_eq!(
        client
            .metric("tour_dispatcher_dispatch_total{outcome=\"deadline_exceeded\"}")
            .await,
        1.0
    );
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_deadline_that_passes_while_waiting_for_room_is_504() {
    let flags = [
        "--shards",
        "1",
        "--queue-capacity",
        "1",
        "--max-waiters",
        "4",
        "--enqueue-timeout-ms",
        "5000",
        "--availability-latency-ms",
        "1500",
    ];
    let server = TestServer::start(&flags).await;
    let client = server.client();
    let background: Vec<_> = (0..2)
        .map(|i| {
            let body = request(&format!("bg{i}"), "94107", 1, 9.0, 12.0);
            tokio::spawn(async move {
                client
                    .dispatch_with(&body, &[("x-request-timeout-ms", "6000")])
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = stopwatch();
    let waiting = client
        .dispatch_with(
            &request("w", "94107", 1, 9.0, 12.0),
            &[("x-request-timeout-ms", "300")],
        )
        .await;
    assert_eq!(waiting.status, 504);
    assert_eq!(waiting.problem_type(), "/problems/deadline-exceeded");
    assert!(started.elapsed() < Duration::from_millis(1200));
    for r in join_all(background).await {
        assert_eq!(r.status, 201);
    }
    server.stop().await;
}

/// The embedded rules over the demo roster, beside `availability`.
fn with_availability(availability: Arc<dyn AvailabilityService>) -> Services {
    Services {
        availability,
        rules: Arc::new(EmbeddedRules {
            roster: Arc::new(Roster::demo()),
            config: RulesConfig::default(),
            latency: Duration::ZERO,
            clock: Clock::start(),
        }),
    }
}

struct FailingAvailability;

impl AvailabilityService for FailingAvailability {
    fn stream<'a>(
        &'a self,
        _query: AvailabilityQuery,
        _sink: &'a mut SlotSink,
    ) -> BoxFuture<'a, Result<(), DependencyError>> {
        Box::pin(async { Err(DependencyError::Unavailable) })
    }
}

#[tokio::test]
async fn a_failing_dependency_is_503_dependency_unavailable() {
    let services = with_availability(Arc::new(FailingAvailability));
    let server = TestServer::start_with(&[], Some(services)).await;
    let client = server.client();
    let reply = client.dispatch_with(&good_request("c"), &key("dep")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.problem_type(), "/problems/dependency-unavailable");
    assert!(reply.retry_after().is_some_and(|s| s >= 1));
    // Not remembered: a retry is a new attempt (and fails again).
    let again = client.dispatch_with(&good_request("c"), &key("dep")).await;
    assert_eq!(again.status, 503);
    assert!(!again.replayed());
    assert_eq!(
        client
            .metric("tour_dispatcher_dependency_calls_total{dependency=\"availability\",result=\"error\"}")
            .await,
        2.0
    );
    assert_eq!(
        client
            .metric("tour_dispatcher_dispatch_total{outcome=\"dependency_unavailable\"}")
            .await,
        2.0
    );
    server.stop().await;
}

/// An inline service with a bug: it panics on the dispatcher's task.
struct PanickingAvailability;

impl AvailabilityService for PanickingAvailability {
    fn stream<'a>(
        &'a self,
        _query: AvailabilityQuery,
        _sink: &'a mut SlotSink,
    ) -> BoxFuture<'a, Result<(), DependencyError>> {
        Box::pin(async { Err(DependencyError::Unavailable) })
    }

    fn page_now(
        &self,
        _query: &AvailabilityQuery,
        _after: Option<&Slot>,
        _max: usize,
    ) -> Option<Vec<Slot>> {
        panic!("a bug in an inline service")
    }
}

#[tokio::test]
async fn a_server_whose_dispatcher_fails_stops_by_itself() {
    let services = with_availability(Arc::new(PanickingAvailability));
    let mut server = TestServer::start_with(&[], Some(services)).await;
    let client = server.client();
    let reply = client.dispatch(&good_request("c")).await;
    assert_eq!(reply.status, 503, "the request it was on");
    let stopped = tokio::time::timeout(Duration::from_secs(10), server.stopped())
        .await
        .expect("the server stops by itself");
    assert!(
        matches!(stopped, Err(server::ServeError::Crashed(_))),
        "{stopped:?}"
    );
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );
}

// ----- cancels and metrics -----------------------------------------------------------

#[tokio::test]
async fn a_cancel_frees_the_slot() {
    let dir = scratch_dir("cancel");
    let roster = one_agent_roster(&dir, "12345", "09:00", "10:00");
    let server = TestServer::start(&["--roster", roster.to_str().unwrap()]).await;
    let client = server.client();
    let body = request("c", "12345", 2, 9.0, 9.5);
    let first = client.dispatch(&body).await;
    assert_eq!(first.status, 201);
    let taken = client.dispatch(&request("d", "12345", 2, 9.0, 9.5)).await;
    assert_eq!(taken.status, 409, "the only slot is taken");
    let id = first.json()["id"].as_str().unwrap().to_owned();
    let cancelled = client.delete(&format!("/assignments/{id}")).await;
    assert_eq!(cancelled.status, 200);
    let again = client.dispatch(&request("d", "12345", 2, 9.0, 9.5)).await;
    assert_eq!(again.status, 201, "free again: {again:?}");
    assert_eq!(again.json()["start"], first.json()["start"]);
    assert_ne!(again.json()["id"], first.json()["id"]);
    assert_eq!(
        client.metric("tour_dispatcher_cancellations_total").await,
        1.0
    );
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn metrics_count_every_outcome() {
    let server = TestServer::start(&[]).await;
    let client = server.client();
    let a = client.dispatch_with(&good_request("a"), &key("m1")).await;
    assert_eq!(a.status, 201);
    assert_eq!(
        client
            .dispatch_with(&good_request("a"), &key("m1"))
            .await
            .status,
        201
    );
    assert_eq!(client.dispatch(&good_request("b")).await.status, 201);
    assert_eq!(
        client
            .dispatch(&request("c", "99999", 1, 9.0, 10.0))
            .await
            .status,
        409
    );
    assert_eq!(client.dispatch_raw("{", &[]).await.status, 400);
    assert_eq!(
        client.dispatch_raw("x".repeat(17_000), &[]).await.status,
        413
    );
    assert_eq!(
        client
            .send(
                http::Method::POST,
                "/dispatch",
                &[("content-type", "text/plain")],
                "{}"
            )
            .await
            .status,
        415
    );
    assert_eq!(client.dispatch(&json!({})).await.status, 422);
    assert_eq!(
        client
            .dispatch_with(&good_request("z"), &key("m1"))
            .await
            .status,
        422
    );
    let id = a.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        client.delete(&format!("/assignments/{id}")).await.status,
        200
    );
    assert_eq!(
        client.delete(&format!("/assignments/{id}")).await.status,
        200
    );

    let text = String::from_utf8(client.get("/metrics").await.body.to_vec()).unwrap();
    let count = |outcome: &str| {
        sample(
            &text,
            &format!("tour_dispatcher_dispatch_total{{outcome=\"{outcome}\"}}"),
        )
        .unwrap()
    };
    assert_eq!(count("assigned"), 3.0, "the replay counts under its answer");
    assert_eq!(count("no_availability"), 1.0);
    assert_eq!(
        count("invalid"),
        4.0,
        "400, 413, 415 and the validation 422"
    );
    assert_eq!(count("idempotency_conflict"), 1.0);
    assert_eq!(count("overloaded"), 0.0);
    assert_eq!(
        sample(&text, "tour_dispatcher_dispatch_duration_seconds_count"),
        Some(9.0)
    );
    assert_eq!(
        sample(&text, "tour_dispatcher_cancellations_total"),
        Some(1.0),
        "the repeated DELETE cancelled nothing"
    );
    assert_eq!(
        sample(&text, "tour_dispatcher_reservations_active"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "tour_dispatcher_idempotency_keys"), Some(1.0));
    let ok = sample(
        &text,
        "tour_dispatcher_dependency_calls_total{dependency=\"availability\",result=\"ok\"}",
    );
    assert!(ok.is_some_and(|n| n >= 3.0), "{ok:?}");
    let journal = sample(
        &text,
        "tour_dispatcher_dependency_calls_total{dependency=\"journal\",result=\"ok\"}",
    );
    assert_eq!(
        journal,
        Some(3.0),
        "two bookings and one cancel were journaled"
    );
    server.stop().await;
}

/// A runtime held up, as a CPU that cannot keep up holds it, sheds new
/// dispatches with 503 overloaded; without `--shed-lag-ms` the same
/// hold-up sheds nothing. The bound is far above what a busy test machine
/// delays a thread by.
#[tokio::test]
async fn a_runtime_that_runs_late_sheds_dispatches_when_asked_to() {
    for (flags, shed) in [
        (
            &["--shed-lag-ms", "250", "--shed-hold-ms", "60000"][..],
            true,
        ),
        (&[][..], false),
    ] {
        let server = TestServer::start(flags).await;
        let client = server.client();
        let before = client.dispatch(&request("s0", "94107", 1, 9.0, 12.0)).await;
        assert_eq!(before.status, 201, "on time: served ({flags:?})");
        // The server runs on this test's one-thread runtime: blocking it
        // holds up the server's tasks, its lag probe among them, which
        // runs (late) once this task waits.
        std::thread::sleep(Duration::from_millis(600));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = client.dispatch(&request("s1", "94107", 2, 9.0, 12.0)).await;
        if shed {
            assert_eq!(after.status, 503, "{after:?}");
            assert_eq!(after.problem_type(), "/problems/overloaded");
            assert!(after.retry_after().is_some_and(|s| s >= 1), "{after:?}");
            let refused = client
                .metric("tour_dispatcher_dispatch_total{outcome=\"overloaded\"}")
                .await;
            assert_eq!(refused, 1.0);
        } else {
            assert_eq!(after.status, 201, "{after:?}");
        }
        server.stop().await;
    }
}

// ----- shutdown and restarts ------------------------------------------------------------

#[tokio::test]
async fn shutdown_turns_readyz_503_refuses_submits_and_finishes_what_runs() {
    let server = TestServer::start(&["--rules-latency-ms", "1000"]).await;
    let client = server.client();
    assert_eq!(client.get("/readyz").await.status, 200);
    let running = tokio::spawn(async move { client.dispatch(&good_request("r")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.problem_type(), "/problems/not-ready");
    assert!(ready.retry_after().is_some_and(|s| s >= 1), "{ready:?}");
    let refused = client.dispatch_raw("not even json", &[]).await;
    assert_eq!(refused.status, 503, "before any other check");
    assert_eq!(refused.problem_type(), "/problems/overloaded");
    assert!(refused.retry_after().is_some_and(|s| s >= 1));
    assert_eq!(client.get("/livez").await.status, 200);
    let finished = running.await.unwrap();
    assert_eq!(
        finished.status, 201,
        "running requests finish: {finished:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_drain_timeout_refuses_what_still_runs() {
    let server =
        TestServer::start(&["--rules-latency-ms", "5000", "--drain-timeout-ms", "300"]).await;
    let client = server.client();
    let running = tokio::spawn(async move {
        client
            .dispatch_with(&good_request("r"), &[("x-request-timeout-ms", "10000")])
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = stopwatch();
    server.begin_shutdown();
    let reply = running.await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.problem_type(), "/problems/overloaded");
    assert!(started.elapsed() < Duration::from_millis(2000));
    server.stop().await;
}

#[tokio::test]
async fn answers_survive_a_restart_on_the_data_dir() {
    let dir = scratch_dir("restart");
    let data = dir.join("data");
    let flags = ["--data-dir", data.to_str().unwrap()];
    let server = TestServer::start(&flags).await;
    let client = server.client();
    let booked = client.dispatch_with(&good_request("c"), &key("keep")).await;
    assert_eq!(booked.status, 201);
    let nobody = request("c", "99999", 1, 9.0, 12.0);
    assert_eq!(
        client.dispatch_with(&nobody, &key("none")).await.status,
        409
    );
    let other = client.dispatch(&good_request("d")).await;
    let other_id = other.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        client
            .delete(&format!("/assignments/{other_id}"))
            .await
            .status,
        200
    );
    server.stop().await;

    let server = TestServer::start(&flags).await;
    let client = server.client();
    let again = client.dispatch_with(&good_request("c"), &key("keep")).await;
    assert_eq!(again.status, 201);
    assert!(again.replayed());
    assert_eq!(again.body, booked.body);
    assert_eq!(again.header("location"), booked.header("location"));
    let again = client.dispatch_with(&nobody, &key("none")).await;
    assert_eq!(again.status, 409);
    assert!(again.replayed());
    let id = booked.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        client.get(&format!("/assignments/{id}")).await.json(),
        booked.json()
    );
    let cancelled = client.get(&format!("/assignments/{other_id}")).await;
    assert_eq!(cancelled.json()["status"], "cancelled");
    // New ids never collide with the journaled ones.
    let fresh = client.dispatch(&good_request("e")).await;
    assert_eq!(fresh.status, 201);
    assert_ne!(fresh.json()["id"], booked.json()["id"]);
    assert_ne!(fresh.json()["id"].as_str().unwrap(), other_id);
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_client_that_hangs_up_is_gone_and_books_nothing() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(&["--rules-latency-ms", "1000"]).await;
    let client = server.client();
    let body = serde_json::to_string(&good_request("gone")).unwrap();
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /dispatch HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-request-timeout-ms: 10000\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let cancelled =
        "tour_dispatcher_dependency_calls_total{dependency=\"rules\",result=\"cancelled\"}";
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = client.metric(cancelled).await;
        if seen > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen, 1.0,
        "the rules call was cancelled when the client left"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        client.metric("tour_dispatcher_reservations_active").await,
        0.0
    );
    let total = "tour_dispatcher_dispatch_duration_seconds_count";
    assert_eq!(client.metric(total).await, 0.0, "nobody was answered");
    server.stop().await;
}
