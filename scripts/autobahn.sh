#!/usr/bin/env bash
# Autobahn|Testsuite (the WebSocket conformance suite) against the proxy, on loopback.
#
#   scripts/autobahn.sh [--modes "echo tunnel per_frame"] [--cases "3.4 7.9.*"]
#                       [--source DIR] [--out DIR] [--update-baseline] [--which-python]
#
# Installs autobahntestsuite 0.8.2 and its pinned dependencies
# (tests/autobahn/requirements-py27.txt) for Python 2.7, the only Python it runs on, into
# a cache of its own ($STRANGLER_AUTOBAHN_HOME, default /tmp/strangler-autobahn; from
# PyPI, once). Then it starts an aiohttp echo backend (tests/autobahn/echo.py) and runs
# `wstest -m fuzzingclient`, cases 1-7 and 10, against each mode:
#
#   echo       the echo backend alone: what aiohttp itself does (the reference)
#   tunnel     the proxy in front of it, relay.tunnel: auto (the byte tunnel)
#   per_frame  the proxy in front of it, relay.tunnel: off (the per-frame relay)
#
# The HTML reports go to DIR/<mode>/index.html (default test-artifacts/autobahn). The
# script prints the count of each outcome per mode and fails (exit 1) when a case comes
# out worse than tests/autobahn/baseline.json allows; --update-baseline writes the
# results as the baseline instead. --source runs the proxy of another checkout (the
# echo backend and the venv stay this one's). Exit 3: no Python 2.7 (--which-python
# prints the one found). All traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

modes="echo tunnel per_frame"
all_cases="1.* 2.* 3.* 4.* 5.* 6.* 7.* 10.*"
cases=$all_cases
source_dir=$root
out=$root/test-artifacts/autobahn
update=0
which_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --modes) modes="$2"; shift ;;
    --cases) cases="$2"; shift ;;
    --source) source_dir=$(cd "$2" && pwd); shift ;;
    --out) out="$2"; shift ;;
    --update-baseline) update=1 ;;
    --which-python) which_only=1 ;;
    *) echo "autobahn: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
py3=${PYTHON:-$root/.venv/bin/python}
# shellcheck disable=SC2086 # a word per pattern, never expanded as a file name
case_list=$(set -f && printf '"%s", ' $cases)
case_list="[${case_list%, }]"

# -- Python 2.7 ---------------------------------------------------------------------------

