#!/usr/bin/env bash
# The server's own tail at an open-loop rate: the share of dispatches its
# histogram (tour_dispatcher_dispatch_duration_seconds, from the handler
# taking the request, its headers read, to its answer being ready) puts
# over 2.5, 5 and 10 ms, beside the client's
# p99 from the generator (benches/load.rs). The client's figure includes
# the generator and the host; the server's does not.
#
#   benches/server_tail.sh 17000                   # the release binary, --ephemeral
#   BINS="old/tour-dispatcher new/tour-dispatcher" RUNS=3 benches/server_tail.sh 17000
#   FLAGS=durable benches/server_tail.sh 13000     # the durable journal, a fresh data dir each run
#
# Each run starts a fresh server, warms it with wrk (1 s, 32 connections),
# reads /metrics, sends RATE requests/s for DURATION seconds, reads /metrics
# again. With several binaries the runs alternate. Linux, loopback, needs
# wrk and curl (benches/http.sh installs wrk).
set -euo pipefail

RATE=${1:?usage: server_tail.sh RATE}
RUNS=${RUNS:-3}
DURATION=${DURATION:-4}
PORT=${PORT:-18233}

cd "$(dirname "$0")/.."
cargo build --release --quiet --bin tour-dispatcher --example load
BINS=${BINS:-target/release/tour-dispatcher}
URL="http://127.0.0.1:$PORT"
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT

for run in $(seq "$RUNS"); do
    for bin in $BINS; do
        data=$(mktemp -d)
        if [ "${FLAGS:-ephemeral}" = durable ]; then mode=(--data-dir "$data"); else mode=(--ephemeral); fi
        "$bin" --listen "127.0.0.1:$PORT" "${mode[@]}" >/dev/null 2>&1 &
        server=$!
        sleep 0.5
        WRK_KEY_PREFIX="tail-warm-$run" wrk -t1 -c32 -d1s -s benches/http.lua "$URL" >/dev/null
        curl -s "$URL/metrics" >"$before"
        result=$(target/release/examples/load --url "$URL" --rate "$RATE" \
            --seconds "$DURATION" --key-prefix "tail-$run" | tail -1)
        curl -s "$URL/metrics" >"$after"
        kill "$server"
        wait "$server" 2>/dev/null || true
        rm -rf "$data"
        python3 - "$before" "$after" "$result" "$bin" <<'EOF'
import json, sys

def buckets(path):
    out = {}
    for line in open(path):
        if line.startswith("tour_dispatcher_dispatch_duration_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    return out

before, after = buckets(sys.argv[1]), buckets(sys.argv[2])
result = json.loads(sys.argv[3])
total = after["+Inf"] - before["+Inf"]
over = lambda le: 100 * (total - (after[le] - before[le])) / total
print(
    f"{sys.argv[4]}: server over 2.5 ms {over('0.0025'):.2f}%, over 5 ms {over('0.005'):.2f}%, "
    f"over 10 ms {over('0.01'):.2f}% | client p99 {result['all']['p99_ms']:.1f} ms, "
    f"generator late p99 {result['lateness']['p99_ms']:.1f} ms"
)
EOF
    done
done
