#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/: a handful of small,
valid inputs per target, from the repository's own fixtures and from
messages encoded here with Google's protobuf runtime, so that fuzzing starts
from the formats' real shapes. The output is committed; rerun this after a
schema change.

Needs: pip install protobuf grpcio-tools   (as scripts/tencent_fixtures.py)
Usage: python3 fuzz/seeds.py
"""

import glob
import importlib
import json
import os
import shutil
import sys
import tempfile

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
CORPUS = os.path.join(FUZZ, "corpus")

# "Now" of the fuzz targets (fuzz/src/lib.rs NOW_MS): 2026-01-01T00:00:00Z
NOW_MS = 1_767_225_600_000
T = NOW_MS - 1000

# kafka_event's first byte: kind * 4 + format
KINDS = ["tags", "behaviour", "feedback", "identity", "vectors", "control"]
FORMATS = ["protobuf", "json", "protobuf-delimited", "json-lines"]

MD5 = "e10adc3949ba59abbe56e057f20f883e"


def compile_proto(rel_path, tmp):
    from grpc_tools import protoc

    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    proto = os.path.join(ROOT, "proto")
    if protoc.main(["protoc", f"-I{proto}", f"-I{include}", f"--python_out={tmp}", rel_path]):
        raise SystemExit(f"protoc failed on {rel_path}")
    if tmp not in sys.path:
        sys.path.insert(0, tmp)
    return importlib.import_module(rel_path[: -len(".proto")].replace("/", ".") + "_pb2")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def uncommented(text):
    """TOML without its comment-only and blank lines (smaller seeds)."""
    lines = text.decode().splitlines()
    return "".join(l + "\n" for l in lines if l.strip() and not l.lstrip().startswith("#"))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def event(kind, fmt, body):
    return bytes([KINDS.index(kind) * 4 + FORMATS.index(fmt)]) + body


def main():
    shutil.rmtree(CORPUS, ignore_errors=True)
    tmp = tempfile.mkdtemp()
    rta = compile_proto("rta/v1/rta.proto", tmp)
    ev = compile_proto("rta/v1/events.proto", tmp)

    # Tencent: request bodies written by this runtime for tests/tencent.rs
    for case in ["match_imei", "caid", "doubtful_flagged", "is_test",
                 "malformed_and_empty_ids", "unknown_fields", "ping"]:
        write("tencent_request", case, read(f"tests/fixtures/tencent/{case}.bin"))

    # Ocean Engine (selector byte 0) and Meituan (1): the bodies written by this
    # runtime for tests/media.rs (scripts/media_fixtures.py)
    for selector, media, prefix in [(b"\x00", "oceanengine", "oe"), (b"\x01", "meituan", "mt")]:
        for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", media, "*.bin"))):
            case = os.path.basename(path)[: -len(".bin")]
            if case == "too_many_rta_ids":
                continue  # 50 KB of ids: the mutator finds the bound from a few
            write("media_request", f"{prefix}_{case}", selector + read(f"tests/fixtures/{media}/{case}.bin"))

    # gRPC DecideRequest
    def decide(**kw):
        ids = kw.pop("ids", [])
        r = rta.DecideRequest(**kw)
        for t, v in ids:
            r.device_ids.add(type=t, value=v)
        return r.SerializeToString()

    write("decide_request", "imei", decide(
        request_id="r-1", os=rta.OS_ANDROID, media_id="tencent",
        ids=[(rta.DEVICE_ID_TYPE_IMEI_MD5, MD5)]))
    write("decide_request", "ios_filtered", decide(
        request_id="r-2", os=rta.OS_IOS, slot_id="slot-9", experiment_ids=[900, 12],
        strategy_ids=["high_intent_formula"],
        ids=[(rta.DEVICE_ID_TYPE_IDFA_MD5, "25d55ad283aa400af464c76d713c07ad"),
             (rta.DEVICE_ID_TYPE_CAID, "0123456789abcdef0123456789abcdef")]))
    write("decide_request", "oaid_raw", decide(
        os=rta.OS_HARMONY, ids=[(rta.DEVICE_ID_TYPE_OAID_RAW, "a1b2c3d4-oaid")]))
    write("decide_request", "no_device", decide())

    # audiences: each kind of predicate, nested
    for name, text in [
        ("tags", "target_group in {urban_family, town_family} and not scene == new_parent"),
        ("window", "cart(category 1319, 7d) and not buy(category 1319, 30d)"),
        ("count_range", "browse(category 9987, 3d..10d) >= 3 or buy(brand 8557, 180d) in 2..5"),
        ("demographics", "age in 25..40 and gender == female and children == yes"),
        ("state_os", "(four_a(brand 8557) >= appeal or clv(sku 42) == high) and os in {android, ios}"),
        ("comment", "# high intent\nvalue_group != l0\n  and purchasing_power > 2"),
    ]:
        write("audience", name, text)

    # strategy files: the demo set and the intelligence fixtures (scores,
    # caps, experiments)
    write("strategy_file", "demo.toml", uncommented(read("deploy/demo/strategies.toml")))
    write("strategy_file", "intel.toml", uncommented(read("tests/fixtures/intel/strategies.toml")))

    # Kafka events, one protobuf message per kind, JSON for four, and a batch
    # of each batch format
    def tag_update(user, version, value):
        m = ev.TagUpdate(user_id=user, event_time_ms=NOW_MS - 60_000, version=version,
                         replace_systems=["target_group"])
        m.set_tags.add(system="target_group", value=value)
        m.demographics.add(name="age", number=31)
        m.demographics.add(name="gender", label="female")
        m.item_states.add(scope=ev.ITEM_SCOPE_BRAND, id=8557, four_a="appeal", clv="high")
        m.devices.add(md5=MD5)
        return m.SerializeToString()

    feedback = ev.FeedbackEvent(event_time_ms=T, kind=ev.FEEDBACK_KIND_CLICK,
                                strategy_id="high_intent_formula", media_id="tencent")
    feedback.device.md5 = MD5
    identity = ev.IdentityEvent(event_time_ms=T, change=ev.IDENTITY_CHANGE_LINK, user_id=8)
    identity.device.md5 = MD5
    for kind, body in [
        ("tags", tag_update(7, 1, "urban_family")),
        ("behaviour", ev.BehaviourEvent(user_id=7, event_time_ms=T, action=ev.ACTION_CART,
                                        category_id=1319, brand_id=8557).SerializeToString()),
        ("feedback", feedback.SerializeToString()),
        ("identity", identity.SerializeToString()),
        ("vectors", ev.UserVector(user_id=7, event_time_ms=T, model_version="dssm-2026-01",
                                  values=[0.5, -0.25, 0.125, 1.0]).SerializeToString()),
        ("control", ev.BlacklistCommand(event_time_ms=T, op=ev.BLACKLIST_OP_ADD, user_id=9,
                                        reason="operator", ttl_seconds=3600).SerializeToString()),
    ]:
        write("kafka_event", f"{kind}.pb", event(kind, "protobuf", body))
    batch = b"".join(varint(len(m)) + m for m in
                     [tag_update(7, 1, "urban_family"), tag_update(7, 2, "town_family")])
    write("kafka_event", "tags.delimited", event("tags", "protobuf-delimited", batch))
    for kind, obj in [
        ("tags", {"user_id": 7, "event_time_ms": T, "version": 3,
                  "replace_systems": ["target_group"],
                  "set_tags": [{"system": "target_group", "value": "urban_family"}],
                  "item_states": [{"scope": "category", "id": 1319, "four_a": "act"}],
                  "devices": [{"kind": "imei", "raw": "860000000000001"}]}),
        ("feedback", {"user_id": 7, "event_time_ms": T, "kind": "exposure",
                      "strategy_id": "repurchase_diapers"}),
        ("identity", {"event_time_ms": T, "change": "delete_user", "user_id": 7}),
        ("control", {"event_time_ms": T, "op": "remove",
                     "device": {"md5": "25d55ad283aa400af464c76d713c07ad"}}),
    ]:
        write("kafka_event", f"{kind}.json", event(kind, "json", json.dumps(obj).encode()))
    lines = (json.dumps({"user_id": 7, "event_time_ms": T, "action": "browse", "sku_id": 42})
             + "\n\n"
             + json.dumps({"user_id": 7, "event_time_ms": T, "action": 5, "category_id": 1525})
             + "\r\n")
    write("kafka_event", "behaviour.jsonl", event("behaviour", "json-lines", lines.encode()))

    # user records: the golden population's first lines, the intelligence
    # fixtures' (vectors, feedback), and a bare device id
    golden = read("tests/fixtures/golden_users.jsonl").decode().splitlines()
    for i, line in enumerate(golden[:4]):
        write("user_record", f"golden{i + 1}.jsonl", line)
    intel = read("tests/fixtures/intel/users.jsonl").decode().splitlines()
    for i, line in enumerate(intel[:2]):
        write("user_record", f"intel{i + 1}.jsonl", line)
    write("user_record", "device_raw", "raw:oaid:a1b2c3d4-oaid")

    # config files: the shipped ones
    write("config", "serve.toml", uncommented(read("deploy/rta-engine.toml")))
    write("config", "kafka.toml", uncommented(read("deploy/rta-engine-kafka.toml")))
    shutil.rmtree(tmp)
    print(f"seeds written under {CORPUS}")


if __name__ == "__main__":
    main()
