//! The server's flags: every flag of the API's table (each also read from
//! `TOUR_<FLAG_IN_CAPS>`), their ranges, the checks that span two flags, and
//! how they map onto the core's [`Config`] and the embedded services.
//!
//! A value out of range is refused by the parser itself, so `clap` prints a
//! message naming the flag and the process exits non-zero before listening.

use crate::core::time::MS_PER_SECOND;
use crate::core::{Config, ConfigError, Secret};
use crate::server::journal_file::JournalOptions;
use crate::server::shedding::SheddingConfig;
use clap::builder::BoolishValueParser;
use clap::{Parser, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The largest body `POST /dispatch` accepts (API: 16 KiB, else 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Assigns field agents to property tours over HTTP.
#[derive(Parser, Clone, Debug)]
#[command(name = "tour-dispatcher", version, about, max_term_width = 100)]
pub struct Settings {
    /// Address to serve on (port 0 = any free port; the bound address is logged).
    #[arg(long, env = "TOUR_LISTEN", default_value = "127.0.0.1:8000", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Where the journal lives; created if missing; one server per directory.
    #[arg(long, env = "TOUR_DATA_DIR", default_value = "./tour-data")]
    pub data_dir: PathBuf,

    /// Keep nothing on disk (no journal).
    #[arg(long, env = "TOUR_EPHEMERAL", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub ephemeral: bool,

    /// Start even if the journal has damaged records, skipping them (they
    /// are logged); without it a damaged journal stops the start.
    #[arg(long, env = "TOUR_SALVAGE", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub salvage: bool,

    /// Journal space written with zeros ahead of the appends, in KiB, so that
    /// a commit's sync flushes data alone (0 = the file grows with each commit).
    #[arg(long, env = "TOUR_JOURNAL_PREALLOCATE_KIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub journal_preallocate_kib: u64,

    /// Number of shards.
    #[arg(long, env = "TOUR_SHARDS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: u32,

    /// Virtual nodes per shard on the hash ring.
    #[arg(long, env = "TOUR_VNODES", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub vnodes: u32,

    /// Requests waiting per shard (running ones not counted).
    #[arg(long, env = "TOUR_QUEUE_CAPACITY", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_capacity: u32,

    /// Requests per shard waiting for room in a full queue.
    #[arg(long, env = "TOUR_MAX_WAITERS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_waiters: u32,

    /// Requests a shard runs at once.
    #[arg(long, env = "TOUR_SHARD_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shard_concurrency: u32,

    /// How long a request may wait for room in a full queue (0 = refuse at once).
    #[arg(long, env = "TOUR_ENQUEUE_TIMEOUT_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub enqueue_timeout_ms: u64,

    /// Deadline when the client gives none.
    #[arg(long, env = "TOUR_DEFAULT_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub default_timeout_ms: u64,

    /// Largest deadline a client may ask for.
    #[arg(long, env = "TOUR_MAX_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub max_timeout_ms: u64,

    /// How long an idempotency key is remembered.
    #[arg(long, env = "TOUR_IDEMPOTENCY_TTL_S", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub idempotency_ttl_s: u64,

    /// Keys remembered or in flight at once; past it a new key is refused as overloaded.
    #[arg(long, env = "TOUR_MAX_IDEMPOTENCY_KEYS", default_value_t = 4_000_000,
          value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    pub max_idempotency_keys: u32,

    /// Repeats of one key that may wait on its running attempt.
    #[arg(long, env = "TOUR_MAX_JOINERS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub max_joiners: u32,

    /// Usable slots gathered into one batch for the rules.
    #[arg(long, env = "TOUR_MAX_CANDIDATES", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_candidates: u32,

    /// How far ahead a window may end.
    #[arg(long, env = "TOUR_HORIZON_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub horizon_days: u32,

    /// How long after its end an assignment stays readable (at least the idempotency TTL).
    #[arg(long, env = "TOUR_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,

    /// Minutes kept free between two tours of one agent.
    #[arg(long, env = "TOUR_TRAVEL_BUFFER_MIN", default_value_t = 15,
          value_parser = clap::value_parser!(u32).range(0..=1440))]
    pub travel_buffer_min: u32,

    /// Requests alive at once over all shards (queued, running, or with a
    /// write still settling); past it a new request is refused as
    /// overloaded. Bounds the dispatcher's tables when the journal is slow.
    #[arg(long, env = "TOUR_MAX_ATTEMPTS", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_attempts: u32,

    /// Cancellations waiting for their journal write; past it a `DELETE` is
    /// refused as overloaded.
    #[arg(long, env = "TOUR_MAX_PENDING_CANCELS", default_value_t = 4_096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pending_cancels: u32,

    /// Seconds a 503 answer's `Retry-After` asks the client to wait.
    #[arg(long, env = "TOUR_RETRY_AFTER_S", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub retry_after_s: u32,

    /// Rules: most tours one agent leads in one UTC day.
    #[arg(long, env = "TOUR_MAX_TOURS_PER_DAY", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1440))]
    pub max_tours_per_day: u32,

    /// Rules: a tour starts at least this long after the rules engine evaluates it.
    #[arg(long, env = "TOUR_MIN_LEAD_MIN", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(0..=525_600))]
    pub min_lead_min: u32,

    /// Availability: candidate start times lie on this grid; must divide 60.
    #[arg(long, env = "TOUR_SLOT_STEP_MIN", default_value_t = 15, value_parser = parse_slot_step)]
    pub slot_step_min: u32,

    /// Availability: a JSON roster file instead of the built-in demo roster.
    #[arg(long, env = "TOUR_ROSTER")]
    pub roster: Option<PathBuf>,

    /// Embedded availability: delay before the first slot of a stream.
    #[arg(long, env = "TOUR_AVAILABILITY_LATENCY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub availability_latency_ms: u64,

    /// Embedded availability: delay between two slots of a stream.
    #[arg(long, env = "TOUR_AVAILABILITY_SLOT_INTERVAL_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub availability_slot_interval_ms: u64,

    /// Embedded rules engine: delay before each verdict.
    #[arg(long, env = "TOUR_RULES_LATENCY_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub rules_latency_ms: u64,

    /// On shutdown, how long running requests may take to finish.
    #[arg(long, env = "TOUR_DRAIN_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub drain_timeout_ms: u64,

    /// Append every core input to this file, replayable by the simulator.
    #[arg(long, env = "TOUR_RECORD_TRACE")]
    pub record_trace: Option<PathBuf>,

    /// Log format.
    #[arg(long, env = "TOUR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, env = "TOUR_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Connections the kernel holds for the server before it accepts them
    /// (capped by the kernel's `net.core.somaxconn`). A burst of new
    /// connections larger than this loses SYNs, and those clients wait a
    /// second for their retransmission.
    #[arg(long, env = "TOUR_LISTEN_BACKLOG", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub listen_backlog: u32,

    /// How long a client may take to send a request's headers (and its body).
    #[arg(long, env = "TOUR_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub header_read_timeout_ms: u64,

    /// Requests handed to the dispatcher and not yet taken up by it; past it
    /// a request is refused as overloaded.
    #[arg(long, env = "TOUR_INBOX_CAPACITY", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub inbox_capacity: u32,

    /// Dispatches inside the server at once (read and not yet answered);
    /// past it a new one is refused as overloaded at once, before its body
    /// is parsed. Cheap refusals keep accepted latency flat under overload.
    #[arg(long, env = "TOUR_MAX_IN_FLIGHT", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,

    /// Sheds new dispatches (503 overloaded) for `--shed-hold-ms` whenever
    /// the runtime wakes a probe task more than this many milliseconds
    /// late, as it does when the CPU is the bottleneck and requests queue
    /// before the server reads them; 0 = never (see the README).
    #[arg(long, env = "TOUR_SHED_LAG_MS", default_value_t = 0, value_parser = parse_shed_lag)]
    pub shed_lag_ms: u64,

    /// How long shedding lasts after the probe was last woken late (unused
    /// while `--shed-lag-ms` is 0).
    #[arg(long, env = "TOUR_SHED_HOLD_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub shed_hold_ms: u64,

    /// Runtime threads that serve HTTP and run the dispatcher (default: one
    /// per core). Fewer can serve more when the clients or other busy
    /// processes share the machine: see BENCHMARKS.md.
    #[arg(long, env = "TOUR_WORKERS",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
}

