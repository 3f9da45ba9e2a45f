#!/usr/bin/env bash
# System packages the test suite drives for real: Prometheus and promtool (rules and the
# end-to-end query test) and Chromium (the status page test). Idempotent; a no-op when
# everything is already on PATH. Set STRANGLER_SKIP_SYSTEM_DEPS=1 to skip (the tests that
# need a missing program then fail with a message naming it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt.sh

if [ "${STRANGLER_SKIP_SYSTEM_DEPS:-0}" = "1" ]; then
    exit 0
fi

scripts/install-promtool.sh

# Chromium renders the admin status page in its test (headless, --dump-dom/--screenshot).
if [ ! -x /usr/bin/chromium ]; then
    apt_install install-test-deps "install Chromium so that /usr/bin/chromium exists" chromium
fi
/usr/bin/chromium --version 2>/dev/null | head -n 1 || true
