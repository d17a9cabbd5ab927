#!/usr/bin/env bash
# Server CPU per gRPC Decide of two rta-engine binaries, runs interleaved, so
# that a change's cost is read as a ratio on a noisy machine:
#
#   scripts/cpu_per_request.sh OLD_BIN NEW_BIN [ROUNDS]
#
# Each round starts each binary as `demo` (USERS generated users, one serving
# thread), drives it with rta-load's closed loop (CONNECTIONS x CONCURRENCY in
# flight, DURATION s, no warm-up), and prints the engine's CPU time
# (utime + stime from /proc/<pid>/stat) per answered request. TARGET=tencent
# drives `POST /rta/tencent` over HTTP/1.1 instead (CONCURRENCY connections,
# one request in flight each). Needs
# target/release/rta-load (`cargo build --release --bin rta-load`) or LOAD=...
set -euo pipefail
cd "$(dirname "$0")/.."

old=${1:?usage: $0 OLD_BIN NEW_BIN [ROUNDS]}
new=${2:?usage: $0 OLD_BIN NEW_BIN [ROUNDS]}
rounds=${3:-2}
users=${USERS:-200000}
duration=${DURATION:-5}
connections=${CONNECTIONS:-4}
concurrency=${CONCURRENCY:-50}
load=${LOAD:-target/release/rta-load}
target=${TARGET:-grpc}
tick=$(getconf CLK_TCK)
grpc=50651 http=58651 admin=59651

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_run() {
    local bin=$1 extra=()
    # binaries from before the admin listener existed have no --admin-addr
    if "$bin" demo --help | grep -q -- --admin-addr; then
        extra=(--admin-addr "127.0.0.1:$admin")
    fi
    "$bin" demo --users "$users" --worker-threads 1 --grpc-addr "127.0.0.1:$grpc" \
        --http-addr "127.0.0.1:$http" "${extra[@]}" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 1 300); do
        curl -sf "127.0.0.1:$http/readyz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    local before after json ok
    json=$(mktemp)
    before=$(cpu_ticks "$pid")
    "$load" --closed --target "$target" --addr "http://127.0.0.1:$grpc" \
        --http-addr "127.0.0.1:$http" --users "$users" --warmup 0 \
        --duration "$duration" --connections "$connections" --concurrency "$concurrency" \
        --json "$json" >/dev/null 2>&1
    after=$(cpu_ticks "$pid")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    ok=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['ok'])" "$json")
    rm -f "$json"
    python3 -c "import sys; t,ok,tick=map(float,sys.argv[1:]); print(f'{t/tick/ok*1e6:.2f} us CPU per request ({ok:.0f} answered)')" \
        "$((after - before))" "$ok" "$tick"
}

for r in $(seq 1 "$rounds"); do
    echo "round $r: old $(one_run "$old")"
    echo "round $r: new $(one_run "$new")"
done
