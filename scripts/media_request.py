#!/usr/bin/env python3
"""Writes one Ocean Engine or Meituan RTA request (encoded with Google's protobuf
runtime) to stdout, or decodes an answer from stdin: bodies for curl or h2load
against POST /rta/oceanengine and POST /rta/meituan. (Tencent: tencent_request.py.)

Needs: pip install protobuf grpcio-tools
Usage: python3 scripts/media_request.py oceanengine IMEI_MD5 [--rta-id ID]... > req.bin
       python3 scripts/media_request.py meituan IMEI_MD5 [--os ios|android] > req.bin
       curl -s --data-binary @req.bin http://127.0.0.1:8080/rta/oceanengine \\
         | python3 scripts/media_request.py oceanengine --decode
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from media_fixtures import load  # noqa: E402

# the demo strategies' Ocean Engine rta_ids (each is its Tencent target id)
DEMO_RTA_IDS = list(range(90001, 90008))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("media", choices=["oceanengine", "meituan"])
    p.add_argument("imei_md5", nargs="?", help="lower(md5(lower(IMEI))), 32 hex")
    p.add_argument("--os", choices=["android", "ios"], default="android")
    p.add_argument(
        "--rta-id", type=int, action="append", default=[],
        help="an Ocean Engine rta_id to ask about (default: the demo's 90001..90007)",
    )
    p.add_argument("--id", default="Jo825w_uEe2xLlJUAFwvSQ", help="the request id")
    p.add_argument("--decode", action="store_true", help="decode an answer from stdin")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.media == "oceanengine":
            pb = load(tmp, "oceanengine/rta.proto")
            if args.decode:
                print(pb.Rsp.FromString(sys.stdin.buffer.read()), end="")
                return
            if not args.imei_md5:
                p.error("IMEI_MD5 is required unless --decode")
            req = pb.Req(req_id=args.id, did=args.imei_md5, did_type=pb.IMEI_MD5)
            req.platform = pb.IOS if args.os == "ios" else pb.ANDROID
            req.rta_ids.extend(args.rta_id or DEMO_RTA_IDS)
        else:
            pb = load(tmp, "meituan/rta.proto")
            if args.decode:
                print(pb.RtaResponse.FromString(sys.stdin.buffer.read()), end="")
                return
            if not args.imei_md5:
                p.error("IMEI_MD5 is required unless --decode")
            R = pb.RtaRequest
            req = R(id=args.id)
            req.device.os = R.OS_IOS if args.os == "ios" else R.OS_ANDROID
            req.device.imei_md5sum = args.imei_md5
        sys.stdout.buffer.write(req.SerializeToString())


if __name__ == "__main__":
    main()
