#!/usr/bin/env bash
# HTTP benchmark of a drop: POST /api/v1/orders attempts/s next to GET /healthz, measured
# alternately in the same run against one release server on loopback. Target: order attempts
# at least 50 % of /healthz.
#
#   bash benches/orders.sh                       # 10 s per round, 3 passes, 2,000 customers
#   DURATION=5 USERS=1000 STOCK=200 bash benches/orders.sh
#
# Setup (not measured): an admin is made offline with `allot admin create-admin` before the
# server starts; the server runs with `--ip-rate-limit 0` and without `--smtp-url`, so every
# verification mail is an `.eml` file in its data directory. loadtest/setup_users.py signs up
# USERS verified customers over the HTTP API (code, confirm, signup, login) and writes their
# access tokens. The admin creates a limited product, on sale now, STOCK units, per_user_limit 1.
#
# Rounds: each pass runs wrk -t1 -c64 against, in turn,
#   healthz      GET /healthz, plain wrk as in benches/http.sh: the denominator;
#   orders       POST /api/v1/orders through benches/orders.lua: one unit of the product, the
#                next customer's Bearer token round-robin, a unique Idempotency-Key each;
#   healthz+lua  GET /healthz through the same Lua script: what the script costs wrk alone.
# The first orders round starts on a full stock: its first requests are placed (201), then
# everything is refused, which is the "during a drop" regime; later rounds see only refusals:
# 409 sold_out, and 409 purchase_limit_exceeded from the customers who already bought. No
# warm-up round of orders, which would sell the stock before the clock runs. Every answer is
# counted by status and problem type; any other answer (401, 422, 429, 5xx) or a socket error
# fails the run. At the end the stock must add up (remaining + reserved + sold == stock_total,
# reserved + sold == orders placed), and `allot db verify` replays the log after the stop.
#
# Besides requests/s, each round reports the server's CPU time per answered request (user + system
# of the server process, /proc/PID/stat) and wrk's own (its reaped CPU time): wrk runs on the same
# 2 cores, so whatever it spends per request is taken from the server too.
#
# wrk is closed-loop: each connection sends its next request when the previous answer arrived, so
# queueing never shows in its latency figures (see shared/NOTES.md). The throughput ratio within
# one run is the figure that matters here. Access tokens live 15 minutes: the rounds must fit.
set -euo pipefail
shopt -s inherit_errexit

DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PASSES="${PASSES:-3}"
PORT="${PORT:-0}" # 0: the server picks a free port and prints it
USERS="${USERS:-2000}"
STOCK="${STOCK:-400}"
SETUP_CONCURRENCY="${SETUP_CONCURRENCY:-4}"
THREADS=1
CONNECTIONS=64
TARGET_PERCENT=50
ACCESS_TOKEN_TTL_S=900

HEALTH_PATH=/healthz
ORDERS_PATH=/api/v1/orders # as written in benches/orders.lua
ADMIN_EMAIL=admin@bench.allot.test
ADMIN_PASSWORD="Bench-admin-$RANDOM-1!"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=benches/common.sh
source benches/common.sh

if ((USERS < STOCK)); then
    echo "error: USERS ($USERS) must be at least STOCK ($STOCK): per_user_limit is 1" >&2
    exit 1
fi
if ((PASSES < 1)); then
    echo "error: PASSES must be at least 1" >&2
    exit 1
fi
ensure_wrk
for tool in python3 curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is needed" >&2
        exit 1
    fi
done

print_machine
echo "python: $(python3 --version 2>&1)"
echo

build_release

make_workdir
DATA_DIR="$WORK/data"
SERVER_LOG="$WORK/server.log"
TOKENS="$WORK/tokens.txt"

# Offline, before the server opens the data directory. The password goes through the
# environment, not the process list.
ALLOT_LOG=warn ALLOT_ADMIN_PASSWORD="$ADMIN_PASSWORD" target/release/allot admin create-admin \
    --email "$ADMIN_EMAIL" --data-dir "$DATA_DIR" >/dev/null

ALLOT_LOG=warn target/release/allot serve \
    --listen "127.0.0.1:$PORT" \
    --data-dir "$DATA_DIR" \
    --ip-rate-limit 0 \
    --insecure-cookies \
    >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

wait_ready "$SERVER_PID" "$SERVER_LOG"
echo "== server: $BASE (release, ALLOT_LOG=warn, --ip-rate-limit 0, fresh data dir, mail to .eml files)"

