#!/usr/bin/env bash
# API conformance: schemathesis, with all its checks, against /openapi.json of a fresh
# `allot serve`, as an admin (an admin may call every route, customer routes included) or as
# a customer who signed up through the mail flow. The settings of the run, and why a few
# operations may answer 4xx to data the schema allows, are in server/tests/schemathesis.toml.
#
#   bash server/tests/conformance.sh                  # admin, 30 cases per operation
#   bash server/tests/conformance.sh 30 customer      # the same as a customer
#   bash server/tests/conformance.sh 400 admin        # the long run (about 10,000 cases)
#
# A third argument fixes the seed and makes the generation deterministic: `... 30 admin 1`
# replays a run (cli/tests/conformance.rs runs a short one so in `cargo test`). The
# virtualenv with schemathesis is kept in target/schemathesis-venv between runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"

examples="${1:-30}"
role="${2:-admin}"
seed="${3:-}"
case "$role" in admin | customer) ;; *) echo "role must be admin or customer" >&2; exit 2 ;; esac
work="$(mktemp -d)"
password='Adm1n-pass-phrase'
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

# shellcheck source=scripts/venv.sh
source "$root/scripts/venv.sh"
ensure_venv "$root" schemathesis-venv schemathesis 'schemathesis>=4.32,<5'
venv="$VENV"
# cli/tests/conformance.rs passes the binary cargo built for it.
allot="${ALLOT_BIN:-}"
if [ -z "$allot" ]; then
    cargo build -q -p allot
    allot="$root/target/debug/allot"
fi
ALLOT_ADMIN_PASSWORD="$password" "$allot" admin create-admin \
    --email admin@example.com --data-dir "$work/db" >/dev/null
ALLOT_LOG="${ALLOT_LOG:-warn}" "$allot" serve --data-dir "$work/db" --listen 127.0.0.1:0 \
    --ip-rate-limit 0 --insecure-cookies >"$work/serve.out" 2>"$work/serve.log" &
server=$!
base=""
for _ in $(seq 1 300); do
    base="$(sed -n 's/^allot listening on //p' "$work/serve.out")"
    [ -n "$base" ] && curl -sf "$base/readyz" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$base" ] || { echo "allot serve did not start" >&2; exit 1; }

post() { curl -sf -H 'content-type: application/json' -d "$2" "$base/api/v1$1"; }

email=admin@example.com
if [ "$role" = customer ]; then
    email=customer@example.com
    post /auth/email-verifications "{\"email\":\"$email\"}" >/dev/null
    code=""
    for _ in $(seq 1 150); do
        code="$(grep -rhoE '\b[0-9]{6}\b' "$work/db/mail" 2>/dev/null | head -n1 || true)"
        [ -n "$code" ] && break
        sleep 0.2
    done
    [ -n "$code" ] || { echo "no verification mail arrived" >&2; exit 1; }
    ticket="$(post /auth/email-verifications/confirm "{\"email\":\"$email\",\"code\":\"$code\"}" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["verification_token"])')"
    post /auth/signup "{\"verification_token\":\"$ticket\",\"password\":\"$password\",\"name\":\"Conformance\"}" >/dev/null
fi
token="$(curl -s -D - -o /dev/null -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" "$base/api/v1/auth/login" |
    sed -n 's/^[Ss]et-[Cc]ookie: access_token=\([^;]*\).*/\1/p')"
[ -n "$token" ] || { echo "login as $email failed" >&2; exit 1; }

seed_args=()
[ -n "$seed" ] && seed_args=(--seed "$seed" --generation-deterministic)
# Run from the work directory so that schemathesis keeps its cache out of the repository.
# Logging out would revoke the token the run uses.
cd "$work"
"$venv/bin/schemathesis" --config-file "$root/server/tests/schemathesis.toml" run "$base/openapi.json" \
    --url "$base" --checks all -n "$examples" "${seed_args[@]}" \
    --header "Authorization: Bearer $token" \
    --exclude-path /api/v1/auth/logout
