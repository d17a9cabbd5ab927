#!/usr/bin/env python3
"""End-to-end: a standalone Kafka-protocol broker (tansu), events produced by
kafka-python (a client that is not ours), effects checked through gRPC Decide
with Google's grpcio, across a kill -9 and restart of the engine.

Run by .ci/e2e-kafka, which installs tansu and the Python packages:
    python3 tests/e2e/kafka_e2e.py --engine target/debug/rta-engine --broker 127.0.0.1:19092
"""
import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate_stubs(out):
    from grpc_tools import protoc
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    for proto in ["rta/v1/rta.proto", "rta/v1/events.proto"]:
        rc = protoc.main(["protoc", f"-I{ROOT}/proto", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
        if rc != 0:
            sys.exit(f"protoc failed on {proto}")
    for d in ["rta", "rta/v1"]:
        open(os.path.join(out, d, "__init__.py"), "a").close()
    sys.path.insert(0, out)


def imei_md5(imei):
    return hashlib.md5(imei.lower().encode()).hexdigest()


def wait_ready(port, proc, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"engine exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit("engine never became ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--broker", required=True)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="rta-e2e-")
    generate_stubs(work)
    import grpc
    from rta.v1 import events_pb2, rta_pb2, rta_pb2_grpc

    suffix = str(int(time.time()))
    topics = {"tags": f"e2e.tags.{suffix}", "behaviour": f"e2e.behaviour.{suffix}", "identity": f"e2e.identity.{suffix}"}
    admin = KafkaAdminClient(bootstrap_servers=args.broker)
    admin.create_topics([NewTopic(name=t, num_partitions=3, replication_factor=1) for t in topics.values()])

    grpc_port, http_port = 50800 + int(suffix) % 100, 50900 + int(suffix) % 100
    admin_port = 51000 + int(suffix) % 100
    config = os.path.join(work, "engine.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
grpc_addr = "127.0.0.1:{grpc_port}"
http_addr = "127.0.0.1:{http_port}"
admin_addr = "127.0.0.1:{admin_port}"
[kafka]
brokers = "{args.broker}"
group_id = "e2e-{suffix}"
ready_max_lag = 0
topics = [
  {{ name = "{topics['tags']}", kind = "tags", format = "json" }},
  {{ name = "{topics['behaviour']}", kind = "behaviour" }},
  {{ name = "{topics['identity']}", kind = "identity" }},
]
[kafka.dead_letter]
file = "{work}/dead.jsonl"
[snapshot]
dir = "{work}/snapshots"
interval_secs = 1
[time]
tz_offset_hours = 8
""")
    log = open(os.path.join(work, "engine.log"), "ab")

    def start():
        p = subprocess.Popen([args.engine, "serve", "--config", config], stdout=log, stderr=log)
        wait_ready(http_port, p)
        return p

    engine = start()
    producer = KafkaProducer(bootstrap_servers=args.broker)
    now = int(time.time() * 1000)
    users = {501: imei_md5("860000000000501"), 502: imei_md5("860000000000502")}
    for user, md5 in users.items():
        tags = {"user_id": user, "event_time_ms": now, "version": 1,
                "set_tags": [{"system": "target_group", "value": "urban_family"}],
                "devices": [{"kind": "imei", "md5": md5}]}
        producer.send(topics["tags"], key=str(user).encode(), value=json.dumps(tags).encode())
        cart = events_pb2.BehaviourEvent(user_id=user, event_time_ms=now, action=events_pb2.ACTION_CART, category_id=1319)
        producer.send(topics["behaviour"], key=str(user).encode(), value=cart.SerializeToString())
    producer.send(topics["behaviour"], key=b"x", value=b"\xff\xfe poison")
    producer.flush()

    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
    stub = rta_pb2_grpc.RtaServiceStub(channel)

    def decide(user):
        req = rta_pb2.DecideRequest(request_id=f"e2e-{user}", os=rta_pb2.OS_ANDROID,
                                    device_ids=[rta_pb2.DeviceId(type=rta_pb2.DEVICE_ID_TYPE_IMEI_MD5, value=users[user])])
        return [m.strategy_id for m in stub.Decide(req, timeout=2).matches]

    def eventually(cond, what, limit=30):
        deadline = time.time() + limit
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.05)
        sys.exit(f"FAILED: {what}")

    checks = 0
    eventually(lambda: decide(501) == ["high_intent_formula"] and decide(502) == ["high_intent_formula"], "events reach Decide")
    checks += 1
    delete = events_pb2.IdentityEvent(event_time_ms=int(time.time() * 1000), change=events_pb2.IDENTITY_CHANGE_DELETE_USER, user_id=502)
    producer.send(topics["identity"], key=b"502", value=delete.SerializeToString())
    producer.flush()
    eventually(lambda: decide(502) == [], "a deletion is effective at once")
    checks += 1
    eventually(lambda: os.path.exists(f"{work}/dead.jsonl") and "undecodable" in open(f"{work}/dead.jsonl").read(), "the poisoned message is dead-lettered")
    checks += 1

    engine.send_signal(signal.SIGKILL)
    engine.wait()
    engine = start()
    if decide(501) != ["high_intent_formula"] or decide(502) != []:
        sys.exit(f"FAILED: state after kill -9 and restart: 501={decide(501)} 502={decide(502)}")
    checks += 1
    # still consuming after the restart
    cart = events_pb2.BehaviourEvent(user_id=501, event_time_ms=int(time.time() * 1000), action=events_pb2.ACTION_BUY, category_id=1319)
    producer.send(topics["behaviour"], key=b"501", value=cart.SerializeToString())
    producer.flush()
    eventually(lambda: decide(501) == [], "a purchase after the restart ends high intent")
    checks += 1
    engine.send_signal(signal.SIGTERM)
    if engine.wait(timeout=30) != 0:
        sys.exit("FAILED: engine did not stop cleanly")
    print(f"kafka e2e: {checks} passed, 0 failed")


if __name__ == "__main__":
    main()
