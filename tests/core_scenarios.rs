//! Canonical scenarios through the core, snapshotted as readable text (one
//! line per input and output), and behaviour checks of each request path.

mod core_support;

use core_support::*;
use tour_dispatcher::core::*;

/// Streams `slots` for the pending fetch and ends the stream.
fn stream_all(h: &mut Harness, at: u64, call: CallId, slots: Vec<Slot>) -> Vec<Output> {
    let n = slots.len() as u32;
    let mut out = h.at(
        at,
        Input::SlotsStreamed {
            call,
            first_index: 0,
            slots,
        },
    );
    out.extend(h.at(
        at,
        Input::StreamEnded {
            call,
            count: n,
            result: Ok(()),
        },
    ));
    out
}

/// Streams the one slot `ag-1` at 09:00 for `call` at `at`, allows it at
/// `at + 1`, and returns the sequence number of the booking's write.
fn write_one_slot(h: &mut Harness, at: u64, call: CallId) -> u64 {
    let out = stream_all(h, at, call, vec![slot("ag-1", NINE)]);
    let (rules, _) = rules_call(&out).expect("rules");
    let out = h.at(
        at + 1,
        Input::RuleVerdicts {
            call: rules,
            result: Ok(vec![true]),
        },
    );
    persisted_seq(&out).expect("the booking is written").0
}

/// Runs one request to a 201 with a single allowed slot of `agent` at `start`.
fn book(
    h: &mut Harness,
    at: u64,
    ticket: u64,
    key: Option<&str>,
    agent: &str,
    start: u64,
) -> Response {
    let out = h.submit(at, ticket, body(), key, at + 10_000);
    let (call, _) = fetch_call(&out).expect("fetch");
    let out = stream_all(h, at, call, vec![slot(agent, start)]);
    let (rules, candidates) = rules_call(&out).expect("rules");
    let out = h.at(
        at,
        Input::RuleVerdicts {
            call: rules,
            result: Ok(vec![true; candidates.len()]),
        },
    );
    let (seq, _) = persisted_seq(&out).expect("persist");
    let out = h.at(at, Input::Persisted { upto: seq });
    responses(&out)
        .into_iter()
        .find(|(t, _, _)| *t == ticket)
        .expect("answer")
        .1
}

#[test]
fn plain_assignment() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), None, 2_000);
    let (call, after) = fetch_call(&out).unwrap();
    assert_eq!(after, None);
    let out = stream_all(
        &mut h,
        5,
        call,
        vec![
            slot("ag-2", NINE),
            slot("ag-1", NINE + 15 * MIN),
            slot("ag-3", NINE + 15 * MIN),
        ],
    );
    let (rules, candidates) = rules_call(&out).unwrap();
    assert_eq!(candidates.len(), 3);
    let out = h.at(
        9,
        Input::RuleVerdicts {
            call: rules,
            result: Ok(vec![false, true, true]),
        },
    );
    let (seq, record) = persisted_seq(&out).unwrap();
    let Record::Booked { assignment, .. } = record else {
        panic!("expected a booking")
    };
    assert_eq!(
        assignment.agent_id, "ag-1",
        "earliest start, then smallest agent id"
    );
    assert!(
        responses(&out).is_empty(),
        "no 201 before the write is durable"
    );
    let out = h.at(12, Input::Persisted { upto: seq });
    assert_eq!(status_of(&out, 1), Some(201));
    assert!(h.d.is_idle());
    assert_eq!(
        h.d.assignment(&assignment.id).map(|a| a.status),
        Some(AssignmentStatus::Confirmed)
    );
    insta::assert_snapshot!(h.text());
}

#[test]
fn queue_overflow() {
    let mut cfg = config();
    cfg.queue_capacity = 1;
    cfg.max_waiters = 1;
    cfg.enqueue_timeout_ms = 50;
    let mut h = Harness::new(cfg);
    h.submit(0, 1, body(), None, 2_000); // runs
    h.submit(1, 2, body(), None, 2_000); // queued
    let waiting = h.submit(2, 3, body(), None, 2_000); // waits for room
    assert!(responses(&waiting).is_empty());
    let refused = h.submit(3, 4, body(), None, 2_000); // no room to wait
    assert_eq!(status_of(&refused, 4), Some(503));
    assert!(matches!(
        responses(&refused)[0].1,
        Response::Overloaded { retry_after_s: 1 }
    ));
    assert_eq!(h.d.poll_timeout().map(|(t, _)| t), Some(Timestamp(T0 + 52)));
    let timed_out = h.at(52, Input::Tick);
    assert_eq!(status_of(&timed_out, 3), Some(503), "enqueue timeout");
    assert_eq!(h.d.stats().enqueue_timeouts, 1);
    insta::assert_snapshot!(h.text());
}

