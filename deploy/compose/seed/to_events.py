#!/usr/bin/env python3
"""Turns `rta-engine gen` user records into Kafka events for the engine's
topics, as JSON lines, one event per line (one Kafka message each):

  to_events.py users.jsonl OUT_DIR   ->  OUT_DIR/tags.jsonl       (TagUpdate, topic rta.tags, format json)
                                         OUT_DIR/behaviour.jsonl  (BehaviourEvent, topic rta.behaviour, format json)

A record's tags, demographics, item states and devices become one TagUpdate
(version 1, replacing the systems it names); each of its daily behaviour
counts becomes `count` BehaviourEvents on that day, noon business time
(UTC+8). Field names are proto/rta/v1/events.proto's, enums by their
lower-case names (docs/kafka.md). The result is the generated population,
except that behaviour events also move 4A states as they are applied, so an
item's state can end one step further than the record's.

Standard library only: the compose seed job runs it in a stock python image,
and .ci/deploy-check runs it to feed a broker.
"""

import json
import os
import sys
import time

DAY_MS = 86_400_000
TZ_MS = 8 * 3_600_000
ITEM_FIELDS = ("four_a", "rfm_r", "rfm_f", "rfm_m", "clv")
SCOPE_FIELD = {"category": "category_id", "brand": "brand_id", "sku": "sku_id"}


def device_ref(d):
    if d.startswith("raw:"):
        _, kind, value = d.split(":", 2)
        return {"kind": kind, "raw": value}
    if ":" in d:
        kind, md5 = d.split(":", 1)
        return {"kind": kind, "md5": md5}
    # a bare md5: the index keys a device by its md5 alone, the kind is a label
    return {"kind": "imei", "md5": d}


def convert(record, now_ms):
    uid = record["user_id"]
    tags = record.get("tags", {})
    update = {
        "user_id": uid,
        "event_time_ms": now_ms,
        "version": 1,
        "replace_systems": sorted(tags),
        "set_tags": [{"system": s, "value": v} for s in sorted(tags) for v in tags[s]],
        "demographics": [
            {"name": k, "number": v} if isinstance(v, int) else {"name": k, "label": str(v)}
            for k, v in sorted(record.get("demographics", {}).items())
        ],
        "item_states": [
            {"scope": it["scope"], "id": it["id"], **{f: it[f] for f in ITEM_FIELDS if f in it}}
            for it in record.get("items", [])
        ],
        "devices": [device_ref(d) for d in record.get("devices", [])],
    }
    # noon of the business day `days_ago` days back
    today_start = (now_ms + TZ_MS) // DAY_MS * DAY_MS - TZ_MS
    events = []
    for b in record.get("behaviour", []):
        t = today_start - b["days_ago"] * DAY_MS + DAY_MS // 2
        t = min(t, now_ms)
        for i in range(b.get("count", 1)):
            events.append({
                "user_id": uid,
                "event_time_ms": t + i,
                "action": b["action"],
                SCOPE_FIELD[b["scope"]]: b["id"],
            })
    return update, events


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    now_ms = int(time.time() * 1000)
    users = behaviour = 0
    with open(src) as f, \
            open(os.path.join(out_dir, "tags.jsonl"), "w") as tags_out, \
            open(os.path.join(out_dir, "behaviour.jsonl"), "w") as beh_out:
        for line in f:
            if not line.strip():
                continue
            update, events = convert(json.loads(line), now_ms)
            tags_out.write(json.dumps(update, separators=(",", ":")) + "\n")
            for e in events:
                beh_out.write(json.dumps(e, separators=(",", ":")) + "\n")
            users += 1
            behaviour += len(events)
    print(f"{users} TagUpdates, {behaviour} BehaviourEvents in {out_dir}")


if __name__ == "__main__":
    main()
