//! Shared by the server tests: a server started in-process on a free port,
//! a plain HTTP/1.1 client over loopback, and request bodies whose windows
//! lie relative to the current time.
#![allow(dead_code)] // each test file uses its own part of this module

pub mod binary;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use time::format_description::well_known::Rfc3339;
use time::{Duration as TimeDelta, OffsetDateTime, Time};
use tokio::net::TcpStream;
use tour_dispatcher::server::services::Services;
use tour_dispatcher::server::settings::Settings;
use tour_dispatcher::server::{self, ServerHandle};

/// A server running in this process.
pub struct TestServer {
    handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts an ephemeral server on a free loopback port with `flags`.
    pub async fn start(flags: &[&str]) -> TestServer {
        TestServer::start_with(flags, None).await
    }

    /// Like [`start`](Self::start), with the given services.
    pub async fn start_with(flags: &[&str], services: Option<Services>) -> TestServer {
        let mut args = vec!["tour-dispatcher", "--listen", "127.0.0.1:0"];
        if !flags.contains(&"--data-dir") {
            args.push("--ephemeral");
        }
        args.extend_from_slice(flags);
        let settings = Settings::parse_flags(args).expect("test flags parse");
        let handle = server::start_with(settings, services)
            .await
            .expect("the server starts");
        TestServer {
            addr: handle.addr(),
            handle: Some(handle),
        }
    }

    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// Begins a graceful shutdown.
    pub fn begin_shutdown(&self) {
        if let Some(h) = &self.handle {
            h.shutdown();
        }
    }

    /// Waits until the server stops by itself (its dispatcher failed).
    pub async fn stopped(&mut self) -> Result<(), server::ServeError> {
        let handle = self.handle.as_mut().expect("a running server");
        handle.stopped().await
    }

    /// Shuts down and waits until the server has stopped.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            h.wait().await.expect("a clean shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.shutdown();
        }
    }
}

/// An answer as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The problem `type`, after checking the problem's shape (RFC 9457).
    pub fn problem_type(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "a problem body: {self:?}"
        );
        let body = self.json();
        assert_eq!(body["status"], self.status, "status member: {body}");
        assert!(
            body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
        assert!(
            body["detail"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
        body["type"].as_str().expect("a type member").to_owned()
    }

    /// `Retry-After` in whole seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")
            .map(|v| v.parse().expect("whole seconds"))
    }

    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }
}

/// A plain HTTP/1.1 client: one connection per request.
#[derive(Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_send(method, path, headers, body)
            .await
            .expect("an answer")
    }

    /// Like [`send`](Self::send), with the transport error instead of a
    /// panic (for a server that may die mid-request).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("a request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, &[], Bytes::new()).await
    }

    /// `POST /dispatch` with a JSON body and extra headers.
    pub async fn dispatch_with(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        self.dispatch_raw(serde_json::to_vec(body).unwrap(), headers)
            .await
    }

    pub async fn dispatch(&self, body: &Value) -> Reply {
        self.dispatch_with(body, &[]).await
    }

    /// `POST /dispatch` with `text` as it is, as JSON.
    pub async fn dispatch_raw(&self, text: impl Into<Bytes>, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, "/dispatch", &all, text).await
    }

    /// The value of one series of the Prometheus exposition.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await;
        assert_eq!(text.status, 200);
        let text = String::from_utf8(text.body.to_vec()).unwrap();
        sample(&text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }
}

/// The value of `series` (name and labels exactly as exposed) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Midnight UTC, `days` from today.
pub fn day(days: i64) -> OffsetDateTime {
    let today = OffsetDateTime::now_utc().replace_time(Time::MIDNIGHT);
    today + TimeDelta::days(days)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// `[start, end)` as RFC 3339 strings: hours after midnight, `days` ahead.
pub fn window(days: i64, start_h: f64, end_h: f64) -> (String, String) {
    let at = |h: f64| day(days) + TimeDelta::seconds((h * 3600.0) as i64);
    (rfc3339(at(start_h)), rfc3339(at(end_h)))
}

/// A valid request body: `zipcode`, `days` ahead, hours `start_h..end_h`.
pub fn request(customer: &str, zipcode: &str, days: i64, start_h: f64, end_h: f64) -> Value {
    let (start, end) = window(days, start_h, end_h);
    json!({
        "customer_id": customer,
        "zipcode": zipcode,
        "window": {"start": start, "end": end},
        "duration_minutes": 30,
    })
}

/// A request the demo roster can serve (zipcode 94107, tomorrow 09:00–12:00).
pub fn good_request(customer: &str) -> Value {
    request(customer, "94107", 1, 9.0, 12.0)
}

/// A fresh directory under the system's temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "tour-server-test-{name}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A roster file of one agent covering `zipcode` from `start` to `end` (UTC).
pub fn one_agent_roster(dir: &std::path::Path, zipcode: &str, start: &str, end: &str) -> PathBuf {
    let path = dir.join("roster.json");
    let roster = json!({"agents": [{
        "id": "solo", "zipcodes": [zipcode], "languages": ["en"],
        "hours": {"start": start, "end": end}
    }]});
    std::fs::write(&path, serde_json::to_vec(&roster).unwrap()).unwrap();
    path
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub fn millis(text: &str) -> i128 {
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000
}
