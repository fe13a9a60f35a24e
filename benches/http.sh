#!/usr/bin/env bash
# Reproduces the HTTP tables of BENCHMARKS.md in one run, on loopback only:
#
#  1. throughput: wrk (closed loop, one thread) at a few concurrency levels
#     against, in turn, the ceiling of the HTTP stack (benches/ceiling.rs),
#     the server with --ephemeral and the server with its durable journal
#     (a fresh temporary data directory); each server fresh for each run;
#  2. latency at half the peak rate: the open-loop generator
#     (benches/load.rs; its connections opened and each warmed by one
#     exchange before the clock starts) at half of each server's median
#     peak, and the
#     ceiling at the same rate right after each run (the floor that the
#     generator, the kernel and the host give any server); then the
#     ceiling at half its own peak;
#  3. slow dependencies: --availability-latency-ms 5 --rules-latency-ms 1 at
#     --shard-concurrency 1 and 8;
#  4. overload: twice the durable server's peak, open loop, with its resident
#     memory sampled every second; and the same server unloaded (a tenth of
#     its peak) for the p99 to compare with; the same overload against the
#     durable server shedding with --shed-lag-ms 5; then the ceiling under
#     the same two loads (what the stack and the generator alone make of
#     them);
#  5. overload of the dependencies: the slow dependencies of step 3 at
#     --shard-concurrency 8, unloaded (a tenth of step 3's throughput) and at
#     twice it, with the default queues and with --queue-capacity 8
#     --enqueue-timeout-ms 0.
#
# Request bodies vary (benches/http.lua, benches/load.rs): zipcodes of the
# demo roster's three regions, days 1-300 ahead, a unique Idempotency-Key
# each. Each step is a few seconds; the whole run takes about eight minutes.
#
#   benches/http.sh                 # RUNS=3 DURATION=4 CONCURRENCY="8 32 128"
#   RUNS=1 DURATION=2 benches/http.sh   # a quick look
#   WORKERS=1 benches/http.sh       # every server with one runtime worker
#   SERVER_CPUS=0-3 CLIENT_CPUS=4-7 benches/http.sh
#                                   # servers and load generators apart
#
# WORKERS (default: the runtime's own choice, one per core) is given to the
# servers as --workers and to the ceiling as TOKIO_WORKER_THREADS, so that
# the ceiling always has the servers' runtime shape. SERVER_CPUS and
# CLIENT_CPUS (default: unset, everything shares every core) pin the servers
# and the load generators (wrk, benches/load.rs) to CPU lists with taskset:
# on a machine with cores to spare, the generator then no longer takes the
# servers' CPU, which the overload and half-peak steps are sensitive to. A
# runtime's default worker count follows the CPUs it is given.
#
# Prints the tables (medians of RUNS runs, ratios within each run) and
# leaves the raw JSON lines in $OUT (default target/http-bench).
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-4}
CONCURRENCY=${CONCURRENCY:-"8 32 128"}
OUT=${OUT:-target/http-bench}
WORKERS=${WORKERS:-}
PIN_SERVER=()
PIN_CLIENT=()
if [ -n "${SERVER_CPUS:-}" ]; then PIN_SERVER=(taskset -c "$SERVER_CPUS"); fi
if [ -n "${CLIENT_CPUS:-}" ]; then PIN_CLIENT=(taskset -c "$CLIENT_CPUS"); fi

cd "$(dirname "$0")/.."
mkdir -p "$OUT"
RAW="$OUT/raw.jsonl"
: >"$RAW"

if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet --bin tour-dispatcher --example ceiling --example load
BIN=target/release
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# start KIND [FLAGS...]: starts a fresh server of KIND (ceiling, ephemeral,
# durable) on a free loopback port; sets URL and PID.
start() {
    local kind=$1
    shift
    local log="$OUT/$kind.log"
    rm -f "$log" # so that the address read below is the new server's
    if [ -n "$WORKERS" ]; then set -- --workers "$WORKERS" "$@"; fi
    case $kind in
    # taskset and env exec what they run: $! is the server's own pid.
    ceiling) "${PIN_SERVER[@]}" ${WORKERS:+env TOKIO_WORKER_THREADS=$WORKERS} "$BIN/examples/ceiling" 127.0.0.1:0 2>"$log" & ;;
    ephemeral) "${PIN_SERVER[@]}" "$BIN/tour-dispatcher" --listen 127.0.0.1:0 --ephemeral "$@" >/dev/null 2>"$log" & ;;
    durable)
        DATA=$(mktemp -d "${TMPDIR:-/tmp}/tour-bench.XXXXXX")
        "${PIN_SERVER[@]}" "$BIN/tour-dispatcher" --listen 127.0.0.1:0 --data-dir "$DATA" "$@" >/dev/null 2>"$log" &
        ;;
    esac
    PID=$!
    PIDS+=("$PID")
    URL=
    for _ in $(seq 100); do
        URL=$(grep -so 'http://[0-9.]*:[0-9]*' "$log" | head -1 || true)
        [ -n "$URL" ] && return 0
        sleep 0.05
    done
    echo "$kind did not start: $(cat "$log")" >&2
    exit 1
}

