#!/usr/bin/env python3
"""Plot matching latency against the number of live strategies.

Reads what `cargo bench --bench matching` left in criterion's output
(target/criterion/<group>/.../new/benchmark.json and estimates.json) and
writes docs/decide_vs_strategies.png: the median time to match one user
against N strategies, log-log, with criterion's 95 % confidence interval of
the median as error bars, one panel per benchmark group (workload). It also
prints the figures as a Markdown table.

Groups are `matching` (every strategy on the one demo catalogue: matches grow
with N) and `matching_flat` (strategies per advertiser, each on its own data:
matches stay flat); a group with no results is left out. Series come from the
benchmark ids, `<group>/<matcher>/<user>/<N>`: the matchers are `linear`
(LinearMatcher, a scan of every strategy) and `index` (StrategySet::matching);
another matcher appears with no change here; give it a label and a line style
in MATCHERS below for a nicer legend. Each panel has a dotted line at 10x the
index's 1,000-strategy time of its typical user: the "100 k within 10x of
1 k" target.

Install matplotlib (PyPI) once, e.g. in a virtual environment:

    python3 -m venv /tmp/plot-venv && /tmp/plot-venv/bin/pip install matplotlib
    /tmp/plot-venv/bin/python benches/plot.py

or `python3 -m pip install matplotlib` and `python3 benches/plot.py`.

Options: --criterion-dir (default target/criterion), --out (default
docs/decide_vs_strategies.png), --group (repeatable; default matching and
matching_flat).
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
# group name -> panel title (unknown names are shown as they are)
GROUPS = {
    "matching": "shared catalogue: matches grow with N",
    "matching_flat": "per-advertiser data: matches stay flat",
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


def print_table(groups) -> None:
    print("| group | matcher | user | strategies | median | 95 % CI of the median |")
    print("|---|---|---|---:|---:|---|")
    for group, series in groups.items():
        for (matcher, user), points in sorted(series.items()):
            for n, med, lo, hi in points:
                print(
                    f"| {group} | {matcher} | {user} | {n:,} | {human(med)} "
                    f"| {human(lo)} .. {human(hi)} |"
                )


def plot(groups, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = sorted({user for series in groups.values() for _, user in series})
    colours = {u: f"C{i}" for i, u in enumerate(users)}
    fig, axes = plt.subplots(
        1, len(groups), figsize=(7.5 * len(groups), 5.5), dpi=120, sharey=True, squeeze=False
    )
    for ax, (group, series) in zip(axes[0], groups.items()):
        draw(ax, group, series, colours)
    axes[0][0].set_ylabel("match one user: median time (µs)")
    fig.suptitle("Matching one user against N strategies (StrategySet::matching vs LinearMatcher)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def draw(ax, group, series, colours) -> None:
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
    base = [p for p in series.get(("index", "typical_user"), []) if p[0] == 1000]
    if base:
        ax.axhline(10 * base[0][1] / 1e3, color="grey", linestyle=":", linewidth=1,
                   label="10x index, typical user, 1 k")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("live strategies")
    ax.set_title(f"{group}: {GROUPS.get(group, group)}", fontsize="medium")
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize="x-small")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion-dir", type=Path, default=Path("target/criterion"))
    parser.add_argument("--group", action="append")
    parser.add_argument("--out", type=Path, default=Path("docs/decide_vs_strategies.png"))
    args = parser.parse_args()
    groups = {}
    for group in args.group or list(GROUPS):
        series = read_results(args.criterion_dir, group)
        if series:
            groups[group] = series
        else:
            print(f"no results under {args.criterion_dir / group}: left out", file=sys.stderr)
    if not groups:
        print("nothing to plot: run `cargo bench --bench matching` first", file=sys.stderr)
        return 1
    print_table(groups)
    plot(groups, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
