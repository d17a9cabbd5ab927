#!/usr/bin/env python3
"""Our Tencent RTA schema against the published one, field by field.

Compiles proto/tencent/rta.proto with grpcio-tools' protoc and compares every
field and enum value (by dotted name and number) with
proto/tencent/published_fields.txt, the list read off Tencent's published
schema. Exit 1, naming each difference, when they part: a field Tencent added
(the schema has moved on) or one of ours that Tencent does not have.

    python3 scripts/tencent_schema_check.py
"""
import pathlib
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "tencent"


def walk(messages, prefix, out):
    for m in messages:
        name = prefix + m.name
        for f in m.field:
            out.add(f"{name}.{f.name} = {f.number}")
        for e in m.enum_type:
            for v in e.value:
                out.add(f"{name}.{e.name}.{v.name} = {v.number}")
        walk(m.nested_type, name + ".", out)


def ours():
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "rta.pb"
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
             f"--descriptor_set_out={out}", str(PROTO_DIR / "rta.proto")],
            check=True,
        )
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(out.read_bytes())
    fields = set()
    for f in fds.file:
        walk(f.message_type, "", fields)
    return fields


def published():
    lines = (PROTO_DIR / "published_fields.txt").read_text().splitlines()
    return {l.strip() for l in lines if l.strip() and not l.startswith("#")}


def main():
    mine, theirs = ours(), published()
    missing, extra = sorted(theirs - mine), sorted(mine - theirs)
    for x in missing:
        print(f"published, not in proto/tencent/rta.proto: {x}")
    for x in extra:
        print(f"in proto/tencent/rta.proto, not published: {x}")
    if missing or extra:
        sys.exit(1)
    print(f"tencent schema: {len(mine)} fields and enum values, as published")


if __name__ == "__main__":
    main()