stop() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    if [ -n "${DATA:-}" ]; then rm -rf "$DATA"; fi
    DATA=
}

# record STEP TARGET RUN PARAM JSON: one raw line.
record() {
    printf '{"step":"%s","target":"%s","run":%s,"param":%s,"load":"%s","result":%s}\n' \
        "$1" "$2" "$3" "$4" "$(cut -d' ' -f1 /proc/loadavg)" "$5" >>"$RAW"
}

wrk_run() { # wrk_run CONCURRENCY KEY_PREFIX
    WRK_KEY_PREFIX=$2 "${PIN_CLIENT[@]}" wrk -t1 -c"$1" -d"${DURATION}s" --timeout 10s \
        -s benches/http.lua "$URL" | tail -1
}

load_run() { # load_run RATE SECONDS KEY_PREFIX [--pid PID]
    "${PIN_CLIENT[@]}" "$BIN/examples/load" --url "$URL" --rate "$1" --seconds "$2" --key-prefix "$3" "${@:4}"
}

echo "machine: $(nproc --all) cores; servers on CPUs ${SERVER_CPUS:-all}, load generators on ${CLIENT_CPUS:-all}; runtime workers: ${WORKERS:-one per CPU given}; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

echo "1. throughput" >&2
for run in $(seq "$RUNS"); do
    for c in $CONCURRENCY; do
        for kind in ceiling ephemeral durable; do
            start "$kind"
            record throughput "$kind" "$run" "$c" "$(wrk_run "$c" "t$run-$c")"
            stop
        done
    done
done

peak() { # peak TARGET: the median peak requests/s of TARGET
    python3 benches/http_report.py "$RAW" peak "$1"
}

echo "2. latency at half the peak rate" >&2
for kind in ephemeral durable ceiling; do
    half=$(($(peak "$kind") / 2))
    for run in $(seq "$RUNS"); do
        # The ceiling at the same rate, right after: the tail that the
        # generator, the kernel and the host give any server. The ceiling
        # itself is measured at half its own peak.
        targets=("$kind")
        [ "$kind" = ceiling ] || targets+=(ceiling)
        for target in "${targets[@]}"; do
            start "$target"
            label=$target
            [ "$target" = ceiling ] && [ "$kind" != ceiling ] && label="ceiling at the $kind rate"
            record half-peak "$label" "$run" "$half" "$(load_run "$half" "$DURATION" "h$run-$target-$kind")"
            stop
        done
    done
done

echo "3. slow dependencies" >&2
for sc in 1 8; do
    for run in $(seq "$RUNS"); do
        start durable --availability-latency-ms 5 --rules-latency-ms 1 --shard-concurrency "$sc"
        record slow-deps durable "$run" "$sc" "$(wrk_run 128 "d$run-$sc")"
        stop
    done
done

echo "4. overload" >&2
capacity=$(peak durable)
# overload LABEL RUN KEY_PREFIX KIND [FLAGS...]: a fresh KIND at twice the
# durable peak, recorded as LABEL.
overload() {
    start "$4" "${@:5}"
    record overload "$1" "$2" $((capacity * 2)) \
        "$(load_run $((capacity * 2)) $((DURATION * 2)) "${3}o$2" --pid "$PID" --connections 1024)"
    stop
}
# overloads TARGET RUN KEY_PREFIX: a fresh TARGET at a tenth of the durable
# peak, then another at twice it.
overloads() {
    start "$1"
    record unloaded "$1" "$2" $((capacity / 10)) "$(load_run $((capacity / 10)) "$DURATION" "${3}u$2")"
    stop
    overload "$1" "$2" "$3" "$1"
}
for run in $(seq "$RUNS"); do
    overloads durable "$run" ""
    # Shedding when the runtime runs late (the CPU behind), against the
    # plain durable server's unloaded run (the report compares a label
    # "KIND, ..." with KIND's).
    overload "durable, --shed-lag-ms 5" "$run" s durable --shed-lag-ms 5
    # The same two loads against the ceiling: what the HTTP stack and the
    # generator alone make of them on this machine.
    overloads ceiling "$run" c
done

echo "5. overload of the dependencies" >&2
SLOW=(--availability-latency-ms 5 --rules-latency-ms 1 --shard-concurrency 8)
TIGHT=(--queue-capacity 8 --enqueue-timeout-ms 0)
capacity=$(python3 benches/http_report.py "$RAW" slow-capacity 8)
for run in $(seq "$RUNS"); do
    start durable "${SLOW[@]}"
    record dep-unloaded "default queues" "$run" $((capacity / 10)) \
        "$(load_run $((capacity / 10)) "$DURATION" "du$run")"
    stop
    start durable "${SLOW[@]}"
    record dep-overload "default queues" "$run" $((capacity * 2)) \
        "$(load_run $((capacity * 2)) "$DURATION" "do$run" --pid "$PID" --connections 1024)"
    stop
    start durable "${SLOW[@]}" "${TIGHT[@]}"
    record dep-overload "queue 8, no wait" "$run" $((capacity * 2)) \
        "$(load_run $((capacity * 2)) "$DURATION" "dt$run" --pid "$PID" --connections 1024)"
    stop
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 benches/http_report.py "$RAW" tables
