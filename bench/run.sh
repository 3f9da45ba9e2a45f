#!/usr/bin/env bash
# The benchmark in one command: the proxy side by side with nginx on this machine.
#
#   bench/run.sh [--quick] [--rounds N] [--commit REV] [--out DIR] [harness options]
#
# Installs what is missing (nginx, gcc, make, taskset: Debian packages; nginx's own
# service is never started), creates .venv, builds the C load generator, then runs
# bench/harness.py (echo round trips, latency, handshakes, idle memory, against nginx)
# and bench/flags_bench.py (flag evaluation and a 100,000-target reload). Tables go to
# stdout and to DIR (default bench/out). --commit REV measures that revision, exported
# with `git archive`, instead of the working tree. Other options go to bench/harness.py
# (see `python bench/harness.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
rounds=3
commit=""
out=bench/out
harness_args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --rounds) rounds="$2"; shift ;;
    --commit) commit="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) harness_args+=("$1") ;;
    esac
    shift
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
policy=/usr/sbin/policy-rc.d
created_policy=0
work=""
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        $sudo rm -f "$policy"
    fi
    if [ -n "$work" ]; then
        rm -rf "$work"
    fi
}
trap cleanup EXIT

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
if [ "${#need[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "bench: missing ${need[*]} and apt-get is not available; install them" >&2
        exit 3
    fi
    if [ ! -e "$policy" ]; then
        # 101 = "action forbidden": the package's nginx service is not started; the
        # harness runs its own nginx with a generated configuration.
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        created_policy=1
    fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi
export PATH="$PATH:/usr/sbin"

make -s .venv/.installed
make -s -C bench/loadgen

source_dir="$PWD"
if [ -n "$commit" ]; then
    work="$(mktemp -d -t strangler-bench-src-XXXXXX)"
    git archive "$commit" | tar -x -C "$work"
    source_dir="$work"
    echo "bench: measuring $(git rev-parse --short "$commit") ($(git log -1 --format=%s "$commit" | cut -c1-60))" >&2
fi

# Idle-connection runs need many descriptors: take the hard limit.
ulimit -n "$(ulimit -Hn)"

mkdir -p "$out"
args=(--rounds "$rounds" --source "$source_dir" --json "$out/bench.json" --markdown "$out/bench.md")
flag_args=(--source "$source_dir" --markdown "$out/flags.md")
if [ "$quick" -eq 1 ]; then
    args+=(--quick)
    flag_args+=(--rounds 3)
else
    flag_args+=(--rounds "$rounds")
fi
.venv/bin/python bench/harness.py "${args[@]}" "${harness_args[@]}"
echo
echo "Flags (target 5):"
echo
.venv/bin/python bench/flags_bench.py "${flag_args[@]}"
echo
echo "bench: tables written to $out/bench.md and $out/flags.md" >&2
