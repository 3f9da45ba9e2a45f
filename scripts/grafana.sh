#!/usr/bin/env bash
# Run a local Grafana that shows the strangler dashboards without any clicks: it loads
# dashboards/grafana/provisioning (a Prometheus datasource and the dashboard folder).
#   STRANGLER_PROMETHEUS_URL  the Prometheus to query (default http://localhost:9090)
#   GRAFANA_HOME              Grafana's home path (default /usr/share/grafana, as packaged)
# Extra arguments go to Grafana, e.g. cfg:server.http_port=3001.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

export STRANGLER_PROMETHEUS_URL="${STRANGLER_PROMETHEUS_URL:-http://localhost:9090}"
export STRANGLER_DASHBOARDS_DIR="$here/dashboards/grafana"
export GF_PATHS_PROVISIONING="$here/dashboards/grafana/provisioning"
home="${GRAFANA_HOME:-/usr/share/grafana}"

if command -v grafana >/dev/null 2>&1; then
    exec grafana server --homepath "$home" "$@"
elif command -v grafana-server >/dev/null 2>&1; then
    exec grafana-server --homepath "$home" "$@"
fi
echo "grafana.sh: Grafana is not installed (neither grafana nor grafana-server on PATH)." >&2
echo "Or import the JSON files of dashboards/grafana by hand (Dashboards > New > Import)." >&2
exit 3
