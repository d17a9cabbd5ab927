#!/usr/bin/env python3
"""Checks the engine's Tencent RTA answers with Google's protobuf runtime.

tests/tencent.rs, run with RTA_TENCENT_DUMP_DIR=DIR, sends every golden request
of tests/fixtures/tencent/ to a live node and writes, per case, DIR/<case>.status
(the HTTP status) and DIR/<case>.response.bin (the body). This script decodes each
body as a tencent.ad.rta.RtaResponse with Google's implementation (not prost) and
compares it with <case>.expected.json; it exits non-zero on any difference or
missing case.

Needs: pip install protobuf grpcio-tools
Usage: python3 scripts/tencent_check.py DUMP_DIR [FIXTURE_DIR]
"""

import glob
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tencent_fixtures import DEFAULT_OUT, load_rta_pb2  # noqa: E402


def same(expected, actual, path, errors):
    if isinstance(expected, dict) and isinstance(actual, dict):
        for k in sorted(set(expected) | set(actual)):
            if k not in actual:
                errors.append(f"{path}.{k}: missing (expected {expected[k]!r})")
            elif k not in expected:
                errors.append(f"{path}.{k}: unexpected {actual[k]!r}")
            else:
                same(expected[k], actual[k], f"{path}.{k}", errors)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            errors.append(f"{path}: {len(actual)} entries, expected {len(expected)}: {actual!r}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            same(e, a, f"{path}[{i}]", errors)
    elif isinstance(expected, float) or isinstance(actual, float):
        # float fields are 32-bit on the wire: compare at float32 precision
        if not (isinstance(actual, (int, float)) and math.isclose(expected, actual, rel_tol=1e-6)):
            errors.append(f"{path}: {actual!r}, expected {expected!r}")
    elif expected != actual or type(expected) is not type(actual):
        errors.append(f"{path}: {actual!r}, expected {expected!r}")


def check_case(pb, json_format, expected, dump_dir, name):
    errors = []
    try:
        with open(os.path.join(dump_dir, f"{name}.status")) as fh:
            status = int(fh.read().strip())
        with open(os.path.join(dump_dir, f"{name}.response.bin"), "rb") as fh:
            body = fh.read()
    except OSError as e:
        return [f"no dumped answer: {e}"]
    if status != expected["http_status"]:
        errors.append(f"HTTP {status}, expected {expected['http_status']}")
    if expected["response"] is None:
        if not body:
            errors.append("error answers must say why (empty body)")
        return errors
    try:
        msg = pb.RtaResponse.FromString(body)
    except Exception as e:  # DecodeError
        return errors + [f"not a tencent.ad.rta.RtaResponse: {e}"]
    actual = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    for field in expected["varying"]:
        value = actual.pop(field, None)
        if value is None:
            errors.append(f"{field}: missing")
        elif not isinstance(value, int) or value < 0:
            errors.append(f"{field}: {value!r} is not a non-negative integer")
    same(expected["response"], actual, "RtaResponse", errors)
    return errors


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    dump_dir = sys.argv[1]
    fixture_dir = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_OUT
    from google.protobuf import json_format

    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_rta_pb2(tmp)
        paths = sorted(glob.glob(os.path.join(fixture_dir, "*.expected.json")))
        if not paths:
            raise SystemExit(f"no *.expected.json in {fixture_dir}")
        for path in paths:
            name = os.path.basename(path)[: -len(".expected.json")]
            with open(path) as fh:
                expected = json.load(fh)
            errors = check_case(pb, json_format, expected, dump_dir, name)
            if errors:
                failed += 1
                print(f"FAIL {name}")
                for e in errors:
                    print(f"     {e}")
            else:
                print(f"ok   {name}")
    if failed:
        raise SystemExit(f"{failed} of {len(paths)} Tencent answers differ from the expectations")
    print(f"all {len(paths)} Tencent answers decode with Google's protobuf and match")


if __name__ == "__main__":
    main()
