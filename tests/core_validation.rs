//! One test per row of API.md's validation table, through `core::validate`.

mod core_support;

use core_support::*;
use tour_dispatcher::core::*;

fn errors_of(raw: RawRequest) -> Vec<(Field, Problem)> {
    match validate(&raw, Timestamp(T0), &config()) {
        Ok(_) => vec![],
        Err(e) => e.into_iter().map(|e| (e.field, e.problem)).collect(),
    }
}

fn with(f: impl FnOnce(&mut RawRequest)) -> Vec<(Field, Problem)> {
    let mut raw = body();
    f(&mut raw);
    errors_of(raw)
}

fn window(start: &str, end: &str) -> Option<RawWindow> {
    Some(RawWindow {
        start: Some(start.into()),
        end: Some(end.into()),
    })
}

#[test]
fn a_valid_request_passes() {
    let req = validate(&body(), Timestamp(T0), &config()).unwrap();
    assert_eq!(req.duration_min, 30);
    assert_eq!(req.window.len_ms(), 3 * HOUR);
    assert_eq!(req.property_id.as_deref(), Some("prop-7"));
}

#[test]
fn customer_id_is_required_and_restricted() {
    assert_eq!(
        with(|r| r.customer_id = None),
        [(Field::CustomerId, Problem::Missing)]
    );
    assert_eq!(
        with(|r| r.customer_id = Some(String::new())),
        [(Field::CustomerId, Problem::BadId)]
    );
    assert_eq!(
        with(|r| r.customer_id = Some("a b".into())),
        [(Field::CustomerId, Problem::BadId)]
    );
    assert_eq!(
        with(|r| r.customer_id = Some("x".repeat(65))),
        [(Field::CustomerId, Problem::BadId)]
    );
    assert_eq!(
        with(|r| r.customer_id = Some("A-z_0.9".repeat(10)[..64].into())),
        []
    );
}

#[test]
fn property_id_is_optional_with_the_same_rule() {
    assert_eq!(with(|r| r.property_id = None), []);
    assert_eq!(
        with(|r| r.property_id = Some("é".into())),
        [(Field::PropertyId, Problem::BadId)]
    );
}

#[test]
fn zipcode_is_exactly_five_ascii_digits() {
    assert_eq!(
        with(|r| r.zipcode = None),
        [(Field::Zipcode, Problem::Missing)]
    );
    for bad in ["9410", "941070", "9410a", "９４１０７", " 9410"] {
        assert_eq!(
            with(|r| r.zipcode = Some(bad.into())),
            [(Field::Zipcode, Problem::BadZipcode)],
            "{bad}"
        );
    }
}

#[test]
fn window_bounds_must_be_rfc3339_with_an_offset() {
    assert_eq!(
        with(|r| r.window = None),
        [(Field::Window, Problem::Missing)]
    );
    assert_eq!(
        with(|r| r.window = Some(RawWindow {
            start: None,
            end: Some("2027-01-02T12:00:00Z".into())
        })),
        [(Field::WindowStart, Problem::Missing)]
    );
    for bad in [
        "2027-01-02T09:00:00",
        "2027-01-02 09:00",
        "tomorrow",
        "2027-13-02T09:00:00Z",
        "2027-01-02X09:00:00Z",
        "2027-01-02_09:00:00Z",
        "2027-01-02009:00:00Z",
    ] {
        assert_eq!(
            with(|r| r.window = window(bad, "2027-01-02T12:00:00Z")),
            [(Field::WindowStart, Problem::BadDateTime)],
            "{bad}"
        );
    }
    assert_eq!(
        with(|r| r.window = window("2027-01-02T10:00:00+01:00", "2027-01-02T12:00:00Z")),
        []
    );
    // RFC 3339 separates date and time with `T`, and allows `t` and a space.
    for good in ["2027-01-02t09:00:00Z", "2027-01-02 09:00:00Z"] {
        assert_eq!(
            with(|r| r.window = window(good, "2027-01-02T12:00:00Z")),
            [],
            "{good}"
        );
    }
}

#[test]
fn window_end_is_after_start_and_in_the_future() {
    assert_eq!(
        with(|r| r.window = window("2027-01-02T12:00:00Z", "2027-01-02T12:00:00Z")),
        [(Field::WindowEnd, Problem::EndNotAfterStart)]
    );
    assert_eq!(
        with(|r| {
            r.window = window("2026-12-31T00:00:00Z", "2026-12-31T23:00:00Z");
        }),
        [(Field::WindowEnd, Problem::EndInPast)]
    );
}

