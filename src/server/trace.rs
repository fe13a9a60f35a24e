//! `--record-trace FILE`: every input the core sees, with its time, so that
//! `tour-sim replay FILE` can feed the very same sequence to a `Dispatcher`
//! and reproduce a production run.
//!
//! # Format (version 1)
//!
//! JSON lines, appended (a file may hold several runs of the server):
//!
//! 1. A header line opens each run:
//!    `{"format":"tour-dispatcher-trace","version":1,"source":"server",
//!    "config":<core::Config>,"now":<ms>,"records":[<core::Record>,...]}`
//!    — the core's configuration (secret included: keep traces private),
//!    the `now` given to `Dispatcher::restore`, and the durable records it
//!    was restored from (empty on a fresh start). A header after the first
//!    is a restart of the process: rebuild the dispatcher with
//!    `Dispatcher::restore(config, now, records)`.
//! 2. One line per input, in the order the core saw them:
//!    `{"now":<ms>,"input":<core::Input>,"outputs_hash":"<16 hex digits>"}`
//!    — `now` is the time passed to `handle`; `outputs_hash` is a running
//!    hash over every output of the run so far: starting from 0 at each
//!    header, for every output drained after this input, in order,
//!    `hash = stable_hash64(hash.to_le_bytes() ++ serde_json(output))`
//!    (`core::ids::stable_hash64`). A replay that ends with the same hash
//!    produced the same outputs, byte for byte.
//!
//! `Input`, `Config` and `Record` use their serde (JSON) representations.

use crate::core::ids::stable_hash64;
use crate::core::{Config, Input, Output, Record, Timestamp};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub const TRACE_FORMAT: &str = "tour-dispatcher-trace";
pub const TRACE_VERSION: u32 = 1;

#[derive(Serialize)]
struct Header<'a> {
    format: &'static str,
    version: u32,
    source: &'static str,
    config: &'a Config,
    now: Timestamp,
    records: &'a [Record],
}

#[derive(Serialize)]
struct Step<'a> {
    now: Timestamp,
    input: &'a Input,
    outputs_hash: String,
}

/// Appends a run to a trace file.
pub struct TraceRecorder {
    out: BufWriter<File>,
    hash: u64,
}

impl TraceRecorder {
    /// Opens `path` for appending and writes the run's header.
    pub fn create(
        path: &Path,
        config: &Config,
        now: Timestamp,
        records: &[Record],
    ) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut recorder = TraceRecorder {
            out: BufWriter::new(file),
            hash: 0,
        };
        let header = Header {
            format: TRACE_FORMAT,
            version: TRACE_VERSION,
            source: "server",
            config,
            now,
            records,
        };
        recorder.line(&header)?;
        recorder.out.flush()?;
        Ok(recorder)
    }

    /// Records one input and the outputs it produced.
    pub fn step(&mut self, now: Timestamp, input: &Input, outputs: &[Output]) -> io::Result<()> {
        for output in outputs {
            self.hash = chain(self.hash, output);
        }
        let step = Step {
            now,
            input,
            outputs_hash: format!("{:016x}", self.hash),
        };
        self.line(&step)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn line(&mut self, value: &impl Serialize) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out.write_all(b"\n")
    }
}

/// The running hash over outputs (see the module documentation).
pub fn chain(hash: u64, output: &Output) -> u64 {
    let mut bytes = hash.to_le_bytes().to_vec();
    // Serializing plain data cannot fail.
    bytes.extend(serde_json::to_vec(output).unwrap_or_default());
    stable_hash64(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Response, Ticket};

    #[test]
    fn writes_a_header_then_steps() {
        let dir = std::env::temp_dir().join(format!("trace-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jsonl");
        let _ = std::fs::remove_file(&path);
        let config = Config::default();
        let mut r = TraceRecorder::create(&path, &config, Timestamp(5), &[]).unwrap();
        let output = Output::Respond {
            ticket: Ticket(1),
            response: Response::NotFound,
            replayed: false,
        };
        r.step(Timestamp(7), &Input::Tick, std::slice::from_ref(&output))
            .unwrap();
        r.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["format"], TRACE_FORMAT);
        assert_eq!(lines[0]["version"], 1);
        let back: Config = serde_json::from_value(lines[0]["config"].clone()).unwrap();
        assert_eq!(back, config);
        let input: Input = serde_json::from_value(lines[1]["input"].clone()).unwrap();
        assert_eq!(input, Input::Tick);
        assert_eq!(lines[1]["now"], 7);
        assert_eq!(
            lines[1]["outputs_hash"],
            format!("{:016x}", chain(0, &output))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