#[test]
fn deadline_in_mid_stream() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k1"), 100);
    let (call, _) = fetch_call(&out).unwrap();
    h.at(
        40,
        Input::SlotsStreamed {
            call,
            first_index: 0,
            slots: vec![slot("ag-1", NINE)],
        },
    );
    assert_eq!(
        h.d.poll_timeout(),
        Some((Timestamp(T0 + 100), TimerReason::Deadline(Ticket(1))))
    );
    let out = h.at(100, Input::Tick);
    assert_eq!(status_of(&out, 1), Some(504));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::CancelCall {
            reason: CancelReason::Abandoned,
            ..
        }
    )));
    // Late deliveries for the cancelled call are ignored.
    let late = h.at(
        120,
        Input::StreamEnded {
            call,
            count: 1,
            result: Ok(()),
        },
    );
    assert!(late.is_empty());
    assert!(h.d.is_idle());
    assert_eq!(
        h.d.stats().idempotency_keys,
        0,
        "a 504 leaves no key behind"
    );
    insta::assert_snapshot!(h.text());
}

#[test]
fn idempotent_replay() {
    let mut h = Harness::new(config());
    let first = book(&mut h, 0, 1, Some("key-1"), "ag-1", NINE);
    let mut reordered = body();
    reordered.language = None; // an absent member and a null one are the same payload
    let out = h.submit(1_000, 2, reordered, Some("key-1"), 3_000);
    let replies = responses(&out);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1, first);
    assert!(replies[0].2, "replayed");
    assert!(fetch_call(&out).is_none(), "a replay does no work");
    insta::assert_snapshot!(h.text());
}

#[test]
fn join_of_an_in_flight_repeat() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 2_000);
    let (call, _) = fetch_call(&out).unwrap();
    let joined = h.submit(1, 2, body(), Some("k"), 3_000);
    assert!(joined.is_empty(), "a repeat waits for the running attempt");
    let out = stream_all(&mut h, 2, call, vec![slot("ag-1", NINE)]);
    let (rules, _) = rules_call(&out).unwrap();
    let out = h.at(
        3,
        Input::RuleVerdicts {
            call: rules,
            result: Ok(vec![true]),
        },
    );
    let (seq, _) = persisted_seq(&out).unwrap();
    let out = h.at(4, Input::Persisted { upto: seq });
    let replies = responses(&out);
    assert_eq!(replies.len(), 2);
    assert_eq!(
        replies[0].1, replies[1].1,
        "both tickets get the same answer"
    );
    assert_eq!(
        (replies[0].2, replies[1].2),
        (false, true),
        "only the repeat is marked replayed"
    );
    insta::assert_snapshot!(h.text());
}

#[test]
fn key_reused_with_another_payload_is_refused() {
    let mut h = Harness::new(config());
    book(&mut h, 0, 1, Some("k"), "ag-1", NINE);
    let mut other = body();
    other.duration_minutes = Some(45);
    let out = h.submit(10, 2, other.clone(), Some("k"), 2_000);
    assert_eq!(responses(&out)[0].1, Response::KeyReused);
    // While in flight too.
    let out = h.submit(20, 3, body(), Some("k2"), 2_000);
    assert!(fetch_call(&out).is_some());
    let out = h.submit(21, 4, other, Some("k2"), 2_000);
    assert_eq!(responses(&out)[0].1, Response::KeyReused);
}

#[test]
fn joiners_are_bounded() {
    let mut cfg = config();
    cfg.max_joiners = 1;
    let mut h = Harness::new(cfg);
    h.submit(0, 1, body(), Some("k"), 2_000);
    assert!(h.submit(1, 2, body(), Some("k"), 2_000).is_empty());
    let out = h.submit(2, 3, body(), Some("k"), 2_000);
    assert_eq!(responses(&out)[0].1, Response::KeyInFlight);
}

