#!/usr/bin/env python3
"""The live half of .ci/prometheus-check: load on a real engine, then every
dashboard query and every alert expression through a real Prometheus.

  live.py topics --broker HOST:PORT
  live.py run --work DIR --engine-pid PID --grpc HOST:PORT --media HOST:PORT \
      --admin HOST:PORT --broker HOST:PORT --prometheus URL [--load-seconds N]

`topics` creates the Kafka topics the engine of .ci/prometheus-check reads
(before it starts). `run`:

1. drives the engine for a short while from background threads (gRPC Decide
   and BatchDecide with a caller token, Tencent RTA requests on several
   keep-alive connections, and Kafka events: behaviour, user vectors and media
   feedback), and meanwhile provokes, once each, what the dashboard and the
   alerts must show: admin auth failures (missing, invalid, forbidden), an
   operator blacklist entry, a control-topic command, a fraud report, a
   device over the request-rate rule, ids the media flags doubtful,
   placeholder and malformed ids, invalid gRPC and Tencent requests, pings,
   gRPC caller auth failures, a rejected and an accepted strategy reload, a
   recalibration, undecodable and invalid Kafka events (their dead letters go
   to /dev/full, so they fail), refused TLS files then a rotated certificate,
   connections over the media listener's cap, and accept() failures (the
   engine's open-file limit lowered for a second with prlimit);
2. evaluates through Prometheus's HTTP API (/api/v1/query), with the load
   still running:
   - the `instance` template variable (label values of its metric);
   - every dashboard query, with Grafana's variables replaced (the instance
     variable by the engine's real instance): it must parse, return at least
     one series, and at least one of them a number (a NaN-only panel shows
     nothing either);
   - every alert expression of alerts.yml: it must parse, and fire or stay
     quiet as EXPECT below says for this run; Prometheus's own rule
     evaluation (/api/v1/rules) must report every rule healthy;
3. stops the engine with SIGTERM: RtaNotReady's expression must see the
   drain (rta_ready 0), and RtaTargetDown's the dead target (up 0).

Exits 1 on any failure, after printing every result.
"""

import argparse
import hashlib
import http.client
import json
import math
import os
import pathlib
import random
import resource
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
sys.path.insert(0, str(ROOT / "scripts"))
import check_dashboard  # noqa: E402
from tencent_fixtures import compile_proto  # noqa: E402

TOPICS = {
    "tags": "pc.tags",
    "behaviour": "pc.behaviour",
    "feedback": "pc.feedback",
    "vectors": "pc.vectors",
    "control": "pc.control",
}
MODEL = "dt-check"
WRITE_TOKEN, READ_TOKEN = "pc-write-token", "pc-read-token"
DSP_TOKEN, SCOPED_TOKEN = "pc-dsp-token", "pc-scoped-token"
VECTOR_USERS = range(1, 601)      # users 1..600 get a model vector; the rest of the 3000 none
RATE_INTERVAL = "30s"             # $__rate_interval: the load of the last 30 s must show

# What each alert's expression returns in this run, with the load above:
# "fires" (at least one series), "quiet" (none), "any" (depends on the
# machine's speed). Every alert of alerts.yml must be listed.
EXPECT = {
    "RtaDecideLatencyHigh": "any",            # a debug build on a shared machine
    "RtaTencentDefaultAnswersHigh": "fires",  # tencent.max_in_flight = 1 under 4 concurrent clients
    "RtaInvalidRequestsHigh": "any",
    "RtaAcceptFailing": "fires",              # the open-file limit lowered for a second
    "RtaTargetDown": "quiet",                 # until the engine stops (checked after)
    "RtaNotReady": "quiet",                   # until SIGTERM (checked after)
    "RtaIngestLagHigh": "quiet",
    "RtaIngestLagGrowing": "quiet",
    "RtaIngestStalled": "quiet",
    "RtaIngestSkipsHigh": "any",
    "RtaDeadLettersFailing": "fires",         # dead letters go to /dev/full
    "RtaSnapshotStale": "quiet",
    "RtaSnapshotFailing": "any",              # a snapshot may fall in the prlimit second
    "RtaStrategyReloadRejected": "fires",     # one broken strategy file reloaded
    "RtaNoStrategies": "quiet",
    "RtaModelMiscalibrated": "any",
    "RtaBlacklistRefusalsSurge": "any",
    "RtaAdminAuthFailuresSurge": "fires",     # 160 refused admin requests
    "RtaTlsReloadFailing": "fires",           # a broken certificate file, then a good one
}

