//! Times journal recovery: writes a journal of N records (default
//! 1,000,000 bookings with idempotency keys) into a temporary directory on
//! real files, then times reading it back (`Journal::open`) and restoring
//! the core from it (`Dispatcher::restore`), and prints the resident memory
//! of the process holding them (Linux).
//!
//! `cargo run --release --example journal_recovery [N]`

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::time::Instant;
use tour_dispatcher::core::{
    Assignment, AssignmentId, AssignmentStatus, Config, Dispatcher, Fingerprint, KeyEntry, KeyHash,
    Record, Timestamp,
};
use tour_dispatcher::journal::{Journal, JournalConfig};
use tour_dispatcher::server::journal_file::{FileStorage, JournalOptions};

const AGENTS: u64 = 10_000;
const HOUR_MS: u64 = 3_600_000;
/// 2030-01-01T00:00Z.
const BASE_MS: u64 = 1_893_456_000_000;

/// The `n`-th booking: agents take turns, each agent's tours two hours apart.
fn booking(config: &Config, n: u64) -> Record {
    let start = Timestamp(BASE_MS + (n / AGENTS) * 2 * HOUR_MS);
    Record::Booked {
        assignment: Assignment {
            id: AssignmentId::from_seq(&config.secret, n),
            status: AssignmentStatus::Confirmed,
            agent_id: format!("agent-{:05}", n % AGENTS).into(),
            customer_id: format!("customer-{n}").into(),
            property_id: Some("property-42".into()),
            zipcode: "94107".into(),
            start,
            end: start.plus_ms(HOUR_MS),
        },
        key: Some(KeyEntry {
            key: KeyHash(u128::from(n) * 0x9e37_79b9_7f4a_7c15),
            fingerprint: Fingerprint(u128::from(n) * 0x5851_f42d_4c95_7f2d),
            created_at: Timestamp(BASE_MS),
        }),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let config = Config {
        max_idempotency_keys: 4_000_000,
        ..Config::default()
    };
    let dir = tempfile::tempdir()?;
    let journal_config = JournalConfig {
        compact_after_bytes: u64::MAX,
        ..JournalConfig::default()
    };

    // As the server writes it: zeros ahead of the appends, which recovery cuts.
    let preallocate = JournalOptions::default().preallocate_bytes;
    let started = Instant::now();
    let mut journal = Journal::open(
        FileStorage::new(dir.path(), preallocate),
        journal_config.clone(),
    )?
    .journal;
    for n in 0..count {
        journal.append(n + 1, &booking(&config, n));
        if (n + 1) % 4096 == 0 {
            journal.commit();
        }
    }
    journal.commit();
    let file_len = journal.stats().file_len;
    drop(journal);
    println!(
        "wrote {count} records, {:.1} MB, in {:.2?}",
        file_len as f64 / 1e6,
        started.elapsed()
    );

    let started = Instant::now();
    let opened = Journal::open(FileStorage::new(dir.path(), preallocate), journal_config)?;
    let read = started.elapsed();
    println!(
        "journal recovery (read, check, decode): {} records in {read:.2?}",
        opened.records.len()
    );

    let started = Instant::now();
    let core = Dispatcher::restore(config, Timestamp(BASE_MS), opened.records)?;
    let restored = started.elapsed();
    println!(
        "core restore: {} assignments in {restored:.2?}",
        core.assignments().len()
    );
    println!("recovery total: {:.2?}", read + restored);
    if let Some(kib) = resident_kib() {
        // Includes what the allocator kept of the freed recovery buffers.
        println!(
            "resident memory after restore: {:.0} MiB ({} bookings and keys held)",
            kib as f64 / 1024.0,
            core.stats().idempotency_keys
        );
    }
    Ok(())
}

/// The process's resident set (Linux), in KiB.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