ADMIN_TOKEN="$(curl -sS -X POST "$BASE/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" | json_field access_token)"
OPENS="$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)"
CLOSES="$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)"
PRODUCT_JSON="$(curl -sS -X POST "$BASE/api/v1/admin/products" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\":\"Bench drop\",\"description\":\"benches/orders.sh\",\"price\":129000,
         \"currency\":\"KRW\",\"kind\":\"limited\",\"sale_opens_at\":\"$OPENS\",
         \"sale_closes_at\":\"$CLOSES\",\"per_user_limit\":1,\"stock_total\":$STOCK}")"
PRODUCT_ID="$(json_field id <<<"$PRODUCT_JSON")"
if [[ "$(json_field status <<<"$PRODUCT_JSON")" != on_sale ]]; then
    echo "error: the product is not on sale: $PRODUCT_JSON" >&2
    exit 1
fi
echo "product: $PRODUCT_ID, limited, on sale, stock_total $STOCK, per_user_limit 1"

echo "setting up $USERS verified customers over HTTP (concurrency $SETUP_CONCURRENCY)..."
SETUP_STARTED=$SECONDS
LOGIN_EPOCH="$(python3 loadtest/setup_users.py --base "$BASE" --mail-dir "$DATA_DIR/mail" \
    --users "$USERS" --concurrency "$SETUP_CONCURRENCY" --out "$TOKENS" 2>"$WORK/setup.log")" || {
    echo "error: the customer setup failed:" >&2
    cat "$WORK/setup.log" >&2
    echo "the server's log (last 20 lines):" >&2
    tail -n 20 "$SERVER_LOG" >&2
    exit 1
}
echo "customers: $(wc -l <"$TOKENS") tokens in $((SECONDS - SETUP_STARTED)) s" \
    "(signup and login pay argon2 each; $(tail -n1 "$WORK/setup.log" | sed 's/^setup: //'))"
echo

# CPU time of shell process $1's finished children (cutime + cstime), in clock ticks: read
# around one wrk run, it is wrk's own CPU, which shares the same 2 cores with the server.
children_ticks() { awk '{ print $16 + $17 }' "/proc/$1/stat"; }

# The tokens of the first login expire ACCESS_TOKEN_TTL_S after it; keep 30 s of margin.
check_tokens_live() {
    local left=$((LOGIN_EPOCH + ACCESS_TOKEN_TTL_S - 30 - $(date +%s)))
    if ((left < $1)); then
        echo "error: the access tokens expire in $((left + 30)) s, too soon for a $1 s round;" \
            "lower USERS, PASSES or DURATION" >&2
        exit 1
    fi
}

# One wrk run of round kind $1 for $2 seconds; wrk's whole output goes to file $3. Prints
# "RPS P50 P99 CPU_US REQUESTS WRK_US" (latencies in ms; CPU_US and WRK_US: the server's and
# wrk's CPU time per answered request, in microseconds). Fails on socket errors, and on any
# answer but 200 for /healthz.
measure() {
    local kind="$1" seconds="$2" file="$3" out figures rps p50 p99 requests
    local ticks_before ticks_after wrk_before wrk_after shell="$BASHPID"
    local -a args=(-t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --latency)
    check_tokens_live "$seconds"
    ticks_before="$(server_ticks)"
    wrk_before="$(children_ticks "$shell")"
    case "$kind" in
        healthz) wrk "${args[@]}" "$BASE$HEALTH_PATH" >"$file" ;;
        healthz+lua) wrk "${args[@]}" -s benches/orders.lua "$BASE" -- healthz >"$file" ;;
        orders)
            wrk "${args[@]}" -s benches/orders.lua "$BASE" -- \
                orders "$TOKENS" "$PRODUCT_ID" "r$$-$(date +%s%N)" >"$file"
            ;;
    esac
    wrk_after="$(children_ticks "$shell")"
    ticks_after="$(server_ticks)"
    out="$(cat "$file")"
    if grep -q 'Socket errors' <<<"$out" ||
        { [[ "$kind" != orders ]] && grep -q 'Non-2xx or 3xx responses' <<<"$out"; }; then
        echo "error: wrk reported errors for $kind:" >&2
        echo "$out" >&2
        return 1
    fi
    figures="$(wrk_figures "$kind" <<<"$out")" || return 1
    read -r rps p50 p99 requests <<<"$figures"
    echo "$rps $p50 $p99 $(us_per_request "$((ticks_after - ticks_before))" "$requests")" \
        "$requests $(us_per_request "$((wrk_after - wrk_before))" "$requests")"
}

