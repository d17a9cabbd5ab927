#!/usr/bin/env python3
"""Plot matching latency against the number of live strategies.

Reads what `cargo bench --bench matching` left in criterion's output
(target/criterion/matching/.../new/benchmark.json and estimates.json) and
writes docs/decide_vs_strategies.png: the median time to match one user
against N strategies, log-log, with criterion's 95 % confidence interval of
the median as error bars. It also prints the figures as a Markdown table.

Series come from the benchmark ids, `matching/<matcher>/<user>/<N>`. Today the
only matcher is `linear` (LinearMatcher, a scan of every strategy). An indexed
matcher benchmarked under its own name (say `matching/index/<user>/<N>`)
appears beside it with no change here; give it a label and a line style in
MATCHERS below for a nicer legend.

Install matplotlib (PyPI) once, e.g. in a virtual environment:

    python3 -m venv /tmp/plot-venv && /tmp/plot-venv/bin/pip install matplotlib
    /tmp/plot-venv/bin/python benches/plot.py

or `python3 -m pip install matplotlib` and `python3 benches/plot.py`.

Options: --criterion-dir (default target/criterion), --out (default
docs/decide_vs_strategies.png), --group (default matching).
"""

import argparse
import json
import sys
from pathlib import Path

# matcher name in the benchmark id -> (legend label, line style)
MATCHERS = {
    "linear": ("linear scan", "-"),
    "index": ("index", "--"),
}
# user name in the benchmark id -> legend label (unknown names are shown as they are)
USERS = {
    "matching_user": "matching user",
    "typical_user": "typical user",
    "quiet_user": "quiet user",
    "unknown_device": "unknown device",
}


def read_results(criterion_dir: Path, group: str):
    """{(matcher, user): [(n, median_ns, lower_ns, upper_ns), ...]} sorted by n."""
    series = {}
    for bench_file in sorted((criterion_dir / group).glob("**/new/benchmark.json")):
        bench = json.loads(bench_file.read_text())
        function_id = bench.get("function_id") or ""
        matcher, _, user = function_id.partition("/")
        try:
            n = int(bench.get("value_str") or "")
        except ValueError:
            continue  # not a per-size benchmark
        estimates = json.loads((bench_file.parent / "estimates.json").read_text())
        median = estimates["median"]
        ci = median["confidence_interval"]
        series.setdefault((matcher, user or "?"), []).append(
            (n, median["point_estimate"], ci["lower_bound"], ci["upper_bound"])
        )
    for points in series.values():
        points.sort()
    return series


def human(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns:.3g} ns"


def print_table(series) -> None:
    print("| matcher | user | strategies | median | 95 % CI of the median |")
    print("|---|---|---:|---:|---|")
    for (matcher, user), points in sorted(series.items()):
        for n, med, lo, hi in points:
            print(f"| {matcher} | {user} | {n:,} | {human(med)} | {human(lo)} .. {human(hi)} |")


def plot(series, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = sorted({user for _, user in series})
    colours = {u: f"C{i}" for i, u in enumerate(users)}
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for (matcher, user), points in sorted(series.items()):
        label, style = MATCHERS.get(matcher, (matcher, ":"))
        xs = [p[0] for p in points]
        ys = [p[1] / 1e3 for p in points]
        err = [[(p[1] - p[2]) / 1e3 for p in points], [(p[3] - p[1]) / 1e3 for p in points]]
        ax.errorbar(
            xs,
            ys,
            yerr=err,
            linestyle=style,
            marker="o",
            markersize=4,
            capsize=3,
            color=colours[user],
            label=f"{label}, {USERS.get(user, user)}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("live strategies")
    ax.set_ylabel("match one user: median time (µs)")
    ax.set_title("Matching one user against N strategies (StrategySet::matching)")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion-dir", type=Path, default=Path("target/criterion"))
    parser.add_argument("--group", default="matching")
    parser.add_argument("--out", type=Path, default=Path("docs/decide_vs_strategies.png"))
    args = parser.parse_args()
    series = read_results(args.criterion_dir, args.group)
    if not series:
        print(
            f"no results under {args.criterion_dir / args.group}: run `cargo bench --bench matching` first",
            file=sys.stderr,
        )
        return 1
    print_table(series)
    plot(series, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
