#!/usr/bin/env bash
# HTTP benchmark of durable placements: POST /api/v1/orders where every request places an order
# (a general product with ample stock, one customer's Bearer token, a unique Idempotency-Key
# each), next to GET /healthz, alternately in one run against one release server on loopback,
# at each connection count of CONNECTIONS. Every 201 answer waited for its batch's fsync. The
# figure is the ratio placements/s : healthz/s within a run.
#
#   bash benches/placements.sh                          # 10 s rounds, 2 passes, -c64 and -c512
#   DURATION=5 PASSES=1 CONNECTIONS="64" bash benches/placements.sh
#   ALLOT_BIN=/path/to/other/allot bash benches/placements.sh   # measure another build
#
# Setup (not measured): an admin made offline, one verified customer signed up over the API
# (loadtest/setup_users.py), a general product with STOCK units. Any answer but 201 for an
# order (or 200 for /healthz), or a socket error, fails the run; at the end the stock must add up
# (the units reserved are the orders answered 201, plus at most one request in flight per
# connection when wrk stopped) and `allot db verify` replays the log after the stop.
set -euo pipefail
shopt -s inherit_errexit

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PASSES="${PASSES:-2}"
CONNECTIONS="${CONNECTIONS:-64 512}"
STOCK="${STOCK:-2000000}"
THREADS=1

HEALTH_PATH=/healthz
ADMIN_EMAIL=admin@bench.allot.test
ADMIN_PASSWORD="Bench-admin-$RANDOM-1!"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

ensure_wrk
print_machine
echo
if [[ -n "${ALLOT_BIN:-}" ]]; then
    echo "== binary: $ALLOT_BIN (ALLOT_BIN, not built here)"
else
    build_release
    ALLOT_BIN=target/release/allot
fi

make_workdir
DATA_DIR="$WORK/data"
SERVER_LOG="$WORK/server.log"
TOKENS="$WORK/tokens.txt"

ALLOT_LOG=warn ALLOT_ADMIN_PASSWORD="$ADMIN_PASSWORD" "$ALLOT_BIN" admin create-admin \
    --email "$ADMIN_EMAIL" --data-dir "$DATA_DIR" >/dev/null
ALLOT_LOG=warn "$ALLOT_BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA_DIR" \
    --ip-rate-limit 0 --insecure-cookies --no-demo-catalog >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
wait_ready "$SERVER_PID" "$SERVER_LOG"
echo "== server: $BASE (ALLOT_LOG=warn, fresh data directory on $(df --output=fstype "$WORK" | tail -n1))"

ADMIN_TOKEN="$(curl -sS -X POST "$BASE/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | json_field access_token)"
PRODUCT_ID="$(curl -sS -X POST "$BASE/api/v1/admin/products" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\":\"Bench tote\",\"description\":\"benches/placements.sh\",\"price\":19000,
         \"currency\":\"KRW\",\"kind\":\"general\",\"stock_total\":$STOCK}" | json_field id)"
python3 loadtest/setup_users.py --base "$BASE" --mail-dir "$DATA_DIR/mail" --users 1 \
    --concurrency 1 --out "$TOKENS" >/dev/null 2>"$WORK/setup.log" || {
    cat "$WORK/setup.log" >&2
    exit 1
}
echo "product: $PRODUCT_ID, general, stock_total $STOCK; one customer, one Bearer token"
echo

measure() {
    local kind="$1" connections="$2" seconds="$3" file="$4" figures rps p50 p99 requests
    local ticks_before ticks_after
    local -a args=(-t"$THREADS" -c"$connections" -d"${seconds}s" --latency)
    ticks_before="$(server_ticks)"
    case "$kind" in
        healthz) wrk "${args[@]}" "$BASE$HEALTH_PATH" >"$file" ;;
        placements)
            wrk "${args[@]}" -s benches/orders.lua "$BASE" -- \
                orders "$TOKENS" "$PRODUCT_ID" "p$$-$(date +%s%N)" >"$file"
            ;;
    esac
    ticks_after="$(server_ticks)"
    if grep -q 'Socket errors\|Non-2xx or 3xx responses' "$file"; then
        echo "error: wrk reported errors for $kind:" >&2
        cat "$file" >&2
        return 1
    fi
    if [[ "$kind" == placements ]] && grep '^STATUS' "$file" | grep -vq '^STATUS 201 '; then
        echo "error: a placement was not answered 201:" >&2
        grep '^STATUS' "$file" >&2
        return 1
    fi
    figures="$(wrk_figures "$kind" <"$file")" || return 1
    read -r rps p50 p99 requests <<<"$figures"
    echo "$rps $p50 $p99 $(us_per_request "$((ticks_after - ticks_before))" "$requests") $requests"
}

echo "== warm-up: ${WARMUP} s of /healthz, discarded"
measure healthz 64 "$WARMUP" "$WORK/warmup.txt" >/dev/null
echo
echo "== rounds: wrk -t$THREADS -d${DURATION}s --latency (closed-loop: the throughput ratio is the figure)"
printf '%-5s %-6s %-11s %11s %8s %8s %10s\n' pass conns kind 'requests/s' 'p50 ms' 'p99 ms' 'CPU us/req'
PLACED=0
IN_FLIGHT_MAX=0
declare -A SUM=()
round=0
for pass in $(seq 1 "$PASSES"); do
    for connections in $CONNECTIONS; do
        for kind in healthz placements; do
            round=$((round + 1))
            read -r rps p50 p99 cpu_us requests <<<"$(measure "$kind" "$connections" "$DURATION" "$WORK/r$round.txt")"
            if [[ "$kind" == placements ]]; then
                PLACED=$((PLACED + requests))
                IN_FLIGHT_MAX=$((IN_FLIGHT_MAX + connections))
            fi
            printf '%-5s %-6s %-11s %11.0f %8.2f %8.2f %10.2f\n' "$pass" "$connections" "$kind" "$rps" "$p50" "$p99" "$cpu_us"
            SUM["$kind $connections"]="$(awk -v a="${SUM["$kind $connections"]:-0}" -v b="$rps" 'BEGIN { printf "%.2f", a + b }')"
        done
    done
done
echo

RESERVED="$(curl -sS "$BASE/api/v1/products/$PRODUCT_ID/stock" | json_field reserved)"
# wrk stops with a request in flight on each connection: placed, but its answer never read.
echo "== stock: reserved $RESERVED, orders answered 201 $PLACED, in flight at the stops at most $IN_FLIGHT_MAX"
if ((RESERVED < PLACED || RESERVED > PLACED + IN_FLIGHT_MAX)); then
    echo "error: the units reserved do not match the orders placed" >&2
    exit 1
fi
echo
echo "== means"
for connections in $CONNECTIONS; do
    awk -v h="${SUM["healthz $connections"]}" -v p="${SUM["placements $connections"]}" -v n="$PASSES" -v c="$connections" \
        'BEGIN { printf "-c%-4s healthz %8.0f/s   placements %8.0f/s   placements / healthz %.2f\n", c, h / n, p / n, p / h }'
done
stop_server
if ALLOT_LOG=warn "$ALLOT_BIN" db verify --data-dir "$DATA_DIR" >"$WORK/verify.txt" 2>&1; then
    echo "db verify: clean"
else
    cat "$WORK/verify.txt" >&2
    exit 1
fi
