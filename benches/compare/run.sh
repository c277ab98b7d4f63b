#!/usr/bin/env bash
# allot next to what a buyer would otherwise pick, in one run on this machine: the same drop
# (CUSTOMERS customers, STOCK units, LIMIT a customer), the same open-loop generator
# (`allot bench drop`, RATE attempts a second for DURATION seconds, CONNECTIONS in flight) and the
# same request shapes against
#   ceiling    the same axum stack answering every attempt at once (benches/src/bin/baseline.rs)
#   allot      allot serve on a fresh data directory (fdatasync per group commit)
#   redis-lua  an atomic Lua check-and-decrement in Redis (appendfsync always), then the order
#              inserted into MariaDB (InnoDB, innodb_flush_log_at_trx_commit=1)
#   fair-lock  a Redisson-protocol fair lock per product in Redis around a MariaDB transaction
#              (conditional UPDATE, the insert), committed per order
#   postgres   one PostgreSQL transaction: SELECT … FOR UPDATE on the stock row, the update and
#              the insert (fsync=on, synchronous_commit=on)
# Every system is offered more than it can take (the default RATE), so "answered/s" (attempts
# divided by the time until the last answer) is its capacity, and the latency includes the queue.
# Each drop's invariant checks run through the API; oversold units are counted from the orders
# the database holds.
#
#   bash benches/compare/run.sh            # RATE=20000 DURATION=5 CUSTOMERS=1000 STOCK=100;
#                                          # appends the table to benches/RESULTS.md
#   bash benches/compare/run.sh --short    # seconds, every check must pass (benches/tests/compare.rs)
#   ALLOT_BIN=… BASELINE_BIN=… bash …      # binaries built elsewhere (else: cargo build --release)
#
# redis-server, mariadb-server and postgresql are installed from Debian if missing, and run on
# loopback from a temporary directory that is removed at the end.
set -euo pipefail
shopt -s inherit_errexit

short=0
[ "${1:-}" = "--short" ] && short=1
if [ "$short" = 1 ]; then
    RATE="${RATE:-80}" DURATION="${DURATION:-1}" CUSTOMERS="${CUSTOMERS:-20}" STOCK="${STOCK:-10}"
else
    RATE="${RATE:-20000}" DURATION="${DURATION:-5}" CUSTOMERS="${CUSTOMERS:-1000}" STOCK="${STOCK:-100}"
fi
LIMIT="${LIMIT:-2}"
CONNECTIONS="${CONNECTIONS:-512}"
SYSTEMS="${SYSTEMS:-ceiling allot redis-lua fair-lock postgres}"

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"

# ----- the databases ------------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v mariadbd >/dev/null || need+=(mariadb-server)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need+=(postgresql)
if [ "${#need[@]}" -gt 0 ]; then
    echo "== installing ${need[*]} (Debian)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
fi
PG_BIN="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n1)"

work="$(mktemp -d /tmp/allot-compare.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 60 s for a command to succeed.
wait_for() {
    local what="$1"; shift
    for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "compare: $what did not come up" >&2
    return 1
}

needs_databases=0
case " $SYSTEMS " in *" redis-lua "*|*" fair-lock "*|*" postgres "*) needs_databases=1 ;; esac
if [ "$needs_databases" = 1 ]; then
    REDIS_PORT="$(free_port)"
    mkdir "$work/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes \
        --appendfsync always --save '' --logfile "$work/redis.log" &
    pids+=($!)
    wait_for redis redis-cli -p "$REDIS_PORT" ping

    MYSQL_PORT="$(free_port)"
    mariadb-install-db --no-defaults --datadir="$work/mysql" --user=root \
        --auth-root-authentication-method=normal --skip-test-db >"$work/mysql-install.log" 2>&1
    mariadbd --no-defaults --datadir="$work/mysql" --user=root --port="$MYSQL_PORT" \
        --bind-address=127.0.0.1 --socket="$work/mysql.sock" --skip-grant-tables \
        --innodb-flush-log-at-trx-commit=1 --innodb-buffer-pool-size=256M \
        --max-connections=1000 --log-error="$work/mysql.err" &
    pids+=($!)
    wait_for mariadb mariadb-admin --socket="$work/mysql.sock" ping
    mariadb --socket="$work/mysql.sock" -e 'CREATE DATABASE shop'

    PG_PORT="$(free_port)"
    mkdir "$work/pg"
    chown postgres "$work/pg"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$work/pg/data" -A trust -U postgres >"$work/pg-init.log" 2>&1
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
        -o "-p $PG_PORT -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200" \
        start >/dev/null
fi

# ----- the generator and the baselines ------------------------------------------------------
if [ -z "${ALLOT_BIN:-}" ] || [ -z "${BASELINE_BIN:-}" ]; then
    cargo build --release -q -p allot -p allot-benches --bins
    ALLOT_BIN="$root/target/release/allot"
    BASELINE_BIN="$root/target/release/baseline"
fi
echo "== allot: $ALLOT_BIN; baselines: $BASELINE_BIN" >&2
for n in $(seq 0 $((CUSTOMERS - 1))); do echo "customer-$n"; done >"$work/tokens.txt"

plan=(--rate "$RATE" --duration "$DURATION" --connections "$CONNECTIONS" --pay-share 0 --json)

