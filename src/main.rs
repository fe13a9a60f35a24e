//! The `tour-dispatcher` binary: parses the flags, sets up logging, starts
//! the server and drains it on SIGINT/SIGTERM.
//!
//! Exit codes: 0 after a clean shutdown; 2 for flags that are invalid on
//! their own or together; 1 when the server cannot start (roster, data
//! directory, journal, address) or cannot shut down cleanly.

use std::io::IsTerminal;
use std::process::ExitCode;
use tour_dispatcher::server::{self, settings::Settings, LogFormat};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let settings = match Settings::parse_flags(&args) {
        Ok(settings) => settings,
        Err(e) => {
            // `--help` and `--version` are "errors" that print to stdout
            // and exit 0.
            let _ = e.print();
            if let Some(variable) = Settings::variable_behind(&e, &args) {
                eprintln!("note: the value comes from the environment variable {variable}");
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    if let Err(e) = settings.check() {
        eprintln!("tour-dispatcher: error: {e}");
        for long in e.flags() {
            if let Some(variable) = Settings::variable_of(&long, &args) {
                eprintln!("note: --{long} comes from the environment variable {variable}");
            }
        }
        return ExitCode::from(2);
    }
    init_logging(settings.log_format);
    disable_transparent_huge_pages();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.workers {
        builder.worker_threads(workers as usize);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tour-dispatcher: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> ExitCode {
    // Installed before listening, so a signal that follows the "listening"
    // line is always a graceful shutdown.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tour-dispatcher: error: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match server::start(settings).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("tour-dispatcher: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Also on stderr, so a script finds the address whichever stream it reads.
    eprintln!("tour-dispatcher: listening on http://{}", server.addr());
    let mut server = server;
    let stopped = tokio::select! {
        signal = signals.next() => {
            tracing::info!(signal, "shutting down");
            server.shutdown();
            server.stopped().await
        }
        // Only if the dispatcher failed: the server stops by itself.
        stopped = server.stopped() => stopped,
    };
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tour-dispatcher: error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Turns transparent huge pages off for the process, before the runtime
/// and the core allocate: the allocator asks for them, and the first touch
/// of a huge page zeroes (and may first compact) 2 MiB in the faulting
/// thread — often the driver, which every request waits on. Without them
/// the server's own share of dispatches over 5 ms at half its peak rate
/// fell from 2.8–5.0% to 0.55–0.81%, at the same throughput (BENCHMARKS.md).
/// Not fatal where the kernel refuses.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::warn!(error = %e, "cannot turn transparent huge pages off; latency may suffer");
    }
}

/// Logs go to stdout, as text or JSON lines; `RUST_LOG` refines the level
/// (default `info`).
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stdout().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}
