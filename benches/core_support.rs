//! Shared by the core benchmarks: a zero-latency in-process world that runs
//! whole request lives through the `Dispatcher`.

#![allow(dead_code)] // each benchmark uses part of it

use tour_dispatcher::core::*;

/// 2027-01-01T00:00:00Z.
pub const T0: u64 = 1_798_761_600_000;
const MIN: u64 = 60_000;
const DAY: u64 = 24 * 60 * MIN;

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
    // Each (zipcode, day, quarter hour) is asked for once per 384M requests.
    let round = n / 40_000;
    let day = 1 + round % 300;
    let start = T0 + day * DAY + 9 * 60 * MIN + (round / 300 % 32) * 15 * MIN;
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

/// Runs one request life to its answer, serving every output at once:
/// one slot per agent-hour, every candidate allowed, every write durable.
/// Returns the HTTP status of the answer.
pub fn dispatch(d: &mut Dispatcher, n: u64, key: bool) -> u16 {
    let idempotency_key = key.then(|| format!("key-{n}"));
    dispatch_body(d, n, request(n), idempotency_key)
}

/// [`dispatch`] with the request body and key made beforehand (so a
/// benchmark can leave their making out of the measurement).
pub fn dispatch_body(
    d: &mut Dispatcher,
    n: u64,
    body: RawRequest,
    idempotency_key: Option<String>,
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
            Output::FetchAvailability { call, window, .. } => {
                // Four agents at the window's first start.
                let slots: Vec<Slot> = (0..4)
                    .map(|a| Slot {
                        start: window.start,
                        agent: format!("ag-{}-{a}", n % 40_000).into(),
                    })
                    .collect();
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
                    count: 4,
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
