#!/usr/bin/env python3
"""Compiles the Python classes load.py and compare.py use, with grpc_tools.protoc:
proto/rta/v1/rta.proto (messages and gRPC stub) and proto/tencent/rta.proto.

  stubs.py OUT_DIR
"""

import os
import sys

from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    for proto, grpc_out in (("rta/v1/rta.proto", True), ("tencent/rta.proto", False)):
        argv = ["protoc", f"-I{ROOT}/proto", f"-I{include}", f"--python_out={out}"]
        if grpc_out:
            argv.append(f"--grpc_python_out={out}")
        if protoc.main(argv + [proto]) != 0:
            sys.exit(f"protoc failed on {proto}")
    for d in ("rta", "rta/v1", "tencent"):
        open(os.path.join(out, d, "__init__.py"), "a").close()


if __name__ == "__main__":
    main()
