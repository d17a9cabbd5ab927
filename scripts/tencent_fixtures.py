#!/usr/bin/env python3
"""Golden fixtures for the Tencent RTA endpoint, written with Google's protobuf
runtime for Python: an implementation independent of the engine's (prost).

For each case it writes into tests/fixtures/tencent/:
  <case>.bin            the HTTP request body (an encoded tencent.ad.rta.RtaRequest,
                        or deliberately broken bytes)
  <case>.expected.json  the HTTP status and, for 200, the RtaResponse fields the
                        engine must answer, as json_format.MessageToDict writes them
                        (proto field names); fields listed in "varying" must be
                        present with any value, every other field must be absent.

The expected answers are worked out by hand from tests/fixtures/golden_users.jsonl
and the demo strategies (deploy/demo/strategies.toml); tests/fixtures/README.md
has the reasoning. tests/tencent.rs sends every .bin to a live node and checks the
answer with prost; scripts/tencent_check.py decodes the answers the test dumped
(RTA_TENCENT_DUMP_DIR) with this runtime again, so that both implementations agree.

Needs: pip install protobuf grpcio-tools   (grpc_tools.protoc compiles the schema)
Usage: python3 scripts/tencent_fixtures.py [OUT_DIR]
"""

import hashlib
import importlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_DIR = os.path.join(ROOT, "proto")
DEFAULT_OUT = os.path.join(ROOT, "tests", "fixtures", "tencent")

# A newer version of the media's schema, with fields ours lacks (numbers that are
# free or retired in proto/tencent/rta.proto), to prove that unknown fields of
# every wire type are skipped, at the top level and inside Device.
FUTURE_PROTO = """
syntax = "proto2";
package fixtures.future;
message Device {
  optional int32 os = 1;
  optional string imei_md5sum = 3;
  optional string retired_raw_oaid = 8;
  optional uint64 future_varint = 50;
  optional fixed32 future_fixed32 = 51;
  message Nested { optional string a = 1; repeated sint64 b = 2; }
  optional Nested future_message = 52;
}
message RtaRequest {
  optional string id = 1;
  optional Device device = 5;
  optional string retired_string = 7;
  optional fixed64 future_fixed64 = 100;
  repeated uint32 future_packed = 101 [packed = true];
  optional double future_double = 102;
}
"""


def compile_proto(proto_root, rel_path, tmp):
    """Compiles one .proto with grpc_tools.protoc and imports the _pb2 module."""
    from grpc_tools import protoc

    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        ["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={tmp}", rel_path]
    )
    if rc != 0:
        raise SystemExit(f"protoc failed on {rel_path}")
    if tmp not in sys.path:
        sys.path.insert(0, tmp)
    module = rel_path[: -len(".proto")].replace("/", ".") + "_pb2"
    return importlib.import_module(module)


def load_rta_pb2(tmp):
    """The Python classes of proto/tencent/rta.proto."""
    return compile_proto(PROTO_DIR, "tencent/rta.proto", tmp)


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def imei_md5(imei):
    return md5(imei.lower())


def idfa_md5(idfa):
    return md5(idfa.upper())


def dsp_tag(strategy_id):
    """The engine's dsp_tag_str rule: the id when it fits 20 bytes, else its
    first 11 bytes, "~", and 8 hex characters of md5(id)."""
    if len(strategy_id.encode()) <= 20:
        return strategy_id
    return strategy_id[:11] + "~" + md5(strategy_id)[:8]


# The golden population (tests/fixtures/golden_users.jsonl).
USER1_IMEI = imei_md5("860000000000001")
USER3_IMEI = imei_md5("860000000000003")
UNKNOWN_IMEI = imei_md5("869999999999999")
USER7_OAID = md5("oaid-of-user-7")
USER9_IDFA = idfa_md5("6d92078a-8246-4ba4-ae5b-76104861e7dc")
USER9_CAID = "5f1d3a9c7e2b4d6f8a0c1e3b5d7f9a09"
UNKNOWN_CAID = "0f0e0d0c0b0a09080706050403020100"

# The demo strategies they match: (strategy id, target id, bid factor).
HIGH_INTENT_FORMULA = ("high_intent_formula", "90001", 1.8)
BRAND_CROSS_CATEGORY = ("new_customer_brand_cross_category", "90005", 1.5)
DIAPERS_TO_FORMULA = ("new_customer_diapers_to_formula", "90006", 1.2)
GOAL_URBAN_FITNESS = ("goal_urban_fitness", "90007", 1.25)


def take(request_id, *strategies):
    """The expected answer when `strategies` matched (demo cache: 300 s)."""
    return {
        "request_id": request_id,
        "code": 0,
        "out_target_id": [t for _, t, _ in strategies],
        "target_infos": [
            {"out_target_id": t, "user_weight_factor": f, "dsp_tag_str": dsp_tag(s)}
            for s, t, f in strategies
        ],
        "response_cache_time": 300,
    }


def refuse(request_id, cache_seconds):
    r = {"request_id": request_id, "code": 1}
    if cache_seconds is not None:
        r["response_cache_time"] = cache_seconds
    return r


