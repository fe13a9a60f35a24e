#!/usr/bin/env python3
"""Summarises the raw JSON lines of benches/http.sh.

  http_report.py RAW peak TARGET   # the median peak requests/s of TARGET
  http_report.py RAW tables        # the Markdown tables of BENCHMARKS.md

Medians over runs; ratios are taken within each run (same run, same
concurrency), then their median is shown.
"""
import json
import statistics
import sys
from collections import defaultdict


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median(values):
    return statistics.median(values) if values else float("nan")


def mix(results):
    """Status mix over all runs, as percentages of the answers."""
    counts = defaultdict(int)
    for r in results:
        for status, n in r["statuses"].items():
            counts[status] += n
    total = sum(counts.values()) or 1
    return ", ".join(
        f"{s}: {100 * n / total:.1f}%" for s, n in sorted(counts.items())
    )


def loads(lines):
    values = [float(l["load"]) for l in lines]
    return f"{min(values):.1f}–{max(values):.1f}" if values else "-"


def select(lines, step, target=None, param=None):
    return [
        l
        for l in lines
        if l["step"] == step
        and (target is None or l["target"] == target)
        and (param is None or l["param"] == param)
    ]


def peak(lines, target):
    by_c = defaultdict(list)
    for l in select(lines, "throughput", target):
        by_c[l["param"]].append(l["result"]["rps"])
    return max(median(v) for v in by_c.values())


def ratio(lines, num, den, c):
    per_run = {}
    for l in select(lines, "throughput", param=c):
        per_run.setdefault(l["run"], {})[l["target"]] = l["result"]["rps"]
    values = [r[num] / r[den] for r in per_run.values() if num in r and den in r]
    return median(values)


