#!/usr/bin/env bash
# Two builds of the server, alternating: resident memory 0.5 s after start
# and requests/s at C connections (default 32; wrk, one thread,
# benches/http.lua's bodies), one line per run; the durable server, or with
# KIND=ephemeral the server with --ephemeral.
#
#   [KIND=ephemeral] [C=8] benches/alternate.sh BEFORE_BINARY AFTER_BINARY [ROUNDS]
#
# Each run gets a fresh data directory and a 1 s warm-up, then 3 s
# measured. Compare the medians, and the runs pair by pair: the host's
# noise moves single runs by ±20%.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: $0 BEFORE_BINARY AFTER_BINARY [ROUNDS]" >&2
    exit 2
fi
BEFORE=$1 AFTER=$2 ROUNDS=${3:-4} KIND=${KIND:-durable} C=${C:-32}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
OUT=$(mktemp -d "${TMPDIR:-/tmp}/tour-alternate.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
for round in $(seq "$ROUNDS"); do
    for which in before after; do
        if [ $which = before ]; then bin=$BEFORE; else bin=$AFTER; fi
        data=$OUT/data-$round-$which
        log=$OUT/$which.log
        rm -f "$log"
        if [ "$KIND" = ephemeral ]; then store=(--ephemeral); else store=(--data-dir "$data"); fi
        "$bin" --listen 127.0.0.1:0 "${store[@]}" >/dev/null 2>"$log" &
        pid=$!
        url=
        for _ in $(seq 100); do
            url=$(grep -so 'http://[0-9.]*:[0-9]*' "$log" | head -1 || true)
            [ -n "$url" ] && break
            sleep 0.05
        done
        [ -n "$url" ] || { echo "$bin did not start: $(cat "$log")" >&2; exit 1; }
        sleep 0.5
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
        WRK_KEY_PREFIX=w$round$which wrk -t1 -c"$C" -d1s --timeout 10s -s benches/http.lua "$url" >/dev/null
        rps=$(WRK_KEY_PREFIX=m$round$which wrk -t1 -c"$C" -d3s --timeout 10s -s benches/http.lua "$url" |
            tail -1 | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["rps"]))')
        echo "round=$round binary=$which kind=$KIND connections=$C idle_rss_kib=$rss requests_per_s=$rps load=$(cut -d' ' -f1 /proc/loadavg)"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done