#[test]
fn no_availability_is_remembered_for_a_key_only_after_it_is_durable() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 2_000);
    let (call, _) = fetch_call(&out).unwrap();
    let out = stream_all(&mut h, 1, call, vec![]);
    let (seq, record) = persisted_seq(&out).expect("a remembered 409 is journaled first");
    assert!(matches!(
        record,
        Record::Answered {
            answer: Remembered::NoAvailability,
            ..
        }
    ));
    assert!(responses(&out).is_empty());
    let out = h.at(2, Input::Persisted { upto: seq });
    assert_eq!(status_of(&out, 1), Some(409));
    let out = h.submit(3, 2, body(), Some("k"), 2_000);
    assert_eq!(responses(&out), vec![(2, Response::NoAvailability, true)]);
}

#[test]
fn without_a_key_nothing_is_journaled_for_a_409() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), None, 2_000);
    let (call, _) = fetch_call(&out).unwrap();
    let out = stream_all(&mut h, 1, call, vec![]);
    assert!(persisted_seq(&out).is_none());
    assert_eq!(status_of(&out, 1), Some(409));
}

#[test]
fn conflicting_slots_are_dropped_and_batches_never_split_a_start_time() {
    let mut cfg = config();
    cfg.max_candidates = 2;
    let mut h = Harness::new(cfg);
    book(&mut h, 0, 1, None, "ag-1", NINE);
    let out = h.submit(100, 2, body(), None, 5_000);
    let (call, _) = fetch_call(&out).unwrap();
    let slots = vec![
        slot("ag-1", NINE), // conflicts with the booking
        slot("ag-2", NINE),
        slot("ag-3", NINE),
        slot("ag-4", NINE),            // same start: still in the batch
        slot("ag-2", NINE + 15 * MIN), // later start: the batch is full
    ];
    let out = h.at(
        101,
        Input::SlotsStreamed {
            call,
            first_index: 0,
            slots,
        },
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::CancelCall {
            reason: CancelReason::BatchFull,
            ..
        }
    )));
    let (rules, candidates) = rules_call(&out).unwrap();
    let agents: Vec<&str> = candidates.iter().map(|c| c.slot.agent.as_str()).collect();
    assert_eq!(agents, ["ag-2", "ag-3", "ag-4"]);
    // None allowed: the next stream starts after the batch's last slot.
    let out = h.at(
        102,
        Input::RuleVerdicts {
            call: rules,
            result: Ok(vec![false; 3]),
        },
    );
    let (_, after) = fetch_call(&out).expect("fetch the next batch");
    assert_eq!(after, Some(slot("ag-4", NINE)));
}

#[test]
fn fewest_tours_that_day_breaks_ties_between_equal_starts() {
    let mut h = Harness::new(config());
    book(&mut h, 0, 1, None, "ag-1", NINE + 2 * HOUR);
    let out = h.submit(100, 2, body(), None, 5_000);
    let (call, _) = fetch_call(&out).unwrap();
    let out = stream_all(
        &mut h,
        101,
        call,
        vec![slot("ag-1", NINE), slot("ag-2", NINE)],
    );
    let (rules, candidates) = rules_call(&out).unwrap();
    assert_eq!(candidates[0].tours_that_day, 1);
    let out = h.at(
        102,
        Input::RuleVerdicts {
            call: rules,
            result: Ok(vec![true, true]),
        },
    );
    let (_, record) = persisted_seq(&out).unwrap();
    let Record::Booked { assignment, .. } = record else {
        panic!()
    };
    assert_eq!(assignment.agent_id, "ag-2");
}

#[test]
fn a_verdict_on_stale_facts_is_not_used() {
    let mut cfg = config();
    cfg.shards = 2;
    cfg.shard_concurrency = 2;
    let mut h = Harness::new(cfg);
    // Two requests run at once; both see ag-1 free.
    let a = h.submit(0, 1, body(), None, 5_000);
    let mut other = body();
    other.window.as_mut().unwrap().start = Some("2027-01-02T10:00:00Z".into());
    let b = h.submit(0, 2, other, None, 5_000);
    let (ca, _) = fetch_call(&a).unwrap();
    let (cb, _) = fetch_call(&b).unwrap();
    let ra = rules_call(&stream_all(&mut h, 1, ca, vec![slot("ag-1", NINE)]))
        .unwrap()
        .0;
    let rb = rules_call(&stream_all(
        &mut h,
        1,
        cb,
        vec![slot("ag-1", NINE + 2 * HOUR)],
    ))
    .unwrap()
    .0;
    // A books ag-1: ag-1's tours that day change under B's verdict.
    h.at(
        2,
        Input::RuleVerdicts {
            call: ra,
            result: Ok(vec![true]),
        },
    );
    let out = h.at(
        3,
        Input::RuleVerdicts {
            call: rb,
            result: Ok(vec![true]),
        },
    );
    assert!(
        persisted_seq(&out).is_none(),
        "B must not book on stale facts"
    );
    let (_, after) = fetch_call(&out).expect("B asks again");
    assert_eq!(after, None, "from where its batch started");
    assert_eq!(h.d.stats().stale_verdicts, 1);
}

