//! An open-loop load generator for `benches/http.sh`: sends `POST /dispatch`
//! at a fixed rate, whatever the server's answers take (a server that falls
//! behind is not offered less, unlike with a closed loop that slows down
//! with it). Each request is timed from when it was issued, the wait for a
//! free connection included; how late the generator issued requests against
//! their schedule is reported apart (`lateness`), so a run whose generator
//! fell behind is visible.
//!
//! Request bodies vary as in `benches/http.lua`: zipcodes of the demo
//! roster's three regions, days 1–300 ahead, three-hour windows, and a
//! unique `Idempotency-Key` each, so that most requests book.
//!
//! Bounded: `--rate × --seconds` requests on `--connections` connections,
//! all opened before the first request is due (as wrk and wrk2 do), and
//! each warmed by one exchange before the clock starts (unless `--cold`);
//! whatever has no answer `--grace-s` after the last one was due is counted
//! as unanswered. Prints one JSON line, with the connections opened.
//!
//! `cargo run --release --example load -- --url http://127.0.0.1:8000 --rate 2000 --seconds 5`

#![allow(clippy::disallowed_methods)] // a load generator reads the clock

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

#[derive(Parser, Debug)]
struct Args {
    /// The server, `http://HOST:PORT` (loopback only).
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long)]
    rate: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Connections, all opened before the first request is due; a request
    /// that finds none free waits (and that wait counts in its latency). A
    /// broken one is replaced when a request needs it.
    #[arg(long, default_value_t = 512)]
    connections: usize,
    /// Leaves the connections cold. Without it, each carries one request
    /// (a body of the same kind, a key of its own) before the clock starts,
    /// so that no measured request pays for a connection's first exchange
    /// on either side: 512 of them in the first 22 ms of a run at 23,000/s
    /// held up its first few hundred milliseconds.
    #[arg(long)]
    cold: bool,
    /// How long after the last request was due answers are still awaited.
    #[arg(long, default_value_t = 5)]
    grace_s: u64,
    /// Prefix of the idempotency keys (unique per run).
    #[arg(long, default_value = "load")]
    key_prefix: String,
    /// Seed of the request bodies.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A process whose resident memory is sampled every second.
    #[arg(long)]
    pid: Option<u32>,
    /// Writes every answer to this file, one line each in the order the
    /// requests were due: the request's number (its due time is number ÷
    /// rate), its latency in microseconds and its status (0: no answer).
    /// Shows when in a run the slow answers came.
    #[arg(long)]
    samples: Option<std::path::PathBuf>,
}

/// SplitMix64: a tiny deterministic generator for the request bodies.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The body of request `n`: the same distribution as `benches/http.lua`.
fn body(mix: &mut Mix, today: time::Date, n: u64) -> String {
    const REGIONS: [u32; 3] = [94100, 10000, 60600];
    let zipcode = REGIONS[(mix.next() % 3) as usize] + (mix.next() % 100) as u32;
    let day = today + time::Duration::days(1 + (mix.next() % 300) as i64);
    let hour = 6 + mix.next() % 12;
    format!(
        r#"{{"customer_id":"cust-{n}","property_id":"prop-{n}","zipcode":"{zipcode:05}","window":{{"start":"{day}T{hour:02}:00:00Z","end":"{day}T{end:02}:00:00Z"}},"duration_minutes":30}}"#,
        end = hour + 3
    )
}

/// Open connections, each with the permit that bounds their number.
struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<(SendRequest<Full<Bytes>>, OwnedSemaphorePermit)>>,
    room: Arc<Semaphore>,
    returned: Notify,
    /// Connections opened, over the run.
    opened: std::sync::atomic::AtomicU64,
}

type Conn = (SendRequest<Full<Bytes>>, OwnedSemaphorePermit);

impl Pool {
    async fn take(&self) -> Result<Conn, String> {
        loop {
            let returned = self.returned.notified();
            if let Some(conn) = self.idle.lock().unwrap().pop() {
                return Ok(conn);
            }
            if let Ok(permit) = self.room.clone().try_acquire_owned() {
                return Ok((self.connect().await?, permit));
            }
            returned.await;
        }
    }

