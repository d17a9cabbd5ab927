#!/usr/bin/env python3
"""Checks what promtool does not about the alert rules and their tests.

  check_rules.py ALERTS.yml ALERTS_TEST.yml RUNBOOK.md

- every alert has a `severity` label (page or ticket), a `summary`, and a
  `runbook_url` annotation equal to docs/runbook.md#<the alert's name in lower
  case>, and RUNBOOK.md has that entry (a `### <AlertName>` heading) with the
  same severity (its `Severity: page.` line);
- ALERTS_TEST.yml loads ALERTS.yml, and for every alert it has at least one
  case where the alert fires (exp_alerts not empty) and one where it stays
  quiet (exp_alerts empty); it tests no alert that ALERTS.yml lacks.
Exit 1 naming every problem.
"""

import os
import sys

import yaml


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    alerts_path, tests_path, runbook_path = sys.argv[1:]
    alerts = yaml.safe_load(open(alerts_path))
    tests = yaml.safe_load(open(tests_path))
    # the runbook's entries: "### Name", then "Severity: page." in the entry
    headings, current = {}, None
    for line in open(runbook_path):
        if line.startswith("### ") or line.startswith("## "):
            current = line[4:].strip() if line.startswith("### ") else None
            if current:
                headings[current] = None
        elif current and line.startswith("Severity: ") and headings[current] is None:
            headings[current] = line[len("Severity: "):].strip().rstrip(".")
    errors = []
    rules = [r for g in alerts["groups"] for r in g["rules"] if "alert" in r]
    names = [r["alert"] for r in rules]
    for n in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"alert {n} is defined more than once")
    for r in rules:
        name = r["alert"]
        labels, ann = r.get("labels") or {}, r.get("annotations") or {}
        if labels.get("severity") not in ("page", "ticket"):
            errors.append(f"{name}: severity label {labels.get('severity')!r}, not page or ticket")
        if not ann.get("summary"):
            errors.append(f"{name}: no summary annotation")
        want = f"docs/runbook.md#{name.lower()}"
        if ann.get("runbook_url") != want:
            errors.append(f"{name}: runbook_url {ann.get('runbook_url')!r}, want {want!r}")
        if name not in headings:
            errors.append(f"{name}: {runbook_path} has no '### {name}' entry")
        elif headings[name] != labels.get("severity"):
            errors.append(f"{name}: {runbook_path} says 'Severity: {headings[name]}', the rule's label is {labels.get('severity')!r}")

    rule_files = [os.path.normpath(os.path.join(os.path.dirname(tests_path), f)) for f in tests.get("rule_files", [])]
    if os.path.normpath(alerts_path) not in rule_files:
        errors.append(f"{tests_path} does not load {alerts_path} (rule_files: {tests.get('rule_files')})")
    fires, quiet = {}, {}
    for group in tests.get("tests", []):
        for case in group.get("alert_rule_test", []) or []:
            name = case.get("alertname")
            bucket = fires if case.get("exp_alerts") else quiet
            bucket.setdefault(name, []).append(group.get("name", "?"))
    for name in names:
        if name not in fires:
            errors.append(f"{name}: no test case in {tests_path} where it fires")
        if name not in quiet:
            errors.append(f"{name}: no test case in {tests_path} where it stays quiet")
    for name in sorted((set(fires) | set(quiet)) - set(names)):
        errors.append(f"{tests_path} tests {name}, which {alerts_path} does not define")
    for e in errors:
        print(f"check_rules: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"   {len(names)} alerts: severity, summary, runbook_url and runbook entry each; "
          f"each fires in a test and stays quiet in another "
          f"({sum(map(len, fires.values()))} firing and {sum(map(len, quiet.values()))} quiet cases)")


if __name__ == "__main__":
    main()
