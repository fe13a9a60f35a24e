//! The hyper/tokio server: a thin adapter that drives the pure core and
//! implements the HTTP contract of `API.md`.
//!
//! - [`settings`]: the flags (clap, with `TOUR_*` variables) and their checks;
//! - [`driver`]: the task that owns the `Dispatcher` and executes its outputs;
//! - [`http`]: routing and the checks before the core; [`body`] and
//!   [`headers`] read requests strictly; [`render`] writes answers;
//! - [`services`]: the seam to availability and rules, with tracing and
//!   metrics layers, and the embedded implementations;
//! - [`journal`]: the seam to the journal and the in-memory journal;
//! - [`journal_file`]: the durable journal (files, lock, writer thread);
//! - [`metrics`], [`openapi`], [`trace`] (`--record-trace`), [`data_dir`]
//!   (the kept secret), [`clock`], [`state`] (readiness).
//!
//! [`start`] brings a server up (everything that can fail does so before it
//! listens) and returns a [`ServerHandle`]; [`ServerHandle::shutdown`] drains
//! it as SIGTERM does.

pub mod body;
pub mod clock;
pub mod data_dir;
pub mod driver;
pub mod headers;
pub mod http;
pub mod journal;
pub mod journal_file;
pub mod metrics;
pub mod openapi;
pub mod render;
pub mod services;
pub mod settings;
pub mod shedding;
pub mod state;
pub mod trace;

use crate::core::{Dispatcher, Record, RestoreError};
use crate::embedded::{AvailabilityConfig, Roster, RosterError, RulesConfig};
use crate::journal::frame::FORMAT_VERSION;
use crate::journal::{JournalError, RecoveryReport};
use crate::server::clock::Clock;
use crate::server::data_dir::SecretError;
use crate::server::driver::{Command, Driver, DriverHandle, DriverParts};
use crate::server::http::{App, Limits};
use crate::server::journal::{EventQueue, Journal, MemoryJournal};
use crate::server::journal_file::{DurableJournal, JournalOptions};
use crate::server::metrics::Metrics;
use crate::server::services::{EmbeddedSettings, Services};
use crate::server::settings::{Settings, SettingsError};
use crate::server::state::ServerState;
use crate::server::trace::TraceRecorder;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use settings::LogFormat;

/// How long, once drained, the server waits for connections to finish
/// writing their last answers before it closes them.
const CONNECTION_GRACE: Duration = Duration::from_secs(5);

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("cannot read the roster {path}: {source}")]
    RosterUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the roster {path} is invalid: {source}")]
    RosterInvalid { path: PathBuf, source: RosterError },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the journal's records cannot be restored: {0}")]
    Restore(#[from] RestoreError),
    #[error("cannot open the trace file {path}: {source}")]
    Trace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a shutdown was not clean.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the journal could not be flushed: {0}")]
    Flush(String),
    #[error("the server stopped unexpectedly: {0}")]
    Crashed(String),
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    done: JoinHandle<Result<(), ServeError>>,
}

impl ServerHandle {
    /// The address it listens on (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Begins a graceful shutdown, as SIGTERM does: `/readyz` turns 503,
    /// new submits are refused, running requests finish (for at most the
    /// drain timeout), the journal is flushed, the listener closes.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped.
    pub async fn wait(mut self) -> Result<(), ServeError> {
        self.stopped().await
    }

    /// Waits until the server has stopped: after [`shutdown`](Self::shutdown),
    /// or by itself if its dispatcher failed. Call it to completion once.
    pub async fn stopped(&mut self) -> Result<(), ServeError> {
        match (&mut self.done).await {
            Ok(result) => result,
            Err(e) => Err(ServeError::Crashed(e.to_string())),
        }
    }
}

/// Starts a server: loads the roster, locks the data directory, recovers
/// the journal, restores the core, binds the listener — any of which may
/// fail, before anything listens — then serves until shut down.
pub async fn start(settings: Settings) -> Result<ServerHandle, StartError> {
    start_with(settings, None).await
}

