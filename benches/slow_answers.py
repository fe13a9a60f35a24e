#!/usr/bin/env python3
"""When in an open-loop run the slow answers came.

Reads the file that `benches/load.rs --samples FILE` writes (one line per
request: its number, latency in microseconds, status) and prints the p99,
the p99 without the run's first 300 ms, and every 10 ms of the run that
holds an answer slower than the threshold: whether the tail is spread
over the run (queueing) or held in a few stalls.

    target/release/examples/load --url URL --rate 23000 --seconds 5 --samples s.txt
    benches/slow_answers.py s.txt 23000          # threshold 5 ms
    benches/slow_answers.py s.txt 23000 2.5
"""
import signal
import sys
from collections import defaultdict

# Piped into `head`, stop quietly.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)

BIN_MS = 10
START_MS = 300


def p99(values):
    values = sorted(values)
    return values[max(0, -(-len(values) * 99 // 100) - 1)] / 1000 if values else 0.0


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, rate = sys.argv[1], int(sys.argv[2])
    threshold_us = float(sys.argv[3] if len(sys.argv) > 3 else 5) * 1000
    rows = [tuple(map(int, line.split())) for line in open(path) if line.strip()]
    due_ms = lambda n: n * 1000 / rate
    bins = defaultdict(lambda: [0, 0])  # bin -> [slow answers, slowest µs]
    for n, micros, _status in rows:
        if micros > threshold_us:
            b = bins[int(due_ms(n) // BIN_MS)]
            b[0] += 1
            b[1] = max(b[1], micros)
    slow = sum(b[0] for b in bins.values())
    early = sum(b[0] for k, b in bins.items() if k * BIN_MS < START_MS)
    later = [m for n, m, _ in rows if due_ms(n) >= START_MS]
    print(
        f"{len(rows)} answers, p99 {p99([m for _, m, _ in rows]):.2f} ms, "
        f"p99 after the first {START_MS} ms {p99(later):.2f} ms; "
        f"{slow} over {threshold_us / 1000:g} ms, {early} of them in the first {START_MS} ms, "
        f"in {len(bins)} of {BIN_MS} ms bins"
    )
    print(" ".join(f"{k * BIN_MS}ms:{c}/{m / 1000:.0f}" for k, (c, m) in sorted(bins.items())))


if __name__ == "__main__":
    main()