/// Flags that are fine one by one but not together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("--retention-days ({retention_days}) must be at least the idempotency TTL (--idempotency-ttl-s {ttl_s}, i.e. {ttl_days} day(s), rounded up)")]
    RetentionShorterThanTtl {
        retention_days: u32,
        ttl_s: u64,
        ttl_days: u64,
    },
    #[error("--default-timeout-ms ({default_ms}) must not exceed --max-timeout-ms ({max_ms})")]
    DefaultTimeoutAboveMax { default_ms: u64, max_ms: u64 },
    #[error("invalid configuration: {0}")]
    Core(#[from] ConfigError),
}

impl SettingsError {
    /// The flags (without their `--`) whose values clash.
    pub fn flags(&self) -> Vec<String> {
        match self {
            SettingsError::RetentionShorterThanTtl { .. } => {
                vec!["retention-days".into(), "idempotency-ttl-s".into()]
            }
            SettingsError::DefaultTimeoutAboveMax { .. } => {
                vec!["default-timeout-ms".into(), "max-timeout-ms".into()]
            }
            SettingsError::Core(ConfigError::OutOfRange { name, .. }) => {
                vec![name.replace('_', "-")]
            }
            SettingsError::Core(ConfigError::RetentionShorterThanTtl { .. }) => {
                vec!["retention-days".into(), "idempotency-ttl-s".into()]
            }
        }
    }
}

