# shellcheck shell=bash
# Sourced by the scripts that run a Python tool (server/tests/conformance.sh, deploy/check.sh,
# loadtest/run.sh).
#
# ensure_venv ROOT NAME BIN SPEC: a virtualenv in ROOT/target/NAME holding the package SPEC, made
# once (two runs at once make it once, under ROOT/target/NAME.lock) and made again if BIN is
# missing from it. Sets VENV to its path.
ensure_venv() {
    local root="$1" name="$2" bin="$3" spec="$4"
    VENV="$root/target/$name"
    mkdir -p "$root/target"
    (
        flock 9
        if [ ! -x "$VENV/bin/$bin" ]; then
            rm -rf "$VENV"
            python3 -m venv "$VENV"
            "$VENV/bin/pip" install -q "$spec"
        fi
    ) 9>"$root/target/$name.lock"
}
