#!/usr/bin/env bash
# CPU per request of one server under wrk (the "µs per request" and "idle"
# figures of BENCHMARKS.md): starts a fresh server, warms it for a second,
# runs wrk for DURATION seconds and reads, over the middle of that run, the
# server's CPU time (/proc/PID/stat), wrk's, and the machine's idle time
# (/proc/stat). Linux only; loopback only; needs wrk (benches/http.sh
# installs it).
#
#   benches/cpu_per_request.sh ephemeral      # the server with --ephemeral
#   benches/cpu_per_request.sh durable        # the server with a fresh journal
#   benches/cpu_per_request.sh ceiling        # the bare hyper server
#   C=8 RUNS=3 benches/cpu_per_request.sh ephemeral
#   TOKIO_WORKER_THREADS=1 C=8 benches/cpu_per_request.sh ceiling
#
# TOKIO_WORKER_THREADS sets the runtime workers of any of the three (for
# the tour-dispatcher it does what --workers does).
#
# Prints one line per run: requests/s, server CPU µs per request, server,
# wrk and idle CPU in % of one core.
set -euo pipefail

KIND=${1:?usage: cpu_per_request.sh ephemeral|durable|ceiling [server flags...]}
shift
C=${C:-32}
RUNS=${RUNS:-3}
DURATION=${DURATION:-4}
PORT=${PORT:-18231}
# The CPU is read over the run less its first and last second.
if [ "$DURATION" -lt 3 ]; then echo "DURATION must be at least 3 (seconds)" >&2; exit 2; fi

cd "$(dirname "$0")/.."
cargo build --release --quiet --bin tour-dispatcher --example ceiling
HZ=$(getconf CLK_TCK)

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
idle() { awk '/^cpu /{print $5}' /proc/stat; }

for run in $(seq "$RUNS"); do
    case $KIND in
    ceiling) target/release/examples/ceiling "127.0.0.1:$PORT" 2>/dev/null & ;;
    ephemeral) target/release/tour-dispatcher --listen "127.0.0.1:$PORT" --ephemeral "$@" >/dev/null 2>&1 & ;;
    durable)
        data=$(mktemp -d)
        target/release/tour-dispatcher --listen "127.0.0.1:$PORT" --data-dir "$data" "$@" >/dev/null 2>&1 &
        ;;
    *) echo "unknown server: $KIND" >&2; exit 2 ;;
    esac
    server=$!
    sleep 0.5
    WRK_KEY_PREFIX="cpu-warm-$run" wrk -t1 -c"$C" -d1s -s benches/http.lua "http://127.0.0.1:$PORT" >/dev/null
    out=$(mktemp)
    WRK_KEY_PREFIX="cpu-$run" wrk -t1 -c"$C" -d"${DURATION}s" -s benches/http.lua "http://127.0.0.1:$PORT" >"$out" &
    client=$!
    sleep 1
    s0=$(ticks "$server") w0=$(ticks "$client") i0=$(idle)
    window=$((DURATION - 2))
    sleep "$window"
    s1=$(ticks "$server") w1=$(ticks "$client") i1=$(idle)
    wait "$client"
    kill "$server"
    wait "$server" 2>/dev/null || true
    python3 - "$(tail -1 "$out")" "$HZ" "$window" "$((s1 - s0))" "$((w1 - w0))" "$((i1 - i0))" "$KIND" <<'EOF'
import json, sys
result, hz, window = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
server, client, idle = (int(t) / hz for t in sys.argv[4:7])
rps = result["rps"]
print(f"{sys.argv[7]}: {rps:,.0f} requests/s, server {server * 1e6 / (rps * window):.1f} µs CPU per request, "
      f"server {server * 100 / window:.0f}%, wrk {client * 100 / window:.0f}%, idle {idle * 100 / window:.0f}% of a core")
EOF
    rm -f "$out"
    if [ "$KIND" = durable ]; then rm -rf "$data"; fi
done
