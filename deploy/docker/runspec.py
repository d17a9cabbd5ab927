#!/usr/bin/env python3
"""What a container of the rta-engine image runs, and with which files, as
the Dockerfile alone, the compose service or the Kubernetes pod makes it:

  runspec.py STAGE ENGINE image   DOCKERFILE
  runspec.py STAGE ENGINE compose DOCKERFILE COMPOSE_FILE SERVICE
  runspec.py STAGE ENGINE k8s     DOCKERFILE RENDERED_MANIFESTS.yaml

builds STAGE, the container's file tree (what the Dockerfile COPYs, with
ENGINE for the binary, then the compose file's bind mounts or the pod's
ConfigMap, Secret and projected volumes over it, as the runtime would mount
them), and prints JSON: argv, env, workdir, uid, gid, the writable volume's
path, hostname, the healthcheck command, and Kafka brokers of the config.
.ci/deploy-check runs the engine from it (read-only root, only the volume
writable). Needs PyYAML for compose and k8s.
"""

import base64
import json
import os
import pathlib
import shutil
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import imagespec  # noqa: E402

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def put(stage, dest, data=None, src=None, mode=0o644):
    path = stage / dest.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if src is not None:
        shutil.copyfile(src, path)
    else:
        path.write_bytes(data)
    path.chmod(mode)


def image(stage, engine, dockerfile):
    spec = imagespec.parse(pathlib.Path(dockerfile).read_text())
    for c in spec["copies"]:
        if c["from"] == "context":
            if not os.path.isfile(c["src"]):
                raise SystemExit(f"the Dockerfile copies {c['src']}, which does not exist")
            put(stage, c["dest"], src=c["src"])
        elif os.path.basename(c["dest"]) == "rta-engine":
            put(stage, c["dest"], src=engine, mode=0o755)
        else:
            raise SystemExit(f"COPY --from={c['from']} {c['src']}: not known to this check")
    if len(spec["volumes"]) != 1:
        raise SystemExit(f"expected one VOLUME, got {spec['volumes']}")
    uid, _, gid = spec["user"].partition(":")
    if not (uid.isdigit() and gid.isdigit()):
        raise SystemExit(f"USER must be a numeric uid:gid (runAsNonRoot can only check a number), got {spec['user']}")
    if int(uid) == 0:
        raise SystemExit("the image runs as root")
    if spec["stopsignal"] != "SIGTERM":
        raise SystemExit(f"STOPSIGNAL is {spec['stopsignal']}, not SIGTERM")
    env = {"PATH": DEFAULT_PATH, "HOME": "/nonexistent", "HOSTNAME": "rta-engine-0"}
    env.update(spec["env"])
    return {
        "argv": spec["entrypoint"] + spec["cmd"],
        "entrypoint": spec["entrypoint"],
        "env": env,
        "workdir": spec["workdir"],
        "uid": int(uid),
        "gid": int(gid),
        "volume": spec["volumes"][0],
        "hostname": "rta-engine-0",
        "healthcheck": (spec["healthcheck"] or {}).get("cmd"),
    }


def replace_dir(stage, mount_path):
    path = stage / mount_path.lstrip("/")
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.mkdir(parents=True)


def compose(stage, run, compose_file, service):
    import yaml
    doc = yaml.safe_load(pathlib.Path(compose_file).read_text())
    svc = doc["services"][service]
    base = pathlib.Path(compose_file).resolve().parent
    for v in svc.get("volumes", []):
        src, dest, *mode = v.split(":") if isinstance(v, str) else (v["source"], v["target"])
        if dest == run["volume"]:
            continue  # the writable volume
        if not src.startswith((".", "/")):
            raise SystemExit(f"{service}: volume {v}: only bind mounts and the image's VOLUME are understood")
        host = (base / src).resolve()
        if host.is_dir():
            replace_dir(stage, dest)
            for f in host.rglob("*"):
                if f.is_file():
                    put(stage, dest + "/" + str(f.relative_to(host)), src=f)
        else:
            put(stage, dest, src=host)
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    for k, v in env.items():
        v = str(v)
        if v.startswith("${"):
            continue  # taken from the caller's environment (the check sets it)
        run["env"][k] = v
    if "entrypoint" in svc:
        run["argv"] = list(svc["entrypoint"]) + list(svc.get("command") or [])
    elif "command" in svc:
        run["argv"] = run["entrypoint"] + list(svc["command"])
    if "user" in svc:
        uid, _, gid = str(svc["user"]).partition(":")
        run["uid"], run["gid"] = int(uid), int(gid or uid)
    if not svc.get("read_only"):
        raise SystemExit(f"{service}: read_only is not set")
    run["hostname"] = svc.get("hostname", run["hostname"])
    return run


