//! Many seeds at once: a pool of threads pulling seeds from a counter, a
//! progress bar on a terminal, and a summary of what the swarm reached.
//! Wall-clock time is read here only to report speed; it never reaches a
//! simulated world.

use crate::coverage::{Coverage, Mark};
use crate::invariant::Violation;
use crate::world::{run_seed, RunStats};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The sum over many seeds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub stats: RunStats,
    pub coverage: Coverage,
    /// The failing seeds, lowest first.
    pub failures: Vec<(u64, Violation)>,
    pub wall: Duration,
}

impl Summary {
    fn add(&mut self, seed: u64, r: crate::world::RunResult) {
        self.seeds += 1;
        self.stats.add(&r.stats);
        self.coverage.add(&r.coverage);
        if let Some(v) = r.violation {
            self.failures.push((seed, v));
        }
    }

    /// Core inputs per wall-clock second.
    pub fn inputs_per_second(&self) -> f64 {
        self.stats.inputs as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The summary as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let st = &self.stats;
        let _ = writeln!(
            s,
            "seeds: {}   failures: {}   wall: {:.2}s",
            self.seeds,
            self.failures.len(),
            self.wall.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "simulated requests: {} (+{} DELETEs)   core inputs: {} ({:.0}/s)   simulated time: {:.1} h",
            st.requests,
            st.cancels,
            st.inputs,
            self.inputs_per_second(),
            st.simulated_ms as f64 / 3_600_000.0
        );
        let _ = writeln!(s, "faults and client behaviours:");
        for (label, n) in st.faults() {
            let _ = writeln!(s, "  {label:<32} {n:>10}");
        }
        let _ = writeln!(s, "outcomes and paths reached:");
        for &m in Mark::ALL {
            let _ = writeln!(s, "  {:<32} {:>10}", m.label(), self.coverage.count(m));
        }
        s
    }
}

/// Runs seeds `first..first + count` on `jobs` threads; stops handing out
/// seeds after the first failure when `stop_early`.
pub fn run_seeds(first: u64, count: u64, jobs: usize, stop_early: bool) -> Summary {
    #[allow(clippy::disallowed_methods)] // speed report only
    let started = std::time::Instant::now();
    let next = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    let bar = progress_bar(count);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || (stop_early && failed.load(Ordering::Relaxed)) {
                    break;
                }
                let seed = first.wrapping_add(i);
                let r = run_seed(seed, false);
                if r.violation.is_some() {
                    failed.store(true, Ordering::Relaxed);
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
                if let Ok(mut s) = summary.lock() {
                    s.add(seed, r);
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut s = summary.into_inner().unwrap_or_default();
    s.failures.sort_by_key(|(seed, _)| *seed);
    s.wall = started.elapsed();
    s
}

fn progress_bar(count: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || count < 2 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(count);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} seeds ({per_sec}, eta {eta})",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    Some(bar)
}
