# Shared by the HTTP benchmarks (http.sh, orders.sh), which source it: wrk, the machine's
# facts, the release build, and waiting for a server started in the background.

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