# The answers of an orders round, from the STATUS lines of orders.lua: prints "PLACED SOLD_OUT
# LIMIT OTHER" and, on stderr, any other kind of answer.
split_answers() {
    awk '
        $1 == "STATUS" && $2 == 201 { placed += $4; next }
        $1 == "STATUS" && $2 == 409 && $3 == "sold_out" { sold_out += $4; next }
        $1 == "STATUS" && $2 == 409 && $3 == "purchase_limit_exceeded" { limit += $4; next }
        $1 == "STATUS" { other += $4; print "unexpected answer: " $2 " " $3 " x " $4 > "/dev/stderr" }
        END { printf "%d %d %d %d\n", placed, sold_out, limit, other }
    ' "$1"
}

echo "== warm-up (${WARMUP} s of /healthz, plain and through the Lua script, discarded;"
echo "   none for orders: it would sell the stock before the first round)"
measure healthz "$WARMUP" "$WORK/warmup1.txt" >/dev/null
measure healthz+lua "$WARMUP" "$WORK/warmup2.txt" >/dev/null
echo

echo "== rounds: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, interleaved in one run"
echo "   (closed-loop: latency figures hide queueing; the throughput ratio is the figure here)"
echo "   healthz: GET $HEALTH_PATH (plain wrk); orders: POST $ORDERS_PATH (benches/orders.lua);"
echo "   healthz+lua: GET $HEALTH_PATH through benches/orders.lua"
echo "   CPU us/req: the server's CPU time per answered request; wrk us/req: wrk's own"
printf '%-6s %-12s %11s %8s %8s %10s %11s   %s\n' \
    round kind 'requests/s' 'p50 ms' 'p99 ms' 'CPU us/req' 'wrk us/req' 'answers (orders)'
declare -A SUM=() CPU_SUM=() WRK_SUM=() COUNT=() RPS=()
PLACED_TOTAL=0
ORDER_REQUESTS=0
REFUSED_TOTAL=0
round=0
for pass in $(seq 1 "$PASSES"); do
    for kind in healthz orders healthz+lua; do
        round=$((round + 1))
        file="$WORK/round-$round.txt"
        result="$(measure "$kind" "$DURATION" "$file")"
        read -r rps p50 p99 cpu_us requests wrk_us <<<"$result"
        answers=""
        if [[ "$kind" == orders ]]; then
            read -r placed sold_out limit other <<<"$(split_answers "$file")"
            if ((placed + sold_out + limit + other != requests)); then
                echo "error: the script counted $((placed + sold_out + limit + other)) answers," \
                    "wrk $requests" >&2
                cat "$file" >&2
                exit 1
            fi
            if ((other > 0)); then
                echo "error: $other answers were neither 201 nor 409 sold_out/limit:" >&2
                cat "$file" >&2
                exit 1
            fi
            PLACED_TOTAL=$((PLACED_TOTAL + placed))
            ORDER_REQUESTS=$((ORDER_REQUESTS + requests))
            REFUSED_TOTAL=$((REFUSED_TOTAL + sold_out + limit))
            answers="201 placed $placed, 409 sold_out $sold_out, 409 purchase_limit_exceeded $limit"
        fi
        printf '%-6s %-12s %11.0f %8.2f %8.2f %10.2f %11.2f   %s\n' \
            "$round" "$kind" "$rps" "$p50" "$p99" "$cpu_us" "$wrk_us" "$answers"
        WRK_SUM[$kind]="$(awk -v a="${WRK_SUM[$kind]:-0}" -v b="$wrk_us" 'BEGIN { printf "%.4f", a + b }')"
        CPU_SUM[$kind]="$(awk -v a="${CPU_SUM[$kind]:-0}" -v b="$cpu_us" 'BEGIN { printf "%.4f", a + b }')"
        SUM[$kind]="$(awk -v a="${SUM[$kind]:-0}" -v b="$rps" 'BEGIN { printf "%.2f", a + b }')"
        COUNT[$kind]=$((${COUNT[$kind]:-0} + 1))
        RPS["$kind $pass"]="$rps"
    done
done
echo

echo "== stock after the rounds"
STOCK_JSON="$(curl -sS "$BASE/api/v1/products/$PRODUCT_ID/stock")"
TOTAL="$(curl -sS "$BASE/api/v1/products/$PRODUCT_ID" | json_field stock_total)"
REMAINING="$(json_field remaining <<<"$STOCK_JSON")"
RESERVED="$(json_field reserved <<<"$STOCK_JSON")"
SOLD="$(json_field sold <<<"$STOCK_JSON")"
echo "GET /api/v1/products/$PRODUCT_ID/stock: $STOCK_JSON"
echo "order attempts: $ORDER_REQUESTS; placed (201): $PLACED_TOTAL; refused (409): $REFUSED_TOTAL" \
    "($(awk -v a="$REFUSED_TOTAL" -v b="$ORDER_REQUESTS" 'BEGIN { printf "%.2f", 100 * a / b }') %)"
