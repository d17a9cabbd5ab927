#!/usr/bin/env bash
# Scale-out, proven on one machine: N engine replicas, each in a network
# namespace of its own, fed by a tansu Kafka broker in another, behind HAProxy
# (Debian's) that health-checks /readyz. Under steady load through HAProxy
# (Tencent RTA over HTTP/1.1 and gRPC Decide over h2c, from a client namespace),
# one replica is killed with SIGKILL and later restarted on its snapshot
# directory while events keep streaming in. The report says which requests the
# client saw fail, how long the restarted replica took to become ready, and
# whether its index then equals the others'. docs/deployment.md#scale-out.
#
# Needs root (ip netns, veth), haproxy, tansu, the rta-engine binary, and a
# python with kafka-python, grpcio and grpcio-tools (.ci/scaleout sets all up).
#
# Parameters (environment):
#   SCALEOUT_REPLICAS=3        engine replicas
#   SCALEOUT_USERS=20000       seeded population (rta-engine gen -> to_events.py -> Kafka)
#   SCALEOUT_DURATION=60       seconds of load through the balancer
#   SCALEOUT_RATE=200          Tencent requests per second (HTTP/1.1 keep-alive)
#   SCALEOUT_GRPC_RATE=50      gRPC Decide calls per second (h2c; 0: none)
#   SCALEOUT_EVENT_RATE=100    live Kafka events per second during the load
#   SCALEOUT_KILL_AT           seconds into the load of the kill -9 (default: duration/3)
#   SCALEOUT_DOWN              seconds the replica stays dead (default: duration/4)
#   SCALEOUT_VICTIM=2          which replica dies
#   SCALEOUT_WIPE=0            1: delete its snapshots before the restart (a cold start from Kafka)
#   SCALEOUT_SAMPLE=2000       seeded users whose profile and decision are compared (0: all)
#   SCALEOUT_MAX_FAILURES=0    client-visible failures tolerated
#   SCALEOUT_TIME_LIMIT        hard limit for the whole run, seconds (default: duration + 300)
#   SCALEOUT_ENGINE=target/debug/rta-engine
#   SCALEOUT_PYTHON            default: the e2e venv's python (.ci/e2e-kafka), else python3
#   SCALEOUT_OUT=target/scaleout   report.md, report.json and the logs of the last run
#   SCALEOUT_SUBNET=10.231.0   /24 of the private network (it exists only inside the namespaces)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
t_begin=$(date +%s.%N)

REPLICAS=${SCALEOUT_REPLICAS:-3}
USERS=${SCALEOUT_USERS:-20000}
DURATION=${SCALEOUT_DURATION:-60}
RATE=${SCALEOUT_RATE:-200}
GRPC_RATE=${SCALEOUT_GRPC_RATE:-50}
EVENT_RATE=${SCALEOUT_EVENT_RATE:-100}
KILL_AT=${SCALEOUT_KILL_AT:-$((DURATION / 3))}
DOWN_FOR=${SCALEOUT_DOWN:-$((DURATION / 4))}
VICTIM=${SCALEOUT_VICTIM:-2}
WIPE=${SCALEOUT_WIPE:-0}
SAMPLE=${SCALEOUT_SAMPLE:-2000}
MAX_FAILURES=${SCALEOUT_MAX_FAILURES:-0}
TIME_LIMIT=${SCALEOUT_TIME_LIMIT:-$((DURATION + 300))}
ENGINE=${SCALEOUT_ENGINE:-$repo/target/debug/rta-engine}
OUT=${SCALEOUT_OUT:-$repo/target/scaleout}
NET=${SCALEOUT_SUBNET:-10.231.0}
venv_py=${RTA_E2E_VENV:-$HOME/.cache/rta-engine/e2e-venv}/bin/python
PY=${SCALEOUT_PYTHON:-$([ -x "$venv_py" ] && echo "$venv_py" || echo python3)}

say() { echo "== scaleout: $*"; }
fail() { echo "scaleout FAILED: $*" >&2; exit 1; }