failures = []
notes = []


def fail(msg):
    failures.append(msg)
    print(f"   FAIL {msg}", flush=True)


def note(msg):
    notes.append(msg)
    print(f"   note: {msg}", flush=True)


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def now_ms():
    return int(time.time() * 1000)


# ------------------------------------------------------------------ Kafka
def cmd_topics(args):
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=args.broker)
    admin.create_topics([NewTopic(name=t, num_partitions=2, replication_factor=1) for t in TOPICS.values()])
    admin.close()
    print(f"   topics: {', '.join(TOPICS.values())} (2 partitions each)")


class Kafka:
    def __init__(self, broker):
        from kafka import KafkaProducer

        self.p = KafkaProducer(bootstrap_servers=broker, linger_ms=5)
        self.lock = threading.Lock()

    def send(self, kind, event, key=None):
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        with self.lock:
            self.p.send(TOPICS[kind], key=str(key).encode() if key is not None else None, value=value)

    def flush(self):
        with self.lock:
            self.p.flush(timeout=10)


# ------------------------------------------------------------------ the engine's APIs
class Engine:
    def __init__(self, args, pb_dir):
        import grpc

        sys.path.insert(0, pb_dir)
        from grpc_tools import protoc

        include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
        rc = protoc.main(["protoc", f"-I{ROOT}/proto", f"-I{include}", f"--python_out={pb_dir}",
                          f"--grpc_python_out={pb_dir}", "rta/v1/rta.proto"])
        if rc != 0:
            raise SystemExit("protoc failed on rta/v1/rta.proto")
        for d in ["rta", "rta/v1"]:
            open(os.path.join(pb_dir, d, "__init__.py"), "a").close()
        from rta.v1 import rta_pb2, rta_pb2_grpc

        self.grpc = grpc
        self.pb = rta_pb2
        self.tpb = compile_proto(str(ROOT / "proto"), "tencent/rta.proto", pb_dir)
        self.channel = grpc.insecure_channel(args.grpc)
        self.stub = rta_pb2_grpc.RtaServiceStub(self.channel)
        self.media = args.media
        self.admin_host, self.admin_port = args.admin.rsplit(":", 1)
        self.tls = ssl.create_default_context(cafile=os.path.join(args.work, "tls", "ca.crt"))
        self.pid = args.engine_pid

    # gRPC
    def device(self, md5hex):
        return self.pb.DeviceId(type=self.pb.DEVICE_ID_TYPE_IMEI_MD5, value=md5hex)

    def request(self, devices, rid="pc", strategies=(), exps=()):
        return self.pb.DecideRequest(request_id=rid, os=self.pb.OS_ANDROID, device_ids=[self.device(d) for d in devices],
                                     strategy_ids=list(strategies), experiment_ids=list(exps))

    def decide(self, devices, token=DSP_TOKEN, **kw):
        """take or no_take, or the gRPC status code's name."""
        md = [("authorization", f"Bearer {token}")] if token else []
        try:
            r = self.stub.Decide(self.request(devices, **kw), metadata=md, timeout=2)
            return "take" if r.take else "no_take"
        except self.grpc.RpcError as e:
            return e.code().name

    def batch(self, device_lists, token=DSP_TOKEN):
        md = [("authorization", f"Bearer {token}")]
        req = self.pb.BatchDecideRequest(requests=[self.request(d, rid=f"b{i}") for i, d in enumerate(device_lists)])
        try:
            self.stub.BatchDecide(req, metadata=md, timeout=2)
            return "OK"
        except self.grpc.RpcError as e:
            return e.code().name

    # Tencent
    def tencent_body(self, imei=None, oaid=None, ping=False, test=False, doubtful=(), exps=()):
        R = self.tpb.RtaRequest
        r = R(id=f"pc{random.getrandbits(32):08x}")
        if ping:
            r.is_ping = True
        if test:
            r.is_test = True
        r.device.os = R.OS_ANDROID
        if imei is not None:
            r.device.imei_md5sum = imei
            r.device.cached_deviceid_type = R.Device.IMEI_MD5
        if oaid is not None:
            r.device.oaid_md5sum = oaid
        for tag in doubtful:
            r.device.doubtful_ids_list.append(tag)
        for e in exps:
            r.exps.add(exp_id=e)
        return r.SerializeToString()

    def media_conn(self):
        host, port = self.media.rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=3)

    @staticmethod
    def post_tencent(conn, body):
        conn.request("POST", "/rta/tencent", body=body, headers={"content-type": "application/x-protobuf"})
        r = conn.getresponse()
        r.read()
        return r.status

    def tencent(self, body, tries=100):
        """The HTTP status of a request that was not shed: the background
        clients keep tencent.max_in_flight (1) busy, so a request may get the
        default answer (code 2) instead of a decision; it is sent again."""
        for _ in range(tries):
            conn = self.media_conn()
            try:
                conn.request("POST", "/rta/tencent", body=body, headers={"content-type": "application/x-protobuf"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                time.sleep(0.01)
                continue
            finally:
                conn.close()
            if r.status != 200 or self.tpb.RtaResponse.FromString(data).code != 2:
                return r.status
            time.sleep(0.01)
        return "shed every time"

    # admin (TLS)
    def admin(self, method, path, token=None, body=None):
        url = f"https://{self.admin_host}:{self.admin_port}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if token:
            req.add_header("authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metric(self, name):
        """The sum of a metric's samples on /metrics (straight from the engine)."""
        _, text = self.admin("GET", "/metrics")
        total = 0.0
        for line in text.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


# ------------------------------------------------------------------ background load
class Load:
    def __init__(self, eng, kafka, users):
        self.eng, self.kafka, self.users = eng, kafka, users
        self.stop = threading.Event()
        self.counts = {}
        self.lock = threading.Lock()
        self.threads = []

    def count(self, what):
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def pick_device(self, rng):
        x = rng.random()
        if x < 0.1:
            return md5(f"unknown-{rng.getrandbits(40)}")
        if x < 0.7:
            uid = rng.choice(VECTOR_USERS)
        else:
            uid = rng.randint(1, len(self.users))
        return self.users[uid][0]

    def grpc_worker(self, n):
        rng = random.Random(100 + n)
        i = 0
        while not self.stop.is_set():
            i += 1
            if i % 25 == 0:
                self.count("grpc batch " + self.eng.batch([[self.pick_device(rng)] for _ in range(5)]))
            else:
                self.count("grpc " + self.eng.decide([self.pick_device(rng)]))
            time.sleep(0.004)

    def tencent_worker(self, n):
        rng = random.Random(200 + n)
        conn = None
        i = 0
        while not self.stop.is_set():
            i += 1
            body = self.eng.tencent_body(imei=self.pick_device(rng), test=(i % 40 == 0))
            try:
                if conn is None:
                    conn = self.eng.media_conn()
                self.count(f"tencent {self.eng.post_tencent(conn, body)}")
            except (OSError, http.client.HTTPException) as e:
                # a shed answer, sent before the body is read, makes the
                # server close the connection now and then: reconnect
                self.count(f"tencent {type(e).__name__}")
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def kafka_worker(self):
        rng = random.Random(300)
        i = 0
        while not self.stop.is_set():
            i += 1
            uid = rng.choice(VECTOR_USERS)
            t = now_ms()
            self.kafka.send("behaviour", {"user_id": uid, "event_time_ms": t, "action": "browse", "category_id": 9987}, uid)
            self.kafka.send("feedback", {"user_id": uid, "event_time_ms": t, "kind": "exposure", "strategy_id": "scored", "media_id": "tencent"}, uid)
            if rng.random() < 0.25:
                self.kafka.send("feedback", {"user_id": uid, "event_time_ms": t, "kind": "click", "strategy_id": "scored", "media_id": "tencent"}, uid)
            if rng.random() < 0.05:
                self.kafka.send("feedback", {"user_id": uid, "event_time_ms": t, "kind": "conversion", "strategy_id": "scored", "media_id": "tencent"}, uid)
            if i % 10 == 0:
                self.kafka.send("vectors", vector(rng, uid), uid)
            if i % 20 == 0:
                u = 100000 + i
                self.kafka.send("tags", {"user_id": u, "event_time_ms": t, "version": 1,
                                         "set_tags": [{"system": "target_group", "value": "urban_family"}],
                                         "devices": [{"kind": "imei", "raw": f"86{u:013d}"}]}, u)
            self.count("kafka events")
            time.sleep(0.05)

    def start(self):
        for target, n in [(self.grpc_worker, 0), (self.grpc_worker, 1)] + [(self.tencent_worker, k) for k in range(4)]:
            self.threads.append(threading.Thread(target=target, args=(n,), daemon=True))
        self.threads.append(threading.Thread(target=self.kafka_worker, daemon=True))
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=5)


def vector(rng, uid):
    return {"user_id": uid, "event_time_ms": now_ms(), "model_version": MODEL,
            "values": [round(rng.uniform(0.0, 4.0), 3), round(rng.uniform(-1.0, 2.0), 3), 0.0, 0.0]}


# ------------------------------------------------------------------ provoked once each
def provoke(eng, kafka, users, work, pid):
    said = lambda what, got, want: (print(f"   {what}: {got}", flush=True) if got in want  # noqa: E731
                                    else note(f"{what}: got {got}, expected {' or '.join(map(str, want))}"))
    # admin auth failures: a few first (the counter is born), the surge later
    for _ in range(5):
        eng.admin("POST", "/strategies/reload")
    for _ in range(5):
        eng.admin("GET", "/strategies", token="not-a-token")
    st, _ = eng.admin("POST", "/strategies/reload", token=READ_TOKEN)
    said("admin: a read token POSTs a reload", st, [403])
    st, _ = eng.admin("GET", "/strategies", token=READ_TOKEN)
    said("admin: GET /strategies with the read token", st, [200])

    # blacklist: an operator entry, a control command, a fraud report
    x, y, z = users[7][0], users[8][0], users[9][0]
    st, _ = eng.admin("POST", "/blacklist", token=WRITE_TOKEN, body={"device": x, "ttl_seconds": 3600})
    said("admin: POST /blacklist (operator)", st, [200, 201])
    kafka.send("control", {"event_time_ms": now_ms(), "op": "add", "device": {"kind": "imei", "md5": y}, "ttl_seconds": 3600})
    kafka.send("feedback", {"device": {"kind": "imei", "md5": z}, "event_time_ms": now_ms(), "kind": "fraud", "strategy_id": "scored", "media_id": "tencent"})
    # Kafka events that are skipped (their dead letters fail: /dev/full)
    kafka.send("tags", b"\xff\xfe not an event")
    kafka.send("tags", {"user_id": 5, "event_time_ms": now_ms(), "version": 99,
                        "set_tags": [{"system": "target_group", "value": "no_such_group"}]}, 5)
    kafka.send("behaviour", {"user_id": 5, "event_time_ms": 1000, "action": "browse", "category_id": 9987}, 5)
    kafka.flush()

    # the request-rate rule (blacklist.max_requests_per_second = 40): 100 at
    # once (over gRPC, which sheds nothing), so that one wall-clock second
    # holds over 40 even when they straddle two
    q = users[10][0]
    answers = {}
    for _ in range(100):
        a = eng.decide([q])
        answers[a] = answers.get(a, 0) + 1
    print(f"   grpc: 100 requests of one device at once: {answers}")

    # ids: flagged doubtful by the media, a placeholder, a malformed one; pings; a test request
    T = eng.tpb.RtaRequest.Device
    said("tencent: an id the media flags doubtful", eng.tencent(eng.tencent_body(imei=users[11][0], doubtful=[T.IMEI_MD5_DOUBTFUL])), [200])
    said("tencent: the placeholder md5('')", eng.tencent(eng.tencent_body(imei=md5(""))), [200])
    said("tencent: a malformed imei beside a good oaid", eng.tencent(eng.tencent_body(imei="not-hex", oaid=users[12][0])), [200])
    for _ in range(5):
        eng.tencent(eng.tencent_body(ping=True))
    said("tencent: a body that is no RtaRequest", eng.tencent(b"\xff\xff\xff\xff garbage"), [400])

    # invalid gRPC requests, and gRPC caller auth failures
    said("grpc: the placeholder md5('')", eng.decide([md5("")]), ["no_take"])
    said("grpc: no device ids", eng.decide([]), ["INVALID_ARGUMENT"])
    said("grpc: a device id that is not 32 hex", eng.decide(["xyz"]), ["INVALID_ARGUMENT"])
    said("grpc: no token", eng.decide([users[1][0]], token=None), ["UNAUTHENTICATED"])
    said("grpc: an unknown token", eng.decide([users[1][0]], token="not-a-token"), ["UNAUTHENTICATED"])
    said("grpc: a scoped token asking for another strategy", eng.decide([users[1][0]], token=SCOPED_TOKEN, strategies=["capped"]), ["PERMISSION_DENIED"])
    said("grpc: the scoped token within its scope", eng.decide([users[1][0]], token=SCOPED_TOKEN), ["take", "no_take"])
    # the listed devices, refused
    time.sleep(1.0)
    for d, what in [(x, "operator"), (y, "control command"), (z, "fraud report"), (q, "request rate")]:
        said(f"grpc: the device listed by {what}", eng.decide([d]), ["no_take"])

    # strategies: a broken file rejected, then the good one again; a recalibration
    path = pathlib.Path(work) / "strategies.toml"
    good = path.read_text()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(good + "\n[[strategy]]\nid = \"broken\"\naudience = \"target_group in {\"\n")
    os.replace(tmp, path)
    st, body = eng.admin("POST", "/strategies/reload", token=WRITE_TOKEN)
    said("admin: reload of a broken strategy file", st, [422])
    tmp.write_text(good)
    os.replace(tmp, path)
    st, _ = eng.admin("POST", "/strategies/reload", token=WRITE_TOKEN)
    said("admin: reload of the good file", st, [200])
    st, _ = eng.admin("POST", "/calibration/recalibrate", token=WRITE_TOKEN)
    said("admin: POST /calibration/recalibrate", st, [200])

    # TLS on the admin listener: a file that is no certificate, then a new pair
    tls = pathlib.Path(work) / "tls"
    served = lambda: ssl.get_server_certificate((eng.admin_host, int(eng.admin_port)))  # noqa: E731
    first = served()
    (tls / "tls.crt.tmp").write_text("not a certificate\n")
    os.replace(tls / "tls.crt.tmp", tls / "tls.crt")
    time.sleep(2.5)
    (tls / "tls.key.tmp").write_bytes((tls / "next.key").read_bytes())
    (tls / "tls.crt.tmp").write_bytes((tls / "next.crt").read_bytes())
    os.replace(tls / "tls.key.tmp", tls / "tls.key")
    os.replace(tls / "tls.crt.tmp", tls / "tls.crt")
    time.sleep(2.5)
    rotated = served()
    if rotated == first:
        note("the admin listener still serves the first certificate after the rotation")
    else:
        print("   tls: a broken certificate file refused, then the new certificate served")

    # more admin auth failures: the surge
    for _ in range(150):
        eng.admin("GET", "/strategies", token="scanner-guess")
    print("   admin: 150 more requests with a wrong token")

    # connections over the media listener's cap (connections.max_media), left
    # silent until header_read_timeout_ms closes them
    host, port = eng.media.rsplit(":", 1)
    socks = []
    for _ in range(30):
        try:
            socks.append(socket.create_connection((host, int(port)), timeout=2))
        except OSError:
            pass
    time.sleep(1.5)
    for s in socks:
        s.close()
    print(f"   media: {len(socks)} silent connections opened over the cap, closed after 1.5 s")

    # accept() failures: the engine's open-file limit lowered to what it has open
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    before = eng.metric("rta_accept_errors_total")
    open_fds = len(os.listdir(f"/proc/{pid}/fd"))
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds, hard))
    socks = []
    try:
        for _ in range(8):
            try:
                socks.append(socket.create_connection((host, int(port)), timeout=2))
            except OSError:
                pass
        time.sleep(1.0)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    for s in socks:
        s.close()
    time.sleep(0.5)
    after = eng.metric("rta_accept_errors_total")
    print(f"   accept: open-file limit {open_fds} for a second: rta_accept_errors_total {before:g} -> {after:g}")


