#!/usr/bin/env bash
# The Locust crowd of loadtest/locustfile.py, headless, against a running allot. Locust is kept
# in target/locust-venv (installed from PyPI on first use).
#
#   python3 loadtest/setup_users.py --base http://127.0.0.1:8080 --mail-dir data/db/mail \
#       --users 500 --out tokens.txt          # verified customers (serve without --smtp-url)
#   bash loadtest/run.sh --host http://127.0.0.1:8080 --tokens tokens.txt -u 500 -r 100 -t 60s
#   bash loadtest/run.sh --smoke --host … --tokens …   # 8 customers for 5 s (cli/tests/locust.rs)
#
# Any other argument goes to locust (`--drop prd_5` names the drop; default: the first product
# on sale). It exits non-zero if any request failed.
set -euo pipefail

host=""
tokens=""
drop=""
smoke=0
rest=()
while [ $# -gt 0 ]; do
    case "$1" in
        --host) host="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        --drop) drop="$2"; shift 2 ;;
        --smoke) smoke=1; shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
[ -n "$host" ] && [ -n "$tokens" ] || { echo "usage: run.sh --host URL --tokens FILE [--smoke] [--drop ID] [locust args]" >&2; exit 2; }
[ -r "$tokens" ] || { echo "run.sh: cannot read the tokens file $tokens" >&2; exit 2; }
tokens="$(realpath "$tokens")"
cd "$(dirname "$0")/.."
root="$PWD"
# shellcheck source=scripts/venv.sh
source "$root/scripts/venv.sh"
ensure_venv "$root" locust-venv locust 'locust>=2.32,<3'

if [ "$smoke" = 1 ]; then
    rest=(-u 8 -r 8 -t 5s "${rest[@]}")
    export ALLOT_SMOKE=1
fi
export ALLOT_TOKENS="$tokens"
[ -n "$drop" ] && export ALLOT_DROP="$drop"
exec "$VENV/bin/locust" -f "$root/loadtest/locustfile.py" --headless --only-summary \
    --host "$host" "${rest[@]}"
