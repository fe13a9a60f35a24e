//! The ceiling of this HTTP stack on this machine: the same hyper 1.x HTTP/1
//! server setup as `tour-dispatcher` (tokio multi-thread runtime, nodelay,
//! a header read timeout, a bounded body read), answering every request with
//! a fixed 201 JSON body of an assignment's size. No routing, parsing or
//! dispatching: whatever the real server reaches is measured against this.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:0` prints
//! `listening on http://ADDR` on stderr and serves until killed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The server's allocator, so that the two differ only in what they do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An assignment as the real server renders one.
const ANSWER: &str = r#"{"id":"asg_0123456789abcdef","status":"confirmed","agent_id":"ag-9410x-1","customer_id":"cust-000001","property_id":"prop-000001","zipcode":"94107","start":"2027-03-01T09:00:00Z","end":"2027-03-01T09:30:00Z"}"#;

/// The real server's body limit.
const MAX_BODY: usize = 16 * 1024;

async fn answer(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, String> {
    let body = Limited::new(request.into_body(), MAX_BODY);
    let read = body.collect().await.map_err(|e| e.to_string())?;
    let _ = read.to_bytes();
    let response = Response::builder()
        .status(StatusCode::CREATED)
        .header(CONTENT_TYPE, "application/json")
        .header(LOCATION, "/assignments/asg_0123456789abcdef")
        .body(Full::new(Bytes::from_static(ANSWER.as_bytes())))
        .map_err(|e| e.to_string())?;
    Ok(response)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(addr))
}

async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("ceiling: listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .serve_connection(TokioIo::new(stream), service_fn(answer));
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
