//! `tour-sim`: run seeded simulations of tour-dispatcher, replay traces
//! (the simulator's or the server's `--record-trace`), shrink failures.
//!
//! Exit codes: 0 when every invariant holds; 129 for a safety violation,
//! 128 for a liveness violation, 127 when the core panicked; 1 for a usage
//! or file error.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use tour_sim::invariant::{Kind, Violation};
use tour_sim::replay::{render, replay};
use tour_sim::runner::run_seeds;
use tour_sim::shrink::{
    has_choices, inputs, no_checks, shrink_choices, shrink_inputs, DEFAULT_BUDGET,
};
use tour_sim::trace::Trace;
use tour_sim::world::run_seed;

#[derive(Parser)]
#[command(
    name = "tour-sim",
    version,
    about = "Deterministic simulator for tour-dispatcher"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate seeds: `--seeds N` for many, `--seed S` for one.
    Run {
        /// How many seeds to run.
        #[arg(long, conflicts_with = "seed")]
        seeds: Option<u64>,
        /// The first seed of `--seeds`.
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Threads to run seeds on.
        #[arg(long, env = "SIM_JOBS", default_value_t = 1)]
        jobs: usize,
        /// Run this one seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Write the seed's trace here (with `--seed`).
        #[arg(long, requires = "seed")]
        trace_out: Option<String>,
    },
    /// Reproduce a trace (from `run` or the server's `--record-trace`).
    Replay {
        file: String,
        /// Print every input and output, not only the end.
        #[arg(long)]
        full: bool,
    },
    /// Shrink a failing trace to a minimal one.
    Shrink {
        file: String,
        #[arg(long)]
        out: String,
        /// Re-simulations or replays to spend at most.
        #[arg(long, default_value_t = DEFAULT_BUDGET)]
        budget: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            seeds,
            first,
            jobs,
            seed,
            trace_out,
        } => match (seeds, seed) {
            (_, Some(seed)) => run_one(seed, trace_out.as_deref()),
            (n, None) => run_many(first, n.unwrap_or(100), jobs),
        },
        Command::Replay { file, full } => replay_file(&file, full),
        Command::Shrink { file, out, budget } => shrink_file(&file, &out, budget),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn exit_code(v: &Option<Violation>) -> u8 {
    v.as_ref().map_or(0, |v| v.kind.exit_code())
}

fn run_many(first: u64, count: u64, jobs: usize) -> Result<u8, String> {
    let summary = run_seeds(first, count, jobs, false);
    print!("{}", summary.render());
    let Some((seed, v)) = summary.failures.first() else {
        return Ok(0);
    };
    println!();
    for (seed, v) in &summary.failures {
        println!("seed {seed} FAILED: {v}");
    }
    let path = format!("tour-sim-seed-{seed}.trace.json");
    write_trace(*seed, &path)?;
    println!("\nfirst failure: seed {seed}, {}\ntrace: {path}\nreproduce: tour-sim replay {path}\nshrink:    tour-sim shrink {path} --out {seed}.min.json", v.invariant);
    Ok(v.kind.exit_code())
}

fn write_trace(seed: u64, path: &str) -> Result<Option<Violation>, String> {
    let r = run_seed(seed, true);
    let trace = r.trace.ok_or("the run kept no trace")?;
    trace
        .save(path)
        .map_err(|e| format!("cannot write {path}: {e}"))?;
    Ok(r.violation)
}

fn run_one(seed: u64, trace_out: Option<&str>) -> Result<u8, String> {
    let r = run_seed(seed, true);
    println!(
        "seed {seed}: {} requests, {} core inputs, {:.1} s simulated, outputs hash {}",
        r.stats.requests,
        r.stats.inputs,
        r.stats.simulated_ms as f64 / 1000.0,
        r.outputs_hash
    );
    let trace = r.trace.ok_or("the run kept no trace")?;
    let default_path = format!("tour-sim-seed-{seed}.trace.json");
    let path = match (trace_out, &r.violation) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => Some(default_path.as_str()),
        (None, None) => None,
    };
    if let Some(p) = path {
        trace
            .save(p)
            .map_err(|e| format!("cannot write {p}: {e}"))?;
        println!("trace: {p}");
    }
    if let Some(v) = &r.violation {
        print_failure(&trace, v, false);
    }
    Ok(exit_code(&r.violation))
}

fn print_failure(trace: &Trace, v: &Violation, full: bool) {
    let replayed = replay(trace, true, no_checks());
    let text = render(trace, &replayed.outputs);
    let lines: Vec<&str> = text.lines().collect();
    let from = if full {
        0
    } else {
        lines.len().saturating_sub(40)
    };
    if from > 0 {
        println!("… {from} earlier lines (tour-sim replay FILE --full prints all)");
    }
    for l in &lines[from..] {
        println!("{l}");
    }
    let what = match v.kind {
        Kind::Safety => "SAFETY VIOLATION",
        Kind::Liveness => "LIVENESS VIOLATION",
        Kind::Crash => "CORE CRASH",
    };
    let seed = trace.seed.map_or(String::new(), |s| format!("seed {s}: "));
    println!("\n{what}: {seed}{v}");
}

fn replay_file(file: &str, full: bool) -> Result<u8, String> {
    let trace = Trace::load(file).map_err(|e| e.to_string())?;
    let r = replay(&trace, true, no_checks());
    println!(
        "{file}: {} inputs replayed, outputs hash {}{}",
        inputs(&trace),
        r.outputs_hash,
        match &trace.outputs_hash {
            Some(h) if *h == r.outputs_hash => " (matches the trace)",
            Some(_) => " (DIFFERS from the trace)",
            None => "",
        }
    );
    match &r.violation {
        Some(v) => print_failure(&trace, v, full),
        None if full => print!("{}", render(&trace, &r.outputs)),
        None => println!("every invariant holds"),
    }
    Ok(exit_code(&r.violation))
}

fn shrink_file(file: &str, out: &str, budget: usize) -> Result<u8, String> {
    let trace = Trace::load(file).map_err(|e| e.to_string())?;
    let target = match replay(&trace, false, no_checks()).violation {
        Some(v) => v,
        None => return Err(format!("{file} does not fail: nothing to shrink")),
    };
    println!(
        "shrinking {file}: {} inputs, fails {}",
        inputs(&trace),
        target.invariant
    );
    let shrunk = if has_choices(&trace) {
        let list = trace.choices.clone().unwrap_or_default();
        let r = shrink_choices(list, &target, &no_checks, budget);
        r.trace.ok_or("re-simulation kept no trace")?
    } else {
        shrink_inputs(&trace, &target, &no_checks, budget)
    };
    shrunk
        .save(out)
        .map_err(|e| format!("cannot write {out}: {e}"))?;
    println!(
        "minimal trace: {} inputs, written to {out}\n",
        inputs(&shrunk)
    );
    let r = replay(&shrunk, true, no_checks());
    print!("{}", render(&shrunk, &r.outputs));
    if let Some(v) = &r.violation {
        println!("\n{v}");
    }
    Ok(exit_code(&r.violation))
}
