#!/usr/bin/env python3
"""Reads the runtime stage (the last FROM) of a Dockerfile and prints, as JSON,
what a container of the image runs: entrypoint, cmd, env, workdir, user,
volumes, exposed ports, stop signal, healthcheck, and which files are copied
from the build context or an earlier stage to where.

.ci/deploy-check runs the binary from this, so that the check follows the
Dockerfile instead of repeating it. Only the instructions this repository's
Dockerfile uses are understood; anything else in the last stage is an error,
so that a new instruction cannot silently escape the check.

Usage: imagespec.py deploy/docker/Dockerfile
"""

import json
import shlex
import sys


def logical_lines(text):
    """Dockerfile lines with continuations joined and comments dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if cur and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        out.append(cur.strip())
        cur = ""
    if cur:
        out.append(cur.strip())
    return out


def exec_form(arg, what):
    try:
        value = json.loads(arg)
    except json.JSONDecodeError as e:
        raise SystemExit(f"{what} must be in exec (JSON) form, got {arg!r}: {e}")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SystemExit(f"{what} must be a JSON list of strings, got {arg!r}")
    return value


def parse_env(arg):
    env = {}
    for item in shlex.split(arg):
        if "=" not in item:
            raise SystemExit(f"ENV must use key=value, got {item!r}")
        k, v = item.split("=", 1)
        env[k] = v
    return env


def parse(text):
    lines = logical_lines(text)
    args = {}
    stages = []
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest.strip()))
    if not stages:
        raise SystemExit("no FROM in the Dockerfile")
    spec = {
        "from": None,
        "entrypoint": [],
        "cmd": [],
        "env": {},
        "workdir": "/",
        "user": "root",
        "volumes": [],
        "expose": [],
        "stopsignal": "SIGTERM",
        "healthcheck": None,
        "copies": [],
        "stage_names": [s[0][1].split()[-1] for s in stages if " AS " in s[0][1].upper()],
    }
    for word, rest in stages[-1]:
        if word == "FROM":
            base = rest.split()[0]
            for k, v in args.items():
                base = base.replace("${" + k + "}", v)
            spec["from"] = base
        elif word == "ENTRYPOINT":
            spec["entrypoint"] = exec_form(rest, "ENTRYPOINT")
            spec["cmd"] = []  # ENTRYPOINT resets an inherited CMD
        elif word == "CMD":
            spec["cmd"] = exec_form(rest, "CMD")
        elif word == "ENV":
            spec["env"].update(parse_env(rest))
        elif word == "WORKDIR":
            spec["workdir"] = rest
        elif word == "USER":
            spec["user"] = rest
        elif word == "VOLUME":
            spec["volumes"] += exec_form(rest, "VOLUME")
        elif word == "EXPOSE":
            spec["expose"] += rest.split()
        elif word == "STOPSIGNAL":
            spec["stopsignal"] = rest
        elif word == "HEALTHCHECK":
            opts, _, cmd = rest.partition("CMD ")
            hc = {"cmd": exec_form(cmd.strip(), "HEALTHCHECK CMD")}
            for o in opts.split():
                k, _, v = o.lstrip("-").partition("=")
                hc[k] = v
            spec["healthcheck"] = hc
        elif word == "COPY":
            parts = rest.split()
            flags = [p for p in parts if p.startswith("--")]
            paths = [p for p in parts if not p.startswith("--")]
            source = "context"
            for f in flags:
                if f.startswith("--from="):
                    source = f.split("=", 1)[1]
            if len(paths) != 2:
                raise SystemExit(f"COPY with one source and one destination only: {rest!r}")
            spec["copies"].append({"from": source, "src": paths[0], "dest": paths[1]})
        elif word in ("RUN", "LABEL", "ARG"):
            pass  # build-time only: what RUN makes is checked by its result (see .ci/deploy-check)
        else:
            raise SystemExit(f"imagespec.py does not understand {word} in the runtime stage")
    return spec


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        print(json.dumps(parse(f.read()), indent=2))
