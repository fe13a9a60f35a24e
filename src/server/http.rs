//! The HTTP surface: routing, the checks that come before the core (in the
//! API's order: method, body size, content type, headers, JSON), handing
//! requests to the driver, and rendering its answers.
//!
//! Handlers never wait in front of the core: a submit is `try_send` on a
//! bounded channel, and a full channel is 503 overloaded at once. A handler
//! whose connection drops before its answer tells the driver (`ClientGone`).

use crate::core::{AssignmentId, Outcome, RawRequest, Ticket};
use crate::server::body::parse_dispatch;
use crate::server::clock::Clock;
use crate::server::driver::{Answer, Command, DriverHandle};
use crate::server::headers;
use crate::server::metrics::{self, Metrics};
use crate::server::render::{
    json_reply, render, AssignmentBody, Problem, ProblemType, Reply, JSON,
};
use crate::server::settings::MAX_BODY_BYTES;
use crate::server::shedding::Shedder;
use crate::server::state::ServerState;
use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE,
};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// A request body bigger than this is not even drained: the connection closes.
const DRAIN_LIMIT_BYTES: usize = 1024 * 1024;
/// How long past its deadline a handler waits for the core before it
/// answers 504 itself (the core answers at the deadline; this is a guard).
const ANSWER_GRACE: Duration = Duration::from_secs(1);
/// How long a read of the core's counters may take before `/metrics` shows
/// the last ones it had.
const STATS_WAIT: Duration = Duration::from_secs(1);

/// The limits handlers enforce.
#[derive(Clone, Debug)]
pub struct Limits {
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// How long a client may take to send a body.
    pub body_read_timeout: Duration,
    /// `Retry-After` of the 503s the server gives itself.
    pub retry_after_s: u32,
    /// Dispatches inside the server at once.
    pub max_in_flight: usize,
}

/// Everything handlers share.
pub struct App {
    pub clock: Clock,
    pub driver: DriverHandle,
    pub state: Arc<ServerState>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Admission in front of the dispatcher: one permit per dispatch.
    in_flight: Semaphore,
    /// Whether the runtime is too late to take new dispatches (see
    /// [`crate::server::shedding`]); never, unless its probe is started.
    pub(crate) shedder: Arc<Shedder>,
    pub openapi: Bytes,
    next_ticket: AtomicU64,
}

impl App {
    pub fn new(
        clock: Clock,
        driver: DriverHandle,
        state: Arc<ServerState>,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Self {
        App {
            clock,
            driver,
            state,
            metrics,
            in_flight: Semaphore::new(limits.max_in_flight),
            shedder: Shedder::new(),
            limits,
            openapi: Bytes::from(crate::server::openapi::document()),
            next_ticket: AtomicU64::new(1),
        }
    }

    fn ticket(&self) -> Ticket {
        Ticket(self.next_ticket.fetch_add(1, Ordering::Relaxed))
    }
}

/// The paths the server knows.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Dispatch,
    Assignment(&'a str),
    Livez,
    Readyz,
    Metrics,
    OpenApi,
}

impl Route<'_> {
    fn of(path: &str) -> Option<Route<'_>> {
        Some(match path {
            "/dispatch" => Route::Dispatch,
            "/livez" | "/healthz" => Route::Livez,
            "/readyz" => Route::Readyz,
            "/metrics" => Route::Metrics,
            "/openapi.json" => Route::OpenApi,
            _ => {
                let id = path.strip_prefix("/assignments/")?;
                if id.is_empty() || id.contains('/') {
                    return None;
                }
                Route::Assignment(id)
            }
        })
    }

    /// The `Allow` header of this path.
    fn allow(&self) -> &'static str {
        match self {
            Route::Dispatch => "POST",
            Route::Assignment(_) => "GET, HEAD, DELETE",
            _ => "GET, HEAD",
        }
    }

    fn allows(&self, method: &Method) -> bool {
        match self {
            Route::Dispatch => method == Method::POST,
            Route::Assignment(_) => {
                method == Method::GET || method == Method::HEAD || method == Method::DELETE
            }
            _ => method == Method::GET || method == Method::HEAD,
        }
    }
}

/// Answers one request (and logs it at debug level).
pub async fn handle<B>(app: Arc<App>, request: Request<B>) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let reply = respond(app, request).await;
    tracing::debug!(%method, path, status = reply.status().as_u16(), "request");
    reply
}

