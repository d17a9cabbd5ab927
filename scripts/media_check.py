#!/usr/bin/env python3
"""Checks the engine's Ocean Engine and Meituan RTA answers with Google's
protobuf runtime, as scripts/tencent_check.py does for Tencent.

tests/media.rs, run with RTA_MEDIA_DUMP_DIR=DIR, sends every golden request of
tests/fixtures/<media>/ to a live node and writes DIR/<media>/<case>.status (the
HTTP status) and DIR/<media>/<case>.response.bin (the body). This script decodes
each body with Google's implementation (not prost) and compares it with
<case>.expected.json; it exits non-zero on any difference or missing case.

Needs: pip install protobuf grpcio-tools
Usage: python3 scripts/media_check.py DUMP_DIR [FIXTURE_ROOT]
"""

import glob
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from media_fixtures import DEFAULT_ROOT, load  # noqa: E402
from tencent_check import same  # noqa: E402

# media -> (its proto, the response message's name)
MEDIA = {
    "oceanengine": ("oceanengine/rta.proto", "Rsp"),
    "meituan": ("meituan/rta.proto", "RtaResponse"),
}


def check_case(response_cls, json_format, expected, dump_dir, name):
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
        msg = response_cls.FromString(body)
    except Exception as e:  # DecodeError
        return errors + [f"not a {response_cls.DESCRIPTOR.full_name}: {e}"]
    actual = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    for field in expected["varying"]:
        value = actual.pop(field, None)
        # json_format writes 64-bit integers as strings
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if value is None:
            errors.append(f"{field}: missing")
        elif not isinstance(value, int) or value < 0:
            errors.append(f"{field}: {value!r} is not a non-negative integer")
    same(expected["response"], actual, response_cls.DESCRIPTOR.name, errors)
    return errors


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    dump_root = sys.argv[1]
    fixture_root = sys.argv[2] if len(sys.argv) > 2 else DEFAULT_ROOT
    from google.protobuf import json_format

    failed = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for media, (proto, response) in MEDIA.items():
            response_cls = getattr(load(tmp, proto), response)
            paths = sorted(glob.glob(os.path.join(fixture_root, media, "*.expected.json")))
            if not paths:
                raise SystemExit(f"no *.expected.json in {fixture_root}/{media}")
            for path in paths:
                total += 1
                name = os.path.basename(path)[: -len(".expected.json")]
                with open(path) as fh:
                    expected = json.load(fh)
                errors = check_case(
                    response_cls, json_format, expected, os.path.join(dump_root, media), name
                )
                if errors:
                    failed += 1
                    print(f"FAIL {media}/{name}")
                    for e in errors:
                        print(f"     {e}")
                else:
                    print(f"ok   {media}/{name}")
    if failed:
        raise SystemExit(f"{failed} of {total} media answers differ from the expectations")
    print(f"all {total} Ocean Engine and Meituan answers decode with Google's protobuf and match")


if __name__ == "__main__":
    main()