# ---------------------------------------------------------------- preflight
[ "$(id -u)" -eq 0 ] || fail "needs root (ip netns, veth)"
[ "$REPLICAS" -ge 2 ] || fail "SCALEOUT_REPLICAS must be at least 2"
[ "$VICTIM" -ge 1 ] && [ "$VICTIM" -le "$REPLICAS" ] || fail "SCALEOUT_VICTIM must be 1..$REPLICAS"
[ $((KILL_AT + DOWN_FOR + 5)) -le "$DURATION" ] || fail "kill at ${KILL_AT}s + down ${DOWN_FOR}s leaves under 5 s of load after the restart (SCALEOUT_DURATION=$DURATION)"
HAPROXY=$(command -v haproxy || true)
[ -n "$HAPROXY" ] || fail "no haproxy (apt-get install -y haproxy)"
TANSU=$(command -v tansu || echo "$HOME/.cargo/bin/tansu")
[ -x "$TANSU" ] || fail "no tansu ($TANSU): .ci/e2e-kafka installs it"
[ -x "$ENGINE" ] || fail "no engine binary $ENGINE (cargo build --bin rta-engine)"
"$PY" -c 'import kafka, grpc, grpc_tools' 2>/dev/null || fail "$PY lacks kafka-python, grpcio or grpcio-tools"
command -v curl >/dev/null || fail "no curl"