# ------------------------------------------------------------------ Prometheus
class Prom:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, **params):
        q = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def query(self, expr):
        return self.get("/api/v1/query", query=expr)


def values(result):
    out = []
    for s in result.get("data", {}).get("result", []):
        v = s.get("value", [0, "NaN"])[1]
        try:
            out.append(float(v))
        except ValueError:
            out.append(float("nan"))
    return out


def escape_regex(value):
    """A label value as a PromQL string holding a regex that matches only it."""
    return "".join("\\\\" + c if c in ".+*?()[]{}|^$\\" else c for c in value)


def evaluate_dashboard(prom, dash_path):
    dash = json.loads(pathlib.Path(dash_path).read_text())
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    inst = variables["instance"]
    q = inst["query"]["query"] if isinstance(inst["query"], dict) else inst["query"]
    metric, label = q[len("label_values("):-1].replace(" ", "").split(",")
    vals = prom.get(f"/api/v1/label/{label}/values", **{"match[]": metric}).get("data", [])
    if not vals:
        fail(f"dashboard variable instance: label_values({metric}, {label}) is empty")
        vals = [".*"]
    print(f"   variable instance = label_values({metric}, {label}) = {vals}")
    instance = escape_regex(vals[0]) if vals[0] != ".*" else ".*"
    subst = dict(check_dashboard.GRAFANA_VARS)
    subst["$__rate_interval"] = RATE_INTERVAL
    subst["$instance"] = instance
    n = 0
    for p in check_dashboard.panels_of(dash):
        if p.get("type") == "row":
            continue
        for t in p.get("targets", []):
            expr = t["expr"]
            for var in sorted(subst, key=len, reverse=True):
                expr = expr.replace(var, subst[var])
            r = prom.query(expr)
            what = f"panel {p.get('id')} {p.get('title')!r} {t.get('refId')}"
            n += 1
            if r.get("status") != "success":
                fail(f"{what}: {r.get('errorType')}: {r.get('error')}\n        {expr}")
                continue
            vs = values(r)
            finite = [v for v in vs if not math.isnan(v)]
            if not vs:
                fail(f"{what}: no series\n        {expr}")
            elif not finite:
                fail(f"{what}: {len(vs)} series, every value NaN\n        {expr}")
            else:
                print(f"   ok  {what}: {len(vs)} series")
    return n


