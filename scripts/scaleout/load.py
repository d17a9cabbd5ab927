#!/usr/bin/env python3
"""Steady load through the balancer for scripts/scaleout.sh, with clients that are
not ours: Tencent RTA `POST /rta/tencent` over HTTP/1.1 keep-alive (http.client,
Google's protobuf) and gRPC `Decide` over h2c (grpcio). Every request is one
client attempt, never retried here: whatever fails is what a media platform or
DSP would have seen.

  load.py --stubs DIR --devices FILE --http HOST:PORT [--grpc HOST:PORT]
          --rate R --grpc-rate G --duration S --out OUT.json

Each answer's `x-rta-replica` header (set by HAProxy: the server that answered)
is counted per second, so the report shows traffic leaving the killed replica
and coming back. OUT.json: totals, failures (time, api, kind, detail), a
per-second timeline, latency percentiles.
"""

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time

LOCK = threading.Lock()


class Stats:
    def __init__(self, t0):
        self.t0 = t0
        self.sent = {"tencent": 0, "grpc": 0}
        self.ok = {"tencent": 0, "grpc": 0}
        self.codes = {}  # Tencent answer codes: 0 take, 1 no match, 2 default answer (shed or deadline)
        self.taken = {"tencent": 0, "grpc": 0}
        self.failures = []
        self.lat = {"tencent": [], "grpc": []}
        self.timeline = {}

    def record(self, api, t_send, ok, replica=None, kind=None, detail=None, code=None, take=False):
        lat_ms = (time.time() - t_send) * 1000
        sec = int(t_send - self.t0)
        with LOCK:
            self.sent[api] += 1
            row = self.timeline.setdefault(sec, {"sent": 0, "ok": 0, "failed": 0, "replicas": {}})
            row["sent"] += 1
            if ok:
                self.ok[api] += 1
                row["ok"] += 1
                self.lat[api].append(lat_ms)
                self.taken[api] += take
                if code is not None:
                    self.codes[code] = self.codes.get(code, 0) + 1
            else:
                row["failed"] += 1
                self.failures.append({"t": round(t_send - self.t0, 3), "api": api, "kind": kind,
                                      "detail": str(detail)[:200]})
            if replica:
                row["replicas"][replica] = row["replicas"].get(replica, 0) + 1


def pace(t0, rate, duration, stop, body):
    """Calls body(t_send) at `rate` per second from t0 for `duration` seconds."""
    if rate <= 0:
        return
    interval = 1.0 / rate
    n = 0
    while not stop.is_set():
        due = t0 + n * interval
        if due - t0 >= duration:
            return
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        n += 1
        body(time.time())


def tencent_worker(args, stats, t0, rate, stop, bodies, rta_pb2, rng):
    host, port = args.http.rsplit(":", 1)
    conn = None

    def one(t_send):
        nonlocal conn
        body = rng.choice(bodies)
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=args.timeout)
            conn.request("POST", "/rta/tencent", body=body,
                         headers={"content-type": "application/x-protobuf"})
            resp = conn.getresponse()
            data = resp.read()
            replica = resp.getheader("x-rta-replica")
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
            if resp.status != 200:
                stats.record("tencent", t_send, False, replica, f"http_{resp.status}", data[:100])
                return
            answer = rta_pb2.RtaResponse.FromString(data)
            stats.record("tencent", t_send, True, replica, code=answer.code, take=answer.code == 0)
        except Exception as e:
            if conn is not None:
                conn.close()
            conn = None
            stats.record("tencent", t_send, False, None, type(e).__name__, e)

    pace(t0, rate, args.duration, stop, one)


def grpc_worker(args, stats, t0, rate, stop, requests, stub, rng):
    import grpc

    def one(t_send):
        req = rng.choice(requests)
        try:
            resp, call = stub.Decide.with_call(req, timeout=args.timeout)
            replica = dict(call.initial_metadata()).get("x-rta-replica")
            stats.record("grpc", t_send, True, replica, take=resp.take)
        except grpc.RpcError as e:
            stats.record("grpc", t_send, False, None, e.code().name, e.details())
        except Exception as e:
            stats.record("grpc", t_send, False, None, type(e).__name__, e)

    pace(t0, rate, args.duration, stop, one)


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stubs", required=True, help="directory with the generated _pb2 modules")
    ap.add_argument("--devices", required=True, help="one 32-hex IMEI md5 per line")
    ap.add_argument("--http", required=True)
    ap.add_argument("--grpc")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--grpc-rate", type=float, default=50)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--started", help="file written (epoch seconds) when the load starts")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    from tencent import rta_pb2
    from rta.v1 import rta_pb2 as api_pb2, rta_pb2_grpc

    devices = [d.strip() for d in open(args.devices) if d.strip()]
    rng = random.Random(11)
    # a tenth of the traffic carries ids the index does not hold, as real traffic does
    devices += ["%032x" % rng.getrandbits(128) for _ in range(max(1, len(devices) // 9))]
    R = rta_pb2.RtaRequest
    bodies = []
    for i, d in enumerate(devices[:5000]):
        req = R(id=f"scaleout-{i}")
        req.device.os = R.OS_ANDROID
        req.device.imei_md5sum = d
        req.device.cached_deviceid_type = R.Device.IMEI_MD5
        bodies.append(req.SerializeToString())
    requests = [api_pb2.DecideRequest(request_id=f"scaleout-{i}", os=api_pb2.OS_ANDROID,
                                      device_ids=[api_pb2.DeviceId(type=api_pb2.DEVICE_ID_TYPE_IMEI_MD5, value=d)])
                for i, d in enumerate(devices[:5000])]

    stub = None
    if args.grpc and args.grpc_rate > 0:
        import grpc
        channel = grpc.insecure_channel(args.grpc)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = rta_pb2_grpc.RtaServiceStub(channel)

    t0 = time.time() + 0.2
    stats = Stats(t0)
    stop = threading.Event()
    threads = []
    w = max(1, args.workers)
    for i in range(w):
        threads.append(threading.Thread(target=tencent_worker, daemon=True, args=(
            args, stats, t0 + i / (args.rate or 1) if args.rate else t0, args.rate / w, stop, bodies, rta_pb2,
            random.Random(100 + i))))
    if stub is not None:
        gw = max(1, w // 2)
        for i in range(gw):
            threads.append(threading.Thread(target=grpc_worker, daemon=True, args=(
                args, stats, t0 + i / args.grpc_rate, args.grpc_rate / gw, stop, requests, stub,
                random.Random(200 + i))))
    if args.started:
        with open(args.started + ".tmp", "w") as f:
            f.write(f"{t0:.3f}\n")
        os.replace(args.started + ".tmp", args.started)
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(args.duration + 3 * args.timeout + 5)
    finally:
        stop.set()
    out = {
        "t0": t0, "duration": args.duration, "rate": args.rate, "grpc_rate": args.grpc_rate if stub else 0,
        "sent": stats.sent, "ok": stats.ok, "failed": {k: stats.sent[k] - stats.ok[k] for k in stats.sent},
        "tencent_codes": {str(k): v for k, v in sorted(stats.codes.items())},
        "taken": stats.taken,
        "failures": stats.failures,
        "latency_ms": {k: {"p50": percentile(v, 0.5), "p99": percentile(v, 0.99), "max": percentile(v, 1.0)}
                       for k, v in stats.lat.items()},
        "timeline": {str(k): v for k, v in sorted(stats.timeline.items())},
    }
    json.dump(out, open(args.out, "w"), indent=1)
    print(f"load: sent {stats.sent}, ok {stats.ok}, failed {out['failed']}")


if __name__ == "__main__":
    main()