async fn respond<B>(app: Arc<App>, request: Request<B>) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let is_head = request.method() == Method::HEAD;
    let path = request.uri().path().to_owned();
    let route = Route::of(&path);
    if route == Some(Route::Dispatch) && request.method() == Method::POST {
        return dispatch(&app, request).await;
    }
    // Nothing else reads a body; read it anyway (within the limits), so the
    // client is not cut off before it reads the answer.
    let (parts, body) = request.into_parts();
    let _ = read_body(
        body,
        declared_length(&parts.headers),
        app.limits.body_read_timeout,
    )
    .await;
    let reply = match route {
        None => Problem::not_found().into_reply(),
        Some(route) if !route.allows(&parts.method) => {
            Problem::method_not_allowed(route.allow()).into_reply()
        }
        // POST was answered above; any other method was refused just now.
        Some(Route::Dispatch) => Problem::method_not_allowed(Route::Dispatch.allow()).into_reply(),
        Some(Route::Assignment(id)) => {
            if parts.method == Method::DELETE {
                cancel(&app, id).await
            } else {
                get_assignment(&app, id).await
            }
        }
        Some(Route::Livez) => status_reply(StatusCode::OK, "ok"),
        Some(Route::Readyz) => readyz(&app),
        Some(Route::Metrics) => metrics(&app, parts.headers.get(ACCEPT)).await,
        Some(Route::OpenApi) => {
            let mut reply = http::Response::new(Full::new(app.openapi.clone()));
            reply
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
            reply
        }
    };
    if is_head {
        without_body(reply)
    } else {
        reply
    }
}

/// A HEAD answer: the GET's status and headers (its length included), no body.
fn without_body(reply: Reply) -> Reply {
    let (mut parts, body) = reply.into_parts();
    let length = body.size_hint().exact().unwrap_or(0);
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    http::Response::from_parts(parts, Full::new(Bytes::new()))
}

#[derive(Serialize)]
struct StatusBody {
    status: &'static str,
}

fn status_reply(code: StatusCode, status: &'static str) -> Reply {
    json_reply(code, JSON, &StatusBody { status })
}

fn readyz(app: &App) -> Reply {
    match app.state.not_ready_because() {
        None => status_reply(StatusCode::OK, "ready"),
        // Like every 503 here, it says when to look again.
        Some(reason) => Problem::new(ProblemType::NotReady, reason)
            .retry_after(app.limits.retry_after_s)
            .into_reply(),
    }
}

// ----- POST /dispatch --------------------------------------------------------

async fn dispatch<B>(app: &App, request: Request<B>) -> Reply
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    #[allow(clippy::disallowed_methods)] // the answer's latency, for the histogram
    let started = Instant::now();
    let (reply, outcome) = dispatch_answer(app, request).await;
    app.metrics.dispatch_answered(outcome, started.elapsed());
    reply
}

async fn dispatch_answer<B>(app: &App, request: Request<B>) -> (Reply, Outcome)
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let arrived = app.clock.now();
    let (parts, body) = request.into_parts();
    let body = read_body(
        body,
        declared_length(&parts.headers),
        app.limits.body_read_timeout,
    )
    .await;
    // Draining: refuse before any other check, as soon as the body is read;
    // and so when too many dispatches are in the server already, or when
    // the CPU is so far behind that the runtime runs late.
    let admitted = app.in_flight.try_acquire();
    if app.state.is_draining() || admitted.is_err() || app.shedder.is_shedding() {
        return (
            Problem::overloaded(app.limits.retry_after_s).into_reply(),
            Outcome::Overloaded,
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(e) => return (e.into_reply(), Outcome::Invalid),
    };
    let Submission {
        body: raw,
        idempotency_key: key,
        timeout_ms,
    } = match check_dispatch(&parts.headers, &body, app.limits.max_timeout_ms) {
        Ok(submission) => submission,
        Err(problem) => return (problem.into_reply(), Outcome::Invalid),
    };
    let deadline = arrived.plus_ms(timeout_ms.unwrap_or(app.limits.default_timeout_ms));
    let ticket = app.ticket();
    let (reply, answer) = oneshot::channel();
    let mut pending = PendingTicket::new(ticket, answer, app.driver.control.clone());
    let submit = Command::Submit {
        ticket,
        body: raw,
        idempotency_key: key,
        deadline,
        reply,
    };
    if app.driver.submits.try_send(submit).is_err() {
        pending.forget();
        return (
            Problem::overloaded(app.limits.retry_after_s).into_reply(),
            Outcome::Overloaded,
        );
    }
    let give_up = app
        .clock
        .instant_of(deadline.plus_ms(ANSWER_GRACE.as_millis() as u64));
    match pending.wait(give_up).await {
        Waited::Answer(Answer { response, replayed }) => {
            (render(&response, replayed), response.outcome())
        }
        Waited::TimedOut => (
            Problem::deadline_exceeded().into_reply(),
            Outcome::DeadlineExceeded,
        ),
        Waited::DriverGone => (
            Problem::overloaded(app.limits.retry_after_s).into_reply(),
            Outcome::Overloaded,
        ),
    }
}