is_py27() {
    [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null
}

find_py27() {
    local candidate
    for candidate in "${AUTOBAHN_PYTHON27:-}" "$(command -v python2.7 || true)" \
        "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/2.7*/bin/python2.7; do
        if [ -n "$candidate" ] && is_py27 "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! py27=$(find_py27); then
    echo "autobahn: no Python 2.7 found (PATH, pyenv, \$AUTOBAHN_PYTHON27);" \
        "Autobahn|Testsuite runs on nothing else" >&2
    exit 3
fi
if [ "$which_only" -eq 1 ]; then
    echo "$py27"
    exit 0
fi

# -- the test suite, installed once -------------------------------------------------------

home=${STRANGLER_AUTOBAHN_HOME:-${TMPDIR:-/tmp}/strangler-autobahn}
requirements=$root/tests/autobahn/requirements-py27.txt
stamp=$home/.installed-$(sha256sum "$requirements" | cut -c1-16)
mkdir -p "$(dirname "$home")"
exec 9>"$home.lock"
flock 9  # two runs at once install once
if [ ! -e "$stamp" ]; then
    echo "autobahn: installing autobahntestsuite for $py27 into $home"
    rm -rf "$home"
    mkdir -p "$home"
    # --user with PYTHONUSERBASE: a private prefix whose .pth files (zope's namespace)
    # are honoured, which --target and --prefix on PYTHONPATH are not.
    if ! PYTHONUSERBASE=$home PYTHONNOUSERSITE='' "$py27" -m pip install --user --no-deps \
        --disable-pip-version-check --no-warn-script-location -r "$requirements" \
        >"$home.install.log" 2>&1; then
        tail -n 30 "$home.install.log" >&2
        echo "autobahn: installing autobahntestsuite failed (log: $home.install.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
flock -u 9

# -- the echo backend and the proxies -----------------------------------------------------

work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$py3" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Until `target` (a port: something listens; a URL: it answers 200) is ready, 20 s at
# most; fails at once, with the log's tail, when the process exits first.
wait_ready() { # what, target, pid, log
    "$py3" - "$@" <<'EOF'
import os, socket, sys, time, urllib.request

what, target, pid, log = sys.argv[1:5]


def ready() -> bool:
    if target.isdigit():
        with socket.create_connection(("127.0.0.1", int(target)), timeout=1):
            return True
    with urllib.request.urlopen(target, timeout=1) as r:
        return r.status == 200


deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        sys.exit(f"autobahn: {what} exited before it was ready:\n{open(log).read()[-2000:]}")
    try:
        if ready():
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(f"autobahn: {what} not ready after 20 s")
EOF
}

mkdir -p "$out"
echo_port=$(free_port)
"$py3" tests/autobahn/echo.py --port "$echo_port" >"$out/echo-backend.log" 2>&1 &
pids+=($!)
wait_ready "the echo backend" "$echo_port" "$!" "$out/echo-backend.log"

# The proxy of --source, importable as strangler.* ahead of the venv's editable install.
tree=$work/tree/strangler
mkdir -p "$tree"
for part in proxy flags legacy_adapters reference; do
    ln -s "$source_dir/$part" "$tree/$part"
done

start_proxy() { # mode, tunnel setting; sets `port` (not a subshell: pids must stay)
    local mode=$1 tunnel=$2 admin dir=$work/$1
    port=$(free_port)
    admin=$(free_port)
    mkdir -p "$dir"
    printf 'version: 1\nflags: {}\n' >"$dir/flags.yaml"
    cat >"$dir/strangler.yaml" <<EOF
listen: 127.0.0.1:$port
admin_listen: 127.0.0.1:$admin
backends:
  legacy: {url: "ws://127.0.0.1:$echo_port", connect_timeout: 5}
  unified: {url: "ws://127.0.0.1:$echo_port/v1/ws", connect_timeout: 5}
routes:
  - {name: legacy, path: /websocket, dialect: legacy, auth: none}
flags: {file: flags.yaml, poll_interval: 1.0}
jwt: {secret_env: STRANGLER_AUTOBAHN_SECRET}
relay: {tunnel: $tunnel, max_message_bytes: 16777216, grace_period: 1, close_timeout: 2}
EOF
    STRANGLER_AUTOBAHN_SECRET=autobahn-secret-0123456789abcdef0123456789 \
        PYTHONPATH=$work/tree "$py3" -m strangler.proxy --log-level warning \
        run --config "$dir/strangler.yaml" >"$out/$mode-proxy.log" 2>&1 &
    pids+=($!)
    wait_ready "the proxy ($mode)" "http://127.0.0.1:$admin/readyz" "$!" "$out/$mode-proxy.log"
}

# -- the runs -----------------------------------------------------------------------------

for mode in $modes; do
    case "$mode" in
    echo) port=$echo_port ;;
    tunnel) start_proxy tunnel auto ;;
    per_frame) start_proxy per_frame off ;;
    *) echo "autobahn: unknown mode $mode (echo, tunnel, per_frame)" >&2; exit 2 ;;
    esac
    rm -rf "${out:?}/$mode"
    cat >"$work/$mode.json" <<EOF
{"outdir": "$out/$mode", "cases": $case_list, "exclude-cases": [], "exclude-agent-cases": {},
 "servers": [{"agent": "$mode", "url": "ws://127.0.0.1:$port/websocket"}]}
EOF
    started=$(date +%s)
    (cd "$work" && PYTHONUSERBASE=$home PYTHONNOUSERSITE='' PYTHONWARNINGS=ignore \
        "$py27" "$home/bin/wstest" -m fuzzingclient -s "$work/$mode.json") \
        >"$out/$mode-wstest.log" 2>&1 || {
        echo "autobahn: wstest failed for $mode; see $out/$mode-wstest.log" >&2
        tail -n 20 "$out/$mode-wstest.log" >&2
        exit 1
    }
    echo "autobahn: $mode ran in $(($(date +%s) - started)) s; report $out/$mode/index.html"
done

args=()
if [ "$update" -eq 1 ]; then
    args+=(--update)
fi
if [ "$cases" != "$all_cases" ]; then
    args+=(--partial)  # the cases not run are not missing
fi
# shellcheck disable=SC2086 # one word per mode
"$py3" tests/autobahn/verdict.py "$out" $modes "${args[@]}"