def cases(pb, future_pb):
    R = pb.RtaRequest
    D = R.Device

    def request(name, os_=R.OS_ANDROID, **device):
        req = R(id=f"fx-{name}")
        req.device.os = os_
        for k, v in device.items():
            if k == "qaid_infos":
                for info in v:
                    req.device.qaid_infos.add(**info)
            elif k == "doubtful_ids_list":
                req.device.doubtful_ids_list.extend(v)
            else:
                setattr(req.device, k, v)
        return req

    out = {}

    r = request("match_imei", imei_md5sum=USER1_IMEI, cached_deviceid_type=D.IMEI_MD5, ip="10.1.2.3")
    r.exps.add(exp_id=32768)
    r.exps.add(exp_id=32770)
    out["match_imei"] = (r, take(r.id, HIGH_INTENT_FORMULA))

    r = request(
        "match_oaid_two_strategies",
        imei_md5sum=UNKNOWN_IMEI,
        oaid_md5sum=USER7_OAID,
        cached_deviceid_type=D.OAID_MD5,
    )
    out["match_oaid_two_strategies"] = (
        r,
        take(r.id, BRAND_CROSS_CATEGORY, DIAPERS_TO_FORMULA),
    )

    r = request("no_match_known_user", imei_md5sum=USER3_IMEI)
    out["no_match_known_user"] = (r, refuse(r.id, 600))

    r = request("unknown_device", imei_md5sum=UNKNOWN_IMEI)
    out["unknown_device"] = (r, refuse(r.id, 1800))

    r = request("ping", imei_md5sum=USER1_IMEI)
    r.is_ping = True
    out["ping"] = (r, {"request_id": r.id, "code": 0})

    r = request("is_test", imei_md5sum=USER1_IMEI)
    r.is_test = True
    out["is_test"] = (r, take(r.id, HIGH_INTENT_FORMULA))

    # user 1's real IMEI, but the media says it is doubtful: no usable id left,
    # so nothing matches and no cache time may be sent
    r = request(
        "doubtful_flagged",
        imei_md5sum=USER1_IMEI,
        doubtful_ids_list=[D.IMEI_MD5_DOUBTFUL],
        cached_deviceid_type=D.NIL,
    )
    out["doubtful_flagged"] = (r, refuse(r.id, None))

    # CAID: an unknown CAID version first, user 9's CAID second
    r = request(
        "caid",
        os_=R.OS_IOS,
        cached_deviceid_type=D.QAID,
        qaid_infos=[
            {"version": 20220111, "qaid": UNKNOWN_CAID},
            {"version": 20230330, "qaid": USER9_CAID, "origin_version": "20230330"},
        ],
    )
    out["caid"] = (r, take(r.id, GOAL_URBAN_FITNESS))

    # empty strings are absent ids, a malformed id is ignored: user 9's IDFA decides
    r = request(
        "malformed_and_empty_ids",
        os_=R.OS_IOS,
        imei_md5sum="",
        oaid_md5sum="not-an-md5",
        android_id_md5sum="",
        idfa_md5sum=USER9_IDFA,
    )
    out["malformed_and_empty_ids"] = (r, take(r.id, GOAL_URBAN_FITNESS))

    # a newer schema's request: same answer as match_imei
    f = future_pb.RtaRequest(id="fx-unknown_fields")
    f.device.os = R.OS_ANDROID
    f.device.imei_md5sum = USER1_IMEI
    f.device.retired_raw_oaid = "raw-oaid-value"
    f.device.future_varint = 2**63 + 5
    f.device.future_fixed32 = 7
    f.device.future_message.a = "nested"
    f.device.future_message.b.extend([-1, 2, -3])
    f.retired_string = "retired"
    f.future_fixed64 = 2**64 - 1
    f.future_packed.extend([1, 300, 70000])
    f.future_double = 0.5
    out["unknown_fields"] = (f, take(f.id, HIGH_INTENT_FORMULA))
    return out


def broken_bodies(pb, valid):
    """Bodies that are not an RtaRequest; each is checked to fail Google's parser too."""
    bodies = {
        # a valid request cut inside its last length-delimited field
        "truncated": valid[:-7],
        # text: 't' (0x74) is field 14 with wire type 4, an unmatched end-group
        "garbage": b"this is not protobuf",
    }
    for name, body in bodies.items():
        try:
            pb.RtaRequest.FromString(body)
        except Exception:  # google.protobuf.message.DecodeError
            continue
        raise SystemExit(f"{name}: Google's parser accepts it; pick a body that is invalid")
    return bodies


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_rta_pb2(tmp)
        with open(os.path.join(tmp, "future.proto"), "w") as fh:
            fh.write(FUTURE_PROTO)
        future_pb = compile_proto(tmp, "future.proto", tmp)
        written = []
        all_cases = cases(pb, future_pb)
        for name, (msg, expected) in all_cases.items():
            body = msg.SerializeToString(deterministic=True)
            if name == "unknown_fields":
                # Google's parser keeps what it does not know as unknown fields
                parsed = pb.RtaRequest.FromString(body)
                assert parsed.device.imei_md5sum == USER1_IMEI
                assert parsed.SerializeToString(deterministic=True) != b""
            write(out_dir, name, body, 200, expected, [] if name == "ping" else ["processing_time_ms"])
            written.append(name)
        valid = all_cases["match_imei"][0].SerializeToString(deterministic=True)
        for name, body in broken_bodies(pb, valid).items():
            write(out_dir, name, body, 400, None, [])
            written.append(name)
    print(f"wrote {len(written)} cases to {out_dir}: {', '.join(written)}")


def write(out_dir, name, body, status, response, varying):
    with open(os.path.join(out_dir, f"{name}.bin"), "wb") as fh:
        fh.write(body)
    expected = {
        "request": f"{name}.bin",
        "http_status": status,
        "response": response,
        "varying": varying,
    }
    with open(os.path.join(out_dir, f"{name}.expected.json"), "w") as fh:
        json.dump(expected, fh, indent=2, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main()
