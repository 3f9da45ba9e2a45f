#!/usr/bin/env bash
# Check the Prometheus rules of the monitoring mixin: syntax and semantics of the rule
# files (`promtool check rules`; slo.rules.yml is `strangler slo rules` output), then
# their unit tests (`promtool test rules`).
# Exits non-zero on the first failure. Needs promtool: scripts/install-promtool.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

rules=dashboards/prometheus
if ! command -v promtool >/dev/null 2>&1; then
    echo "check-rules: promtool not found; run scripts/install-promtool.sh" >&2
    exit 2
fi

promtool check rules "$rules/recording.rules.yml" "$rules/alerts.rules.yml" "$rules/slo.rules.yml"

shopt -s nullglob
tests=("$rules"/tests/*.yml)
if [ "${#tests[@]}" -eq 0 ]; then
    echo "check-rules: no unit tests in $rules/tests" >&2
    exit 1
fi
promtool test rules "${tests[@]}"
