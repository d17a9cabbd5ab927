#!/usr/bin/env python3
"""The report of scripts/scaleout.sh: reads OUT/{events,load,compare,seeded}.json
and OUT/haproxy-stats.csv, writes OUT/report.md and OUT/report.json, prints the
report, and exits 1 when a check failed.

  report.py OUT_DIR
"""

import csv
import io
import json
import os
import re
import sys


def load(out, name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def rel(ev, key):
    v = ev.get(key)
    return None if v is None else v - ev["t_load"]


def fmt(x, unit=" s"):
    return "n/a" if x is None else f"{x:.2f}{unit}"


def main():
    out = sys.argv[1]
    ev, ld, cmp_, seeded = (load(out, n) for n in ("events.json", "load.json", "compare.json", "seeded.json"))
    stats = list(csv.DictReader(io.StringIO(open(os.path.join(out, "haproxy-stats.csv")).read().lstrip("# "))))
    victim = ev["victim"]
    kill, down, restart, ready, up = (rel(ev, k) for k in ("t_kill", "t_down", "t_restart", "t_ready", "t_up"))

    # traffic per replica: while the victim was dead (marked down .. restart), and after it rejoined
    tl = {int(k): v for k, v in ld["timeline"].items()}
    def served(replica, a, b):
        return sum(row["replicas"].get(replica, 0) for s, row in tl.items() if a <= s < b)
    dead_from = int(down) + 1 if down is not None else int(kill) + 2
    victim_while_down = served(victim, dead_from, int(restart))
    victim_after = served(victim, int(up) + 1 if up is not None else int(ready) + 1, 10**9)
    per_replica = {}
    for row in tl.values():
        for r, n in row["replicas"].items():
            per_replica[r] = per_replica.get(r, 0) + n

    backends = {}
    for row in stats:
        if row.get("svname") == "BACKEND" and row.get("pxname") in ("media", "grpc"):
            backends[row["pxname"]] = {k: int(row.get(k) or 0) for k in
                                       ("stot", "wretr", "wredis", "econ", "eresp", "hrsp_5xx")}

    # the requests HAProxy retried: its log's retries field (%rc, "+N" when redispatched)
    retried = {}
    log = os.path.join(out, "haproxy.log")
    if os.path.exists(log):
        for line in open(log, errors="replace"):
            m_ = re.search(r" (\S+)/(\S+) \S+ (\d{3}) .* \d+/\d+/\d+/\d+/\+?([1-9]\d*) \d+/\d+ \"", line)
            if m_:
                key = f"{m_.group(1)} answered {m_.group(3)}"
                retried[key] = retried.get(key, 0) + 1
    failed = sum(ld["failed"].values())
    codes = ld["tencent_codes"]
    restored = "no snapshot restored"
    if ev["restored_line"]:
        f = dict(kv.split("=", 1) for kv in ev["restored_line"].split() if "=" in kv)
        restored = (f"restored its snapshot of {f.get('users', '?')} users in {float(f.get('seconds', 'nan')):.2f} s, "
                    f"then replayed Kafka from its offsets")
    checks = {
        f"client-visible failures <= {ev['max_failures']}": failed <= ev["max_failures"],
        f"HAProxy marked {victim} DOWN after the kill": down is not None,
        f"{victim} ready again and marked UP by HAProxy": ready is not None and up is not None,
        f"no request answered by {victim} while it was dead": victim_while_down == 0,
        f"{victim} serves traffic again after rejoining": victim_after > 0,
        "every replica served traffic": len(per_replica) == ev["replicas"],
    }
    if not ev["wipe"]:
        checks[f"{victim} restored its snapshot on restart"] = bool(ev["restored_line"])
    checks.update(cmp_["checks"])
    checks["replicas converged (lag 0, sizes equal and still)"] = cmp_["converged"]
    ok = all(checks.values())

    import datetime
    when = datetime.datetime.fromtimestamp(ev["t_begin"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    m = cmp_["metrics"]
    lines = [
        f"# scale-out run {when}, commit {ev['commit']}: {'PASSED' if ok else 'FAILED'}",
        "",
        f"- setup: {ev['replicas']} replicas of `{os.path.relpath(ev['engine'])}`, each in its own netns; "
        f"{ev['tansu'] or 'tansu'} in another; {ev['haproxy'].split(' - ')[0]}; {ev['host']}",
        f"- seed: {ev['users']} users -> {sum(seeded['sent'].values())} Kafka messages in {seeded['seconds']:.1f} s; "
        f"replicas ready from an empty start after {', '.join(f'{x:.1f}' for x in ev['initial_ready_seconds'])} s",
        f"- load through HAProxy for {ev['duration']} s: Tencent {ev['rate']}/s (HTTP/1.1 keep-alive), "
        f"gRPC Decide {ev['grpc_rate']}/s (h2c); live events {ev['event_rate']}/s",
        "",
        "| | |",
        "|---|---|",
        f"| requests sent | Tencent {ld['sent']['tencent']}, gRPC {ld['sent']['grpc']} |",
        f"| **failed, as the client saw them** | **Tencent {ld['failed']['tencent']}, gRPC {ld['failed']['grpc']}** |",
        f"| answers | Tencent: {codes.get('0', 0)} take (code 0), {codes.get('1', 0)} no match (1), "
        f"{codes.get('2', 0)} default answer (2: shed or past the deadline); gRPC: {ld['taken']['grpc']} take |",
        f"| HAProxy retry counters (wretr / wredis) | media {backends.get('media', {}).get('wretr', 'n/a')} / "
        f"{backends.get('media', {}).get('wredis', 'n/a')}, gRPC {backends.get('grpc', {}).get('wretr', 'n/a')} / "
        f"{backends.get('grpc', {}).get('wredis', 'n/a')} |",
        f"| requests HAProxy retried (its log) | "
        + (", ".join(f"{n} {k}" for k, n in sorted(retried.items())) or "none") + " |",
        f"| client latency p50 / p99 / max | Tencent {ld['latency_ms']['tencent']['p50']} / "
        f"{ld['latency_ms']['tencent']['p99']} / {ld['latency_ms']['tencent']['max']} ms; gRPC "
        f"{ld['latency_ms']['grpc']['p50']} / {ld['latency_ms']['grpc']['p99']} / {ld['latency_ms']['grpc']['max']} ms |",
        f"| kill -9 {victim} | at {fmt(kill)} |",
        f"| marked DOWN by HAProxy | {fmt(None if down is None else down - kill)} after the kill |",
        f"| restarted | at {fmt(restart)}{' with its snapshots deleted' if ev['wipe'] else ''} |",
        f"| **/readyz 200 after the restart** | **{fmt(ready - restart)}** "
        f"({restored}) |",
        f"| marked UP by HAProxy | {fmt(None if up is None else up - restart)} after the restart |",
        f"| answered by {victim}: while dead / after rejoining | {victim_while_down} / {victim_after} |",
        f"| answered per replica | {', '.join(f'{r} {n}' for r, n in sorted(per_replica.items()))} |",
        f"| index sizes (users / devices / profile heap bytes) | "
        + "; ".join(f"{r} {int(v['rta_index_users'])} / {int(v['rta_index_devices'])} / "
                    f"{int(v['rta_index_profile_heap_bytes'])}" for r, v in sorted(m.items())) + " |",
        f"| **sampled profiles (`GET /users/<device>`)** | **{cmp_['profiles']['compared']} compared "
        f"({cmp_['sample']['touched_by_live_stream']} users touched and {cmp_['sample']['deleted_by_live_stream']} "
        f"deleted by the live stream), {cmp_['profiles']['mismatched']} differ**; sha256 "
        + ", ".join(f"{r} {h[:16]}" for r, h in sorted(cmp_["profiles"]["sha256"].items())) + " |",
        f"| **Decide on each replica directly** | **{cmp_['decisions']['compared']} compared "
        f"({cmp_['decisions']['taken']} taken), {cmp_['decisions']['mismatched']} differ** |",
        f"| caught up and compared | converged {cmp_['converge_seconds']} s after the stream stopped |",
        f"| whole run | {ev['t_end'] - ev['t_begin']:.0f} s |",
        "",
        "Checks:",
        *[f"- [{'x' if v else ' '}] {k}" for k, v in checks.items()],
    ]
    if ld["failures"]:
        lines += ["", "Client-visible failures (first 20):",
                  *[f"- t={f['t']} s {f['api']} {f['kind']}: {f['detail']}" for f in ld["failures"][:20]]]
    for key in ("profiles", "decisions"):
        if cmp_[key]["examples"]:
            lines += ["", f"{key} that differ (first ones):", "```",
                      *[json.dumps(x)[:600] for x in cmp_[key]["examples"]], "```"]
    around = sorted(s for s in tl if int(kill) - 2 <= s <= int(kill) + 3 or int(restart) - 1 <= s <= int(
        (up or ready or restart)) + 3)
    replicas = sorted(per_replica) or [victim]
    lines += ["", "Per second around the kill and the restart (answers by replica):", "",
              "| s | sent | failed | " + " | ".join(replicas) + " |",
              "|---|---|---|" + "---|" * len(replicas)]
    for s in around:
        row = tl[s]
        note = " (kill)" if s == int(kill) else " (restart)" if s == int(restart) else ""
        lines.append(f"| {s}{note} | {row['sent']} | {row['failed']} | "
                     + " | ".join(str(row["replicas"].get(r, 0)) for r in replicas) + " |")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "report.md"), "w").write(text)
    json.dump({"ok": ok, "checks": checks, "failed": ld["failed"], "ready_after_restart_s": ready - restart,
               "down_after_kill_s": None if down is None else down - kill,
               "up_after_restart_s": None if up is None else up - restart,
               "haproxy": backends, "haproxy_retried": retried, "per_replica": per_replica,
               "victim_while_down": victim_while_down, "victim_after": victim_after},
              open(os.path.join(out, "report.json"), "w"), indent=1)
    print(text, end="")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
