#!/usr/bin/env python3
"""Is every replica's index the same? For scripts/scaleout.sh, after the live
event stream has stopped:

  1. waits until every replica's consumer lag is 0 on every partition and the
     index sizes agree and hold still (or --timeout passes);
  2. compares the index-size gauges of /metrics (users, devices, profile heap bytes);
  3. asks every replica's admin API `GET /users/<device>` (read token) for a
     sample of devices: every user the live stream touched or deleted, plus a
     random sample of the seeded population; the answers must be identical, and
     a sha256 over them is each replica's checksum of the sampled index;
  4. asks every replica's gRPC `Decide` directly (not through the balancer) for
     the same devices: take, matched strategies, target ids, bid factors and
     scores must be identical.

  compare.py --replicas r1=10.231.0.21,... --token T --users users.jsonl
             --live live.json --sample N --stubs DIR --out OUT.json
"""

import argparse
import hashlib
import json
import random
import sys
import time
import urllib.error
import urllib.request

SIZE_GAUGES = ("rta_index_users", "rta_index_devices", "rta_index_profile_heap_bytes")


def metrics(ip):
    with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {"lag": {}}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0]
        if base in SIZE_GAUGES:
            out[base] = float(value)
        elif base == "rta_ingest_consumer_lag_messages":
            out["lag"][name[len(base):]] = float(value)
    return out


def user(ip, token, device):
    req = urllib.request.Request(f"http://{ip}:9090/users/{device}",
                                 headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--users", required=True)
    ap.add_argument("--live")
    ap.add_argument("--sample", type=int, default=2000, help="random seeded users (0: all)")
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    import grpc
    from rta.v1 import rta_pb2, rta_pb2_grpc

    replicas = dict(kv.split("=", 1) for kv in args.replicas.split(","))
    result = {"checks": {}, "replicas": sorted(replicas)}

    # 1. converge
    t0 = time.time()
    last, stable = None, 0
    while True:
        m = {r: metrics(ip) for r, ip in replicas.items()}
        sizes = {r: tuple(v.get(g) for g in SIZE_GAUGES) for r, v in m.items()}
        lag_zero = all(v["lag"] and all(x == 0 for x in v["lag"].values()) for v in m.values())
        same = len(set(sizes.values())) == 1
        stable = stable + 1 if (lag_zero and same and sizes == last) else 0
        last = sizes
        if stable >= 2 or time.time() - t0 > args.timeout:
            break
        time.sleep(0.5)
    result["converged"] = stable >= 2
    result["converge_seconds"] = round(time.time() - t0, 1)
    result["metrics"] = {r: {g: v.get(g) for g in SIZE_GAUGES} | {"max_lag": max(v["lag"].values(), default=None)}
                         for r, v in m.items()}
    result["checks"]["index sizes equal (users, devices, profile heap bytes)"] = same

    # 2. the sample
    records = [json.loads(line) for line in open(args.users) if line.strip()]
    by_id = {r["user_id"]: r for r in records}
    live = json.load(open(args.live)) if args.live else {"touched": [], "deleted": []}
    rng = random.Random(5)
    seeded = list(by_id) if args.sample == 0 or args.sample >= len(by_id) else rng.sample(list(by_id), args.sample)
    ids = sorted(set(seeded) | set(live["touched"]) | set(live["deleted"]))
    devices = []
    for uid in ids:
        for d in by_id[uid].get("devices", []):
            if ":" not in d:  # bare md5s: IMEI (the generated population's Android users)
                devices.append((uid, d))
                break
    result["sample"] = {"users": len(ids), "devices": len(devices), "touched_by_live_stream": len(live["touched"]),
                        "deleted_by_live_stream": len(live["deleted"])}

    # 3. profiles
    digests = {r: hashlib.sha256() for r in replicas}
    mismatches = []
    status_counts = {}
    deleted = set(live["deleted"])
    deleted_not_gone = 0
    for uid, d in devices:
        answers = {r: user(ip, args.token, d) for r, ip in replicas.items()}
        for r, (status, body) in answers.items():
            digests[r].update(f"{d} {status} {json.dumps(body, sort_keys=True)}\n".encode())
        canon = {r: (s, json.dumps(b, sort_keys=True)) for r, (s, b) in answers.items()}
        status = next(iter(answers.values()))[0]
        status_counts[status] = status_counts.get(status, 0) + 1
        if uid in deleted and any(s != 404 for s, _ in answers.values()):
            deleted_not_gone += 1
        if len(set(canon.values())) != 1 and len(mismatches) < 5:
            mismatches.append({"device": d, "user": uid, "answers": {r: [s, b] for r, (s, b) in answers.items()}})
        elif len(set(canon.values())) != 1:
            mismatches.append({"device": d})
    result["profiles"] = {"compared": len(devices), "mismatched": len(mismatches), "status": status_counts,
                          "sha256": {r: h.hexdigest() for r, h in digests.items()},
                          "examples": mismatches[:5]}
    result["checks"]["sampled profiles identical on every replica"] = not mismatches and len(devices) > 0
    result["checks"]["deleted users gone on every replica"] = deleted_not_gone == 0

    # 4. decisions, from every replica directly
    stubs = {r: rta_pb2_grpc.RtaServiceStub(grpc.insecure_channel(f"{ip}:50051")) for r, ip in replicas.items()}
    dmis, takes = [], 0
    for i, (uid, d) in enumerate(devices):
        req = rta_pb2.DecideRequest(request_id=f"compare-{i}", os=rta_pb2.OS_ANDROID,
                                    device_ids=[rta_pb2.DeviceId(type=rta_pb2.DEVICE_ID_TYPE_IMEI_MD5, value=d)])
        answers = {}
        for r, stub in stubs.items():
            resp = stub.Decide(req, timeout=5)
            answers[r] = (resp.take, resp.cache_seconds,
                          tuple((m.strategy_id, m.target_id, round(m.bid_factor, 9),
                                 round(m.pctr, 9) if m.HasField("pctr") else None,
                                 round(m.pcvr, 9) if m.HasField("pcvr") else None) for m in resp.matches))
        if len(set(answers.values())) != 1:
            dmis.append({"device": d, "answers": {r: repr(a) for r, a in answers.items()}})
        takes += next(iter(answers.values()))[0]
    result["decisions"] = {"compared": len(devices), "mismatched": len(dmis), "taken": takes, "examples": dmis[:5]}
    result["checks"]["Decide answers identical on every replica"] = not dmis and len(devices) > 0
    json.dump(result, open(args.out, "w"), indent=1)
    ok = all(result["checks"].values())
    print(f"compare: converged={result['converged']} in {result['converge_seconds']} s; "
          f"{len(devices)} profiles, {len(mismatches)} differ; {len(devices)} decisions, {len(dmis)} differ")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