#[test]
fn persist_failed_rolls_back_and_answers_503() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 2_000);
    let (call, _) = fetch_call(&out).unwrap();
    let seq = write_one_slot(&mut h, 1, call);
    assert_eq!(h.d.book().len(), 1);
    let out = h.at(3, Input::PersistFailed { from: seq });
    assert!(matches!(
        responses(&out)[0].1,
        Response::DependencyUnavailable {
            dependency: Dependency::Journal,
            ..
        }
    ));
    assert_eq!(h.d.book().len(), 0, "the booking is rolled back");
    assert_eq!(h.d.stats().idempotency_keys, 0, "a 503 is not remembered");
    // The slot is free again for the next request.
    assert_eq!(book(&mut h, 10, 2, Some("k"), "ag-1", NINE).status(), 201);
}

#[test]
fn deadline_during_the_write_undoes_the_booking_and_a_retry_waits_for_it() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 100);
    let (call, _) = fetch_call(&out).unwrap();
    let seq = write_one_slot(&mut h, 1, call);
    assert_eq!(status_of(&h.at(100, Input::Tick), 1), Some(504));
    // A retry arrives while the write is still in flight: it waits.
    assert!(h.submit(150, 2, body(), Some("k"), 5_000).is_empty());
    let out = h.at(200, Input::Persisted { upto: seq });
    let (undo_seq, undo) = persisted_seq(&out).expect("the booking is undone");
    assert!(matches!(
        undo,
        Record::Undone {
            id: Some(_),
            key: Some(_)
        }
    ));
    assert!(responses(&out).is_empty(), "the retry waits for the undo");
    let out = h.at(210, Input::Persisted { upto: undo_seq });
    assert_eq!(h.d.book().len(), 0, "undone");
    let (call, _) = fetch_call(&out).expect("the retry runs as a new attempt");
    let seq = write_one_slot(&mut h, 211, call);
    let out = h.at(213, Input::Persisted { upto: seq });
    assert_eq!(
        responses(&out),
        vec![(2, responses(&out)[0].1.clone(), false)]
    );
    assert_eq!(status_of(&out, 2), Some(201));
    insta::assert_snapshot!(h.text());
}

#[test]
fn a_failed_undo_keeps_the_booking_and_the_key_replays_it() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 100);
    let (call, _) = fetch_call(&out).unwrap();
    let seq = write_one_slot(&mut h, 1, call);
    h.at(100, Input::Tick);
    let (undo_seq, _) = persisted_seq(&h.at(150, Input::Persisted { upto: seq })).unwrap();
    assert!(h.submit(160, 2, body(), Some("k"), 5_000).is_empty());
    let out = h.at(170, Input::PersistFailed { from: undo_seq });
    assert_eq!(status_of(&out, 2), Some(201));
    assert!(responses(&out)[0].2, "replayed");
    assert_eq!(h.d.book().len(), 1);
}

#[test]
fn an_undo_emitted_while_a_failure_settles_is_not_failed_with_it() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), None, 100);
    let (call, _) = fetch_call(&out).unwrap();
    let (rules, _) = rules_call(&stream_all(&mut h, 1, call, vec![slot("ag-1", NINE)])).unwrap();
    let verdicts = Input::RuleVerdicts {
        call: rules,
        result: Ok(vec![true]),
    };
    let (first, _) = persisted_seq(&h.at(2, verdicts)).unwrap();
    assert_eq!(status_of(&h.at(100, Input::Tick), 1), Some(504));
    let out = h.submit(101, 2, body(), None, 10_000);
    let (call, _) = fetch_call(&out).unwrap();
    let (rules, _) = rules_call(&stream_all(&mut h, 102, call, vec![slot("ag-2", NINE)])).unwrap();
    let verdicts = Input::RuleVerdicts {
        call: rules,
        result: Ok(vec![true]),
    };
    let (second, _) = persisted_seq(&h.at(103, verdicts)).unwrap();
    // The first write is durable, the second failed: settling the first
    // emits the undo of its booking, which the fresh journal file takes.
    let out = h.at(150, Input::PersistFailed { from: second });
    assert_eq!(status_of(&out, 2), Some(503));
    let (undo, record) = persisted_seq(&out).expect("the undo is written");
    assert!(undo > second && matches!(record, Record::Undone { id: Some(_), .. }));
    assert_eq!(h.d.book().len(), 1, "the undo is pending, not failed");
    h.at(160, Input::Persisted { upto: undo });
    assert_eq!(h.d.book().len(), 0, "the durable undo freed the booking");
    assert!(first < second);
}

