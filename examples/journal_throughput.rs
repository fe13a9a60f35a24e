//! Measures the journal writer's group commit on real files: a producer
//! appends N records (default 200,000) as fast as it can, and the writer
//! thread batches whatever queued during each fdatasync. Then, for
//! comparison, 1,000 records each waited for before the next.
//!
//! `cargo run --release --example journal_throughput [N]`

#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tour_dispatcher::core::{
    Assignment, AssignmentId, AssignmentStatus, Config, Record, Timestamp,
};
use tour_dispatcher::server::journal_file::{DurableJournal, JournalEvent, JournalOptions};

fn booking(config: &Config, n: u64) -> Record {
    let start = Timestamp(1_893_456_000_000 + n * 7_200_000);
    Record::Booked {
        assignment: Assignment {
            id: AssignmentId::from_seq(&config.secret, n),
            status: AssignmentStatus::Confirmed,
            agent_id: format!("agent-{:05}", n % 10_000).into(),
            customer_id: format!("customer-{n}").into(),
            property_id: None,
            zipcode: "94107".into(),
            start,
            end: start.plus_ms(3_600_000),
        },
        key: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 200_000,
    };
    let config = Config::default();
    let records: Vec<Record> = (1..=count).map(|n| booking(&config, n)).collect();
    let dir = tempfile::tempdir()?;
    let failed = Arc::new(AtomicU64::new(0));
    let failed_in_events = Arc::clone(&failed);
    let events = Box::new(move |event| {
        if let JournalEvent::PersistFailed { .. } = event {
            failed_in_events.fetch_add(1, Ordering::Relaxed);
        }
    });
    let options = JournalOptions {
        queue_capacity: count as usize + 1,
        ..JournalOptions::default()
    };
    let (journal, _, _) = DurableJournal::open(dir.path(), options, events)?;
    let before = journal.stats();
    let started = Instant::now();
    for (n, record) in records.into_iter().enumerate() {
        journal.append(n as u64 + 1, record);
    }
    journal.flush();
    let elapsed = started.elapsed();
    let stats = journal.stats();
    let syncs = stats.batches - before.batches;
    println!(
        "{count} records in {elapsed:.2?}: {:.0} records/s, {syncs} syncs ({:.0} syncs/s), \
         {:.0} records per sync, {} failures",
        count as f64 / elapsed.as_secs_f64(),
        syncs as f64 / elapsed.as_secs_f64(),
        count as f64 / syncs.max(1) as f64,
        failed.load(Ordering::Relaxed)
    );

    // For comparison: one record per sync, the cost without group commit.
    let single = 1_000;
    let started = Instant::now();
    for n in 1..=single {
        journal.append(count + n, booking(&config, count + n));
        journal.flush();
    }
    let elapsed = started.elapsed();
    println!(
        "{single} records one sync each in {elapsed:.2?}: {:.0} records/s",
        single as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