echo "remaining $REMAINING + reserved $RESERVED + sold $SOLD = $((REMAINING + RESERVED + SOLD)); stock_total $TOTAL"
STOCK_OK=1
if ((REMAINING + RESERVED + SOLD != TOTAL)); then
    echo "error: remaining + reserved + sold != stock_total" >&2
    STOCK_OK=0
fi
if ((RESERVED + SOLD != PLACED_TOTAL)); then
    echo "error: reserved + sold ($((RESERVED + SOLD))) != orders placed ($PLACED_TOTAL)" >&2
    STOCK_OK=0
fi
if ((PLACED_TOTAL != STOCK)); then
    echo "error: $PLACED_TOTAL orders placed for $STOCK units (every unit should sell, once)" >&2
    STOCK_OK=0
fi
if ((STOCK_OK)); then
    echo "stock conserved: every unit held by exactly one placed order, none oversold"
fi
echo

mean() { awk -v s="${SUM[$1]}" -v n="${COUNT[$1]}" 'BEGIN { printf "%.0f", s / n }'; }
cpu_mean() { awk -v s="${CPU_SUM[$1]}" -v n="${COUNT[$1]}" 'BEGIN { printf "%.2f", s / n }'; }
wrk_mean() { awk -v s="${WRK_SUM[$1]}" -v n="${COUNT[$1]}" 'BEGIN { printf "%.2f", s / n }'; }
percent() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", 100 * a / b }'; }
HEALTH_MEAN="$(mean healthz)"
ORDERS_MEAN="$(mean orders)"
LUA_MEAN="$(mean healthz+lua)"
RATIO="$(percent "$ORDERS_MEAN" "$HEALTH_MEAN")"

echo "== means"
for kind in healthz orders healthz+lua; do
    printf '%-12s %8s requests/s   server CPU %6s us/request   wrk CPU %6s us/request\n' \
        "$kind" "$(mean "$kind")" "$(cpu_mean "$kind")" "$(wrk_mean "$kind")"
done
per_pass=()
for pass in $(seq 1 "$PASSES"); do
    per_pass+=("$(percent "${RPS[orders $pass]}" "${RPS[healthz $pass]}") %")
done
echo "orders / healthz:  $RATIO %"
echo "orders / healthz per pass (each orders round against the healthz round just before it):" \
    "$(printf '%s, ' "${per_pass[@]}" | sed 's/, $//')"
if ((PASSES > 1)); then
    later_orders="$(awk -v s="${SUM[orders]}" -v f="${RPS[orders 1]}" -v n="$PASSES" 'BEGIN { print (s - f) / (n - 1) }')"
    later_health="$(awk -v s="${SUM[healthz]}" -v f="${RPS[healthz 1]}" -v n="$PASSES" 'BEGIN { print (s - f) / (n - 1) }')"
    echo "orders / healthz, passes 2+ only (all sold out): $(percent "$later_orders" "$later_health") %"
fi
echo "orders / healthz+lua (the same Lua hooks on both sides): $(percent "$ORDERS_MEAN" "$LUA_MEAN") %"
echo "server CPU per /healthz request / per order attempt: $(percent "$(cpu_mean healthz)" "$(cpu_mean orders)") %" \
    "(the ratio if the server's own CPU were the only limit)"
echo "server + wrk CPU per /healthz request / per order attempt:" \
    "$(percent "$(awk -v a="$(cpu_mean healthz)" -v b="$(wrk_mean healthz)" 'BEGIN { print a + b }')" \
        "$(awk -v a="$(cpu_mean orders)" -v b="$(wrk_mean orders)" 'BEGIN { print a + b }')") %" \
    "(the ratio if the 2 shared cores were the only limit)"
if awk -v r="$RATIO" -v t="$TARGET_PERCENT" 'BEGIN { exit !(r >= t) }'; then
    echo "target (order attempts >= $TARGET_PERCENT % of /healthz): met"
else
    echo "target (order attempts >= $TARGET_PERCENT % of /healthz): NOT met"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

echo "== after a clean stop: allot db verify"
stop_server
if ALLOT_LOG=warn target/release/allot db verify --data-dir "$DATA_DIR" >"$WORK/verify.log" 2>&1; then
    echo "db verify: ok ($(tail -n1 "$WORK/verify.log"))"
else
    echo "error: allot db verify failed:" >&2
    cat "$WORK/verify.log" >&2
    exit 1
fi
if ((!STOCK_OK)); then
    exit 1
fi