# Runs the drop against baseline mode $1 into $work/$1.json.
drop_on_baseline() {
    local mode="$1" line url
    "$BASELINE_BIN" --mode "$mode" --listen 127.0.0.1:0 --stock "$STOCK" --limit "$LIMIT" \
        --redis "redis://127.0.0.1:${REDIS_PORT:-0}/" \
        --mysql "mysql://root@127.0.0.1:${MYSQL_PORT:-0}/shop" \
        --postgres "host=127.0.0.1 port=${PG_PORT:-0} user=postgres dbname=postgres" \
        >"$work/$mode.out" 2>"$work/$mode.err" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 600); do
        line="$(head -n1 "$work/$mode.out" 2>/dev/null || true)"
        [ -n "$line" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$work/$mode.err" >&2; return 1; }
        sleep 0.1
    done
    url="${line#baseline listening on }"
    ALLOT_LOG=warn "$ALLOT_BIN" bench drop --url "$url" --tokens "$work/tokens.txt" \
        --product prd_1 "${plan[@]}" >"$work/$mode.json" 2>"$work/$mode.drop.err" || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

for system in $SYSTEMS; do
    echo "== $system" >&2
    case "$system" in
        ceiling) drop_on_baseline hello; mv "$work/hello.json" "$work/ceiling.json" ;;
        allot)
            # Holds outlast the arrivals, so every unit is taken once, as in the baselines.
            ALLOT_LOG=warn "$ALLOT_BIN" bench drop --customers "$CUSTOMERS" --stock "$STOCK" \
                --limit "$LIMIT" --hold-seconds "$(( ${DURATION%.*} + 3 ))" "${plan[@]}" \
                >"$work/allot.json" 2>"$work/allot.drop.err" || true ;;
        redis-lua|fair-lock|postgres) drop_on_baseline "$system" ;;
        *) echo "compare: unknown system $system" >&2; exit 2 ;;
    esac
done

# ----- the table ----------------------------------------------------------------------------
table="$(python3 - "$work" "$STOCK" $SYSTEMS <<'PY'
import json, sys
work, stock, systems = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
failed, oversold_systems = [], []
figures = {}
for system in systems:
    try:
        with open(f"{work}/{system}.json") as f:
            figures[system] = json.load(f)
    except (OSError, ValueError):
        figures[system] = None
ceiling = figures.get("ceiling")
def answered(d):
    return d["attempts"] / d["elapsed_s"] if d and d["elapsed_s"] > 0 else 0.0
base = answered(ceiling) if ceiling else 0.0
print("| system | answered/s | × ceiling | placed | p50 ms | p99 ms | p99.9 ms | oversold | failed answers | checks |")
print("|---|---|---|---|---|---|---|---|---|---|")
for system in systems:
    d = figures[system]
    if d is None:
        print(f"| {system} | — | — | — | — | — | — | — | — | no result |")
        failed.append(system)
        continue
    p = d["latency_ms"]["place"]
    oversold = max(0, d["final_stock"]["sold"] - stock)
    odd = sum(a["count"] for a in d["answers"] if a["status"] == 0 or a["status"] >= 500)
    bad = [c["name"] for c in d["checks"] if not c["passed"]]
    verdict = "all passed" if not bad else "FAILED: " + "; ".join(bad)
    ratio = answered(d) / base if base else 0.0
    print(f"| {system} | {answered(d):,.0f} | {ratio:.2f} | {d['placements']} | {p['p50']:.2f} | "
          f"{p['p99']:.2f} | {p['p99_9']:.2f} | {oversold} | {odd} | {verdict} |")
    if bad:
        failed.append(system)
    if oversold:
        oversold_systems.append(system)
with open(f"{work}/failed", "w") as f:
    f.write(" ".join(failed))
with open(f"{work}/oversold", "w") as f:
    f.write(" ".join(oversold_systems))
PY
)"
echo
echo "$table"
failed="$(cat "$work/failed")"
oversold="$(cat "$work/oversold")"
for system in $SYSTEMS; do
    [ -s "$work/$system.drop.err" ] && { echo "--- $system:"; tail -n 5 "$work/$system.drop.err"; } >&2
done

if [ "$short" = 0 ]; then
    {
        echo
        echo "### Comparison, $(date -u +%Y-%m-%d) ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
        echo
        echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB."
        echo "Command: \`RATE=$RATE DURATION=$DURATION CUSTOMERS=$CUSTOMERS STOCK=$STOCK LIMIT=$LIMIT CONNECTIONS=$CONNECTIONS bash benches/compare/run.sh\`"
        echo
        echo "$table"
    } >>benches/RESULTS.md
    echo "(appended to benches/RESULTS.md)"
fi
[ -z "$oversold" ] || { echo "compare: oversold: $oversold"; exit 1; }
if [ "$short" = 1 ]; then
    # Seconds at a low rate: every system must pass every check, or the harness is broken.
    [ -z "$failed" ] || { echo "compare: checks failed: $failed"; exit 1; }
else
    # Under overload a baseline may time out (recorded in the table); allot must not.
    case " $failed " in *" allot "*) echo "compare: allot's checks failed"; exit 1 ;; esac
fi
echo "compare: OK"
