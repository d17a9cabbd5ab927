#!/usr/bin/env python3
"""Plot open-loop latency against offered load, from compare_redis.sh runs.

Reads the summary.json that `scripts/compare_redis.sh` writes into each
OUT_DIR and draws, for every run, the p50 and p99 latency (from each
request's scheduled send) at each open-loop rate, as a share of that run's
closed-loop saturation rate, on a log scale, with the 2 ms p99 target as a
dotted line. Writes docs/open_loop_latency.png and prints the figures as a
Markdown table.

    scripts/plot_open_loop.py target/compare1/summary.json target/compare2/summary.json

Needs matplotlib (PyPI), e.g. in a virtual environment:

    python3 -m venv /tmp/plot-venv && /tmp/plot-venv/bin/pip install matplotlib
    /tmp/plot-venv/bin/python scripts/plot_open_loop.py target/compare*/summary.json
"""

import argparse
import json
import sys
from pathlib import Path

TARGET_P99_MS = 2.0


def load(path):
    """One run: its label and its (percent, p50 ms, p99 ms) points."""
    summary = json.loads(Path(path).read_text())
    engine = summary["engine"]
    points = [
        (o["percent_of_saturation"], o["p50_us"] / 1000, o["p99_us"] / 1000)
        for o in engine["open_loop"]
    ]
    if not points:
        raise ValueError(f"{path}: no open-loop runs")
    label = (
        f'{summary.get("git") or "?"}, {engine["saturation_decisions_per_s"]:,.0f}/s '
        f'closed loop, {summary.get("pacer") or "sleep"} pacer'
    )
    return label, sorted(points)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", help="summary.json files of compare_redis.sh runs")
    parser.add_argument("--out", default="docs/open_loop_latency.png")
    args = parser.parse_args()

    runs = []
    for path in args.summaries:
        try:
            runs.append(load(path))
        except (OSError, KeyError, ValueError) as e:
            print(f"skipping {path}: {e}", file=sys.stderr)
    if not runs:
        sys.exit("no run to plot")

    print("| run | " + " | ".join(f"{p} %: p50 / p99 (ms)" for p, _, _ in runs[0][1]) + " |")
    print("|---" * (len(runs[0][1]) + 1) + "|")
    for label, points in runs:
        cells = " | ".join(f"{p50:.2f} / {p99:.2f}" for _, p50, p99 in points)
        print(f"| {label} | {cells} |")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is not installed: see this script's docstring")

    fig, ax = plt.subplots(figsize=(8, 5 + 0.25 * len(runs)))
    for k, (label, points) in enumerate(runs):
        color = f"C{k % 10}"
        xs = [p for p, _, _ in points]
        ax.plot(xs, [p99 for _, _, p99 in points], "-o", color=color, label=f"p99, {label}")
        ax.plot(xs, [p50 for _, p50, _ in points], "--s", color=color, alpha=0.6, label=f"p50, {label}")
    ax.axhline(TARGET_P99_MS, color="black", linestyle=":", label=f"p99 target ({TARGET_P99_MS:g} ms)")
    ax.set_yscale("log")
    ax.set_xlabel("offered load, % of the closed-loop saturation rate")
    ax.set_ylabel("latency from the scheduled send (ms)")
    ax.set_title("rta-engine gRPC Decide, open loop (rta-load), server and load on 2 cores")
    ax.grid(True, which="both", alpha=0.3)
    # below the axes: the p50 and p99 lines leave no corner free
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