#[test]
fn client_gone_cancels_like_a_deadline_without_an_answer() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 2_000);
    let (call, _) = fetch_call(&out).unwrap();
    let out = h.at(5, Input::ClientGone { ticket: Ticket(1) });
    assert_eq!(
        out,
        vec![Output::CancelCall {
            call,
            reason: CancelReason::Abandoned
        }]
    );
    assert!(h.d.is_idle());
}

#[test]
fn cancelling_an_assignment_frees_its_time_only_once_durable() {
    let mut h = Harness::new(config());
    let Response::Assigned(a) = book(&mut h, 0, 1, None, "ag-1", NINE) else {
        panic!()
    };
    let out = h.at(
        10,
        Input::CancelAssignment {
            ticket: Ticket(2),
            id: a.id,
        },
    );
    let (seq, record) = persisted_seq(&out).unwrap();
    assert_eq!(record, Record::Cancelled { id: a.id });
    assert!(responses(&out).is_empty());
    assert_eq!(h.d.book().len(), 1, "not free before the cancel is durable");
    // A repeat while in flight joins it.
    assert!(h
        .at(
            11,
            Input::CancelAssignment {
                ticket: Ticket(3),
                id: a.id
            }
        )
        .is_empty());
    let out = h.at(12, Input::Persisted { upto: seq });
    assert_eq!(status_of(&out, 2), Some(200));
    assert_eq!(status_of(&out, 3), Some(200));
    assert_eq!(h.d.book().len(), 0);
    let out = h.at(
        13,
        Input::CancelAssignment {
            ticket: Ticket(4),
            id: a.id,
        },
    );
    assert!(
        matches!(&responses(&out)[0].1, Response::Cancelled(c) if c.status == AssignmentStatus::Cancelled)
    );
    let unknown = AssignmentId::from_seq(&Secret::new(1, 1), 99);
    let out = h.at(
        14,
        Input::CancelAssignment {
            ticket: Ticket(5),
            id: unknown,
        },
    );
    assert_eq!(status_of(&out, 5), Some(404));
}

#[test]
fn a_failed_cancel_keeps_the_assignment() {
    let mut h = Harness::new(config());
    let Response::Assigned(a) = book(&mut h, 0, 1, None, "ag-1", NINE) else {
        panic!()
    };
    let (seq, _) = persisted_seq(&h.at(
        10,
        Input::CancelAssignment {
            ticket: Ticket(2),
            id: a.id,
        },
    ))
    .unwrap();
    let out = h.at(11, Input::PersistFailed { from: seq });
    assert_eq!(status_of(&out, 2), Some(503));
    assert_eq!(
        h.d.assignment(&a.id).map(|a| a.status),
        Some(AssignmentStatus::Confirmed)
    );
    assert_eq!(h.d.book().len(), 1);
}

#[test]
fn validation_errors_are_remembered_with_a_key_and_sent_at_once_without() {
    let mut h = Harness::new(config());
    let mut bad = body();
    bad.zipcode = Some("9410".into());
    let out = h.submit(0, 1, bad.clone(), None, 2_000);
    assert!(matches!(&responses(&out)[0].1, Response::Invalid(e) if e[0].field == Field::Zipcode));
    let out = h.submit(1, 2, bad.clone(), Some("k"), 2_000);
    let (seq, _) = persisted_seq(&out).expect("a remembered 422 is journaled");
    let out = h.at(2, Input::Persisted { upto: seq });
    assert_eq!(status_of(&out, 2), Some(422));
    let out = h.submit(3, 3, bad, Some("k"), 2_000);
    assert_eq!(status_of(&out, 3), Some(422));
    assert!(responses(&out)[0].2);
}

