#!/usr/bin/env python3
"""Golden fixtures for the Ocean Engine and Meituan RTA endpoints, written with
Google's protobuf runtime for Python (independent of the engine's prost), as
scripts/tencent_fixtures.py does for Tencent.

For each case it writes into tests/fixtures/<media>/:
  <case>.bin            the HTTP request body (an encoded request, or broken bytes)
  <case>.expected.json  the HTTP status and, for 200, the response as
                        json_format.MessageToDict writes it (proto field names;
                        proto3 leaves out default values, int64 is a string);
                        fields listed in "varying" must be present with any
                        non-negative integer, every other field must be as given.

The expected answers follow from tests/fixtures/golden_users.jsonl and the demo
strategies (deploy/demo/strategies.toml: each strategy's Ocean Engine rta_id and
Meituan promotion_target_id is its Tencent target id); tests/fixtures/README.md
has the table. tests/media.rs sends every .bin to a live node and checks the answer
with prost; scripts/media_check.py decodes the answers the test dumped
(RTA_MEDIA_DUMP_DIR) with Google's runtime again.

Needs: pip install protobuf grpcio-tools
Usage: python3 scripts/media_fixtures.py [FIXTURE_ROOT]
"""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tencent_fixtures import (  # noqa: E402
    PROTO_DIR,
    UNKNOWN_IMEI,
    USER1_IMEI,
    USER3_IMEI,
    USER9_CAID,
    USER9_IDFA,
    compile_proto,
    md5,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ROOT = os.path.join(ROOT, "tests", "fixtures")

USER1_RAW_IMEI = "860000000000001"
USER7_RAW_OAID = "oaid-of-user-7"
USER9_RAW_IDFA = "6d92078a-8246-4ba4-ae5b-76104861e7dc"

# demo strategies by their numeric media id: (id, bid factor)
HIGH_INTENT_FORMULA = (90001, 1.8)
PHONE_BROWSERS = (90002, 1.4)
BRAND_CROSS_CATEGORY = (90005, 1.5)
DIAPERS_TO_FORMULA = (90006, 1.2)
GOAL_URBAN_FITNESS = (90007, 1.25)
NOBODYS_ID = 424242


def load(tmp, rel):
    return compile_proto(PROTO_DIR, rel, tmp)


# ------------------------------------------------------------- Ocean Engine
def oe_answer(req_id, asked, taken, cache):
    """The expected Rsp: one UserInfo per asked id (`taken` maps id -> factor)."""
    infos = []
    for rta_id in asked:
        info = {"rta_id": str(rta_id)}
        if rta_id in taken:
            info["is_interested"] = True
            info["user_scores"] = [{"user_type": "PRICE_COEF", "quality": taken[rta_id]}]
        infos.append(info)
    rsp = {"req_id": req_id, "user_infos": infos, "bid_type": 0}
    if cache:
        rsp["cache_time_secs"] = cache
    return rsp


def oe_cases(pb):
    out = {}

    def req(name, rta_ids, **fields):
        r = pb.Req(req_id=f"oe-{name}", source="fixtures", slot_id=7001)
        r.rta_ids.extend(rta_ids)
        for k, v in fields.items():
            if k == "device":
                for dk, dv in v.items():
                    setattr(r.device, dk, dv)
            else:
                setattr(r, k, v)
        return r

    asked = [HIGH_INTENT_FORMULA[0], PHONE_BROWSERS[0], NOBODYS_ID]
    r = req("did_imei_md5", asked, platform=pb.ANDROID, did=USER1_IMEI, did_type=pb.IMEI_MD5)
    out["did_imei_md5"] = (r, oe_answer(r.req_id, asked, dict([HIGH_INTENT_FORMULA]), 300))

    r = req("did_raw_imei", asked, platform=pb.ANDROID, did=USER1_RAW_IMEI, did_type=pb.IMEI)
    out["did_raw_imei"] = (r, oe_answer(r.req_id, asked, dict([HIGH_INTENT_FORMULA]), 300))

    asked7 = [BRAND_CROSS_CATEGORY[0], DIAPERS_TO_FORMULA[0], HIGH_INTENT_FORMULA[0]]
    r = req("device_raw_oaid", asked7, platform=pb.ANDROID, device={"oaid": USER7_RAW_OAID})
    out["device_raw_oaid"] = (
        r,
        oe_answer(r.req_id, asked7, dict([BRAND_CROSS_CATEGORY, DIAPERS_TO_FORMULA]), 300),
    )

    r = req("no_rta_ids", [], platform=pb.ANDROID, device={"oaid": USER7_RAW_OAID})
    both = [BRAND_CROSS_CATEGORY[0], DIAPERS_TO_FORMULA[0]]
    out["no_rta_ids"] = (
        r,
        oe_answer(r.req_id, both, dict([BRAND_CROSS_CATEGORY, DIAPERS_TO_FORMULA]), 300),
    )

    asked9 = [GOAL_URBAN_FITNESS[0]]
    r = req("device_raw_idfa", asked9, platform=pb.IOS, device={"idfa": USER9_RAW_IDFA})
    out["device_raw_idfa"] = (r, oe_answer(r.req_id, asked9, dict([GOAL_URBAN_FITNESS]), 300))

    r = req(
        "device_caid",
        asked9,
        platform=pb.IOS,
        device={"caid": USER9_CAID, "caid1": "0f0e0d0c0b0a09080706050403020100"},
    )
    out["device_caid"] = (r, oe_answer(r.req_id, asked9, dict([GOAL_URBAN_FITNESS]), 300))

    # user 1 is known, but only an id no strategy carries is asked about
    r = req("unknown_rta_id", [NOBODYS_ID], did=USER1_IMEI, did_type=pb.IMEI_MD5)
    out["unknown_rta_id"] = (r, oe_answer(r.req_id, [NOBODYS_ID], {}, 600))

    r = req("known_no_match", asked, did=USER3_IMEI, did_type=pb.IMEI_MD5)
    out["known_no_match"] = (r, oe_answer(r.req_id, asked, {}, 600))

    r = req("unknown_device", asked, did=UNKNOWN_IMEI, did_type=pb.IMEI_MD5)
    out["unknown_device"] = (r, oe_answer(r.req_id, asked, {}, 1800))

    # unknown enum values (platform, did_type) are tolerated; a did of an unknown
    # type and a malformed md5 are ignored; user 7's raw OAID still decides
    r = req(
        "unknown_enums_bad_ids",
        asked7,
        platform=9,
        did="something",
        did_type=77,
        device={"imei_md5": "zz" * 16, "oaid": USER7_RAW_OAID, "device_os_type": 42},
    )
    out["unknown_enums_bad_ids"] = (
        r,
        oe_answer(r.req_id, asked7, dict([BRAND_CROSS_CATEGORY, DIAPERS_TO_FORMULA]), 300),
    )
    return out


def oe_broken(pb, valid):
    many = pb.Req(req_id="oe-too_many_rta_ids")
    many.rta_ids.extend(range(1, 10_001))
    return {
        "truncated": (valid[:-5], True),
        "garbage": (b"this is not protobuf", True),
        # valid protobuf, refused by the engine's bound on rta_ids
        "too_many_rta_ids": (many.SerializeToString(), False),
    }


# ------------------------------------------------------------------ Meituan
def mt_take(request_id, *ids):
    return {"request_id": request_id, "code": 0, "promotion_target_id": [str(i) for i, _ in ids]}


def mt_cases(pb):
    R = pb.RtaRequest
    out = {}

    def req(name, os_, **device):
        r = R(id=f"mt-{name}", site_id="fixture-site")
        if os_ is not None:
            r.device.os = os_
        for k, v in device.items():
            setattr(r.device, k, v)
        return r

    r = req("match_imei", R.OS_ANDROID, imei_md5sum=USER1_IMEI, ip="10.1.2.3")
    out["match_imei"] = (r, mt_take(r.id, HIGH_INTENT_FORMULA))

    r = req("raw_oaid", R.OS_ANDROID, oaid=USER7_RAW_OAID)
    out["raw_oaid"] = (r, mt_take(r.id, BRAND_CROSS_CATEGORY, DIAPERS_TO_FORMULA))

    r = req("oaid_md5", R.OS_ANDROID, oaid_md5sum=md5(USER7_RAW_OAID))
    out["oaid_md5"] = (r, mt_take(r.id, BRAND_CROSS_CATEGORY, DIAPERS_TO_FORMULA))

    # Meituan's OS_IOS is 1 (Tencent's is 2)
    r = req("idfa_ios", R.OS_IOS, idfa_md5sum=USER9_IDFA)
    out["idfa_ios"] = (r, mt_take(r.id, GOAL_URBAN_FITNESS))

    r = req("no_match_known_user", R.OS_ANDROID, imei_md5sum=USER3_IMEI)
    out["no_match_known_user"] = (r, {"request_id": r.id, "code": 1})

    r = req("unknown_device", R.OS_ANDROID, imei_md5sum=UNKNOWN_IMEI)
    out["unknown_device"] = (r, {"request_id": r.id, "code": 1})

    r = req("ping", R.OS_ANDROID, imei_md5sum=USER1_IMEI)
    r.is_ping = True
    out["ping"] = (r, {"request_id": r.id, "code": 0})

    r = req("is_test", R.OS_ANDROID, imei_md5sum=USER1_IMEI)
    r.is_test = True
    out["is_test"] = (r, mt_take(r.id, HIGH_INTENT_FORMULA))

    # another OS, an empty and a malformed id: user 1's IMEI decides
    r = req("other_os_bad_ids", R.OS_JAVA, imei_md5sum=USER1_IMEI, mac_md5sum="", android_id_md5sum="xyz")
    out["other_os_bad_ids"] = (r, mt_take(r.id, HIGH_INTENT_FORMULA))
    return out


def mt_broken(pb, valid):
    return {
        "truncated": (valid[:-4], True),
        "garbage": (b"this is not protobuf", True),
    }


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


def emit(root, media, message_cls, cases, broken, varying):
    out_dir = os.path.join(root, media)
    os.makedirs(out_dir, exist_ok=True)
    names = []
    first = None
    for name, (msg, expected) in cases.items():
        body = msg.SerializeToString(deterministic=True)
        first = first or body
        write(out_dir, name, body, 200, expected, varying(name))
        names.append(name)
    for name, (body, unparseable) in broken(first).items():
        if unparseable:
            try:
                message_cls.FromString(body)
            except Exception:  # google.protobuf.message.DecodeError
                pass
            else:
                raise SystemExit(f"{media}/{name}: Google's parser accepts it; pick an invalid body")
        write(out_dir, name, body, 400, None, [])
        names.append(name)
    print(f"wrote {len(names)} {media} cases to {out_dir}: {', '.join(names)}")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ROOT
    with tempfile.TemporaryDirectory() as tmp:
        oe = load(tmp, "oceanengine/rta.proto")
        mt = load(tmp, "meituan/rta.proto")
        emit(root, "oceanengine", oe.Req, oe_cases(oe), lambda v: oe_broken(oe, v), lambda _: ["ts"])
        emit(
            root,
            "meituan",
            mt.RtaRequest,
            mt_cases(mt),
            lambda v: mt_broken(mt, v),
            lambda name: [] if name == "ping" else ["processing_time_ms"],
        )


if __name__ == "__main__":
    main()
