//! Shared by the core benchmarks: a zero-latency in-process world that runs
//! whole request lives through the `Dispatcher`.

#![allow(dead_code)] // each benchmark uses part of it

use tour_dispatcher::core::*;

/// 2027-01-01T00:00:00Z.
pub const T0: u64 = 1_798_761_600_000;
pub const MIN: u64 = 60_000;
pub const DAY: u64 = 24 * 60 * MIN;

pub fn config() -> Config {
    Config {
        shards: 8,
        max_idempotency_keys: 8_000_000,
        secret: Secret::new(3, 5),
        ..Config::default()
    }
}

/// The `n`-th distinct request: spread over zipcodes and days so that most
/// requests book a free slot.
pub fn request(n: u64) -> RawRequest {
    let start = window_start(n);
    let fmt = |ms: u64| Timestamp(ms).to_rfc3339();
    RawRequest {
        customer_id: Some(format!("cust-{n}")),
        duration_minutes: Some(30),
        language: None,
        property_id: Some(format!("prop-{}", n % 997)),
        window: Some(RawWindow {
            start: Some(fmt(start)),
            end: Some(fmt(start + 8 * 60 * MIN)),
        }),
        zipcode: Some(format!("{:05}", n % 40_000)),
    }
}

/// Where the window of request `n` starts: each (zipcode, day, quarter
/// hour) is asked for once per 384M requests.
fn window_start(n: u64) -> u64 {
    let round = n / 40_000;
    let day = 1 + round % 300;
    T0 + day * DAY + 9 * 60 * MIN + (round / 300 % 32) * 15 * MIN
}

/// The slots the stream of request `n` offers: made beforehand, so that a
/// benchmark measures the core rather than their making.
pub fn stream(n: u64, shape: Shape) -> Vec<Slot> {
    let start = Timestamp(window_start(n));
    (0..shape.starts)
        .flat_map(|s| {
            (0..shape.agents).map(move |a| Slot {
                start: start.plus_ms(s * 15 * MIN),
                agent: format!("ag-{}-{a}", n % 40_000).into(),
            })
        })
        .collect()
}

/// The slots a stream offers: `agents` agents at each of `starts` start
/// times 15 minutes apart, from the window's start.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub starts: u64,
    pub agents: u64,
}

/// Four agents at one start time.
pub const NARROW: Shape = Shape {
    starts: 1,
    agents: 4,
};

/// The HTTP benchmark's streams: a three-hour window of 30-minute tours on
/// a 15-minute grid (11 start times), five agents: 55 slots.
pub const WIDE: Shape = Shape {
    starts: 11,
    agents: 5,
};

/// Runs one request life to its answer, serving every output at once:
/// [`NARROW`] streams, every candidate allowed, every write durable.
/// Returns the HTTP status of the answer.
pub fn dispatch(d: &mut Dispatcher, n: u64, key: bool) -> u16 {
    let idempotency_key = key.then(|| format!("key-{n}"));
    dispatch_body(d, n, request(n), idempotency_key, stream(n, NARROW))
}

/// [`dispatch`] with the request body, key and stream made beforehand (so
/// a benchmark can leave their making out of the measurement). The first
/// fetch gets `slots`, a later one none.
pub fn dispatch_body(
    d: &mut Dispatcher,
    n: u64,
    body: RawRequest,
    idempotency_key: Option<String>,
    mut slots: Vec<Slot>,
) -> u16 {
    let now = Timestamp(T0 + n / 100);
    let ticket = Ticket(n);
    d.handle(
        now,
        Input::Submit {
            ticket,
            body,
            idempotency_key,
            deadline: now.plus_ms(2_000),
        },
    );
    let mut status = 0;
    while let Some(out) = d.poll_output() {
        let input = match out {
            Output::FetchAvailability { call, .. } => {
                let slots = std::mem::take(&mut slots);
                let count = slots.len() as u32;
                d.handle(
                    now,
                    Input::SlotsStreamed {
                        call,
                        first_index: 0,
                        slots,
                    },
                );
                Input::StreamEnded {
                    call,
                    count,
                    result: Ok(()),
                }
            }
            Output::CheckRules {
                call, candidates, ..
            } => Input::RuleVerdicts {
                call,
                result: Ok(vec![true; candidates.len()]),
            },
            Output::Persist { seq, .. } => Input::Persisted { upto: seq },
            Output::Respond { response, .. } => {
                status = response.status();
                continue;
            }
            Output::CancelCall { .. } => continue,
        };
        d.handle(now, input);
    }
    status
}

/// A dispatcher already holding `n` confirmed bookings (restored, as after
/// a restart), spread over many agents and days.
pub fn with_bookings(n: u64) -> Dispatcher {
    let cfg = config();
    let secret = cfg.secret;
    let records = (0..n).map(move |i| {
        let agent = format!("agent-{:010}", i % 100_000);
        let start = T0 + DAY + (i / 100_000) * 60 * MIN;
        Record::Booked {
            assignment: Assignment {
                id: AssignmentId::from_seq(&secret, i),
                status: AssignmentStatus::Confirmed,
                agent_id: agent.into(),
                customer_id: format!("cust-{i:011}").into(),
                property_id: Some(format!("prop-{i:011}").into()),
                zipcode: "94107".into(),
                start: Timestamp(start),
                end: Timestamp(start + 30 * MIN),
            },
            key: None,
        }
    });
    Dispatcher::restore(cfg, Timestamp(T0), records).expect("restore")
}