/// [`start`], with other availability and rules services than the embedded
/// ones (for example clients of remote services, or faulty ones in tests).
pub async fn start_with(
    settings: Settings,
    services: Option<Services>,
) -> Result<ServerHandle, StartError> {
    settings.check()?;
    let clock = Clock::start();
    let roster = Arc::new(load_roster(&settings)?);
    let metrics = Arc::new(Metrics::new(settings.shards));
    let state = Arc::new(ServerState::default());
    let events = EventQueue::default();

    let (journal, records) = open_journal(&settings, &events, &metrics)?;
    let secret = if settings.ephemeral {
        data_dir::random_secret()
    } else {
        data_dir::load_or_create_secret(&settings.data_dir, records.is_empty())?
    };
    let config = settings.core_config(secret);
    let now = clock.now();
    let core = Dispatcher::restore(config.clone(), now, records.iter().cloned())?;
    let recorder = match &settings.record_trace {
        Some(path) => Some(TraceRecorder::create(path, &config, now, &records).map_err(
            |source| StartError::Trace {
                path: path.clone(),
                source,
            },
        )?),
        None => None,
    };
    drop(records);

    let services = services.unwrap_or_else(|| {
        Services::embedded(embedded_settings(&settings, roster), clock, metrics.clone())
    });
    let parts = DriverParts {
        clock,
        journal,
        journal_events: events,
        services,
        metrics: metrics.clone(),
        state: state.clone(),
        recorder,
        drain_timeout: Duration::from_millis(settings.drain_timeout_ms),
        channel_capacity: settings.inbox_capacity as usize,
        stream_chunk: settings.max_candidates as usize,
    };
    let (driver, handle) = Driver::new(core, parts);

    let listener =
        listen(settings.listen, settings.listen_backlog).map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;
    let app = Arc::new(App::new(
        clock,
        handle.clone(),
        state.clone(),
        metrics,
        Limits {
            default_timeout_ms: settings.default_timeout_ms,
            max_timeout_ms: settings.max_timeout_ms,
            body_read_timeout: settings.header_read_timeout(),
            retry_after_s: config.retry_after_s,
            max_in_flight: settings.max_in_flight as usize,
        },
    ));
    if let Some(shedding) = settings.shedding() {
        app.shedder.start_probe(shedding);
    }
    let (stop, stopping) = watch::channel(false);
    let driver = tokio::spawn(driver.run());
    let accept = Acceptor {
        listener,
        app,
        connections: Arc::new(Semaphore::new(settings.max_connections as usize)),
        header_read_timeout: settings.header_read_timeout(),
    };
    let done = tokio::spawn(serve(accept, driver, handle, state.clone(), stopping));
    state.set_ready();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(%addr, ephemeral = settings.ephemeral, workers, "listening on http://{addr}");
    Ok(ServerHandle { addr, stop, done })
}

/// A listener on `addr` whose kernel backlog holds `backlog` connections
/// (tokio's own `bind` asks for 128).
fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std's listeners do: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

fn load_roster(settings: &Settings) -> Result<Roster, StartError> {
    let Some(path) = &settings.roster else {
        return Ok(Roster::demo());
    };
    let text = std::fs::read_to_string(path).map_err(|source| StartError::RosterUnreadable {
        path: path.clone(),
        source,
    })?;
    Roster::from_json(&text).map_err(|source| StartError::RosterInvalid {
        path: path.clone(),
        source,
    })
}

fn embedded_settings(settings: &Settings, roster: Arc<Roster>) -> EmbeddedSettings {
    EmbeddedSettings {
        roster,
        availability: AvailabilityConfig {
            slot_step_min: settings.slot_step_min,
        },
        rules: RulesConfig {
            max_tours_per_day: settings.max_tours_per_day,
            min_lead_min: settings.min_lead_min,
        },
        availability_latency: Duration::from_millis(settings.availability_latency_ms),
        slot_interval: Duration::from_millis(settings.availability_slot_interval_ms),
        rules_latency: Duration::from_millis(settings.rules_latency_ms),
    }
}

