//! `kill -9` at a random moment never loses an acknowledged booking: the real
//! binary takes a burst of concurrent requests on a data directory, dies by
//! SIGKILL mid-burst, restarts on the same directory, and every 201 it sent
//! is still there (GET, and its key replays it); no two confirmed tours of
//! one agent conflict. Repeated a few rounds on the same directory.

mod server_support;

use http::Method;
use serde_json::Value;
use server_support::binary::{command, Running};
use server_support::{request, scratch_dir, Client};
use std::collections::BTreeMap;
use std::time::Duration;

const ROUNDS: u64 = 3;
const BURST: u64 = 48;
const TRAVEL_BUFFER_MS: i128 = 15 * 60 * 1000;

/// A 201 the client received: its key, body and assignment.
struct Acknowledged {
    key: String,
    body: Value,
    assignment: Value,
}

/// A small xorshift generator: the kill moment and the request mix differ
/// per run (seeded from the process id) but need no crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn start(dir: &std::path::Path) -> (Running, Client) {
    let data = dir.join("data");
    let data = data.to_str().expect("a utf-8 path");
    // Slow availability spreads the burst over the kill's window.
    let flags = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--availability-latency-ms",
        "3",
    ];
    let server = Running::spawn(command(dir, &flags));
    let client = Client {
        addr: server.address(),
    };
    (server, client)
}

fn millis(text: &Value) -> i128 {
    let t = time::OffsetDateTime::parse(
        text.as_str().expect("a time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    t.unix_timestamp_nanos() / 1_000_000
}

async fn dispatch(client: Client, key: String, body: Value) -> Option<Acknowledged> {
    let text = serde_json::to_vec(&body).unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", key.as_str()),
    ];
    let reply = client
        .try_send(Method::POST, "/dispatch", &headers, text)
        .await
        .ok()?;
    (reply.status == 201).then(|| Acknowledged {
        key: key.clone(),
        body,
        assignment: reply.json(),
    })
}

/// Every acknowledged booking is still there, and its key replays it.
async fn check_survivors(client: Client, acknowledged: &[Acknowledged]) {
    for ack in acknowledged {
        let id = ack.assignment["id"].as_str().expect("an id");
        let got = client.get(&format!("/assignments/{id}")).await;
        assert_eq!(got.status, 200, "acknowledged {id} lost after a kill -9");
        assert_eq!(got.json(), ack.assignment, "{id} changed after a kill -9");
        let text = serde_json::to_vec(&ack.body).unwrap();
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", ack.key.as_str()),
        ];
        let replay = client.send(Method::POST, "/dispatch", &headers, text).await;
        assert_eq!(replay.status, 201, "key {} no longer replays", ack.key);
        assert!(replay.replayed());
        assert_eq!(replay.json(), ack.assignment);
    }
}

/// No two acknowledged tours of one agent overlap or cut the travel buffer.
fn check_no_conflicts(acknowledged: &[Acknowledged]) {
    let mut by_agent: BTreeMap<String, Vec<(i128, i128)>> = BTreeMap::new();
    for ack in acknowledged {
        let a = &ack.assignment;
        let agent = a["agent_id"].as_str().unwrap().to_string();
        by_agent
            .entry(agent)
            .or_default()
            .push((millis(&a["start"]), millis(&a["end"])));
    }
    for (agent, mut tours) in by_agent {
        tours.sort();
        for pair in tours.windows(2) {
            assert!(
                pair[0].1 + TRAVEL_BUFFER_MS <= pair[1].0,
                "{agent} double-booked: {pair:?}"
            );
        }
    }
}

#[test]
fn a_kill_9_never_loses_an_acknowledged_booking() {
    let dir = scratch_dir("kill-9");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut acknowledged: Vec<Acknowledged> = Vec::new();
    for round in 0..ROUNDS {
        let (mut server, client) = start(&dir);
        runtime.block_on(check_survivors(client, &acknowledged));
        let burst: Vec<_> = (0..BURST)
            .map(|i| {
                // Few zipcodes and days, so bookings compete for agents.
                let zipcode = format!("941{:02}", rng.below(4));
                let body = request(
                    &format!("cust-{round}-{i}"),
                    &zipcode,
                    1 + rng.below(3) as i64,
                    9.0,
                    17.0,
                );
                let key = format!("crash-{round}-{i}");
                runtime.spawn(dispatch(client, key, body))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(100)));
        server.child.kill().expect("SIGKILL");
        let _ = server.child.wait();
        for handle in burst {
            if let Some(ack) = runtime.block_on(handle).expect("the task ends") {
                acknowledged.push(ack);
            }
        }
        check_no_conflicts(&acknowledged);
        eprintln!("round {round}: {} acknowledged so far", acknowledged.len());
    }
    let (server, client) = start(&dir);
    runtime.block_on(check_survivors(client, &acknowledged));
    drop(server);
    assert!(
        !acknowledged.is_empty(),
        "some requests were acknowledged before the kills"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