#[test]
fn window_spans_at_most_fourteen_days_and_ends_within_the_horizon() {
    assert_eq!(
        with(|r| r.window = window("2027-01-02T00:00:00Z", "2027-01-16T00:00:00Z")),
        []
    );
    assert_eq!(
        with(|r| r.window = window("2027-01-02T00:00:00Z", "2027-01-16T00:00:01Z")),
        [(Field::Window, Problem::WindowTooLong)]
    );
    assert_eq!(
        with(|r| r.window = window("2027-12-31T00:00:00Z", "2028-01-02T00:00:00Z")),
        [(Field::WindowEnd, Problem::BeyondHorizon { days: 365 })]
    );
    let message = |days| {
        let problem = Problem::BeyondHorizon { days };
        FieldError {
            field: Field::WindowEnd,
            problem,
        }
        .message()
    };
    assert_eq!(message(365), "must be at most 365 days from now");
    assert_eq!(message(1), "must be at most 1 day from now");
}

#[test]
fn duration_is_an_integer_from_15_to_240_within_the_window() {
    assert_eq!(
        with(|r| r.duration_minutes = None),
        [(Field::DurationMinutes, Problem::Missing)]
    );
    assert_eq!(
        with(|r| r.duration_minutes = Some(14)),
        [(Field::DurationMinutes, Problem::DurationOutOfRange)]
    );
    assert_eq!(
        with(|r| r.duration_minutes = Some(241)),
        [(Field::DurationMinutes, Problem::DurationOutOfRange)]
    );
    assert_eq!(
        with(|r| r.duration_minutes = Some(-5)),
        [(Field::DurationMinutes, Problem::DurationOutOfRange)]
    );
    assert_eq!(with(|r| r.duration_minutes = Some(180)), []);
    assert_eq!(
        with(|r| r.duration_minutes = Some(181)),
        [(Field::DurationMinutes, Problem::LongerThanWindow)]
    );
    // Judged against a window that is invalid otherwise, too: every
    // invalid field is listed at once.
    assert_eq!(
        with(|r| r.window = window("2026-12-31T09:00:00Z", "2026-12-31T09:10:00Z")),
        [
            (Field::WindowEnd, Problem::EndInPast),
            (Field::DurationMinutes, Problem::LongerThanWindow)
        ]
    );
    assert_eq!(
        with(|r| r.window = window("2028-01-02T09:00:00Z", "2028-01-02T09:10:00Z")),
        [
            (Field::WindowEnd, Problem::BeyondHorizon { days: 365 }),
            (Field::DurationMinutes, Problem::LongerThanWindow)
        ]
    );
}

#[test]
fn language_is_two_lowercase_ascii_letters() {
    assert_eq!(with(|r| r.language = Some("es".into())), []);
    for bad in ["ES", "e", "esp", "e1"] {
        assert_eq!(
            with(|r| r.language = Some(bad.into())),
            [(Field::Language, Problem::BadLanguage)],
            "{bad}"
        );
    }
}

#[test]
fn every_error_is_listed_at_once() {
    let all = errors_of(RawRequest::default());
    let fields: Vec<Field> = all.iter().map(|e| e.0).collect();
    assert_eq!(
        fields,
        [
            Field::CustomerId,
            Field::Zipcode,
            Field::Window,
            Field::DurationMinutes
        ]
    );
    assert!(all.iter().all(|e| e.1 == Problem::Missing));
}

#[test]
fn messages_name_the_rule() {
    let e = FieldError {
        field: Field::Zipcode,
        problem: Problem::BadZipcode,
    };
    assert_eq!(e.to_string(), "zipcode: must be exactly 5 ASCII digits");
}

#[test]
fn canonical_payload_ignores_key_order_and_nulls_but_not_offsets() {
    let a: RawRequest = serde_json::from_str(
        r#"{"zipcode":"94107","customer_id":"c","window":{"end":"2027-01-02T12:00:00Z","start":"2027-01-02T09:00:00Z"},"duration_minutes":30,"language":null}"#,
    )
    .unwrap();
    let b: RawRequest = serde_json::from_str(
        r#"{ "customer_id" : "c", "duration_minutes":30, "window":{"start":"2027-01-02T09:00:00Z","end":"2027-01-02T12:00:00Z"},"zipcode":"94107"}"#,
    )
    .unwrap();
    assert_eq!(a.canonical_json(), b.canonical_json());
    let c: RawRequest = serde_json::from_str(
        r#"{"customer_id":"c","duration_minutes":30,"window":{"start":"2027-01-02T09:00:00+00:00","end":"2027-01-02T12:00:00Z"},"zipcode":"94107"}"#,
    )
    .unwrap();
    assert_ne!(a.canonical_json(), c.canonical_json());
    assert_eq!(
        String::from_utf8(b.canonical_json()).unwrap(),
        r#"{"customer_id":"c","duration_minutes":30,"window":{"end":"2027-01-02T12:00:00Z","start":"2027-01-02T09:00:00Z"},"zipcode":"94107"}"#
    );
}
