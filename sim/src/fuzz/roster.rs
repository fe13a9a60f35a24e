//! The `roster` target: arbitrary text through the roster file decoder.
//! A refused roster is fine; an accepted one must satisfy every rule of
//! the API, and the embedded availability service must stream only what
//! it promises from it.

use tour_dispatcher::core::request::{is_id, is_language, is_zipcode};
use tour_dispatcher::core::time::{MS_PER_DAY, MS_PER_MINUTE};
use tour_dispatcher::core::{Slot, Timestamp, Window};
use tour_dispatcher::embedded::availability::{slots, AvailabilityConfig};
use tour_dispatcher::embedded::Roster;

/// 2027-03-01T00:00:00Z, a Monday.
const DAY0: u64 = 1_803_945_600_000;
/// The most slots looked at per zipcode.
const MAX_SLOTS: usize = 512;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(roster) = Roster::from_json(&text) else {
        return;
    };
    check_agents(&roster);
    for zipcode in roster.zipcodes().take(4) {
        check_slots(&roster, zipcode);
    }
}

fn check_agents(roster: &Roster) {
    let agents = roster.agents();
    for pair in agents.windows(2) {
        assert!(pair[0].id < pair[1].id, "agents sorted by unique id");
    }
    for a in agents {
        assert!(is_id(&a.id), "accepted a bad agent id {:?}", a.id);
        assert!(a.zipcodes.iter().all(|z| is_zipcode(z)), "{a:?}");
        assert!(a.languages.iter().all(|l| is_language(l)), "{a:?}");
        assert!(a.hours.start_min < a.hours.end_min, "{a:?}");
        assert!(a.hours.end_min <= 24 * 60, "{a:?}");
    }
    let zipcodes: Vec<&str> = roster.zipcodes().collect();
    assert!(zipcodes.windows(2).all(|p| p[0] < p[1]), "zipcodes sorted");
    for z in zipcodes {
        let members: Vec<_> = roster.agents_for(z).collect();
        assert!(!members.is_empty(), "{z} is listed with no agent");
        assert!(members.windows(2).all(|p| p[0].id < p[1].id));
        assert!(members.iter().all(|a| a.zipcodes.iter().any(|x| x == z)));
    }
}

fn check_slots(roster: &Roster, zipcode: &str) {
    let Ok(config) = AvailabilityConfig::new(15) else {
        panic!("15 divides an hour");
    };
    let window = Window::new(Timestamp(DAY0), Timestamp(DAY0 + 2 * MS_PER_DAY));
    let duration_min = 45;
    let all: Vec<Slot> = slots(roster, &config, zipcode, window, duration_min, None)
        .take(MAX_SLOTS)
        .collect();
    let mut last: Option<&Slot> = None;
    for slot in &all {
        let agent = roster
            .agent(&slot.agent)
            .expect("a slot names a roster agent");
        assert!(agent.zipcodes.iter().any(|z| z == zipcode), "{slot:?}");
        let duration_ms = u64::from(duration_min) * MS_PER_MINUTE;
        assert!(agent.hours.covers(slot.start, duration_ms), "{slot:?}");
        assert!(slot.start >= window.start && slot.start.plus_ms(duration_ms) <= window.end);
        assert_eq!(slot.start.as_millis() % (15 * MS_PER_MINUTE), 0, "{slot:?}");
        assert!(last.as_ref().is_none_or(|l| *l < slot), "order");
        last = Some(slot);
    }
    // A stream resumed after any slot goes on exactly where the first one did.
    if let Some(cursor) = all.get(all.len() / 2) {
        let rest = &all[all.len() / 2 + 1..];
        let resumed: Vec<Slot> =
            slots(roster, &config, zipcode, window, duration_min, Some(cursor))
                .take(rest.len())
                .collect();
        assert_eq!(resumed, rest, "resumed after {cursor:?}");
    }
}
