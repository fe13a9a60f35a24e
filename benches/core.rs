//! Full request lives per second through the core with zero-latency
//! in-process dependencies, the cost of a booking as the book grows, and
//! the conflict check against a full book.
//!
//! `cargo bench --bench core`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

#[path = "core_support.rs"]
mod support;
use support::*;
use tour_dispatcher::core::ids::AssignmentId;
use tour_dispatcher::core::time::{Timestamp, Window};
use tour_dispatcher::core::{Book, Dispatcher};

fn dispatches(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(1));
    let cases = [
        ("without_key", false, NARROW),
        ("with_key", true, NARROW),
        ("with_key_55_slots", true, WIDE),
    ];
    for (name, key, shape) in cases {
        group.bench_function(name, |b| {
            let mut d = Dispatcher::new(config()).unwrap();
            let mut n = 0u64;
            // The body arrives parsed, as from the server, and the slots as
            // from a stream: making them is not measured.
            b.iter_batched(
                || {
                    n += 1;
                    let key = key.then(|| format!("key-{n}"));
                    (n, request(n), key, stream(n, shape))
                },
                |(n, body, k, slots)| black_box(dispatch_body(&mut d, n, body, k, slots)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn booking_cost_as_the_book_grows(c: &mut Criterion) {
    let mut group = c.benchmark_group("book_size");
    group.sample_size(20);
    for held in [1_000u64, 1_000_000] {
        group.bench_function(format!("{held}"), |b| {
            let base = with_bookings(held);
            let mut n = 10_000_000u64;
            b.iter_batched_ref(
                || base.clone(),
                |d| {
                    for _ in 0..1_000 {
                        n += 1;
                        black_box(dispatch(d, n, true));
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// `agents` agents (and their ids), each with `per_day` 30-minute tours a
/// day for `days` days, the first at 08:00 and the others `gap_min` apart.
fn a_full_book(agents: u64, days: u64, per_day: u64, gap_min: u64) -> (Vec<String>, Book) {
    let ids: Vec<String> = (0..agents).map(|a| format!("ag-{a:04}")).collect();
    let mut book = Book::new(15 * MIN);
    let mut id = 0;
    for agent in &ids {
        for day in 0..days {
            for tour in 0..per_day {
                let start = T0 + day * DAY + (8 * 60 + tour * gap_min) * MIN;
                let interval = Window::new(Timestamp(start), Timestamp(start + 30 * MIN));
                book.insert(agent, interval, AssignmentId(id));
                id += 1;
            }
        }
    }
    (ids, book)
}

/// The next of a cheap pseudo-random sequence (xorshift), so that a
/// benchmark's choices cost next to nothing beside what it measures.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// One conflict check (`Book::is_free`) against a book of about 1,000,000
/// tours: 342 agents with 8 tours a day for a year, checked at random
/// agents and times, so that nearly every check starts cold, as in the
/// server, where a request looks at a random day.
fn conflict_check_in_a_full_book(c: &mut Criterion) {
    const AGENTS: u64 = 342;
    const DAYS: u64 = 365;
    let (agents, book) = a_full_book(AGENTS, DAYS, 8, 60);
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(1));
    group.bench_function("is_free_1m_tours", |b| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        b.iter(|| {
            // A random agent and a random quarter hour of the year.
            let x = xorshift(&mut x);
            let agent = &agents[(x % AGENTS) as usize];
            let start = T0 + (x >> 20) % (DAYS * 96) * 15 * MIN;
            let interval = Window::new(Timestamp(start), Timestamp(start + 30 * MIN));
            black_box(book.is_free(agent, interval))
        })
    });
    group.finish();
}

/// One request's work on the book, in the shape of the HTTP benchmark
/// against the demo roster: few agents with many tours each (150 agents,
/// 1,500 tours each over 300 days). A reader checks a delivery of 55 slots
/// (11 start times of a three-hour window, five agents) and counts the day's
/// tours of each; then the first free slot is booked and the booking undone,
/// so that the book keeps its size.
fn request_on_a_book_of_busy_agents(c: &mut Criterion) {
    const AGENTS: u64 = 150;
    const DAYS: u64 = 300;
    let (agents, mut book) = a_full_book(AGENTS, DAYS, 5, 105);
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(1));
    group.bench_function("request_busy_agents", |b| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        b.iter(|| {
            let x = xorshift(&mut x);
            let team = (x % (AGENTS / 5)) * 5;
            let window_start = T0 + (x >> 20) % DAYS * DAY + (8 + (x >> 40) % 8) * 60 * MIN;
            let mut reader = book.reader();
            let mut first_free = None;
            let mut tours = 0;
            for s in 0..11 {
                let start = window_start + s * 15 * MIN;
                let interval = Window::new(Timestamp(start), Timestamp(start + 30 * MIN));
                for agent in &agents[team as usize..team as usize + 5] {
                    if reader.is_free(agent, interval) {
                        tours += reader.tours_on(agent, interval.start.utc_day());
                        first_free = first_free.or(Some((agent, interval)));
                    }
                }
            }
            if let Some((agent, interval)) = first_free {
                book.insert(agent, interval, AssignmentId(u64::MAX));
                book.remove(agent, interval, AssignmentId(u64::MAX));
            }
            black_box(tours)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    dispatches,
    booking_cost_as_the_book_grows,
    conflict_check_in_a_full_book,
    request_on_a_book_of_busy_agents
);
criterion_main!(benches);
