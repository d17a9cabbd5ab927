#!/usr/bin/env python3
"""Checks a Grafana dashboard's PromQL against the engine's metric names.

  check_dashboard.py DASHBOARD.json TELEMETRY_DIR RULES_OUT.yml

- every panel (rows included) has at least one query, a unique id, and the
  dashboard's datasource variable;
- every metric an expression or a template variable names is defined in
  TELEMETRY_DIR (the `pub const X: &str = "rta_..."` names of src/telemetry;
  a histogram's `_bucket`, `_sum` and `_count` count as its name);
- RULES_OUT.yml gets one recording rule per expression, with Grafana's
  variables replaced by values Prometheus accepts, for `promtool check rules`
  to parse every expression. Exit 1 on any problem, naming the panel.
"""

import json
import pathlib
import re
import sys

# PromQL words that are not metric names
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "inf", "nan", "atan2",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables -> something promtool parses (the value is never evaluated)
GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
    "$datasource": "prometheus",
}


def metric_names(telemetry_dir):
    names = set()
    for f in sorted(pathlib.Path(telemetry_dir).glob("*.rs")):
        names |= set(re.findall(r'pub const [A-Z0-9_]+: &str = "(rta_[a-z0-9_]+)"', f.read_text()))
    if not names:
        raise SystemExit(f"no metric names found in {telemetry_dir}/*.rs")
    return names


def metrics_in(expr):
    """The metric names an expression selects (a small PromQL tokenizer)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"(?<![a-zA-Z0-9_:.])\d+(\.\d*)?([eE][+-]?\d+)?(?![a-zA-Z0-9_:])", " ", e)  # numbers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    found = []
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word) or re.fullmatch(r"[eE]\d+", word):
            continue
        found.append(word)
    return found


def known(name, names):
    if name in names:
        return True
    return any(name.endswith(s) and name[: -len(s)] in names for s in HISTOGRAM_SUFFIXES)


def panels_of(dash):
    for p in dash.get("panels", []):
        yield p
        for inner in p.get("panels", []):
            yield inner


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    dash = json.loads(pathlib.Path(sys.argv[1]).read_text())
    names = metric_names(sys.argv[2])
    errors, rules, ids = [], [], set()
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource":
        errors.append("the dashboard has no `datasource` variable of type datasource")
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*[a-zA-Z_]+\s*\)", q or "")
        if not m:
            errors.append(f"variable {name}: expected label_values(metric, label), got {q!r}")
        elif not known(m.group(1), names):
            errors.append(f"variable {name}: unknown metric {m.group(1)}")
    n = 0
    for p in panels_of(dash):
        title = p.get("title", "?")
        if p.get("id") in ids:
            errors.append(f"panel {title!r}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"panel {title!r}: datasource is not ${{datasource}}")
        targets = p.get("targets", [])
        if not targets:
            errors.append(f"panel {title!r}: no query")
        for t in targets:
            expr = t.get("expr", "")
            if not expr.strip():
                errors.append(f"panel {title!r} query {t.get('refId')}: empty expression")
                continue
            used = metrics_in(expr)
            if not used:
                errors.append(f"panel {title!r} query {t.get('refId')}: names no metric: {expr}")
            for metric in used:
                if not known(metric, names):
                    errors.append(f"panel {title!r} query {t.get('refId')}: unknown metric {metric}")
            concrete = expr
            for var, value in GRAFANA_VARS.items():
                concrete = concrete.replace(var, value)
            if "$" in concrete:
                errors.append(f"panel {title!r} query {t.get('refId')}: unhandled variable in {expr}")
            n += 1
            rules.append((f"dashboard:panel{p.get('id')}_{t.get('refId')}", title, concrete))
    with open(sys.argv[3], "w") as out:
        out.write("groups:\n  - name: dashboard\n    rules:\n")
        for record, title, expr in rules:
            out.write(f"      # {title}\n      - record: {record}\n        expr: {json.dumps(expr)}\n")
    if errors:
        for e in errors:
            print(f"{sys.argv[1]}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{n} queries in {sum(1 for p in panels_of(dash) if p.get('type') != 'row')} panels; "
          f"every metric they name is one of the {len(names)} in {sys.argv[2]}")


if __name__ == "__main__":
    main()
