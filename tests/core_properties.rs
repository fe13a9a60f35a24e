//! Random input sequences through the core, checked after every step
//! against the invariants that can be seen from outside; and determinism.

mod core_support;

use core_support::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use tour_dispatcher::core::*;

#[derive(Debug, Clone)]
enum Op {
    Submit {
        key: Option<u8>,
        alter: bool,
        deadline: u64,
    },
    Stream {
        pick: usize,
        agents: u8,
        start_step: u8,
        end: bool,
    },
    Verdicts {
        pick: usize,
        allow: u8,
        fail: bool,
    },
    Persist {
        fail: bool,
    },
    Gone {
        pick: usize,
    },
    Cancel {
        pick: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (proptest::option::of(0u8..4), any::<bool>(), 1u64..3_000)
            .prop_map(|(key, alter, deadline)| Op::Submit { key, alter, deadline }),
        3 => (any::<usize>(), 0u8..4, 0u8..12, any::<bool>())
            .prop_map(|(pick, agents, start_step, end)| Op::Stream { pick, agents, start_step, end }),
        2 => (any::<usize>(), any::<u8>(), prop::bool::weighted(0.1))
            .prop_map(|(pick, allow, fail)| Op::Verdicts { pick, allow, fail }),
        2 => prop::bool::weighted(0.15).prop_map(|fail| Op::Persist { fail }),
        1 => any::<usize>().prop_map(|pick| Op::Gone { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        2 => (0u64..800).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn small_config() -> Config {
    Config {
        shards: 2,
        queue_capacity: 2,
        max_waiters: 1,
        enqueue_timeout_ms: 30,
        max_candidates: 2,
        max_joiners: 1,
        max_idempotency_keys: 3,
        ..config()
    }
}

/// What the world knows, to pick targets for the next input.
#[derive(Default)]
struct World {
    streams: Vec<(CallId, u32)>,
    rules: Vec<(CallId, usize)>,
    writes: Vec<u64>,
    tickets: BTreeMap<u64, Timestamp>,
    answered: BTreeSet<u64>,
    assignments: Vec<AssignmentId>,
    next_ticket: u64,
}

fn run(ops: &[Op]) -> Result<Vec<String>, TestCaseError> {
    let mut h = Harness::new(small_config());
    let mut w = World {
        next_ticket: 1,
        ..World::default()
    };
    let mut at = 0u64;
    for op in ops {
        let input = match op.clone() {
            Op::Submit {
                key,
                alter,
                deadline,
            } => {
                let mut b = body();
                if alter {
                    b.duration_minutes = Some(45);
                }
                let ticket = w.next_ticket;
                w.next_ticket += 1;
                w.tickets.insert(ticket, Timestamp(T0 + at + deadline));
                Input::Submit {
                    ticket: Ticket(ticket),
                    body: b,
                    idempotency_key: key.map(|k| format!("key-{k}")),
                    deadline: Timestamp(T0 + at + deadline),
                }
            }
            Op::Stream {
                pick,
                agents,
                start_step,
                end,
            } => {
                if w.streams.is_empty() {
                    continue;
                }
                let i = pick % w.streams.len();
                let (call, sent) = w.streams[i];
                let start = NINE + u64::from(start_step) * 15 * MIN;
                let slots: Vec<Slot> = (0..agents)
                    .map(|a| slot(&format!("ag-{a}"), start))
                    .collect();
                w.streams[i].1 += slots.len() as u32;
                if end {
                    w.streams.remove(i);
                    h.at(
                        at,
                        Input::SlotsStreamed {
                            call,
                            first_index: sent,
                            slots,
                        },
                    );
                    Input::StreamEnded {
                        call,
                        count: sent + agents as u32,
                        result: Ok(()),
                    }
                } else {
                    Input::SlotsStreamed {
                        call,
                        first_index: sent,
                        slots,
                    }
                }
            }
            Op::Verdicts { pick, allow, fail } => {
                if w.rules.is_empty() {
                    continue;
                }
                let (call, n) = w.rules.remove(pick % w.rules.len());
                let result = if fail {
                    Err(DependencyError::Timeout)
                } else {
                    Ok((0..n).map(|i| allow >> (i % 8) & 1 == 1).collect())
                };
                Input::RuleVerdicts { call, result }
            }
            Op::Persist { fail } => {
                let Some(&seq) = w.writes.first() else {
                    continue;
                };
                if fail {
                    w.writes.clear();
                    Input::PersistFailed { from: seq }
                } else {
                    w.writes.remove(0);
                    Input::Persisted { upto: seq }
                }
            }
            Op::Gone { pick } => {
                let open: Vec<u64> = w
                    .tickets
                    .keys()
                    .copied()
                    .filter(|t| !w.answered.contains(t))
                    .collect();
                if open.is_empty() {
                    continue;
                }
                let t = open[pick % open.len()];
                w.answered.insert(t); // no answer is required any more
                Input::ClientGone { ticket: Ticket(t) }
            }
            Op::Cancel { pick } => {
                if w.assignments.is_empty() {
                    continue;
                }
                let id = w.assignments[pick % w.assignments.len()];
                let ticket = w.next_ticket;
                w.next_ticket += 1;
                w.tickets.insert(ticket, Timestamp::MAX);
                Input::CancelAssignment {
                    ticket: Ticket(ticket),
                    id,
                }
            }
            Op::Advance { ms } => {
                at += ms;
                Input::Tick
            }
        };
        let before = h.outputs.len();
        h.at(at, input);
        let now = Timestamp(T0 + at);
        for out in h.outputs[before..].iter().cloned() {
            match out {
                Output::FetchAvailability { call, .. } => w.streams.push((call, 0)),
                Output::CheckRules {
                    call, candidates, ..
                } => w.rules.push((call, candidates.len())),
                Output::CancelCall { call, .. } => w.streams.retain(|s| s.0 != call),
                Output::Persist { seq, .. } => w.writes.push(seq),
                Output::Respond {
                    ticket, response, ..
                } => {
                    let deadline = w.tickets.get(&ticket.0).copied();
                    prop_assert!(
                        deadline.is_some(),
                        "answer for an unknown ticket {}",
                        ticket.0
                    );
                    prop_assert!(
                        !w.answered.contains(&ticket.0),
                        "ticket {} answered twice or after it left",
                        ticket.0
                    );
                    w.answered.insert(ticket.0);
                    if let Response::Assigned(a) = &response {
                        prop_assert!(
                            now < deadline.unwrap_or(Timestamp::ZERO),
                            "201 at or after the deadline"
                        );
                        w.assignments.push(a.id);
                    }
                }
            }
        }
        check_book(&h.d)?;
        let stats = h.d.stats();
        let cfg = h.d.config();
        prop_assert!(stats.queue_depths.iter().all(|&d| d <= cfg.queue_capacity));
        prop_assert!(stats.waiting.iter().all(|&d| d <= cfg.max_waiters));
        prop_assert!(stats.running.iter().all(|&d| d <= cfg.shard_concurrency));
        prop_assert!(stats.idempotency_keys <= u64::from(cfg.max_idempotency_keys));
    }
    Ok(h.log)
}

/// The generator reaches bookings, so the properties above are not vacuous.
#[test]
fn the_generated_worlds_do_book() {
    let ops = [
        Op::Submit {
            key: Some(1),
            alter: false,
            deadline: 2_000,
        },
        Op::Stream {
            pick: 0,
            agents: 2,
            start_step: 0,
            end: true,
        },
        Op::Verdicts {
            pick: 0,
            allow: 0b10,
            fail: false,
        },
        Op::Persist { fail: false },
    ];
    let log = run(&ops).unwrap();
    assert!(log.iter().any(|l| l.contains("Respond #1 201")), "{log:#?}");
}

/// No agent's bookings overlap or cut into the travel buffer.
fn check_book(d: &Dispatcher) -> Result<(), TestCaseError> {
    let buffer = d.config().travel_buffer_ms();
    let mut last: BTreeMap<String, Window> = BTreeMap::new();
    for (agent, iv, _) in d.book().iter() {
        if let Some(prev) = last.get(agent) {
            prop_assert!(
                prev.end.plus_ms(buffer) <= iv.start,
                "double booking of {}",
                agent
            );
        }
        last.insert(agent.to_string(), iv);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_inputs_keep_the_invariants(ops in prop::collection::vec(op(), 1..120)) {
        run(&ops)?;
    }

    #[test]
    fn the_same_inputs_give_the_same_outputs(ops in prop::collection::vec(op(), 1..80)) {
        prop_assert_eq!(run(&ops)?, run(&ops)?);
    }
}