#[test]
fn the_key_table_is_bounded_and_keys_expire_after_the_ttl() {
    let mut cfg = config();
    cfg.max_idempotency_keys = 1;
    cfg.idempotency_ttl_ms = 1_000;
    cfg.retention_days = 1;
    let mut h = Harness::new(cfg);
    book(&mut h, 0, 1, Some("a"), "ag-1", NINE);
    let out = h.submit(10, 2, body(), Some("b"), 2_000);
    assert!(
        matches!(responses(&out)[0].1, Response::Overloaded { .. }),
        "full of live keys"
    );
    let out = h.submit(999, 3, body(), Some("a"), 2_000);
    assert!(responses(&out)[0].2, "still live: replayed");
    let out = h.submit(1_000, 4, body(), Some("b"), 3_000);
    assert!(
        fetch_call(&out).is_some(),
        "the old key expired, making room"
    );
}

#[test]
fn drain_refuses_new_work_and_cuts_off_at_its_deadline() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), None, 5_000);
    assert!(fetch_call(&out).is_some());
    h.at(
        1,
        Input::Drain {
            deadline: Timestamp(T0 + 500),
        },
    );
    let out = h.submit(2, 2, body(), None, 5_000);
    assert!(matches!(responses(&out)[0].1, Response::Overloaded { .. }));
    let out = h.at(500, Input::Tick);
    assert!(matches!(responses(&out)[0].1, Response::Overloaded { .. }));
    assert!(h.d.is_idle());
}

#[test]
fn a_drain_with_no_time_left_cuts_off_at_once() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), None, 5_000);
    let (call, _) = fetch_call(&out).unwrap();
    let out = h.at(
        1,
        Input::Drain {
            deadline: Timestamp(T0 + 1),
        },
    );
    assert!(matches!(
        responses(&out)[..],
        [(1, Response::Overloaded { .. }, false)]
    ));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::CancelCall { call: c, .. } if *c == call)),
        "the stream stops: {out:?}"
    );
    assert!(h.d.is_idle());
}

