//! Full request lives per second through the core with zero-latency
//! in-process dependencies, and the cost of a booking as the book grows.
//!
//! `cargo bench --bench core`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

#[path = "core_support.rs"]
mod support;
use support::*;
use tour_dispatcher::core::Dispatcher;

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

criterion_group!(benches, dispatches, booking_cost_as_the_book_grows);
criterion_main!(benches);
