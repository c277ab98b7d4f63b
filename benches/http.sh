#!/usr/bin/env bash
# HTTP benchmark: requests/s of GET /api/v1/products/prd_2/stock next to GET /healthz, measured
# alternately in the same run against one release server on loopback, plus the product detail
# GET /api/v1/products/prd_2. Target: stock reads at least 80 % of /healthz.
#
#   bash benches/http.sh                 # 10 s per round
#   DURATION=5 PORT=18080 bash benches/http.sh
#
# wrk is closed-loop: each of its 64 connections sends the next request only when the previous
# answer has arrived, so when the server slows down wrk sends less, and queueing never shows in
# its latency figures. The throughput ratio in one run is the figure that matters here; for
# latency claims use an open-loop generator (see shared/NOTES.md).
set -euo pipefail
shopt -s inherit_errexit

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PORT="${PORT:-0}" # 0: the server picks a free port and prints it
THREADS=1
CONNECTIONS=64
TARGET_PERCENT=80

HEALTH_PATH=/healthz
STOCK_PATH=/api/v1/products/prd_2/stock
DETAIL_PATH=/api/v1/products/prd_2

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

ensure_wrk

print_machine
echo

build_release

DATA_DIR="$(mktemp -d)"
SERVER_LOG="$DATA_DIR.log"
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA_DIR" "$SERVER_LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ALLOT_LOG=warn target/release/allot serve \
    --listen "127.0.0.1:$PORT" \
    --data-dir "$DATA_DIR" \
    --ip-rate-limit 0 \
    >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

wait_ready "$SERVER_PID" "$SERVER_LOG"

echo "== server: $BASE (release, ALLOT_LOG=warn, --ip-rate-limit 0, fresh data dir)"
for path in "$HEALTH_PATH" "$STOCK_PATH" "$DETAIL_PATH"; do
    code="$(curl -s -o "$DATA_DIR.body" -w '%{http_code}' "$BASE$path")"
    echo "GET $path -> $code, $(wc -c <"$DATA_DIR.body") bytes: $(head -c 300 "$DATA_DIR.body")"
    rm -f "$DATA_DIR.body"
    if [[ "$code" != 200 ]]; then
        echo "error: GET $path answered $code" >&2
        exit 1
    fi
done
echo


# One wrk run; prints "RPS P50 P99 CPU_US" (latencies in ms; CPU_US: the server's CPU time per
# answered request, in microseconds, which other tenants of the machine disturb less than
# requests/s). Fails on any error or non-2xx answer.
measure() {
    local path="$1" seconds="$2" out figures rps p50 p99 requests ticks_before ticks_after
    ticks_before="$(server_ticks)"
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --latency "$BASE$path")"
    if grep -Eq 'Non-2xx or 3xx responses|Socket errors' <<<"$out"; then
        echo "error: wrk reported errors for $path:" >&2
        echo "$out" >&2
        return 1
    fi
    ticks_after="$(server_ticks)"
    figures="$(wrk_figures "$path" <<<"$out")" || return 1
    read -r rps p50 p99 requests <<<"$figures"
    echo "$rps $p50 $p99 $(us_per_request "$((ticks_after - ticks_before))" "$requests")"
}

echo "== warm-up (${WARMUP} s per endpoint, discarded)"
for path in "$HEALTH_PATH" "$STOCK_PATH" "$DETAIL_PATH"; do
    measure "$path" "$WARMUP" >/dev/null
done
echo

echo "== rounds: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, interleaved in one run"
echo "   (closed-loop: latency figures hide queueing; the throughput ratio is the figure here)"
printf '%-6s %-7s %-30s %11s %8s %8s %15s\n' \
    round load path 'requests/s' 'p50 ms' 'p99 ms' 'server CPU us/req'
declare -A SUM=()
declare -A CPU_SUM=()
declare -A COUNT=()
declare -A RPS=() # "name pass" -> requests/s
round=0
for pass in 1 2; do
    for name in healthz stock detail; do
        case "$name" in
            healthz) path="$HEALTH_PATH" ;;
            stock) path="$STOCK_PATH" ;;
            detail) path="$DETAIL_PATH" ;;
        esac
        round=$((round + 1))
        result="$(measure "$path" "$DURATION")"
        read -r rps p50 p99 cpu_us <<<"$result"
        printf '%-6s %-7s %-30s %11.0f %8.2f %8.2f %15.2f\n' \
            "$round" "$name" "$path" "$rps" "$p50" "$p99" "$cpu_us"
        CPU_SUM[$name]="$(awk -v a="${CPU_SUM[$name]:-0}" -v b="$cpu_us" 'BEGIN { printf "%.4f", a + b }')"
        SUM[$name]="$(awk -v a="${SUM[$name]:-0}" -v b="$rps" 'BEGIN { printf "%.2f", a + b }')"
        COUNT[$name]=$((${COUNT[$name]:-0} + 1))
        RPS["$name $pass"]="$rps"
    done
done
echo

mean() { awk -v s="${SUM[$1]}" -v n="${COUNT[$1]}" 'BEGIN { printf "%.0f", s / n }'; }
HEALTH_MEAN="$(mean healthz)"
STOCK_MEAN="$(mean stock)"
DETAIL_MEAN="$(mean detail)"
percent() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", 100 * a / b }'; }
STOCK_RATIO="$(percent "$STOCK_MEAN" "$HEALTH_MEAN")"
DETAIL_RATIO="$(percent "$DETAIL_MEAN" "$HEALTH_MEAN")"

echo "== means"
cpu_mean() { awk -v s="${CPU_SUM[$1]}" -v n="${COUNT[$1]}" 'BEGIN { printf "%.2f", s / n }'; }
for name in healthz stock detail; do
    printf '%-8s %8s requests/s   server CPU %6s us/request\n' \
        "$name" "$(mean "$name")" "$(cpu_mean "$name")"
done
echo "stock / healthz:  $STOCK_RATIO %"
echo "detail / healthz: $DETAIL_RATIO %"
echo "stock / healthz per pass (each stock round against the healthz round just before it):" \
    "$(percent "${RPS[stock 1]}" "${RPS[healthz 1]}") %, $(percent "${RPS[stock 2]}" "${RPS[healthz 2]}") %"
echo "server CPU per /healthz request / per stock request: $(percent "$(cpu_mean healthz)" "$(cpu_mean stock)") %" \
    "(the stock/healthz ratio if the server's own CPU were the only limit)"
if awk -v r="$STOCK_RATIO" -v t="$TARGET_PERCENT" 'BEGIN { exit !(r >= t) }'; then
    echo "target (stock >= $TARGET_PERCENT % of /healthz): met"
else
    echo "target (stock >= $TARGET_PERCENT % of /healthz): NOT met"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
