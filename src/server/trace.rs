//! `--record-trace FILE`: every input the core sees, with its time, so that
//! `tour-sim replay FILE` can feed the very same sequence to a `Dispatcher`
//! and reproduce a production run.
//!
//! # Format (`format` 1, shared with the simulator's reader)
//!
//! JSON lines, appended (a file may hold several runs of the server):
//!
//! 1. A header line opens each run of the process:
//!    `{"format":1,"config":<core::Config>,"records":[<core::Record>,...],
//!    "now":<ms>,"source":"server"}` — the core's configuration exactly as
//!    given to `Dispatcher::restore` (secret included, so replayed ids and
//!    hashes match: keep traces private), the durable records it was
//!    restored from (empty on a fresh start), and the `now` of the restore.
//!    A header after the first is a restart: replay restores a fresh core
//!    from its `records` and goes on.
//! 2. One line per input, in the order `Dispatcher::handle` saw them
//!    (`Tick`s included): `{"now":<ms>,"input":<core::Input>,
//!    "outputs_hash":"<16 hex digits>"}` — `now` is the time given to
//!    `handle`; `outputs_hash` is the running hash of every output of this
//!    process so far (it starts afresh at each header), computed as the
//!    simulator's `OutputHash`: SipHash-1-3 keyed `(0x746f_7572_2d73_696d,
//!    0x6f75_7470_7574_7321)`, fed for each output its `now` (`write_u64`)
//!    then its serde JSON.
//!
//! `Input`, `Config` and `Record` use their serde (JSON) representations
//! (externally tagged enums).

use crate::core::{Config, Input, Output, Record, Timestamp};
use crate::server::data_dir::private_file;
use serde::Serialize;
use siphasher::sip::SipHasher13;
use std::fs::File;
use std::hash::Hasher;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The trace format version.
pub const TRACE_FORMAT: u32 = 1;

#[derive(Serialize)]
struct Header<'a> {
    format: u32,
    config: &'a Config,
    records: &'a [Record],
    now: Timestamp,
    source: &'static str,
}

#[derive(Serialize)]
struct Step<'a> {
    now: Timestamp,
    input: &'a Input,
    outputs_hash: String,
}

/// The running hash of outputs (see the module documentation).
#[derive(Clone)]
pub struct OutputHash(SipHasher13);

impl Default for OutputHash {
    fn default() -> Self {
        OutputHash(SipHasher13::new_with_keys(
            0x746f_7572_2d73_696d,
            0x6f75_7470_7574_7321,
        ))
    }
}

struct HashWriter<'a>(&'a mut SipHasher13);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutputHash {
    pub fn add(&mut self, now: Timestamp, output: &Output) {
        self.0.write_u64(now.as_millis());
        // Writing into a hasher cannot fail.
        let _ = serde_json::to_writer(HashWriter(&mut self.0), output);
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0.finish())
    }
}

/// Appends a run to a trace file.
pub struct TraceRecorder {
    out: BufWriter<File>,
    hash: OutputHash,
}

impl TraceRecorder {
    /// Opens `path` for appending and writes the run's header.
    pub fn create(
        path: &Path,
        config: &Config,
        now: Timestamp,
        records: &[Record],
    ) -> io::Result<Self> {
        let file = private_file().create(true).append(true).open(path)?;
        let mut recorder = TraceRecorder {
            out: BufWriter::new(file),
            hash: OutputHash::default(),
        };
        let header = Header {
            format: TRACE_FORMAT,
            config,
            records,
            now,
            source: "server",
        };
        recorder.line(&header)?;
        recorder.out.flush()?;
        Ok(recorder)
    }

    /// Records one input and the outputs it produced.
    pub fn step(&mut self, now: Timestamp, input: &Input, outputs: &[Output]) -> io::Result<()> {
        for output in outputs {
            self.hash.add(now, output);
        }
        let step = Step {
            now,
            input,
            outputs_hash: self.hash.hex(),
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
        assert_eq!(lines[0]["format"], 1);
        assert_eq!(lines[0]["records"], serde_json::json!([]));
        let back: Config = serde_json::from_value(lines[0]["config"].clone()).unwrap();
        assert_eq!(back, config);
        let input: Input = serde_json::from_value(lines[1]["input"].clone()).unwrap();
        assert_eq!(input, Input::Tick);
        assert_eq!(lines[1]["now"], 7);
        let mut hash = OutputHash::default();
        hash.add(Timestamp(7), &output);
        assert_eq!(lines[1]["outputs_hash"], hash.hex());
        assert_ne!(hash.hex(), OutputHash::default().hex());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
