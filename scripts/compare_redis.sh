#!/usr/bin/env bash
# Our full gRPC Decide (or the Tencent endpoint) vs. Redis GET, on this
# machine, in one go.
#
# Redis holding user tags is the ordinary alternative to this engine, so this
# measures both at the same client concurrency on the same cores:
#   1. builds release (`cargo build --release --bins`);
#   2. starts `rta-engine demo` (USERS generated users) and waits for /readyz;
#   3. `rta-load` closed loop at CONCURRENCY in flight: our saturation rate;
#   4. `rta-load` open loop at each of OPEN_PERCENTS % of it: our p99 under
#      load (latency from the scheduled send, coordinated omission corrected);
#   5. stops the engine, starts a local `redis-server` and loads USERS keys of
#      VALUE_SIZE bytes (`key:%012d`, the names `redis-benchmark -r` asks for);
#   6. `redis-benchmark -t get -r USERS -c CONCURRENCY` (no pipelining, -P 1);
#   7. prints the table and writes every result as JSON into OUT_DIR, with
#      the engine's CPU time per request of each run (from /proc).
#
# Needs: cargo, curl, python3, redis-server, redis-cli, redis-benchmark
#   (Debian/Ubuntu: apt-get install -y redis-server redis-tools).
# Settings (environment): USERS=1000000 CONCURRENCY=50 CONNECTIONS=4
#   LOAD_THREADS=1 ENGINE_THREADS=1 DURATION=10 WARMUP=2 OPEN_PERCENTS="25 50 70 80"
#   DEADLINE_MS=2 TARGET=grpc PACER=spin
#   HIT_RATIO=0.9 ZIPF=0 VALUE_SIZE=200 GRPC_PORT=55051 HTTP_PORT=58080
#   REDIS_PORT=56379 OUT_DIR=target/compare; CARGO_TARGET_DIR is honoured.
#   ENGINE_CPUS / LOAD_CPUS: CPU lists (taskset -c) for the engine and for the
#   load generators, e.g. 0-11 and 12-15 on a 16-core machine (default: none).
#   REDIS=0 leaves Redis out (the engine's figures only; no redis tools needed).
#   TARGET=tencent drives the Tencent endpoint (`POST /rta/tencent`, HTTP/1.1,
#   one request in flight per connection: CONCURRENCY connections) instead of
#   gRPC `Decide`.
#   PACER: the open loop's pacer (`rta-load --pacer`): spin (busy-polls, so
#   each request leaves when due and the generator takes one core) or sleep
#   (a thread that sleeps between 100 us ticks).
#   BUILD=0 uses the binaries already in BIN_DIR (default target/release)
#   instead of building them (no cargo needed), e.g. on a machine without a
#   toolchain or network.
# The run of the performance issue's large machine (server on 12 cores, load
# on 4, 100 M users) is this script with, e.g.:
#   USERS=100000000 ENGINE_THREADS=12 ENGINE_CPUS=0-11 LOAD_THREADS=4 \
#   LOAD_CPUS=12-15 CONCURRENCY=512 CONNECTIONS=16 REDIS=0 scripts/compare_redis.sh
# The engine serves with ENGINE_THREADS worker threads (default 1, like Redis's
# one thread: on a small machine the other core is the load generator's, and
# an engine with a worker per core there only fights its own load for CPU;
# set it to the core count on a machine with cores to spare); the load
# generators use LOAD_THREADS threads (redis-benchmark is single-threaded
# unless LOAD_THREADS > 1).
#
# Usage: scripts/compare_redis.sh            (from anywhere in the repository)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

USERS=${USERS:-1000000}
CONCURRENCY=${CONCURRENCY:-50}
CONNECTIONS=${CONNECTIONS:-4}
LOAD_THREADS=${LOAD_THREADS:-1}
ENGINE_THREADS=${ENGINE_THREADS:-1}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
OPEN_PERCENTS=${OPEN_PERCENTS:-25 50 70 80}
DEADLINE_MS=${DEADLINE_MS:-2}
TARGET=${TARGET:-grpc}
PACER=${PACER:-spin}
HIT_RATIO=${HIT_RATIO:-0.9}
ZIPF=${ZIPF:-0}
VALUE_SIZE=${VALUE_SIZE:-200}
GRPC_PORT=${GRPC_PORT:-55051}
HTTP_PORT=${HTTP_PORT:-58080}
REDIS_PORT=${REDIS_PORT:-56379}
OUT_DIR=${OUT_DIR:-target/compare}
BIN_DIR=${BIN_DIR:-"${CARGO_TARGET_DIR:-target}/release"}
ENGINE_CPUS=${ENGINE_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}
REDIS=${REDIS:-1}
BUILD=${BUILD:-1}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-600}