impl Settings {
    /// The defaults of every flag, as if the binary ran with none (and no
    /// `TOUR_*` variables).
    pub fn defaults() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let without_env = Settings::command().mut_args(|arg| arg.env(None::<&str>));
        without_env
            .try_get_matches_from(["tour-dispatcher"])
            .and_then(|matches| Settings::from_arg_matches(&matches))
            .expect("the defaults parse")
    }

    /// Parses flags (the first item is the program name), reading `TOUR_*`
    /// variables for flags not given. An empty variable counts as unset, as
    /// it does for most tools that read their settings from the
    /// environment (`TOUR_ROSTER=` in a unit file means "no roster file").
    pub fn parse_flags<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        // Help is printed before any variable is read: it keeps every
        // flag's `[env: …]`.
        let asks_help = args.iter().skip(1).any(|a| a == "--help" || a == "-h");
        let command = Settings::command().mut_args(|arg| {
            let empty = !asks_help
                && arg
                    .get_env()
                    .and_then(std::env::var_os)
                    .is_some_and(|value| value.is_empty());
            // `--shards -1` is a value out of range, not an unknown flag.
            let arg = arg.allow_negative_numbers(true);
            if empty {
                arg.env(None::<&str>)
            } else {
                arg
            }
        });
        command
            .try_get_matches_from(args)
            .and_then(|matches| Settings::from_arg_matches(&matches))
    }

    /// The `TOUR_*` variable that gave the value `error` refuses, when the
    /// flag itself is not among `args`: clap's message names only the flag.
    pub fn variable_behind(error: &clap::Error, args: &[std::ffi::OsString]) -> Option<String> {
        use clap::error::{ContextKind, ContextValue};
        let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
            return None;
        };
        let long = shown.strip_prefix("--")?.split([' ', '=']).next()?;
        Settings::variable_of(long, args)
    }

    /// The `TOUR_*` variable that gave flag `--long` its value: set, and the
    /// flag not among `args`.
    pub fn variable_of(long: &str, args: &[std::ffi::OsString]) -> Option<String> {
        use clap::CommandFactory;
        let flag = format!("--{long}");
        let given = args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        });
        let command = Settings::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))?;
        let name = arg.get_env()?;
        let set = std::env::var_os(name).is_some_and(|value| !value.is_empty());
        (!given && set).then(|| name.to_string_lossy().into_owned())
    }

    /// The checks that span several flags.
    pub fn check(&self) -> Result<(), SettingsError> {
        let day_s = 86_400;
        if u64::from(self.retention_days) * day_s < self.idempotency_ttl_s {
            return Err(SettingsError::RetentionShorterThanTtl {
                retention_days: self.retention_days,
                ttl_s: self.idempotency_ttl_s,
                ttl_days: self.idempotency_ttl_s.div_ceil(day_s),
            });
        }
        if self.default_timeout_ms > self.max_timeout_ms {
            return Err(SettingsError::DefaultTimeoutAboveMax {
                default_ms: self.default_timeout_ms,
                max_ms: self.max_timeout_ms,
            });
        }
        self.core_config(Secret::default()).validate()?;
        Ok(())
    }

    /// The core's configuration, keyed with `secret`.
    pub fn core_config(&self, secret: Secret) -> Config {
        Config {
            shards: self.shards,
            vnodes: self.vnodes,
            queue_capacity: self.queue_capacity,
            max_waiters: self.max_waiters,
            shard_concurrency: self.shard_concurrency,
            enqueue_timeout_ms: self.enqueue_timeout_ms,
            idempotency_ttl_ms: self.idempotency_ttl_s * MS_PER_SECOND,
            max_idempotency_keys: self.max_idempotency_keys,
            max_joiners: self.max_joiners,
            max_candidates: self.max_candidates,
            horizon_days: self.horizon_days,
            retention_days: self.retention_days,
            travel_buffer_min: self.travel_buffer_min,
            max_attempts: self.max_attempts,
            max_pending_cancels: self.max_pending_cancels,
            retry_after_s: self.retry_after_s,
            secret,
        }
    }

    /// The durable journal's options (without metrics).
    pub fn journal_options(&self) -> JournalOptions {
        let bounds = self.core_config(Secret::default());
        JournalOptions {
            salvage: self.salvage,
            preallocate_bytes: self.journal_preallocate_kib << 10,
            // Room for every write the core can have in flight.
            queue_capacity: (bounds.max_attempts as usize)
                .saturating_add(bounds.max_pending_cancels as usize)
                .saturating_add(1024),
            ..JournalOptions::default()
        }
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// When to shed under CPU overload, if at all.
    pub fn shedding(&self) -> Option<SheddingConfig> {
        (self.shed_lag_ms > 0).then(|| SheddingConfig {
            lag_bound: Duration::from_millis(self.shed_lag_ms),
            hold: Duration::from_millis(self.shed_hold_ms),
        })
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("not an address (host:port): {e}"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

/// The runtime's timer ticks in whole milliseconds, so an idle probe
/// wakes a millisecond or two late by itself: a bound under
/// [`MIN_SHED_LAG_MS`] would shed on an idle server.
const MIN_SHED_LAG_MS: u64 = 5;

fn parse_shed_lag(text: &str) -> Result<u64, String> {
    let ms: u64 = text
        .parse()
        .map_err(|_| format!("{text} is not a whole number of milliseconds"))?;
    if ms != 0 && !(MIN_SHED_LAG_MS..=60_000).contains(&ms) {
        return Err(format!(
            "{ms} is not 0 (off) or {MIN_SHED_LAG_MS}-60000: the runtime's timer ticks in whole \
             milliseconds, so a smaller bound would shed on an idle server"
        ));
    }
    Ok(ms)
}

fn parse_slot_step(text: &str) -> Result<u32, String> {
    let step: u32 = text
        .parse()
        .map_err(|_| format!("{text} is not a whole number of minutes"))?;
    if step == 0 || 60 % step != 0 {
        return Err(format!(
            "{step} does not divide 60 (use one of 1 2 3 4 5 6 10 12 15 20 30 60)"
        ));
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::parse_flags(std::iter::once("tour-dispatcher").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_api_table() {
        let s = Settings::defaults();
        assert_eq!(s.listen, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(s.data_dir, PathBuf::from("./tour-data"));
        assert!(!s.ephemeral);
        let c = s.core_config(Secret::default());
        assert_eq!(
            (c.shards, c.vnodes, c.queue_capacity, c.max_waiters),
            (8, 64, 64, 64)
        );
        assert_eq!(c.idempotency_ttl_ms, 86_400_000);
        assert_eq!((s.default_timeout_ms, s.max_timeout_ms), (2000, 30_000));
        assert_eq!(
            (s.max_tours_per_day, s.min_lead_min, s.slot_step_min),
            (8, 60, 15)
        );
        assert_eq!(s.drain_timeout_ms, 10_000);
        assert_eq!(s.log_format, LogFormat::Text);
        s.check().unwrap();
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for args in [
            &["--shards", "0"][..],
            &["--queue-capacity", "-1"],
            &["--shards", "-1"],
            &["--slot-step-min", "7"],
            &["--slot-step-min", "0"],
            &["--max-timeout-ms", "0"],
            &["--log-format", "xml"],
            &["--listen", "nowhere"],
            &["--ephemeral", "maybe"],
            &["--shed-lag-ms", "4"],
            &["--shed-lag-ms", "60001"],
            &["--shed-hold-ms", "0"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
        let tiny = parse(&["--shed-lag-ms", "2"]).unwrap_err().to_string();
        assert!(tiny.contains("would shed on an idle server"), "{tiny}");
        assert_eq!(Settings::defaults().shedding(), None, "off by default");
        let on = parse(&["--shed-lag-ms", "5"]).unwrap().shedding().unwrap();
        assert_eq!(
            (on.lag_bound, on.hold),
            (Duration::from_millis(5), Duration::from_millis(50))
        );
        let negative = parse(&["--shards", "-1"]).unwrap_err().to_string();
        assert!(negative.contains("-1 is not in 1..=1024"), "{negative}");
    }

    #[test]
    fn the_core_s_other_bounds_have_flags_with_its_defaults() {
        let core = Config::default();
        let d = Settings::defaults().core_config(Secret::default());
        assert_eq!(
            (d.max_attempts, d.max_pending_cancels, d.retry_after_s),
            (
                core.max_attempts,
                core.max_pending_cancels,
                core.retry_after_s
            )
        );
        let s = parse(&[
            "--max-attempts",
            "100",
            "--max-pending-cancels",
            "7",
            "--retry-after-s",
            "5",
        ])
        .unwrap();
        let c = s.core_config(Secret::default());
        assert_eq!(
            (c.max_attempts, c.max_pending_cancels, c.retry_after_s),
            (100, 7, 5)
        );
        // The journal's queue has room for every write the core may have in flight.
        assert_eq!(s.journal_options().queue_capacity, 100 + 7 + 1024);
        for args in [
            &["--max-attempts", "0"][..],
            &["--max-pending-cancels", "0"],
            &["--retry-after-s", "0"],
            &["--max-attempts", "1000001"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn cross_flag_checks() {
        let s = parse(&["--retention-days", "1", "--idempotency-ttl-s", "90000"]).unwrap();
        assert!(matches!(
            s.check(),
            Err(SettingsError::RetentionShorterThanTtl { .. })
        ));
        let s = parse(&["--retention-days", "1", "--idempotency-ttl-s", "86400"]).unwrap();
        s.check().unwrap();
        let s = parse(&["--default-timeout-ms", "5000", "--max-timeout-ms", "100"]).unwrap();
        assert!(matches!(
            s.check(),
            Err(SettingsError::DefaultTimeoutAboveMax { .. })
        ));
    }

    #[test]
    fn journal_preallocation_is_given_in_kib_and_bounded() {
        let bytes = |s: Settings| s.journal_options().preallocate_bytes;
        assert_eq!(bytes(Settings::defaults()), 256 << 10);
        let off = parse(&["--journal-preallocate-kib", "0"]).unwrap();
        assert_eq!(bytes(off), 0);
        let most = parse(&["--journal-preallocate-kib", "65536"]).unwrap();
        assert_eq!(bytes(most), 64 << 20);
        assert!(parse(&["--journal-preallocate-kib", "65537"]).is_err());
        let salvage = parse(&["--salvage"]).unwrap().journal_options();
        assert!(salvage.salvage && !Settings::defaults().journal_options().salvage);
    }

    #[test]
    fn ephemeral_is_a_flag_or_a_boolean() {
        assert!(parse(&["--ephemeral"]).unwrap().ephemeral);
        assert!(parse(&["--ephemeral=true"]).unwrap().ephemeral);
        assert!(!parse(&["--ephemeral=false"]).unwrap().ephemeral);
    }

    #[test]
    fn workers_default_to_the_runtime_s_choice_and_are_bounded() {
        assert_eq!(Settings::defaults().workers, None);
        assert_eq!(parse(&["--workers", "1"]).unwrap().workers, Some(1));
        assert!(parse(&["--workers", "0"]).is_err());
        assert!(parse(&["--workers", "1025"]).is_err());
    }
}