#[test]
fn restore_rebuilds_bookings_keys_and_the_id_sequence() {
    let mut h = Harness::new(config());
    let Response::Assigned(a) = book(&mut h, 0, 1, Some("k"), "ag-1", NINE) else {
        panic!()
    };
    let snapshot = h.d.snapshot();
    let mut r = Harness::new(config());
    r.d = Dispatcher::restore(config(), Timestamp(T0 + 100), snapshot.clone()).unwrap();
    assert_eq!(r.d.snapshot(), snapshot, "a snapshot restores to itself");
    let out = r.submit(200, 9, body(), Some("k"), 2_000);
    assert_eq!(
        responses(&out),
        vec![(9, Response::Assigned(a.clone()), true)],
        "replay after restart"
    );
    let Response::Assigned(b) = book(&mut r, 300, 10, None, "ag-2", NINE) else {
        panic!()
    };
    assert_ne!(a.id, b.id, "ids are never reused after a restart");
    // The journal's own records (not a snapshot) restore the same state.
    let journal: Vec<Record> = h
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Persist { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect();
    let from_journal = Dispatcher::restore(config(), Timestamp(T0 + 100), journal).unwrap();
    assert_eq!(from_journal.assignment(&a.id), Some(&a));
}

#[test]
fn restore_refuses_a_journal_that_double_books() {
    let mut h = Harness::new(config());
    let Response::Assigned(a) = book(&mut h, 0, 1, None, "ag-1", NINE) else {
        panic!()
    };
    let mut clash = a.clone();
    clash.id = AssignmentId::from_seq(&config().secret, 50);
    let records = vec![
        Record::Booked {
            assignment: a,
            key: None,
        },
        Record::Booked {
            assignment: clash,
            key: None,
        },
    ];
    let err = Dispatcher::restore(config(), Timestamp(T0), records).unwrap_err();
    assert!(matches!(err, RestoreError::DoubleBooking { .. }), "{err}");
}

#[test]
fn restore_refuses_an_assignment_that_ends_before_it_starts() {
    let mut h = Harness::new(config());
    let Response::Assigned(a) = book(&mut h, 0, 1, None, "ag-1", NINE) else {
        panic!()
    };
    for end in [a.start, Timestamp(a.start.as_millis() - 1)] {
        let mut empty = a.clone();
        empty.end = end;
        let records = vec![Record::Booked {
            assignment: empty,
            key: None,
        }];
        let err = Dispatcher::restore(config(), Timestamp(T0), records).unwrap_err();
        assert!(
            matches!(err, RestoreError::EmptyInterval { id } if id == a.id),
            "{err}"
        );
        assert!(err.to_string().contains(&a.id.to_string()), "{err}");
    }
}

#[test]
fn nonsense_inputs_are_ignored_and_counted() {
    let mut h = Harness::new(config());
    assert!(h.at(0, Input::Persisted { upto: 5 }).is_empty());
    assert!(h.at(0, Input::PersistFailed { from: 1 }).is_empty());
    assert!(h
        .at(
            0,
            Input::RuleVerdicts {
                call: CallId(9),
                result: Ok(vec![])
            }
        )
        .is_empty());
    assert!(h.at(0, Input::ClientGone { ticket: Ticket(3) }).is_empty());
    assert!(h.at(0, Input::Tick).is_empty());
    let out = h.submit(1, 1, body(), None, 2_000);
    let (call, _) = fetch_call(&out).unwrap();
    // A verdict for a stream call is nonsense too.
    assert!(h
        .at(
            2,
            Input::RuleVerdicts {
                call,
                result: Ok(vec![true])
            }
        )
        .is_empty());
    assert_eq!(h.d.stats().ignored_inputs, 5);
}

#[test]
fn journal_acknowledgements_of_no_write_change_nothing() {
    let mut h = Harness::new(config());
    let out = h.submit(0, 1, body(), Some("k"), 10_000);
    let (call, _) = fetch_call(&out).unwrap();
    let seq = write_one_slot(&mut h, 1, call);
    // With the booking's write in flight: a failure from seq 0 (there is
    // none) or past the last write, and a success past the last write.
    for nonsense in [
        Input::PersistFailed { from: 0 },
        Input::PersistFailed { from: seq + 1 },
        Input::PersistFailed { from: seq + 7 },
        Input::Persisted { upto: seq + 1 },
    ] {
        assert!(h.at(3, nonsense.clone()).is_empty(), "{nonsense:?}");
    }
    assert_eq!(h.d.stats().ignored_inputs, 4);
    assert_eq!(h.d.durable_seq(), 0, "nothing was made durable");
    let out = h.at(4, Input::Persisted { upto: seq });
    assert_eq!(status_of(&out, 1), Some(201), "the write still stands");
}

#[test]
fn an_expired_deadline_on_arrival_answers_504_at_once() {
    let mut h = Harness::new(config());
    let out = h.submit(10, 1, body(), None, 10);
    assert_eq!(status_of(&out, 1), Some(504));
}

#[test]
fn after_a_stale_first_choice_the_rest_go_in_preference_order() {
    let mut cfg = config();
    cfg.shard_concurrency = 2;
    let mut h = Harness::new(cfg);
    // ag-2 already leads a tour that day; ag-3 none.
    book(&mut h, 0, 1, None, "ag-2", NINE + 2 * HOUR);
    let a = h.submit(100, 2, body(), None, 5_000);
    let b = h.submit(100, 3, body(), None, 5_000);
    let (ca, _) = fetch_call(&a).unwrap();
    let (cb, _) = fetch_call(&b).unwrap();
    let ra = rules_call(&stream_all(&mut h, 101, ca, vec![slot("ag-1", NINE)]))
        .unwrap()
        .0;
    let (rb, candidates) = rules_call(&stream_all(
        &mut h,
        101,
        cb,
        vec![
            slot("ag-1", NINE),
            slot("ag-2", NINE + 15 * MIN),
            slot("ag-3", NINE + 15 * MIN),
        ],
    ))
    .unwrap();
    let tours: Vec<u32> = candidates.iter().map(|c| c.tours_that_day).collect();
    assert_eq!(tours, [0, 1, 0]);
    // A takes ag-1 at 09:00: B's first choice is gone.
    h.at(
        102,
        Input::RuleVerdicts {
            call: ra,
            result: Ok(vec![true]),
        },
    );
    let out = h.at(
        103,
        Input::RuleVerdicts {
            call: rb,
            result: Ok(vec![true; 3]),
        },
    );
    let (_, record) = persisted_seq(&out).expect("B books its next choice");
    let Record::Booked { assignment, .. } = record else {
        panic!("a booking")
    };
    assert_eq!(
        (assignment.agent_id.as_str(), assignment.start),
        ("ag-3", Timestamp(NINE + 15 * MIN)),
        "same start: the agent with fewer tours that day first"
    );
}
