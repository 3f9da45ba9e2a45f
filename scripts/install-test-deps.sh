#!/usr/bin/env bash
# System packages the test suite drives for real: Prometheus and promtool (rules and the
# end-to-end query test) and Chromium (the status page test). Idempotent; a no-op when
# everything is already on PATH. Set STRANGLER_SKIP_SYSTEM_DEPS=1 to skip (the tests that
# need a missing program then fail with a message naming it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${STRANGLER_SKIP_SYSTEM_DEPS:-0}" = "1" ]; then
    exit 0
fi

scripts/install-promtool.sh

# Chromium renders the admin status page in its test (headless, --dump-dom/--screenshot).
if [ ! -x /usr/bin/chromium ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-test-deps: /usr/bin/chromium missing and apt-get not available;" >&2
        echo "install Chromium so that /usr/bin/chromium exists" >&2
        exit 3
    fi
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1 || true
