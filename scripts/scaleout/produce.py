#!/usr/bin/env python3
"""Kafka side of scripts/scaleout.sh, with kafka-python (a client that is not ours):

  produce.py topics BROKER deploy/compose/seed/kafka-setup.sh
      creates the topics (and partition counts) that the compose setup job creates
  produce.py seed BROKER SEED_DIR
      produces SEED_DIR/tags.jsonl and behaviour.jsonl (deploy/compose/seed/to_events.py's
      output) to rta.tags and rta.behaviour, one event per message, keyed by user id
  produce.py live BROKER USERS_JSONL --rate R --duration S --out OUT.json [--stop-file F]
      a steady stream while the load runs: BehaviourEvents (now), TagUpdates with a
      rising version that move a user's target group, and a few delete_user identity
      events; OUT.json lists the users touched and deleted, for compare.py
"""

import argparse
import json
import os
import random
import re
import sys
import time

from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

TARGET_GROUPS = ["urban_family", "urban_gen_z", "urban_middle_class", "urban_blue_collar", "town_youth",
                 "town_middle_class", "town_middle_aged", "town_family", "students", "silver"]
ACTIONS = ["browse", "search", "favorite", "cart", "buy", "share"]
SCOPE_FIELD = {"category": "category_id", "brand": "brand_id", "sku": "sku_id"}


def now_ms():
    return int(time.time() * 1000)


def producer(broker):
    return KafkaProducer(bootstrap_servers=broker, linger_ms=20, batch_size=262144, acks=1)


def cmd_topics(args):
    parts = {"$partitions": 3}
    text = open(args.setup).read()
    topics = [(n, int(parts.get(p, p))) for n, p in re.findall(r'^\s+"(rta\.[a-z.-]+) (\S+)"', text, re.M)]
    if not topics:
        sys.exit(f"no topics found in {args.setup}")
    deadline = time.time() + 30
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=args.broker)
            break
        except Exception as e:  # the broker may still be starting
            if time.time() > deadline:
                sys.exit(f"broker {args.broker} unreachable: {e}")
            time.sleep(0.5)
    admin.create_topics([NewTopic(name=n, num_partitions=p, replication_factor=1) for n, p in topics])
    print("topics: " + ", ".join(f"{n} ({p})" for n, p in topics))


def cmd_seed(args):
    p = producer(args.broker)
    t0 = time.time()
    sent = {}
    for topic, name in (("rta.tags", "tags.jsonl"), ("rta.behaviour", "behaviour.jsonl")):
        with open(os.path.join(args.dir, name), "rb") as f:
            for line in f:
                line = line.rstrip(b"\n")
                if not line:
                    continue
                # keyed by user: one user's events of a topic stay in one partition, in order
                uid = json.loads(line)["user_id"]
                p.send(topic, key=str(uid).encode(), value=line)
                sent[topic] = sent.get(topic, 0) + 1
    p.flush()
    secs = time.time() - t0
    total = sum(sent.values())
    print(f"seeded {', '.join(f'{v} to {k}' for k, v in sent.items())} in {secs:.1f} s "
          f"({total / max(secs, 1e-9):.0f} messages/s)")
    json.dump({"sent": sent, "seconds": secs}, open(os.path.join(args.dir, "seeded.json"), "w"))


def cmd_live(args):
    users, items = [], set()
    with open(args.users) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                users.append(r["user_id"])
                for b in r.get("behaviour", []):
                    items.add((b["scope"], b["id"]))
    items = sorted(items)
    rng = random.Random(args.seed)
    p = producer(args.broker)
    version, touched, deleted = {}, set(), set()
    sent = {"rta.tags": 0, "rta.behaviour": 0, "rta.identity": 0}
    interval = 1.0 / args.rate
    t0 = time.time()
    n = 0
    while time.time() - t0 < args.duration:
        if args.stop_file and os.path.exists(args.stop_file):
            break
        due = t0 + n * interval
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        n += 1
        uid = rng.choice(users)
        if uid in deleted:
            continue
        roll = rng.random()
        if roll < 0.02 and len(deleted) < args.max_deletes:
            topic = "rta.identity"
            event = {"event_time_ms": now_ms(), "change": "delete_user", "user_id": uid}
            deleted.add(uid)
        elif roll < 0.30:
            topic = "rta.tags"
            version[uid] = version.get(uid, 1) + 1  # the seed wrote version 1
            event = {"user_id": uid, "event_time_ms": now_ms(), "version": version[uid],
                     "replace_systems": ["target_group"],
                     "set_tags": [{"system": "target_group", "value": rng.choice(TARGET_GROUPS)}]}
        else:
            topic = "rta.behaviour"
            scope, item = rng.choice(items)
            event = {"user_id": uid, "event_time_ms": now_ms(), "action": rng.choice(ACTIONS),
                     SCOPE_FIELD[scope]: item}
        touched.add(uid)
        p.send(topic, key=str(uid).encode(), value=json.dumps(event, separators=(",", ":")).encode())
        sent[topic] += 1
    p.flush()
    out = {"sent": sent, "seconds": time.time() - t0,
           "touched": sorted(touched - deleted), "deleted": sorted(deleted)}
    json.dump(out, open(args.out, "w"))
    print(f"live events: {', '.join(f'{v} to {k}' for k, v in sent.items())} in {out['seconds']:.1f} s; "
          f"{len(touched)} users touched, {len(deleted)} deleted")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("topics")
    t.add_argument("broker")
    t.add_argument("setup")
    s = sub.add_parser("seed")
    s.add_argument("broker")
    s.add_argument("dir")
    live = sub.add_parser("live")
    live.add_argument("broker")
    live.add_argument("users")
    live.add_argument("--rate", type=float, default=100)
    live.add_argument("--duration", type=float, default=60)
    live.add_argument("--out", required=True)
    live.add_argument("--stop-file")
    live.add_argument("--seed", type=int, default=7)
    live.add_argument("--max-deletes", type=int, default=50)
    args = ap.parse_args()
    {"topics": cmd_topics, "seed": cmd_seed, "live": cmd_live}[args.cmd](args)


if __name__ == "__main__":
    main()