/// A `POST /dispatch` that passed every check before the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub body: RawRequest,
    pub idempotency_key: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// The checks of a read dispatch body, in the API's order after the body
/// size: content type and content coding (415), headers (400), JSON (400).
fn check_dispatch(
    headers: &http::HeaderMap,
    body: &[u8],
    max_timeout_ms: u64,
) -> Result<Submission, Problem> {
    if !headers::is_json(headers) {
        return Err(Problem::new(
            ProblemType::UnsupportedMediaType,
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    if !headers::is_unencoded(headers) {
        return Err(Problem::new(
            ProblemType::UnsupportedMediaType,
            "the body must be sent as it is: this server decodes no Content-Encoding",
        )
        .hint(ACCEPT_ENCODING, "identity"));
    }
    let malformed = |detail: String| Problem::new(ProblemType::MalformedRequest, detail);
    let idempotency_key =
        headers::idempotency_key(headers).map_err(|e| malformed(e.to_string()))?;
    let timeout_ms = headers::request_timeout_ms(headers, max_timeout_ms)
        .map_err(|e| malformed(e.to_string()))?;
    let body = parse_dispatch(body).map_err(|e| malformed(e.0))?;
    Ok(Submission {
        body,
        idempotency_key,
        timeout_ms,
    })
}

/// What the server makes of a request before the driver is asked, without
/// a socket (for tests and fuzzing; `respond` runs the same checks).
#[derive(Debug)]
pub enum Decoded {
    /// Answered at once: 404 unknown path, 405, and for `POST /dispatch`
    /// 413, 415 and 400.
    Answered(Reply),
    /// A dispatch for the core.
    Submit(Submission),
    /// A known path and method, answered by the driver or the server's state.
    Routed,
}

/// Routes and checks a request whose whole body was read.
pub fn decode(
    method: &Method,
    path: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    max_timeout_ms: u64,
) -> Decoded {
    let Some(route) = Route::of(path) else {
        return Decoded::Answered(Problem::not_found().into_reply());
    };
    if !route.allows(method) {
        return Decoded::Answered(Problem::method_not_allowed(route.allow()).into_reply());
    }
    if route != Route::Dispatch {
        return Decoded::Routed;
    }
    if body.len() > MAX_BODY_BYTES {
        return Decoded::Answered(BodyError::TooLarge.into_reply());
    }
    match check_dispatch(headers, body, max_timeout_ms) {
        Ok(submission) => Decoded::Submit(submission),
        Err(problem) => Decoded::Answered(problem.into_reply()),
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Why a body could not be taken.
#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    TimedOut,
    Broken(String),
}

impl BodyError {
    fn into_reply(self) -> Reply {
        let (problem, close) = match self {
            BodyError::TooLarge => (
                Problem::new(
                    ProblemType::PayloadTooLarge,
                    format!("the body may be at most {MAX_BODY_BYTES} bytes"),
                ),
                true,
            ),
            BodyError::TimedOut => (
                Problem::new(
                    ProblemType::RequestTimeout,
                    "the body did not arrive in time",
                ),
                true,
            ),
            BodyError::Broken(e) => (
                Problem::new(
                    ProblemType::MalformedRequest,
                    format!("the body could not be read: {e}"),
                ),
                false,
            ),
        };
        let mut reply = problem.into_reply();
        if close {
            reply
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        reply
    }
}

/// Reads at most [`MAX_BODY_BYTES`]. A larger body is read on and thrown
/// away (up to [`DRAIN_LIMIT_BYTES`]) so the client is not cut off before it
/// can read the 413.
async fn read_body<B>(body: B, declared: Option<u64>, timeout: Duration) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    if declared.is_some_and(|n| n > DRAIN_LIMIT_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut kept = BytesMut::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            if seen > DRAIN_LIMIT_BYTES {
                return Err(BodyError::TooLarge);
            }
            if seen <= MAX_BODY_BYTES {
                kept.extend_from_slice(&data);
            }
        }
        if seen > MAX_BODY_BYTES {
            Err(BodyError::TooLarge)
        } else {
            Ok(kept.freeze())
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

// ----- waiting for the driver --------------------------------------------------

enum Waited {
    Answer(Answer),
    TimedOut,
    DriverGone,
}

/// A ticket handed to the driver. Dropped before its answer (the client
/// went away, or the handler gave up), it tells the driver `ClientGone`.
struct PendingTicket {
    ticket: Ticket,
    answer: Option<oneshot::Receiver<Answer>>,
    control: mpsc::Sender<Command>,
}

impl PendingTicket {
    fn new(
        ticket: Ticket,
        answer: oneshot::Receiver<Answer>,
        control: mpsc::Sender<Command>,
    ) -> Self {
        PendingTicket {
            ticket,
            answer: Some(answer),
            control,
        }
    }

    /// The driver never got the ticket: nothing to tell it.
    fn forget(&mut self) {
        self.answer = None;
    }

    async fn wait(&mut self, give_up: Option<Instant>) -> Waited {
        let Some(answer) = self.answer.as_mut() else {
            return Waited::DriverGone;
        };
        let got = match give_up {
            Some(at) => match tokio::time::timeout_at(at.into(), answer).await {
                Ok(got) => got,
                Err(_) => return Waited::TimedOut,
            },
            None => answer.await,
        };
        match got {
            Ok(a) => {
                self.answer = None;
                Waited::Answer(a)
            }
            Err(_) => {
                self.answer = None;
                Waited::DriverGone
            }
        }
    }
}

impl Drop for PendingTicket {
    fn drop(&mut self) {
        // Close the receiver first, so a submit still in the channel is
        // seen as abandoned when the driver takes it.
        if let Some(answer) = self.answer.take() {
            drop(answer);
            // If the channel is full the ticket's deadline cleans up.
            let _ = self.control.try_send(Command::ClientGone {
                ticket: self.ticket,
            });
        }
    }
}

// ----- /assignments/{id} -------------------------------------------------------

fn parse_id(text: &str) -> Option<AssignmentId> {
    text.parse().ok()
}

fn no_such_assignment() -> Reply {
    Problem::new(
        ProblemType::NotFound,
        "no assignment has this id (or it is past retention)",
    )
    .into_reply()
}

async fn get_assignment(app: &App, id: &str) -> Reply {
    let Some(id) = parse_id(id) else {
        return no_such_assignment();
    };
    let (reply, answer) = oneshot::channel();
    if app
        .driver
        .control
        .try_send(Command::Get { id, reply })
        .is_err()
    {
        return Problem::overloaded(app.limits.retry_after_s).into_reply();
    }
    match answer.await {
        Ok(Some(a)) => json_reply(StatusCode::OK, JSON, &AssignmentBody::from(&a)),
        Ok(None) => no_such_assignment(),
        Err(_) => Problem::overloaded(app.limits.retry_after_s).into_reply(),
    }
}

async fn cancel(app: &App, id: &str) -> Reply {
    let Some(id) = parse_id(id) else {
        return no_such_assignment();
    };
    let ticket = app.ticket();
    let (reply, answer) = oneshot::channel();
    let mut pending = PendingTicket::new(ticket, answer, app.driver.control.clone());
    if app
        .driver
        .control
        .try_send(Command::Cancel { ticket, id, reply })
        .is_err()
    {
        pending.forget();
        return Problem::overloaded(app.limits.retry_after_s).into_reply();
    }
    // A cancel waits for the journal; it gets as long as the longest deadline.
    let give_up = app
        .clock
        .instant_of(app.clock.now().plus_ms(app.limits.max_timeout_ms));
    match pending.wait(give_up).await {
        Waited::Answer(a) => render(&a.response, false),
        Waited::TimedOut => Problem::new(
            ProblemType::DependencyUnavailable,
            "the journal did not confirm the cancel in time; repeat the DELETE",
        )
        .retry_after(app.limits.retry_after_s)
        .into_reply(),
        Waited::DriverGone => Problem::overloaded(app.limits.retry_after_s).into_reply(),
    }
}

// ----- /metrics ------------------------------------------------------------------

async fn metrics(app: &App, accept: Option<&HeaderValue>) -> Reply {
    let (reply, answer) = oneshot::channel();
    if app
        .driver
        .control
        .try_send(Command::Stats { reply })
        .is_ok()
    {
        if let Ok(Ok(stats)) = tokio::time::timeout(STATS_WAIT, answer).await {
            app.metrics.copy_core_stats(&stats);
        }
    }
    let openmetrics = metrics::wants_openmetrics(accept.and_then(|a| a.to_str().ok()));
    let content_type = if openmetrics {
        metrics::OPENMETRICS
    } else {
        metrics::PROMETHEUS_TEXT
    };
    let mut reply = http::Response::new(Full::new(Bytes::from(app.metrics.encode(openmetrics))));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/dispatch"), Some(Route::Dispatch));
        assert_eq!(Route::of("/healthz"), Some(Route::Livez));
        assert_eq!(
            Route::of("/assignments/asg_x"),
            Some(Route::Assignment("asg_x"))
        );
        for unknown in [
            "/",
            "/dispatch/",
            "/assignments/",
            "/assignments/a/b",
            "/livez/x",
        ] {
            assert_eq!(Route::of(unknown), None, "{unknown}");
        }
        assert!(Route::Dispatch.allows(&Method::POST));
        assert!(!Route::Dispatch.allows(&Method::GET));
        assert!(Route::Metrics.allows(&Method::HEAD));
        assert!(!Route::Metrics.allows(&Method::DELETE));
        assert!(Route::Assignment("x").allows(&Method::DELETE));
    }

    #[test]
    fn decode_checks_in_the_api_order() {
        let json = |pairs: &[(&'static str, &'static str)]| {
            let mut h = http::HeaderMap::new();
            for (name, value) in pairs {
                h.append(*name, HeaderValue::from_static(value));
            }
            h
        };
        let status = |d: Decoded| match d {
            Decoded::Answered(reply) => reply.status().as_u16(),
            Decoded::Submit(_) => 0,
            Decoded::Routed => 1,
        };
        let ct = json(&[("content-type", "application/json")]);
        let body = br#"{"zipcode": "94107"}"#;
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(status(decode(&Method::GET, "/nope", &ct, body, 100)), 404);
        assert_eq!(
            status(decode(&Method::GET, "/dispatch", &ct, body, 100)),
            405
        );
        assert_eq!(
            status(decode(&Method::POST, "/dispatch", &json(&[]), &big, 100)),
            413
        );
        assert_eq!(
            status(decode(&Method::POST, "/dispatch", &json(&[]), body, 100)),
            415
        );
        let bad_key = json(&[
            ("content-type", "application/json"),
            ("idempotency-key", ""),
        ]);
        assert_eq!(
            status(decode(&Method::POST, "/dispatch", &bad_key, b"[", 100)),
            400
        );
        assert_eq!(
            status(decode(&Method::POST, "/dispatch", &ct, b"[", 100)),
            400
        );
        assert_eq!(
            status(decode(&Method::DELETE, "/assignments/x", &ct, b"", 100)),
            1
        );
        let timed = json(&[
            ("content-type", "application/json"),
            ("x-request-timeout-ms", "7"),
        ]);
        match decode(&Method::POST, "/dispatch", &timed, body, 100) {
            Decoded::Submit(s) => {
                assert_eq!(s.timeout_ms, Some(7));
                assert_eq!(s.body.zipcode.as_deref(), Some("94107"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn bodies_are_limited() {
        let small = Full::new(Bytes::from_static(b"{}"));
        assert_eq!(
            read_body(small, Some(2), Duration::from_secs(1)).await,
            Ok(Bytes::from_static(b"{}"))
        );
        let exact = Full::new(Bytes::from(vec![b' '; MAX_BODY_BYTES]));
        assert!(read_body(exact, None, Duration::from_secs(1)).await.is_ok());
        let over = Full::new(Bytes::from(vec![b' '; MAX_BODY_BYTES + 1]));
        assert_eq!(
            read_body(over, None, Duration::from_secs(1)).await,
            Err(BodyError::TooLarge)
        );
        let huge = Full::new(Bytes::new());
        assert_eq!(
            read_body(huge, Some(1 << 30), Duration::from_secs(1)).await,
            Err(BodyError::TooLarge)
        );
    }
}