case "$TARGET" in grpc | tencent) ;; *) printf 'TARGET must be grpc or tencent\n' >&2; exit 2 ;; esac
case "$PACER" in spin | sleep) ;; *) printf 'PACER must be spin or sleep\n' >&2; exit 2 ;; esac

log() { printf '[compare] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

tools=(curl python3)
((BUILD)) && tools+=(cargo)
((REDIS)) && tools+=(redis-server redis-cli redis-benchmark)
[[ -n "$ENGINE_CPUS$LOAD_CPUS" ]] && tools+=(taskset)
for tool in "${tools[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case "$tool" in
            redis-*) die "$tool not found: install it with 'apt-get install -y redis-server redis-tools'" ;;
            *) die "$tool not found" ;;
        esac
    fi
done

mkdir -p "$OUT_DIR"

ENGINE_PID=""
REDIS_PID=""
# Stops what this script started, on any exit.
cleanup() {
    local pid
    for pid in "$ENGINE_PID" "$REDIS_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls `$@` every 0.2 s until it succeeds; fails after $1 seconds or when the
# process $2 has exited.
wait_until() {
    local timeout_s=$1 pid=$2 what=$3
    shift 3
    local deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready"
        ((SECONDS < deadline)) || die "$what not ready after ${timeout_s}s"
        sleep 0.2
    done
}

# json_get FILE EXPR: a value from a JSON file (EXPR indexes `r`, e.g. r["latency_us"]["p99"]).
json_get() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

# pinned LIST CMD...: CMD as an argument list, run through `taskset -c LIST`
# when LIST is not empty (taskset execs CMD, so a background job's $! is CMD's
# own pid and killing it stops CMD); sets the array PINNED.
pinned() {
    local cpus=$1
    shift
    if [[ -n "$cpus" ]]; then
        PINNED=(taskset -c "$cpus" "$@")
    else
        PINNED=("$@")
    fi
}
# on_cpus LIST CMD...: runs CMD (in the foreground) as `pinned` says.
on_cpus() {
    pinned "$@"
    "${PINNED[@]}"
}

# a server already answering on our ports would be measured instead of ours
if curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then
    die "something already serves on port $HTTP_PORT: stop it or set HTTP_PORT/GRPC_PORT"
fi

if ((BUILD)); then
    log "building release binaries"
    cargo build --release --bins
fi
ENGINE="$BIN_DIR/rta-engine"
LOAD="$BIN_DIR/rta-load"
[[ -x "$ENGINE" && -x "$LOAD" ]] || die "no binaries in $BIN_DIR (set CARGO_TARGET_DIR as for the build)"

# --- our engine --------------------------------------------------------------
log "starting rta-engine demo with $USERS users, $ENGINE_THREADS worker threads (log: $OUT_DIR/engine.log)"
pinned "$ENGINE_CPUS" "$ENGINE" demo --users "$USERS" --worker-threads "$ENGINE_THREADS" \
    --grpc-addr "127.0.0.1:$GRPC_PORT" --http-addr "127.0.0.1:$HTTP_PORT"
"${PINNED[@]}" >"$OUT_DIR/engine.log" 2>&1 &
ENGINE_PID=$!
wait_until "$READY_TIMEOUT_S" "$ENGINE_PID" "rta-engine" \
    curl -sf "http://127.0.0.1:$HTTP_PORT/readyz"
log "rta-engine ready"

load_args=(--target "$TARGET" --addr "http://127.0.0.1:$GRPC_PORT"
    --http-addr "127.0.0.1:$HTTP_PORT" --users "$USERS"
    --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" --threads "$LOAD_THREADS"
    --duration "$DURATION" --warmup "$WARMUP" --deadline-ms "$DEADLINE_MS"
    --hit-ratio "$HIT_RATIO" --zipf "$ZIPF")

# engine_cpu NAME CMD...: runs CMD, writing the engine's CPU seconds spent
# meanwhile (user + system, from /proc) to OUT_DIR/engine_cpu_NAME.txt
engine_cpu() {
    local name=$1 before after
    shift
    before=$(awk '{print $14 + $15}' "/proc/$ENGINE_PID/stat")
    "$@"
    after=$(awk '{print $14 + $15}' "/proc/$ENGINE_PID/stat")
    python3 -c 'import sys; print((int(sys.argv[2]) - int(sys.argv[1])) / int(sys.argv[3]))' \
        "$before" "$after" "$(getconf CLK_TCK)" >"$OUT_DIR/engine_cpu_$name.txt"
}

log "rta-load closed loop, $CONCURRENCY in flight ($TARGET)"
engine_cpu closed on_cpus "$LOAD_CPUS" "$LOAD" "${load_args[@]}" --closed --json "$OUT_DIR/engine_closed.json"
SATURATION=$(json_get "$OUT_DIR/engine_closed.json" 'round(r["achieved_rate"])')
((SATURATION > 0)) || die "saturation rate is 0: see $OUT_DIR/engine_closed.json"
for percent in $OPEN_PERCENTS; do
    open_rate=$((SATURATION * percent / 100))
    log "rta-load open loop at $open_rate/s ($percent % of $SATURATION/s, $PACER pacer)"
    engine_cpu "open_$percent" on_cpus "$LOAD_CPUS" "$LOAD" "${load_args[@]}" --rate "$open_rate" \
        --pacer "$PACER" --json "$OUT_DIR/engine_open_$percent.json"
done

kill "$ENGINE_PID"
wait "$ENGINE_PID" 2>/dev/null || true
ENGINE_PID=""

# --- Redis -------------------------------------------------------------------
REDIS_N=0
REDIS_VERSION=""
if ((REDIS)); then
    log "starting redis-server on port $REDIS_PORT (no persistence)"
    pinned "$ENGINE_CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no
    "${PINNED[@]}" >"$OUT_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    wait_until 30 "$REDIS_PID" "redis-server" redis-cli -p "$REDIS_PORT" ping

    log "loading $USERS keys of $VALUE_SIZE bytes"
    VALUE=$(head -c "$VALUE_SIZE" /dev/zero | tr '\0' 'v')
    redis-cli -p "$REDIS_PORT" eval \
        "for i = 0, tonumber(ARGV[1]) - 1 do redis.call('SET', string.format('key:%012d', i), ARGV[2]) end return redis.call('DBSIZE')" \
        0 "$USERS" "$VALUE" >/dev/null
    KEYS=$(redis-cli -p "$REDIS_PORT" dbsize)
    [[ "$KEYS" == "$USERS" ]] || die "redis holds $KEYS keys, expected $USERS"

    bench_args=(-p "$REDIS_PORT" -t get -r "$USERS" -c "$CONCURRENCY" -P 1 --csv)
    if ((LOAD_THREADS > 1)); then
        bench_args+=(--threads "$LOAD_THREADS")
    fi
    # redis-benchmark counts requests, not seconds: a short run warms up and
    # calibrates, then the measured run lasts about DURATION seconds
    redis_rps() { python3 -c 'import csv,sys; rows=[r for r in csv.DictReader(open(sys.argv[1])) if r["test"]=="GET"]; print(round(float(rows[0]["rps"])))' "$1"; }
    log "redis-benchmark warm-up"
    on_cpus "$LOAD_CPUS" redis-benchmark "${bench_args[@]}" -n 100000 >"$OUT_DIR/redis_warmup.csv"
    REDIS_N=$(($(redis_rps "$OUT_DIR/redis_warmup.csv") * ${DURATION%.*}))
    ((REDIS_N >= 100000)) || REDIS_N=100000
    log "redis-benchmark -t get -c $CONCURRENCY -r $USERS -n $REDIS_N"
    on_cpus "$LOAD_CPUS" redis-benchmark "${bench_args[@]}" -n "$REDIS_N" >"$OUT_DIR/redis_get.csv"
    REDIS_VERSION=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')

    kill "$REDIS_PID"
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
else
    log "REDIS=0: no Redis run"
fi

# --- summary -----------------------------------------------------------------
TARGET="$TARGET" ENGINE_THREADS="$ENGINE_THREADS" ENGINE_CPUS="$ENGINE_CPUS" LOAD_CPUS="$LOAD_CPUS" python3 - "$OUT_DIR" "$REDIS_N" "$REDIS_VERSION" "$VALUE_SIZE" $OPEN_PERCENTS <<'EOF'
import csv, json, os, platform, subprocess, sys, time

out, redis_n, redis_version, value_size, *open_percents = sys.argv[1:]
closed = json.load(open(os.path.join(out, "engine_closed.json")))
opened = {int(p): json.load(open(os.path.join(out, f"engine_open_{p}.json"))) for p in open_percents}
redis_csv = os.path.join(out, "redis_get.csv")
get = (
    next(r for r in csv.DictReader(open(redis_csv)) if r["test"] == "GET")
    if int(redis_n) > 0
    else None
)

def cpu_per_request_us(name, r):
    """The engine's CPU microseconds per request over a run: its CPU time
    over warm-up and measurement, by the measured rate times that span."""
    seconds = float(open(os.path.join(out, f"engine_cpu_{name}.txt")).read())
    requests = r["achieved_rate"] * (r["duration_s"] + r["warmup_s"])
    return round(seconds * 1e6 / requests, 1) if requests else None

def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""

redis_rps = float(get["rps"]) if get else 0.0
redis_p99_us = float(get["p99_latency_ms"]) * 1000 if get else 0.0
summary = {
    "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "git": git_rev(),
    "machine": {"cpus": os.cpu_count(), "cpu": cpu_model()},
    "target": os.environ.get("TARGET", "grpc"),
    "concurrency": closed["concurrency"],
    "engine_threads": int(os.environ.get("ENGINE_THREADS", "1")),
    "pacer": next((r["pacer"] for r in opened.values()), None),
    "users_or_keys": closed["users"],
    "engine": {
        "saturation_decisions_per_s": closed["achieved_rate"],
        "closed_loop_p99_us": closed["latency_us"]["p99"],
        "closed_loop_cpu_us_per_request": cpu_per_request_us("closed", closed),
        "open_loop": [
            {
                "percent_of_saturation": p,
                "rate": r["target_rate"],
                "achieved_per_s": r["achieved_rate"],
                "p50_us": r["latency_us"]["p50"],
                "p99_us": r["latency_us"]["p99"],
                "p99_from_send_us": r["service_us"]["p99"],
                "late": r["late"],
                "pacer_stalls": r.get("pacer_stalls"),
                "cpu_us_per_request": cpu_per_request_us(f"open_{p}", r),
                "errors": r["errors"],
            }
            for p, r in sorted(opened.items())
        ],
        "closed": closed,
        "open": {str(p): r for p, r in sorted(opened.items())},
    },
    "engine_cpus": os.environ.get("ENGINE_CPUS", ""),
    "load_cpus": os.environ.get("LOAD_CPUS", ""),
    "load_threads": closed["threads"],
    "redis": None if get is None else {
        "version": redis_version,
        "value_bytes": int(value_size),
        "requests": int(redis_n),
        "gets_per_s": redis_rps,
        "p50_us": float(get["p50_latency_ms"]) * 1000,
        "p99_us": redis_p99_us,
        "max_us": float(get["max_latency_ms"]) * 1000,
        "csv": get,
    },
    "ratio_decisions_to_gets": closed["achieved_rate"] / redis_rps if redis_rps else None,
}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)