    fn give_back(&self, conn: Conn) {
        self.idle.lock().unwrap().push(conn);
        self.returned.notify_one();
    }

    /// Returns a connection after an exchange that answered `status`; a
    /// broken one (no answer, or closed) goes, and its permit with it.
    fn put_back(&self, (sender, permit): Conn, status: u16) {
        if status != 0 && !sender.is_closed() {
            self.give_back((sender, permit));
        } else {
            drop(permit);
            self.returned.notify_one();
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// One answer: its status (0 for a transport error) and microseconds from
/// when it was issued.
#[derive(Clone, Copy)]
struct Sample {
    /// The request's number, in the order they were due.
    n: u64,
    status: u16,
    micros: u32,
}

async fn send(
    pool: Arc<Pool>,
    host: Arc<str>,
    n: u64,
    key: String,
    body: String,
    issued: Instant,
) -> Sample {
    let answered = |status: u16| Sample {
        n,
        status,
        micros: issued.elapsed().as_micros().min(u32::MAX as u128) as u32,
    };
    let Ok((mut sender, permit)) = pool.take().await else {
        return answered(0);
    };
    let status = exchange(&mut sender, &host, key, body).await;
    let sample = answered(status);
    pool.put_back((sender, permit), status);
    sample
}

/// One `POST /dispatch` on `sender`: the answer's status, 0 if none came.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &str,
    key: String,
    body: String,
) -> u16 {
    let request = hyper::Request::post("/dispatch")
        .header("host", host)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body)))
        .expect("a well-formed request");
    // A connection handed back may still be finishing its last exchange.
    if sender.ready().await.is_err() {
        return 0;
    }
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.into_body().collect().await {
                Ok(_) => status,
                Err(_) => 0,
            }
        }
        Err(_) => 0,
    }
}

/// One exchange on every idle connection at once, each on its own
/// connection, waited for; returns how many were answered.
async fn warm_up(
    pool: &Arc<Pool>,
    host: &Arc<str>,
    mut requests: impl FnMut(u64) -> (String, String),
) -> u64 {
    let idle = std::mem::take(&mut *pool.idle.lock().unwrap());
    let exchanges: Vec<_> = idle
        .into_iter()
        .enumerate()
        .map(|(i, (mut sender, permit))| {
            let (pool, host) = (pool.clone(), host.clone());
            let (key, body) = requests(i as u64);
            tokio::spawn(async move {
                let status = exchange(&mut sender, &host, key, body).await;
                pool.put_back((sender, permit), status);
                status
            })
        })
        .collect();
    let mut answered = 0;
    for exchange in exchanges {
        if exchange.await.is_ok_and(|status| status != 0) {
            answered += 1;
        }
    }
    answered
}

