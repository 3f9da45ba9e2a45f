#!/usr/bin/env bash
# Install prometheus and promtool (Debian's `prometheus` package) when they are missing.
# Idempotent: does nothing but print versions when both are already on PATH. The
# package's own service is never started: a policy-rc.d that forbids service starts is
# put in place for the install (and removed after) unless one already exists.
set -euo pipefail
. "$(dirname "$0")/apt.sh"

have_both() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if ! have_both; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-promtool: prometheus/promtool missing and apt-get not available;" >&2
        echo "install them from https://prometheus.io/download/ and put them on PATH" >&2
        exit 3
    fi
    sudo="$APT_SUDO"
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        # 101 = "action forbidden": dpkg maintainer scripts will not start the service.
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        created_policy=1
    fi
    cleanup() {
        if [ "$created_policy" -eq 1 ]; then
            $sudo rm -f "$policy"
        fi
    }
    trap cleanup EXIT
    apt_install install-promtool "install prometheus from https://prometheus.io/download/" prometheus
fi

prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