def evaluate_alerts(prom, alerts_path):
    import yaml

    doc = yaml.safe_load(pathlib.Path(alerts_path).read_text())
    rules = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    names = [r["alert"] for r in rules]
    for name in sorted(set(names) - set(EXPECT)):
        fail(f"alert {name}: not in EXPECT of {__file__}: say whether this run fires it")
    for name in sorted(set(EXPECT) - set(names)):
        fail(f"EXPECT names {name}, which alerts.yml does not have")
    exprs = {}
    for r in rules:
        name, expr = r["alert"], r["expr"]
        exprs[name] = expr
        res = prom.query(expr)
        if res.get("status") != "success":
            fail(f"alert {name}: {res.get('errorType')}: {res.get('error')}")
            continue
        n = len(res["data"]["result"])
        want = EXPECT.get(name, "any")
        got = "fires" if n else "quiet"
        if want != "any" and want != got:
            fail(f"alert {name}: {got} ({n} series), expected {want} in this run")
        else:
            print(f"   ok  alert {name}: {got}" + (f" ({n} series)" if n else "") + ("" if want == "any" else " as expected"))
    # Prometheus's own evaluation of the rule file
    groups = prom.get("/api/v1/rules").get("data", {}).get("groups", [])
    loaded = {r["name"]: r for g in groups for r in g["rules"] if r.get("type") == "alerting"}
    for name in names:
        r = loaded.get(name)
        if r is None:
            fail(f"alert {name}: not loaded by Prometheus")
        elif r.get("health") != "ok":
            fail(f"alert {name}: rule health {r.get('health')}: {r.get('lastError')}")
    print(f"   Prometheus loaded {len(loaded)} alerting rules, health: "
          + ", ".join(sorted({r.get('health', '?') for r in loaded.values()})))
    return exprs