fn resident_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn latency_json(mut micros: Vec<u32>) -> String {
    micros.sort_unstable();
    format!(
        r#"{{"n":{},"p50_ms":{:.3},"p99_ms":{:.3},"p999_ms":{:.3},"max_ms":{:.3}}}"#,
        micros.len(),
        percentile(&micros, 50.0),
        percentile(&micros, 99.0),
        percentile(&micros, 99.9),
        percentile(&micros, 100.0)
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // One thread: the generator takes at most one of the machine's cores.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let authority = args
        .url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?
        .trim_end_matches('/')
        .to_string();
    let addr: SocketAddr = authority.parse()?;
    if !addr.ip().is_loopback() {
        return Err("only loopback addresses are load-tested".into());
    }
    let pool = Arc::new(Pool {
        addr,
        idle: Mutex::new(Vec::new()),
        room: Arc::new(Semaphore::new(args.connections.max(1))),
        returned: Notify::new(),
        opened: Default::default(),
    });
    // Every connection is opened before the clock starts, as with wrk: a
    // generator that opened them on demand would answer a server's pause
    // with a burst of handshakes, which both sides pay for while the late
    // requests wait (a few milliseconds of pause became tens).
    for _ in 0..args.connections.max(1) {
        let permit = pool.room.clone().try_acquire_owned()?;
        let sender = pool.connect().await?;
        pool.give_back((sender, permit));
    }
    let host: Arc<str> = authority.into();
    let total = args.rate.max(1) * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let today = time::OffsetDateTime::now_utc().date();
    let warmed = if args.cold {
        0
    } else {
        // Bodies of their own, so that the measured ones stay the seed's.
        let mut mix = Mix(!args.seed);
        warm_up(&pool, &host, |i| {
            (
                format!("{}-warm-{i}", args.key_prefix),
                body(&mut mix, today, i),
            )
        })
        .await
    };
    let mut mix = Mix(args.seed);
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let rss = Arc::new(Mutex::new(Vec::new()));
    if let Some(pid) = args.pid {
        let rss = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while let Some(kb) = resident_kb(pid) {
                rss.lock().unwrap().push(kb);
                tick.tick().await;
            }
        });
    }

    let start = Instant::now();
    let mut most_behind = Duration::ZERO;
    let mut lateness = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        // The timer wakes up to a millisecond late: that lateness is the
        // generator's, reported apart; the wait for a free connection is
        // the server's and counts.
        let issued = Instant::now();
        let behind = issued - due;
        most_behind = most_behind.max(behind);
        lateness.push(behind.as_micros().min(u32::MAX as u128) as u32);
        let key = format!("{}-{n}", args.key_prefix);
        let body = body(&mut mix, today, n);
        let (pool, host, samples) = (pool.clone(), host.clone(), samples.clone());
        tokio::spawn(async move {
            let sample = send(pool, host, n, key, body, issued).await;
            samples.lock().unwrap().push(sample);
        });
    }
    let sent_for = start.elapsed();
    let give_up = Instant::now() + Duration::from_secs(args.grace_s);
    while samples.lock().unwrap().len() < total as usize && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    if let Some(path) = &args.samples {
        samples.sort_unstable_by_key(|s| s.n);
        let lines: String = samples
            .iter()
            .map(|s| format!("{} {} {}\n", s.n, s.micros, s.status))
            .collect();
        std::fs::write(path, lines).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let timing = Timing {
        sent_for,
        most_behind,
        lateness,
        connections: pool.opened.load(std::sync::atomic::Ordering::Relaxed),
        warmed,
    };
    report(&args, total, timing, samples, &rss.lock().unwrap());
    Ok(())
}

/// How well the generator kept to its schedule.
struct Timing {
    sent_for: Duration,
    most_behind: Duration,
    /// Microseconds each request was issued after it was due.
    lateness: Vec<u32>,
    /// Connections the generator opened (a server that stalls makes it
    /// open more, each costing a handshake on both sides).
    connections: u64,
    /// Connections that answered their warm-up exchange.
    warmed: u64,
}

fn report(args: &Args, total: u64, timing: Timing, samples: Vec<Sample>, rss: &[u64]) {
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for sample in &samples {
        *statuses.entry(sample.status).or_default() += 1;
    }
    let all: Vec<u32> = samples.iter().map(|s| s.micros).collect();
    // Accepted: the server took the request up and decided it (not a 503
    // or 504 refusal, not a transport error).
    let accepted: Vec<u32> = samples
        .iter()
        .filter(|s| matches!(s.status, 200..=499))
        .map(|s| s.micros)
        .collect();
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(s, n)| format!(r#""{s}":{n}"#))
        .collect();
    let rss: Vec<String> = rss.iter().map(u64::to_string).collect();
    println!(
        r#"{{"rate":{},"seconds":{},"sent":{},"answered":{},"unanswered":{},"sent_for_s":{:.3},"most_behind_ms":{:.1},"connections":{},"warmed":{},"lateness":{},"statuses":{{{}}},"all":{},"accepted":{},"rss_kb":[{}]}}"#,
        args.rate,
        args.seconds,
        total,
        samples.len(),
        total - samples.len() as u64,
        timing.sent_for.as_secs_f64(),
        timing.most_behind.as_secs_f64() * 1000.0,
        timing.connections,
        timing.warmed,
        latency_json(timing.lateness),
        statuses.join(","),
        latency_json(all),
        latency_json(accepted),
        rss.join(",")
    );
}
