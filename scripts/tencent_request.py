#!/usr/bin/env python3
"""Writes one Tencent RTA request (tencent.ad.rta.RtaRequest, encoded with Google's
protobuf runtime) to stdout: a body for curl or h2load against POST /rta/tencent.

Needs: pip install protobuf grpcio-tools
Usage: python3 scripts/tencent_request.py IMEI_MD5 [--os ios|android] [--exp ID]... > req.bin
       curl -s --data-binary @req.bin http://127.0.0.1:8080/rta/tencent | python3 scripts/tencent_request.py --decode
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tencent_fixtures import load_rta_pb2  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("imei_md5", nargs="?", help="lower(md5(lower(IMEI))), 32 hex")
    p.add_argument("--os", choices=["android", "ios"], default="android")
    p.add_argument("--exp", type=int, action="append", default=[], help="an exps.exp_id")
    p.add_argument("--id", default="Jo825w_uEe2xLlJUAFwvSQ", help="the request id")
    p.add_argument("--decode", action="store_true", help="decode an RtaResponse from stdin")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pb = load_rta_pb2(tmp)
        if args.decode:
            print(pb.RtaResponse.FromString(sys.stdin.buffer.read()), end="")
            return
        if not args.imei_md5:
            p.error("IMEI_MD5 is required unless --decode")
        R = pb.RtaRequest
        req = R(id=args.id)
        req.device.os = R.OS_IOS if args.os == "ios" else R.OS_ANDROID
        req.device.imei_md5sum = args.imei_md5
        req.device.cached_deviceid_type = R.Device.IMEI_MD5
        for e in args.exp:
            req.exps.add(exp_id=e)
        sys.stdout.buffer.write(req.SerializeToString())


if __name__ == "__main__":
    main()