e = summary["engine"]
api = "gRPC Decide" if summary["target"] == "grpc" else "Tencent endpoint"
def stalls(o):
    s = o.get("pacer_stalls")
    return f'{s["count"]} / {s["longest_us"] / 1000:.1f} ms' if s else ""

rows = [(f"rta-engine {api}, closed loop", f'{e["saturation_decisions_per_s"]:,.0f}', f'{closed["latency_us"]["p50"]:,.0f}', f'{e["closed_loop_p99_us"]:,.0f}', e["closed_loop_cpu_us_per_request"], "")]
for o in e["open_loop"]:
    rows.append((f'  open loop at {o["rate"]:,.0f}/s ({o["percent_of_saturation"]} %)', f'{o["achieved_per_s"]:,.0f}', f'{o["p50_us"]:,.0f}', f'{o["p99_us"]:,.0f}', o["cpu_us_per_request"], stalls(o)))
if get:
    rows.append(("redis GET, closed loop (redis-benchmark)", f"{redis_rps:,.0f}", f'{float(get["p50_latency_ms"]) * 1000:,.0f}', f"{redis_p99_us:,.0f}", "", ""))
print(f'\n{summary["machine"]["cpus"]} CPUs ({summary["machine"]["cpu"]}), {summary["concurrency"]} requests in flight, {summary["users_or_keys"]:,} users / keys')
print(f'{"":44} {"per s":>10} {"p50 us":>8} {"p99 us":>8} {"engine CPU us/req":>18} {"pacer stalls > 1 ms / longest":>30}')
for name, rate, p50, p99, cpu, stall in rows:
    print(f"{name:44} {rate:>10} {p50:>8} {p99:>8} {cpu if cpu is not None else '':>18} {stall:>30}")
if get:
    print(f'ratio: {summary["ratio_decisions_to_gets"]:.2f} full decisions per Redis GET')
print(f"results: {os.path.join(out, 'summary.json')}")
EOF