def wait_for(prom, expr, secs, what):
    deadline = time.time() + secs
    while time.time() < deadline:
        r = prom.query(expr)
        if r.get("status") == "success" and r["data"]["result"]:
            return True
        time.sleep(0.25)
    fail(what)
    return False


def cmd_run(args):
    import tempfile

    work = args.work
    users = {}
    for line in open(os.path.join(work, "users.jsonl")):
        rec = json.loads(line)
        users[rec["user_id"]] = rec["devices"]
    eng = Engine(args, tempfile.mkdtemp(prefix="pb-", dir=work))
    kafka = Kafka(args.broker)
    prom = Prom(args.prometheus)
    rng = random.Random(1)
    for uid in VECTOR_USERS:
        kafka.send("vectors", vector(rng, uid), uid)
    kafka.flush()

    t0 = time.time()
    load = Load(eng, kafka, users)
    load.start()
    print("== load: gRPC (2 clients), Tencent (4 keep-alive connections), Kafka events; then, once each:", flush=True)
    provoke(eng, kafka, users, work, args.engine_pid)
    rest = args.load_seconds - (time.time() - t0)
    if rest > 0:
        time.sleep(rest)
    print(f"   after {time.time() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(load.counts.items())), flush=True)

    print(f"== dashboard queries through {args.prometheus}/api/v1/query ($__rate_interval = {RATE_INTERVAL})", flush=True)
    n = evaluate_dashboard(prom, args.dashboard)
    print("== alert expressions", flush=True)
    exprs = evaluate_alerts(prom, args.alerts)
    load.finish()

    print("== SIGTERM: the readiness alerts must see the drain and the dead target", flush=True)
    os.kill(args.engine_pid, signal.SIGTERM)
    if wait_for(prom, exprs["RtaNotReady"], 10, "RtaNotReady's expression never saw rta_ready 0 while the engine drained"):
        print("   ok  RtaNotReady's expression fires while the engine drains")
    deadline = time.time() + 60
    while os.path.exists(f"/proc/{args.engine_pid}") and time.time() < deadline:
        time.sleep(0.2)
    if wait_for(prom, exprs["RtaTargetDown"], 15, "RtaTargetDown's expression never fired after the engine exited"):
        print("   ok  RtaTargetDown's expression fires once the engine is gone")

    print(f"== {n} dashboard queries, {len(exprs)} alert expressions; {len(failures)} failure(s), {len(notes)} note(s)")
    if failures:
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr)
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("topics")
    t.add_argument("--broker", required=True)
    r = sub.add_parser("run")
    r.add_argument("--work", required=True)
    r.add_argument("--engine-pid", type=int, required=True)
    r.add_argument("--grpc", required=True)
    r.add_argument("--media", required=True)
    r.add_argument("--admin", required=True)
    r.add_argument("--broker", required=True)
    r.add_argument("--prometheus", required=True)
    r.add_argument("--dashboard", default=str(ROOT / "deploy/grafana/rta-engine.json"))
    r.add_argument("--alerts", default=str(ROOT / "deploy/prometheus/alerts.yml"))
    r.add_argument("--load-seconds", type=float, default=30)
    args = ap.parse_args()
    {"topics": cmd_topics, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