def throughput(lines):
    print("| connections | server | requests/s | p50 ms | p99 ms | p99.9 ms | status mix | ratio (same run) | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in sorted({l["param"] for l in select(lines, "throughput")}):
        for target in ("ceiling", "ephemeral", "durable"):
            rows = select(lines, "throughput", target, c)
            if not rows:
                continue
            res = [r["result"] for r in rows]
            rel = {
                "ceiling": "1",
                "ephemeral": f"{ratio(lines, 'ephemeral', 'ceiling', c):.2f} × ceiling",
                "durable": f"{ratio(lines, 'durable', 'ephemeral', c):.2f} × ephemeral",
            }[target]
            print(
                f"| {c} | {target} | {median([r['rps'] for r in res]):,.0f} "
                f"| {median([r['p50_ms'] for r in res]):.2f} "
                f"| {median([r['p99_ms'] for r in res]):.2f} "
                f"| {median([r['p999_ms'] for r in res]):.2f} "
                f"| {mix(res)} | {rel} | {loads(rows)} |"
            )
    print()
    for target in ("ceiling", "ephemeral", "durable"):
        if select(lines, "throughput", target):
            print(f"peak of {target}: {peak(lines, target):,.0f} requests/s (median over runs, best concurrency)")
    print()


def open_loop(lines, step, title, key="param"):
    rows = select(lines, step)
    if not rows:
        return
    print(f"| {title} | offered/s | sent for s | answered | p50 ms | p99 ms | p99.9 ms | accepted p99 ms | status mix | generator late p99 ms | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for target in sorted({l["target"] for l in rows}):
        sel = [l for l in rows if l["target"] == target]
        res = [l["result"] for l in sel]
        print(
            f"| {target} | {sel[0]['param']:,} | {median([r['sent_for_s'] for r in res]):.2f} "
            f"| {median([r['answered'] / r['sent'] for r in res]) * 100:.1f}% "
            f"| {median([r['all']['p50_ms'] for r in res]):.2f} "
            f"| {median([r['all']['p99_ms'] for r in res]):.2f} "
            f"| {median([r['all']['p999_ms'] for r in res]):.2f} "
            f"| {median([r['accepted']['p99_ms'] for r in res]):.2f} "
            f"| {mix(res)} | {median([r['lateness']['p99_ms'] for r in res]):.2f} | {loads(sel)} |"
        )
    print()


def slow_deps(lines):
    rows = select(lines, "slow-deps")
    if not rows:
        return
    print("| --shard-concurrency | requests/s | p50 ms | p99 ms | p99.9 ms | status mix | load |")
    print("|---|---|---|---|---|---|---|")
    for sc in sorted({l["param"] for l in rows}):
        sel = [l for l in rows if l["param"] == sc]
        res = [l["result"] for l in sel]
        print(
            f"| {sc} | {median([r['rps'] for r in res]):,.0f} "
            f"| {median([r['p50_ms'] for r in res]):.2f} "
            f"| {median([r['p99_ms'] for r in res]):.2f} "
            f"| {median([r['p999_ms'] for r in res]):.2f} | {mix(res)} | {loads(sel)} |"
        )
    print()


def overload(lines, unloaded_step="unloaded", overload_step="overload"):
    unloaded = select(lines, unloaded_step)
    over = select(lines, overload_step)
    if not over:
        return
    for target in sorted({o["target"] for o in over}):
        ratios = []
        for o in (o for o in over if o["target"] == target):
            # The same target's unloaded run (a variant "KIND, FLAGS" is
            # compared with KIND's), else the run's only one.
            same_run = [l for l in unloaded if l["run"] == o["run"]]
            kind = o["target"].split(",")[0]
            u = [l for l in same_run if l["target"] == kind] or same_run
            if u and u[0]["result"]["accepted"]["p99_ms"] > 0:
                ratios.append(o["result"]["accepted"]["p99_ms"] / u[0]["result"]["accepted"]["p99_ms"])
        if ratios:
            print(f"{target}: accepted p99 under overload ÷ unloaded p99 (same run, median): {median(ratios):.2f}")
    for o in over:
        rss = o["result"]["rss_kb"]
        if rss:
            print(
                f"{o['target']} run {o['run']}: resident memory (MiB) first {rss[0] / 1024:.1f}, "
                f"max {max(rss) / 1024:.1f}, last {rss[-1] / 1024:.1f} over {len(rss)} samples"
            )
    print()


def half_peak_floor(lines):
    """Each server's p99 at half its peak over the ceiling's at the same
    rate, run by run."""
    rows = select(lines, "half-peak")
    for kind in ("ephemeral", "durable"):
        ratios, floors = [], []
        for l in (l for l in rows if l["target"] == kind):
            floor = [
                f for f in rows
                if f["target"] == f"ceiling at the {kind} rate" and f["run"] == l["run"]
            ]
            if floor and floor[0]["result"]["all"]["p99_ms"] > 0:
                floors.append(floor[0]["result"]["all"]["p99_ms"])
                ratios.append(l["result"]["all"]["p99_ms"] / floors[-1])
        if ratios:
            print(
                f"{kind}: p99 ÷ the ceiling's p99 at the same rate (same run, median): "
                f"{median(ratios):.2f} (the ceiling's p99: {', '.join(f'{f:.2f}' for f in floors)} ms)"
            )
    print()


def tables(lines):
    print("### Throughput (closed loop, wrk -t1)\n")
    throughput(lines)
    print("### Latency at half the peak rate (open loop)\n")
    open_loop(lines, "half-peak", "server")
    half_peak_floor(lines)
    print("### Slow dependencies (durable, wrk -t1 -c128)\n")
    slow_deps(lines)
    print("### Overload (durable, and the ceiling under the same loads; open loop)\n")
    open_loop(lines, "unloaded", "unloaded: a tenth of the peak")
    open_loop(lines, "overload", "overload: twice the peak")
    overload(lines)
    print("### Overload of the dependencies (durable, slow dependencies, --shard-concurrency 8, open loop)\n")
    open_loop(lines, "dep-unloaded", "unloaded: a tenth of the capacity")
    open_loop(lines, "dep-overload", "overload: twice the capacity")
    overload(lines, "dep-unloaded", "dep-overload")


def main():
    lines = load(sys.argv[1])
    if sys.argv[2] == "peak":
        print(int(peak(lines, sys.argv[3])))
    elif sys.argv[2] == "slow-capacity":
        print(int(median([l["result"]["rps"] for l in select(lines, "slow-deps", param=int(sys.argv[3]))])))
    else:
        tables(lines)


if __name__ == "__main__":
    main()
