#!/usr/bin/env bash
# One-shot job of deploy/compose/compose.yaml, in the apache/kafka image:
# creates the engine's topics (the names of deploy/rta-engine-kafka.toml;
# .ci/deploy-check compares the two lists) and, the first time only, produces
# the seed events that to_events.py made from `rta-engine gen`.
set -euo pipefail
bootstrap=${KAFKA_BOOTSTRAP:-kafka:9092}
bin=/opt/kafka/bin
partitions=${SEED_PARTITIONS:-3}

# name and partitions; retention.ms=-1: a node without a snapshot reads every
# topic from its start, so nothing it needs may expire (docs/kafka.md)
topics=(
  "rta.tags $partitions"
  "rta.behaviour $partitions"
  "rta.feedback $partitions"
  "rta.identity $partitions"
  "rta.vectors $partitions"
  "rta.control 1"
  "rta.dead-letters 1"
)
for t in "${topics[@]}"; do
  read -r name parts <<<"$t"
  "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$name" --partitions "$parts" --replication-factor 1 --config retention.ms=-1
done

# seed once: skip when rta.tags already holds messages (a second `up`)
held=$("$bin/kafka-get-offsets.sh" --bootstrap-server "$bootstrap" --topic rta.tags --time latest \
  | awk -F: '{ n += $3 } END { print n + 0 }')
if [ "$held" -gt 0 ]; then
  echo "rta.tags already holds $held messages: not seeding again"
  exit 0
fi
for pair in "rta.tags /seed/tags.jsonl" "rta.behaviour /seed/behaviour.jsonl"; do
  read -r topic file <<<"$pair"
  echo "producing $(wc -l < "$file") events to $topic"
  "$bin/kafka-console-producer.sh" --bootstrap-server "$bootstrap" --topic "$topic" \
    --producer-property linger.ms=50 --producer-property batch.size=262144 < "$file"
done
echo "seeded"
