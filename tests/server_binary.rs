//! The built `tour-dispatcher` binary: flags and their environment
//! variables, refusals before listening (non-zero exit, a message on
//! stderr), the logged address, and SIGTERM/SIGINT ending in exit 0.

mod server_support;

use server_support::binary::{command, Running};
use server_support::{good_request, scratch_dir, Client};
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

/// Flags, environment variables, and a word stderr must contain.
type Refusal<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

/// Runs the binary to its end; returns its status and stderr.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut cmd = command(dir, args);
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("listening on"),
        "it must not listen: {stdout}"
    );
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_flag_of_the_api() {
    let dir = scratch_dir("help");
    // An empty variable counts as unset, and its flag's help still names it.
    let out = command(&dir, &["--help"])
        .env("TOUR_SHARDS", "")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--ephemeral",
        "--shards",
        "--vnodes",
        "--queue-capacity",
        "--max-waiters",
        "--shard-concurrency",
        "--enqueue-timeout-ms",
        "--default-timeout-ms",
        "--max-timeout-ms",
        "--idempotency-ttl-s",
        "--max-idempotency-keys",
        "--max-joiners",
        "--max-candidates",
        "--horizon-days",
        "--retention-days",
        "--travel-buffer-min",
        "--max-tours-per-day",
        "--min-lead-min",
        "--slot-step-min",
        "--roster",
        "--availability-latency-ms",
        "--availability-slot-interval-ms",
        "--rules-latency-ms",
        "--drain-timeout-ms",
        "--record-trace",
        "--log-format",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
        let var = format!(
            "TOUR_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&var), "{var} missing from --help");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_settings_exit_non_zero_before_listening() {
    let dir = scratch_dir("bad-flags");
    let bad_roster = dir.join("bad-roster.json");
    std::fs::write(&bad_roster, r#"{"agents": [{"id": "x"}]}"#).unwrap();
    let bad_roster = bad_roster.to_str().unwrap().to_owned();
    let cases: Vec<Refusal> = vec![
        (vec!["--shards", "0"], vec![], "--shards"),
        (vec!["--slot-step-min", "7"], vec![], "--slot-step-min"),
        (vec!["--log-format", "xml"], vec![], "--log-format"),
        (vec!["--max-timeout-ms", "0"], vec![], "--max-timeout-ms"),
        (vec!["--listen-backlog", "0"], vec![], "--listen-backlog"),
        (vec!["--workers", "0"], vec![], "--workers"),
        (vec!["--no-such-flag"], vec![], "--no-such-flag"),
        (
            vec!["--retention-days", "1", "--idempotency-ttl-s", "90000"],
            vec![],
            "--retention-days",
        ),
        (
            vec!["--default-timeout-ms", "5000", "--max-timeout-ms", "100"],
            vec![],
            "--default-timeout-ms",
        ),
        // A bad value from a variable: the message names the variable too.
        (
            vec![],
            vec![("TOUR_QUEUE_CAPACITY", "0")],
            "environment variable TOUR_QUEUE_CAPACITY",
        ),
        (
            vec![],
            vec![("TOUR_EPHEMERAL", "perhaps")],
            "environment variable TOUR_EPHEMERAL",
        ),
        // Flags that clash: the one from a variable is named with it.
        (
            vec!["--idempotency-ttl-s", "90000"],
            vec![("TOUR_RETENTION_DAYS", "1")],
            "--retention-days comes from the environment variable TOUR_RETENTION_DAYS",
        ),
        (
            vec!["--ephemeral", "--roster", "/nonexistent/roster.json"],
            vec![],
            "roster",
        ),
        (
            vec!["--ephemeral", "--roster", bad_roster.as_str()],
            vec![],
            "roster",
        ),
    ];
    // The flag wins over its variable, and then the variable is not blamed.
    let (_, stderr) = refused(&dir, &["--shards", "0"], &[("TOUR_SHARDS", "0")]);
    assert!(!stderr.contains("TOUR_SHARDS"), "{stderr}");
    for (args, env, needle) in cases {
        let (status, stderr) = refused(&dir, &args, &env);
        assert!(!status.success(), "{args:?} {env:?} must fail");
        assert!(
            stderr.contains(needle),
            "{args:?} {env:?}: stderr lacks {needle}: {stderr}"
        );
    }
    // An address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = refused(&dir, &["--ephemeral", "--listen", &addr], &[]);
    assert!(!status.success());
    assert!(stderr.contains("cannot listen"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_locked_data_dir_is_refused() {
    let dir = scratch_dir("locked");
    let first = Running::spawn(command(
        &dir,
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
    ));
    first.address();
    let (status, stderr) = refused(
        &dir,
        &["--listen", "127.0.0.1:0", "--data-dir", "data"],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("in use"), "{stderr}");
    first.signal("TERM");
    assert!(first.wait(Duration::from_secs(20)).success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = scratch_dir("sigterm");
    let trace = dir.join("trace.jsonl");
    let running = Running::spawn(command(
        &dir,
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--record-trace",
            trace.to_str().unwrap(),
        ],
    ));
    let client = Client {
        addr: running.address(),
    };
    let reply = client.dispatch(&good_request("bin")).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    running.signal("TERM");
    let status = tokio::task::spawn_blocking(move || running.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        dir.join("data").is_dir(),
        "the journal lives in the data dir"
    );
    // What holds the secret or customers' ids is for the owner alone.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("data")), 0o700);
        assert_eq!(mode(&trace), 0o600);
        for entry in std::fs::read_dir(dir.join("data")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "secret" || name.starts_with("journal") {
                assert_eq!(mode(&path), 0o600, "{name}");
            }
        }
    }
    // The trace holds a header and the submit.
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["format"], 1);
    assert!(lines[0]["config"]["secret"].is_object());
    assert!(lines[1..]
        .iter()
        .any(|l| l["input"].get("Submit").is_some()));
    std::fs::remove_dir_all(dir).unwrap();
}

/// With nobody reading, the driver still wakes the core when a key's TTL
/// ends, so that an idle server gives its memory back.
#[tokio::test]
async fn an_idle_server_is_woken_when_a_key_expires() {
    let dir = scratch_dir("idle-expiry");
    let trace = dir.join("trace.jsonl");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--ephemeral",
        "--idempotency-ttl-s",
        "1",
        "--record-trace",
        trace.to_str().unwrap(),
    ];
    let running = Running::spawn(command(&dir, &args));
    let client = Client {
        addr: running.address(),
    };
    let headers = [("idempotency-key", "idle")];
    let reply = client.dispatch_with(&good_request("idle"), &headers).await;
    assert_eq!(reply.status, 201, "{reply:?}");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    running.signal("TERM");
    let status = tokio::task::spawn_blocking(move || running.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let steps: Vec<serde_json::Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let at = |name: &str| steps.iter().position(|s| s["input"].get(name).is_some());
    let (Some(submitted), Some(drained)) = (at("Submit"), at("Drain")) else {
        panic!("{steps:?}")
    };
    // A wake once the key's second had run out, before anything else came.
    let ttl_end = steps[submitted]["now"].as_u64().unwrap() + 1_000;
    assert!(
        steps[submitted..drained]
            .iter()
            .any(|s| s["input"] == "Tick" && s["now"].as_u64().unwrap() >= ttl_end),
        "no wake after the key's TTL, before the drain: {steps:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_runtime_has_as_many_workers_as_asked() {
    let dir = scratch_dir("workers");
    for (args, env, workers) in [
        (vec!["--workers", "3"], vec![], 3),
        (vec![], vec![("TOUR_WORKERS", "1")], 1),
    ] {
        let mut cmd = command(&dir, &["--listen", "127.0.0.1:0", "--ephemeral"]);
        cmd.args(&args).envs(env);
        let running = Running::spawn(cmd);
        let line = running.listening_line();
        assert!(
            line.contains(&format!("workers={workers}")),
            "{args:?}: {line}"
        );
        running.signal("TERM");
        assert!(running.wait(Duration::from_secs(20)).success());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let dir = scratch_dir("empty-env");
    let mut cmd = command(&dir, &["--listen", "127.0.0.1:0", "--ephemeral"]);
    cmd.envs([
        ("TOUR_SHARDS", ""),
        ("TOUR_ROSTER", ""),
        ("TOUR_WORKERS", ""),
        ("TOUR_LOG_FORMAT", ""),
    ]);
    let running = Running::spawn(cmd);
    let line = running.listening_line();
    assert!(line.contains("listening on"), "{line}");
    running.signal("TERM");
    assert!(running.wait(Duration::from_secs(20)).success());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn sigint_exits_zero_and_flags_come_from_the_environment() {
    let dir = scratch_dir("sigint");
    let mut cmd = command(&dir, &[]);
    cmd.envs([
        ("TOUR_LISTEN", "127.0.0.1:0"),
        ("TOUR_EPHEMERAL", "true"),
        ("TOUR_LOG_FORMAT", "json"),
    ]);
    let running = Running::spawn(cmd);
    let addr = running.address();
    let client = Client { addr };
    assert_eq!(client.get("/readyz").await.status, 200);
    running.signal("INT");
    let status = tokio::task::spawn_blocking(move || running.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !dir.join("tour-data").exists(),
        "ephemeral keeps nothing on disk"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The first touch of a transparent huge page stalls the faulting thread
/// (often the driver) while 2 MiB are zeroed: the binary turns them off.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_runs_without_transparent_huge_pages() {
    let dir = scratch_dir("thp");
    let running = Running::spawn(command(&dir, &["--listen", "127.0.0.1:0", "--ephemeral"]));
    running.address();
    let status = std::fs::read_to_string(format!("/proc/{}/status", running.child.id())).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Kernels before 5.0 do not report the flag.
    if let Some(enabled) = thp {
        assert_eq!(enabled, "0", "THP_enabled in /proc/PID/status");
    }
    running.signal("TERM");
    assert!(running.wait(Duration::from_secs(20)).success());
    std::fs::remove_dir_all(dir).unwrap();
}