# ---------------------------------------------------------------- cleanup
id=so$$
work=$(mktemp -d "${TMPDIR:-/tmp}/rta-scaleout.XXXXXX")
pids=()
namespaces=()
watchdog=
cleanup() {
  local rc=$? p n
  trap - EXIT TERM INT
  # bash's "Killed" notices for the jobs below are noise: stderr aside meanwhile
  exec 3>&2 2>/dev/null
  # the watchdog first (so that it cannot fire now), then its sleep
  [ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null || true
  [ ! -s "$work/watchdog.pid" ] || kill "$(cat "$work/watchdog.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  # anything else still running inside our namespaces (started by us, they are ours)
  for n in "${namespaces[@]}"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "${namespaces[@]}"; do ip netns delete "$n" 2>/dev/null || true; done
  # keep the logs of the last run beside the report
  if [ -d "$work" ]; then
    mkdir -p "$OUT/logs"
    find "$work" -maxdepth 2 \( -name '*.log' -o -name 'haproxy.cfg' -o -name 'engine.toml' \) -print0 2>/dev/null \
      | while IFS= read -r -d '' f; do cp "$f" "$OUT/logs/$(echo "${f#"$work"/}" | tr / -)"; done
    rm -rf "$work"
  fi
  exec 2>&3 3>&-
  [ "$rc" -eq 0 ] || echo "scaleout: exit $rc; logs in $OUT/logs" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'echo "scaleout FAILED: over the time limit of ${TIME_LIMIT}s" >&2; exit 124' TERM
# the whole run is bounded: every step below waits with `wait` or short
# sleeps, so a TERM from the watchdog is handled at once
( sleep "$TIME_LIMIT" & echo $! > "$work/watchdog.pid"; wait $!; kill -TERM $$ ) > /dev/null 2>&1 &
watchdog=$!
mkdir -p "$OUT"
# only what an earlier run left there
rm -rf "$OUT/logs"
rm -f "$OUT"/{report.md,report.json,events.json,load.json,compare.json,seeded.json,haproxy-stats.csv,haproxy.log}

now() { date +%s.%N; }
# bg NETNS LOG CMD...: CMD inside NETNS, in the background; sets $bg_pid
# (ip netns exec execs CMD, so it is CMD's own pid)
bg() {
  local n=$1 log=$2
  shift 2
  ip netns exec "$n" "$@" > "$log" 2>&1 &
  bg_pid=$!
  pids+=("$bg_pid")
}
# nsx NETNS CMD...: a client inside NETNS, in the foreground
nsx() { local n=$1; shift; ip netns exec "$n" "$@"; }
# run_bg NETNS LOG CMD...: CMD in NETNS, waited for with `wait` (so that the
# watchdog's TERM is not held up by it); fails when CMD fails
run_bg() {
  local rc=0
  bg "$@"
  wait "$bg_pid" || rc=$?
  cat "$2"
  [ "$rc" -eq 0 ] || fail "$3 ${4:-} ${5:-} exited with $rc"
}

# ---------------------------------------------------------------- the network
# One /24 on a bridge in a namespace of its own (nothing is added to the
# machine's own network): the broker, each replica, HAProxy and the client
# each have a namespace with one veth on that bridge.
say "network: $REPLICAS replicas, broker, balancer and client, each in a netns, on $NET.0/24"
lan=$id-lan
add_ns() { ip netns add "$1"; namespaces+=("$1"); ip -n "$1" link set lo up; }
add_ns "$lan"
ip -n "$lan" link add br0 type bridge
ip -n "$lan" link set br0 up
k=0
attach() { # attach NETNS IP
  k=$((k + 1))
  add_ns "$1"
  ip -n "$lan" link add "p$k" type veth peer name eth0 netns "$1"
  ip -n "$lan" link set "p$k" master br0 up
  ip -n "$1" addr add "$2/24" dev eth0
  ip -n "$1" link set eth0 up
}
kafka_ns=$id-kafka kafka_ip=$NET.10
lb_ns=$id-lb lb_ip=$NET.2
cl_ns=$id-client
attach "$kafka_ns" "$kafka_ip"
attach "$lb_ns" "$lb_ip"
attach "$cl_ns" "$NET.3"
rip() { echo "$NET.$((20 + $1))"; }
for i in $(seq 1 "$REPLICAS"); do attach "$id-r$i" "$(rip "$i")"; done

# wait_tcp NETNS IP PORT SECONDS
wait_tcp() {
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    nsx "$1" bash -c "echo > /dev/tcp/$2/$3" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing listens on $2:$3 after $4 s"
}

# ---------------------------------------------------------------- Kafka
say "tansu broker at $kafka_ip:9092 ($("$TANSU" --version 2>/dev/null | head -1 || echo tansu))"
bg "$kafka_ns" "$work/tansu.log" "$TANSU" broker --listener-url tcp://0.0.0.0:9092 \
  --advertised-listener-url "tcp://$kafka_ip:9092" --storage-engine memory://tansu/
tansu_pid=$bg_pid
wait_tcp "$cl_ns" "$kafka_ip" 9092 20
broker=$kafka_ip:9092

say "seed: rta-engine gen --users $USERS -> deploy/compose/seed/to_events.py -> the topics of kafka-setup.sh"
mkdir -p "$work/seed" "$work/stubs"
"$ENGINE" gen --users "$USERS" --seed 42 --out "$work/seed/users.jsonl"
"$PY" deploy/compose/seed/to_events.py "$work/seed/users.jsonl" "$work/seed" | sed 's/^/   /'
"$PY" scripts/scaleout/stubs.py "$work/stubs"
run_bg "$cl_ns" "$work/topics.log" "$PY" scripts/scaleout/produce.py topics "$broker" deploy/compose/seed/kafka-setup.sh
run_bg "$cl_ns" "$work/seed.log" "$PY" scripts/scaleout/produce.py seed "$broker" "$work/seed"
# the devices the load asks about: each user's first IMEI md5
"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    d = [x for x in r.get("devices", []) if ":" not in x]
    if d: print(d[0])' "$work/seed/users.jsonl" > "$work/devices.txt"

# ---------------------------------------------------------------- replicas
token=scaleout-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
token_hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
write_config() { # write_config I
  local d=$work/r$1
  mkdir -p "$d/snapshots"
  cat > "$d/engine.toml" <<EOF
# replica $1 of scripts/scaleout.sh
[server]
grpc_addr = "0.0.0.0:50051"
http_addr = "0.0.0.0:8080"
# the admin listener on the private network, for compare.py (the balancer
# forwards only 8080 and 50051)
admin_addr = "0.0.0.0:9090"
worker_threads = 1
drain_seconds = 1

[strategies]
path = "$repo/deploy/demo/strategies.toml"

[taxonomy]
path = "$repo/deploy/demo/taxonomy.toml"

[users]
expected = $USERS

[kafka]
brokers = "$broker"
# every replica reads every partition; a group of its own records its offsets
group_id = "scaleout-r$1"
# ready within 100 messages of every partition's end: under a second of the
# live stream; readiness is latched once reached
ready_max_lag = 100
topics = [
  { name = "rta.tags",      kind = "tags",      format = "json" },
  { name = "rta.behaviour", kind = "behaviour", format = "json" },
  { name = "rta.identity",  kind = "identity",  format = "json" },
]

[kafka.dead_letter]
file = "$d/dead-letters.jsonl"

[snapshot]
dir = "$d/snapshots"
interval_secs = 5
keep = 2

[time]
tz_offset_hours = 8
EOF
}
rpid=()
start_replica() { # start_replica I
  bg "$id-r$1" "$work/r$1/engine.$(date +%s%N).log" env RTA_ADMIN_TOKENS="scaleout:read:$token_hash" RUST_LOG=info \
    "$ENGINE" serve --config "$work/r$1/engine.toml"
  rpid[$1]=$bg_pid
}
ready_code() { nsx "$cl_ns" curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$(rip "$1"):8080/readyz" || true; }
# wait_ready I SECONDS T0: sets $ready_secs, the seconds from T0 to /readyz 200
wait_ready() {
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    kill -0 "${rpid[$1]}" 2>/dev/null || fail "replica $1 exited while starting (logs in $OUT/logs)"
    if [ "$(ready_code "$1")" = 200 ]; then
      ready_secs=$(awk -v a="$3" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
      return 0
    fi
    sleep 0.05
  done
  fail "replica $1 not ready after $2 s"
}
say "replicas: $ENGINE, each reading every partition from the start"
t_start=$(now)
for i in $(seq 1 "$REPLICAS"); do write_config "$i"; start_replica "$i"; done
initial_ready=()
for i in $(seq 1 "$REPLICAS"); do
  wait_ready "$i" 180 "$t_start"
  initial_ready+=("$ready_secs")
  echo "   r$i ($(rip "$i")): ready after $ready_secs s (all started together, each reading $USERS users' events from the start)"
done

# ---------------------------------------------------------------- HAProxy
servers() { # servers PORT [EXTRA]
  local i
  for i in $(seq 1 "$REPLICAS"); do printf '    server r%d %s:%s %s\n' "$i" "$(rip "$i")" "$1" "${2:-}"; done
}
"$PY" - "$work" "$(servers 8080)" "$(servers 50051 'proto h2')" > "$work/haproxy.cfg" <<'PY'
import sys
work, media, grpc = sys.argv[1:]
text = open("scripts/scaleout/haproxy.cfg.in").read()
sys.stdout.write(text.replace("@WORK@", work).replace("@SERVERS_MEDIA@", media).replace("@SERVERS_GRPC@", grpc))
PY
"$HAPROXY" -c -q -f "$work/haproxy.cfg" || fail "haproxy -c rejected $work/haproxy.cfg"
say "HAProxy $("$HAPROXY" -v | head -1 | awk '{print $3}') at $lb_ip: media :8080, gRPC h2c :50051, stats :8404"
bg "$lb_ns" "$work/haproxy.log" "$HAPROXY" -db -f "$work/haproxy.cfg"
haproxy_pid=$bg_pid
stats_csv() { nsx "$cl_ns" curl -s --max-time 2 "http://$lb_ip:8404/stats;csv" || true; }
for _ in $(seq 1 100); do [ -n "$(stats_csv)" ] && break; sleep 0.1; done
[ -n "$(stats_csv)" ] || { cat "$work/haproxy.log" >&2; fail "HAProxy's stats page does not answer"; }
# srv_status BACKEND SERVER: UP, DOWN, "DOWN 1/2", ...
srv_status() { stats_csv | awk -F, -v b="$1" -v s="$2" '$1 == b && $2 == s { print $18 }'; }
for i in $(seq 1 "$REPLICAS"); do
  for _ in $(seq 1 100); do
    [ "$(srv_status media "r$i")" = UP ] && [ "$(srv_status grpc "r$i")" = UP ] && break
    sleep 0.1
  done
  [ "$(srv_status media "r$i")" = UP ] || fail "HAProxy does not see r$i UP"
done
echo "   every replica UP in both backends"

# ---------------------------------------------------------------- load, kill -9, restart
say "load: ${RATE}/s Tencent + ${GRPC_RATE}/s gRPC for ${DURATION}s; live events ${EVENT_RATE}/s; kill -9 r$VICTIM at ${KILL_AT}s, restart at $((KILL_AT + DOWN_FOR))s"
bg "$cl_ns" "$work/live.log" "$PY" scripts/scaleout/produce.py live "$broker" "$work/seed/users.jsonl" \
  --rate "$EVENT_RATE" --duration "$((DURATION + 5))" --out "$work/live.json" --stop-file "$work/live.stop"
live_pid=$bg_pid
bg "$cl_ns" "$work/load.log" "$PY" scripts/scaleout/load.py --stubs "$work/stubs" --devices "$work/devices.txt" \
  --http "$lb_ip:8080" --grpc "$lb_ip:50051" --rate "$RATE" --grpc-rate "$GRPC_RATE" \
  --duration "$DURATION" --started "$work/load.started" --out "$work/load.json"
load_pid=$bg_pid
for _ in $(seq 1 300); do [ -s "$work/load.started" ] && break; kill -0 "$load_pid" 2>/dev/null || break; sleep 0.1; done
[ -s "$work/load.started" ] || { cat "$work/load.log" >&2; fail "the load generator did not start"; }
t_load=$(cat "$work/load.started")
until_t() { # sleep until load start + $1 seconds
  local d
  d=$(awk -v t="$t_load" -v s="$1" -v n="$(now)" 'BEGIN { d = t + s - n; if (d < 0) d = 0; printf "%.3f", d }')
  sleep "$d"
}
until_t "$KILL_AT"
t_kill=$(now)
kill -KILL "${rpid[$VICTIM]}"
wait "${rpid[$VICTIM]}" 2>/dev/null || true
echo "   r$VICTIM killed (SIGKILL)"
t_down=
for _ in $(seq 1 200); do
  case "$(srv_status media "r$VICTIM")" in DOWN*) t_down=$(now); break ;; esac
  sleep 0.05
done
[ -n "$t_down" ] && echo "   HAProxy: r$VICTIM DOWN" || echo "   HAProxy never marked r$VICTIM DOWN" >&2
until_t "$((KILL_AT + DOWN_FOR))"
if [ "$WIPE" = 1 ]; then
  rm -rf "$work/r$VICTIM/snapshots"
  mkdir -p "$work/r$VICTIM/snapshots"
  echo "   r$VICTIM's snapshots deleted: a cold start from Kafka"
fi
t_restart=$(now)
start_replica "$VICTIM"
wait_ready "$VICTIM" 120 "$t_restart"
t_ready=$(now)
echo "   r$VICTIM restarted: /readyz 200 after $ready_secs s"
t_up=
for _ in $(seq 1 200); do
  [ "$(srv_status media "r$VICTIM")" = UP ] && [ "$(srv_status grpc "r$VICTIM")" = UP ] && { t_up=$(now); break; }
  sleep 0.05
done
[ -n "$t_up" ] && echo "   HAProxy: r$VICTIM UP again" || echo "   HAProxy did not mark r$VICTIM UP" >&2
rc=0
wait "$load_pid" || rc=$?
cat "$work/load.log"
[ "$rc" -eq 0 ] || fail "the load generator exited with $rc"
touch "$work/live.stop"
rc=0
wait "$live_pid" || rc=$?
cat "$work/live.log"
[ "$rc" -eq 0 ] || fail "the live producer exited with $rc"
stats_csv > "$work/haproxy-stats.csv"

# ---------------------------------------------------------------- the same index?
say "index: every replica caught up, then profiles and decisions compared"
replica_list=$(for i in $(seq 1 "$REPLICAS"); do printf 'r%d=%s,' "$i" "$(rip "$i")"; done)
compare_rc=0
bg "$cl_ns" "$work/compare.log" "$PY" scripts/scaleout/compare.py --replicas "${replica_list%,}" --token "$token" \
  --users "$work/seed/users.jsonl" --live "$work/live.json" --sample "$SAMPLE" --stubs "$work/stubs" \
  --out "$work/compare.json"
wait "$bg_pid" || compare_rc=$?
cat "$work/compare.log"
[ -s "$work/compare.json" ] || fail "compare.py wrote no result (exit $compare_rc)"
restored=$(sed 's/\x1b\[[0-9;]*m//g' "$(ls -t "$work/r$VICTIM"/engine.*.log | head -1)" | grep -m1 -i 'snapshot restored' || true)

# ---------------------------------------------------------------- report
cat > "$work/events.json" <<EOF
{"t_begin": $t_begin, "t_load": $t_load, "t_kill": $t_kill, "t_down": ${t_down:-null},
 "t_restart": $t_restart, "t_ready": $t_ready, "t_up": ${t_up:-null}, "t_end": $(now),
 "victim": "r$VICTIM", "wipe": $WIPE, "replicas": $REPLICAS, "users": $USERS,
 "duration": $DURATION, "rate": $RATE, "grpc_rate": $GRPC_RATE, "event_rate": $EVENT_RATE,
 "initial_ready_seconds": [$(IFS=,; echo "${initial_ready[*]}")],
 "kill_at": $KILL_AT, "down_for": $DOWN_FOR, "sample": $SAMPLE, "max_failures": $MAX_FAILURES,
 "restored_line": $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$restored"),
 "haproxy": $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$("$HAPROXY" -v | head -1)"),
 "tansu": $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$("$TANSU" --version 2>/dev/null | head -1)"),
 "engine": $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$ENGINE"),
 "commit": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)",
 "host": $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$(nproc) cores, $(uname -r)")}
EOF
cp "$work/seed/seeded.json" "$work/seeded.json"
cp "$work/load.json" "$work/compare.json" "$work/events.json" "$work/haproxy-stats.csv" "$work/seeded.json" "$work/haproxy.log" "$OUT/"
"$PY" scripts/scaleout/report.py "$OUT"
