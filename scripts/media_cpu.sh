#!/usr/bin/env bash
# Server CPU per request of each media endpoint, under h2load (nghttp2-client)
# as an independent client, the endpoints interleaved in each round so that
# they are read side by side on a noisy machine:
#
#   scripts/media_cpu.sh [BIN] [ROUNDS]      (BIN default target/release/rta-engine)
#
# Starts BIN as `demo` (USERS generated users, one worker thread), writes one
# request body per protocol for the matching device the demo prints (with
# Google's protobuf: scripts/tencent_request.py, scripts/media_request.py),
# then per round and endpoint runs `h2load --h1 -c CONNECTIONS -m 1 -n
# REQUESTS` (HTTP/1.1, one request in flight per connection, as media call)
# and prints the engine's CPU time (utime + stime from /proc/<pid>/stat) per
# answered request, and requests/s.
#
# Needs: h2load (apt-get install nghttp2-client), curl, python3 with protobuf
# and grpcio-tools. Settings: USERS=200000 CONNECTIONS=32 REQUESTS=100000
# HTTP_PORT=58751.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/rta-engine}
rounds=${2:-3}
users=${USERS:-200000}
connections=${CONNECTIONS:-32}
requests=${REQUESTS:-100000}
http=${HTTP_PORT:-58751}
tick=$(getconf CLK_TCK)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" demo --users "$users" --worker-threads 1 --grpc-addr 127.0.0.1:0 \
    --http-addr "127.0.0.1:$http" --admin-addr 127.0.0.1:0 >"$work/demo.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    grep -q "Try it" "$work/demo.log" && curl -sf "127.0.0.1:$http/readyz" >/dev/null && break
    sleep 0.2
done
md5=$(grep -o 'imei:[0-9a-f]\{32\}' "$work/demo.log" | head -1 | cut -d: -f2)
[ -n "$md5" ] || { echo "the demo printed no matching device" >&2; exit 1; }
python3 scripts/tencent_request.py "$md5" --exp 32768 >"$work/tencent.bin"
python3 scripts/media_request.py oceanengine "$md5" >"$work/oceanengine.bin"
python3 scripts/media_request.py meituan "$md5" >"$work/meituan.bin"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

one_run() {
    local media=$1 before after out ok rps
    before=$(cpu_ticks)
    out=$(h2load --h1 -c "$connections" -m 1 -n "$requests" -d "$work/$media.bin" \
        -H 'content-type: application/x-protobuf' "http://127.0.0.1:$http/rta/$media")
    after=$(cpu_ticks)
    ok=$(sed -n 's/.*requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
    rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
    python3 -c "import sys; t,ok,tick=map(float,sys.argv[1:4]); print(f'{t/tick/ok*1e6:6.2f} us CPU per request, {float(sys.argv[4]):8.0f} req/s ({ok:.0f} answered)')" \
        "$((after - before))" "$ok" "$tick" "$rps"
}

# one unmeasured pass warms every path
for media in tencent oceanengine meituan; do
    h2load --h1 -c "$connections" -m 1 -n 5000 -d "$work/$media.bin" \
        -H 'content-type: application/x-protobuf' "http://127.0.0.1:$http/rta/$media" >/dev/null
done
for r in $(seq 1 "$rounds"); do
    for media in tencent oceanengine meituan; do
        printf 'round %s  %-12s %s\n' "$r" "$media" "$(one_run "$media")"
    done
done
