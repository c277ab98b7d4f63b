# Shared by the HTTP benchmarks (http.sh, orders.sh, placements.sh), which source it: wrk, the machine's
# facts, the release build, waiting for a server started in the background, reading wrk's
# output and the server's CPU time, JSON fields, and a scratch directory cleaned up at exit.

# Installs wrk with apt-get if it is missing, or exits.
ensure_wrk() {
    if ! command -v wrk >/dev/null 2>&1; then
        echo "wrk is missing; installing it with apt-get" >&2
        if ! { apt-get update -qq && apt-get install -y -qq wrk; } >&2; then
            echo "error: wrk could not be installed; no figures measured" >&2
            exit 1
        fi
    fi
}

# Prints the machine the figures are measured on.
print_machine() {
    echo "== machine"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "kernel: $(uname -srm)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "wrk: $(wrk --version 2>&1 | head -n1 || true)"
}

# Builds target/release/allot and says from which tree.
build_release() {
    echo "== build"
    cargo build --release -p allot >&2
    echo "target/release/allot built ($(git rev-parse --short HEAD 2>/dev/null || echo 'no git')$(git diff --quiet HEAD -- 2>/dev/null || echo ', dirty tree'))"
    echo
}

# wait_ready PID LOG: the server PID prints "allot listening on http://ADDR" to LOG once bound,
# then recovers its engine; sets BASE to that address once /readyz answers 200. Exits with the
# server's log if it dies or is not ready within 30 s.
wait_ready() {
    local pid="$1" log="$2"
    BASE=""
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: the server exited during start; its log:" >&2
            cat "$log" >&2
            exit 1
        fi
        if [[ -z "$BASE" ]]; then
            BASE="$(sed -n 's|^allot listening on \(http://[^ ]*\).*$|\1|p' "$log" | head -n1)"
        fi
        if [[ -n "$BASE" ]] &&
            [[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/readyz" || true)" == 200 ]]; then
            return
        fi
        sleep 0.1
    done
    echo "error: the server did not become ready in 30 s; its log:" >&2
    cat "$log" >&2
    exit 1
}

# A percentile line of wrk's "Latency Distribution" ("  99%    1.40ms"), in milliseconds.
latency_ms() {
    awk -v pct="$1" '$1 == pct {
        v = $2
        if (v ~ /us$/) { print v / 1000 } else if (v ~ /ms$/) { print v + 0 }
        else if (v ~ /s$/) { print v * 1000 } else { print v }
        exit
    }'
}

# wrk_figures LABEL: reads the output of one `wrk --latency` run and prints "RPS P50 P99
# REQUESTS" (latencies in ms). Fails, showing the output under LABEL, if a figure is missing.
wrk_figures() {
    local label="$1" out rps p50 p99 requests
    out="$(cat)"
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    requests="$(awk '$2 == "requests" && $3 == "in" { print $1 }' <<<"$out")"
    p50="$(latency_ms 50% <<<"$out")"
    p99="$(latency_ms 99% <<<"$out")"
    if [[ -z "$rps" || -z "$p50" || -z "$p99" || -z "$requests" ]]; then
        echo "error: could not read wrk's output for $label:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$rps $p50 $p99 $requests"
}

# CPU time the server process $SERVER_PID has used so far (all threads, user + system), in
# clock ticks.
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; }
CLK_TCK="$(getconf CLK_TCK)"

# us_per_request TICKS REQUESTS: CPU clock ticks spread over the requests, in microseconds.
us_per_request() {
    awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'
}

# A JSON field of stdin (dotted path), or exit with the body.
json_field() {
    python3 -c '
import json, sys
raw = sys.stdin.read()
try:
    value = json.loads(raw)
    for key in sys.argv[1].split("."):
        value = value[key]
except (ValueError, KeyError, TypeError):
    sys.exit("no field %s in %r" % (sys.argv[1], raw[:300]))
print(value)' "$1"
}

# A scratch directory WORK for one run, removed at exit together with the server SERVER_PID
# (if one was started), which is stopped with SIGTERM first.
make_workdir() {
    WORK="$(mktemp -d)"
    SERVER_PID=""
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
cleanup() {
    stop_server
    rm -rf "$WORK"
}