/// The journal and the records recovered from it: nothing with
/// `--ephemeral`, else the data directory's journal (locked for as long as
/// it runs).
fn open_journal(
    settings: &Settings,
    events: &EventQueue,
    metrics: &Metrics,
) -> Result<(Box<dyn Journal>, Vec<Record>), StartError> {
    if settings.ephemeral {
        return Ok((Box::new(MemoryJournal::new(events.sink())), Vec::new()));
    }
    let options = JournalOptions {
        metrics: Some(metrics.journal()),
        ..settings.journal_options()
    };
    let (journal, records, report) =
        DurableJournal::open(&settings.data_dir, options, events.sink())?;
    log_recovery(&settings.data_dir, &report);
    Ok((Box::new(journal), records))
}

fn log_recovery(dir: &std::path::Path, report: &RecoveryReport) {
    tracing::info!(
        dir = %dir.display(),
        file = report.file.as_deref().unwrap_or("(new journal)"),
        records = report.records,
        zeros_cut = report.zeros_cut,
        "journal recovered"
    );
    if let Some(format) = report.format.filter(|&f| f < FORMAT_VERSION) {
        tracing::info!(
            format,
            "the journal file is of an older format: it is appended to as it is, and its next \
             compaction writes format {FORMAT_VERSION}, which builds before this one cannot read"
        );
    }
    if report.torn_bytes > 0 {
        tracing::warn!(
            torn_bytes = report.torn_bytes,
            at = report.torn_at,
            "dropped a torn tail (a write cut short by a crash; it was never acknowledged)"
        );
    }
    for region in &report.skipped {
        tracing::warn!(
            offset = region.offset,
            len = region.len,
            "salvage skipped a damaged region"
        );
    }
}

struct Acceptor {
    listener: TcpListener,
    app: Arc<App>,
    connections: Arc<Semaphore>,
    header_read_timeout: Duration,
}

impl Acceptor {
    /// Accepts connections until `stop` turns true.
    async fn run(self, mut stop: watch::Receiver<bool>, graceful: &GracefulShutdown) {
        loop {
            let permit = tokio::select! {
                permit = self.connections.clone().acquire_owned() => permit,
                _ = stop.wait_for(|s| *s) => break,
            };
            let Ok(permit) = permit else { break };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (stream, _peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let app = self.app.clone();
            let service = service_fn(move |request| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(http::handle(app, request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop(permit);
            });
        }
    }
}

/// Serves until asked to stop, then shuts down in the API's order: not
/// ready and refusing submits at once, the core drains, the journal is
/// flushed, the listener closes, open connections finish.
async fn serve(
    acceptor: Acceptor,
    driver: JoinHandle<Box<dyn Journal>>,
    handle: DriverHandle,
    state: Arc<ServerState>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let graceful = GracefulShutdown::new();
    let (close_listener, listener_closing) = watch::channel(false);
    let accepting = acceptor.run(listener_closing, &graceful);
    let mut driver = driver;
    let shutdown = async {
        let ended = tokio::select! {
            _ = stopping.wait_for(|s| *s) => None,
            // The driver ends by itself only if it failed (a panic): a
            // server that cannot dispatch stops, so that its supervisor
            // restarts it from the journal.
            ended = &mut driver => Some(ended),
        };
        state.set_draining();
        let ended = match ended {
            Some(ended) => {
                tracing::error!("the dispatcher stopped unexpectedly; stopping the server");
                ended
            }
            None => {
                let _ = handle.control.send(Command::Drain).await;
                driver.await
            }
        };
        let result = match ended {
            Ok(journal) => flush(journal).await,
            Err(e) => Err(ServeError::Crashed(e.to_string())),
        };
        let _ = close_listener.send(true);
        result
    };
    let (_, result) = tokio::join!(accepting, shutdown);
    if tokio::time::timeout(CONNECTION_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the grace period");
    }
    if result.is_ok() {
        tracing::info!("stopped");
    }
    result
}

async fn flush(mut journal: Box<dyn Journal>) -> Result<(), ServeError> {
    tokio::task::spawn_blocking(move || journal.flush())
        .await
        .map_err(|e| ServeError::Crashed(e.to_string()))?
        .map_err(ServeError::Flush)
}
