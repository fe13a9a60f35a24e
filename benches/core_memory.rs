//! Bytes of heap per durable booking and per idempotency key, measured with
//! a counting allocator: `cargo bench --bench core_memory`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

#[path = "core_support.rs"]
mod support;
use support::*;
use tour_dispatcher::core::*;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn main() {
    const N: u64 = 1_000_000;
    // Bookings: restored confirmed assignments (book + assignment table).
    let before = live();
    let d = with_bookings(N);
    let per_booking = (live() - before) as f64 / N as f64;
    assert_eq!(d.stats().reservations_active, N);
    drop(d);

    // Idempotency keys: remembered answers, as restored from the journal.
    let cfg = config();
    let records = (0..N).map(|i| Record::Answered {
        key: KeyEntry {
            key: KeyHash::of(&cfg.secret, &format!("key-{i}")),
            fingerprint: Fingerprint(u128::from(i)),
            created_at: Timestamp(T0),
        },
        answer: Remembered::NoAvailability,
    });
    let before = live();
    let d = Dispatcher::restore(cfg.clone(), Timestamp(T0), records).expect("restore");
    let per_key = (live() - before) as f64 / N as f64;
    assert_eq!(d.stats().idempotency_keys, N);

    drop(d);

    // Idempotency keys taken one by one: N request lives that each find no
    // availability (409, remembered), as a live server takes them.
    let mut d = Dispatcher::new(cfg).expect("a valid config");
    let before = live();
    for n in 0..N {
        let status = dispatch_body(&mut d, n, request(n), Some(format!("key-{n}")), vec![]);
        assert_eq!(status, 409);
    }
    let per_live_key = (live() - before) as f64 / N as f64;
    assert_eq!(d.stats().idempotency_keys, N);

    println!("bytes per booking (16-character ids): {per_booking:.0}");
    println!("bytes per idempotency key, restored:  {per_key:.0}");
    println!("bytes per idempotency key, one by one: {per_live_key:.0}");
}