def k8s(stage, run, manifests):
    import yaml
    objs = [o for o in yaml.safe_load_all(pathlib.Path(manifests).read_text()) if o]
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    (sts,) = by_kind["StatefulSet"].values()
    pod = sts["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "rta-engine"]

    def files_of(kind, name, optional=False):
        o = by_kind.get(kind, {}).get(name)
        if o is None:
            if optional:
                return {}
            raise SystemExit(f"the pod mounts {kind} {name}, which the manifests do not define")
        out = {k: v.encode() for k, v in (o.get("data") or {}).items()} if kind == "ConfigMap" else \
            {k: base64.b64decode(v) for k, v in (o.get("data") or {}).items()}
        out.update({k: v.encode() for k, v in (o.get("stringData") or {}).items()})
        return out

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    writable = []
    for m in c.get("volumeMounts", []):
        if "subPath" in m:
            raise SystemExit(f"volumeMount {m['name']} uses subPath: its files would never be updated in place")
        path = m["mountPath"]
        if m["name"] in claims:
            writable.append(path)
            continue
        v = volumes[m["name"]]
        files = {}
        if "configMap" in v:
            files = files_of("ConfigMap", v["configMap"]["name"], v["configMap"].get("optional", False))
        elif "secret" in v:
            files = files_of("Secret", v["secret"]["secretName"], v["secret"].get("optional", False))
        elif "projected" in v:
            for s in v["projected"]["sources"]:
                if "configMap" in s:
                    files.update(files_of("ConfigMap", s["configMap"]["name"]))
                elif "secret" in s:
                    files.update(files_of("Secret", s["secret"]["name"]))
        elif "emptyDir" in v:
            writable.append(path)
            continue
        else:
            raise SystemExit(f"volume {m['name']}: kind not understood")
        if not m.get("readOnly"):
            raise SystemExit(f"volumeMount {m['name']} is not readOnly")
        replace_dir(stage, path)
        for k, data in files.items():
            put(stage, path + "/" + k, data=data)
    if writable != [run["volume"]]:
        raise SystemExit(f"the pod's writable mounts {writable} are not the image's VOLUME {run['volume']}")
    limits = c.get("resources", {}).get("limits", {})
    for e in c.get("env", []):
        if "value" in e:
            run["env"][e["name"]] = e["value"]
        elif "resourceFieldRef" in e["valueFrom"]:
            res = e["valueFrom"]["resourceFieldRef"]["resource"].split(".", 1)[1]
            value = str(limits[res])
            if res == "cpu" and value.endswith("m"):
                value = str(-(-int(value[:-1]) // 1000))
            run["env"][e["name"]] = value
        else:
            raise SystemExit(f"env {e['name']}: only value and resourceFieldRef are understood")
    if "command" in c:
        run["argv"] = list(c["command"]) + list(c.get("args", []))
    elif "args" in c:
        run["argv"] = run["entrypoint"] + list(c["args"])
    sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    run["uid"] = sc.get("runAsUser", run["uid"])
    run["gid"] = sc.get("runAsGroup", run["gid"])
    if not (sc.get("runAsNonRoot") and sc.get("readOnlyRootFilesystem")
            and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]
            and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        raise SystemExit(f"securityContext is not the restrictive one: {sc}")
    run["hostname"] = sts["metadata"]["name"] + "-0"
    run["env"]["HOSTNAME"] = run["hostname"]
    run["probes"] = {k: c[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c}
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for p in run["probes"].values():
        p["port"] = ports.get(p["port"], p["port"])
    run["termination_grace_seconds"] = pod.get("terminationGracePeriodSeconds", 30)
    return run


def config_brokers(stage, run):
    import tomllib
    cfg_path = stage / run["workdir"].lstrip("/") / run["env"]["RTA_CONFIG"]
    cfg = tomllib.loads(cfg_path.read_text())
    run["config_path"] = str(cfg_path)
    run["brokers"] = (cfg.get("kafka") or {}).get("brokers", "")
    run["topics"] = [t["name"] for t in (cfg.get("kafka") or {}).get("topics", [])]
    run["topic_formats"] = {t["name"]: t.get("format", "protobuf") for t in (cfg.get("kafka") or {}).get("topics", [])}


def main():
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    stage, engine, mode, dockerfile = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    stage.mkdir(parents=True, exist_ok=True)
    run = image(stage, engine, dockerfile)
    if mode == "compose":
        run = compose(stage, run, sys.argv[5], sys.argv[6])
    elif mode == "k8s":
        run = k8s(stage, run, sys.argv[5])
    elif mode != "image":
        raise SystemExit(__doc__)
    (stage / run["volume"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    if not (stage / run["workdir"].lstrip("/")).is_dir():
        raise SystemExit(f"WORKDIR {run['workdir']} holds nothing the image copies")
    if run["env"].get("RTA_CONFIG"):
        config_brokers(stage, run)
    print(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()
