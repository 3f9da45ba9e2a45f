"""The Grafana dashboards and provisioning files have the shape Grafana needs to show
them without clicks: stable uids, a datasource variable every query goes through, the
route and instance variables, and provisioning that points at this directory."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.dashboards.promql import DASHBOARDS, all_panels, dashboard_queries, load_dashboards

EXPECTED_UIDS = {
    "migration-overview.json": "strangler-migration",
    "shadow-comparison.json": "strangler-shadow",
    "proxy-health.json": "strangler-health",
}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return load_dashboards()


def test_each_dashboard_has_its_stable_uid_and_a_current_schema(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    assert {name: d["uid"] for name, d in dashboards.items()} == EXPECTED_UIDS
    for d in dashboards.values():
        assert d["schemaVersion"] >= 39
        assert d["title"].startswith("Strangler: ")


def test_every_panel_and_target_queries_through_the_datasource_variable(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, d in dashboards.items():
        panels = [p for p in all_panels(d["panels"]) if p["type"] != "row"]
        assert panels, name
        for panel in panels:
            assert panel["type"] in ("timeseries", "stat", "table"), (name, panel["title"])
            assert panel["datasource"] == DATASOURCE, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, (name, panel["title"])
                assert target["expr"].strip(), (name, panel["title"])


def test_panels_have_unique_ids_and_fit_the_grid(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, d in dashboards.items():
        panels = all_panels(d["panels"])
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), name
        for p in panels:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, p["title"])


def test_variables_are_datasource_instance_and_route(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, d in dashboards.items():
        variables = {v["name"]: v for v in d["templating"]["list"]}
        assert list(variables) == ["datasource", "instance", "route"], name
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("instance", "route"):
            v = variables[var]
            assert v["type"] == "query"
            assert v["datasource"] == DATASOURCE
            assert v["definition"].startswith("label_values(")
            assert v["includeAll"] and v["allValue"] == ".*"
        # Every query variable is one the end-to-end test can evaluate.
        assert len([q for q in dashboard_queries(name, d) if q.kind == "variable"]) == 2


def test_every_query_filters_by_instance_unless_it_reads_a_fleet_recording_rule(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, d in dashboards.items():
        for panel in all_panels(d["panels"]):
            for target in panel.get("targets", []):
                expr = target["expr"]
                assert '$instance"' in expr or "strangler:" in expr, (name, panel["title"])


def test_provisioning_loads_this_directory_and_a_prometheus_from_the_environment() -> None:
    provisioning = DASHBOARDS / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "strangler.yaml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "${STRANGLER_PROMETHEUS_URL}"
    providers = yaml.safe_load((provisioning / "dashboards" / "strangler.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "${STRANGLER_DASHBOARDS_DIR}"
    script = (DASHBOARDS.parents[1] / "scripts" / "grafana.sh").read_text()
    assert 'STRANGLER_DASHBOARDS_DIR="$here/dashboards/grafana"' in script
    assert "${STRANGLER_PROMETHEUS_URL:-http://localhost:9090}" in script


def test_the_migration_dashboard_shows_golden_path_reliability_per_backend_and_objective(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    panels = dashboards["migration-overview.json"]["panels"]
    (row,) = [p for p in panels if p["type"] == "row" and p["title"] == "Golden-path reliability"]
    below = [p for p in panels if p["gridPos"]["y"] > row["gridPos"]["y"]]
    exprs = {p["title"]: [t["expr"] for t in p["targets"]] for p in below}
    (side_by_side,) = [p for p in below if p["type"] == "table"]
    # Legacy and unified for the same routes, over the dashboard's range and the last hour.
    a, b, c, d = exprs[side_by_side["title"]]
    assert 'backend="legacy"' in a and "[$__range]" in a
    assert 'backend="unified"' in b and "[$__range]" in b
    assert 'backend="legacy"' in c and "[1h]" in c
    assert 'backend="unified"' in d and "[1h]" in d
    assert all('outcome!="abandoned"' in e and "> 0)" in e for e in (a, b, c, d))
    joined = "\n".join(e for es in exprs.values() for e in es)
    assert "strangler:golden_path:objective" in joined
    assert "strangler:golden_path:error_budget_remaining_30d" in joined
    assert "strangler_turn_missing_events_total" in joined
