"""Every PromQL expression the dashboards and rules contain, made concrete, and a checker
that asks a real Prometheus whether each one returns data.

What "returns data" means depends on where the expression lives:

- a panel target, a variable query or a recording rule must return at least one
  series with a finite value (a panel that would show "No data" or NaN fails);
- an alert expression is a condition that is meant to be empty while all is well, so
  it must evaluate without error, and each series selector in it (metric name and label
  matchers, the rule's underlying series) must return data on its own.

For all of them, every metric name they mention must exist in Prometheus: a misspelled
name hidden behind `or vector(0)` still fails.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards" / "grafana"
RULES = ROOT / "dashboards" / "prometheus"
RULE_FILES = (
    RULES / "recording.rules.yml",
    RULES / "alerts.rules.yml",
    RULES / "slo.rules.yml",
)

# Grafana's variables, replaced by what a test Prometheus holding a minute of data can
# answer: every route and instance, rate windows that span the whole test.
SUBSTITUTIONS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "route": ".*",
    "instance": ".*",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
# A metric name of this project (not preceded by a quote: `job="strangler"` is a value).
_SELECTOR = re.compile(r"(?<![\w:\"'])((?:strangler|process)[a-zA-Z0-9_:]*)(\s*\{[^}]*\})?")
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$", re.S)


@dataclass(frozen=True)
class Query:
    """One expression, where it comes from, and how it is judged."""

    source: str
    expr: str
    kind: str  # "panel", "variable", "record" or "alert"


def substitute(expr: str) -> str:
    """`expr` with Grafana's variables replaced; unknown variables are an error."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in SUBSTITUTIONS:
            raise ValueError(f"unknown dashboard variable ${name} in {expr!r}")
        return SUBSTITUTIONS[name]

    return _VARIABLE.sub(value, expr)


def load_dashboards() -> dict[str, dict[str, Any]]:
    """The dashboards of dashboards/grafana by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))  # collapsed rows nest their panels
    return out


def dashboard_queries(name: str, dashboard: dict[str, Any]) -> list[Query]:
    """Every target of every panel and every query variable, made concrete."""
    out: list[Query] = []
    for panel in all_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            source = f"{name}: panel {panel['title']!r} target {target.get('refId')}"
            out.append(Query(source, substitute(target["expr"]), "panel"))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query.strip())
        if m is None:
            raise ValueError(f"{name}: variable {var['name']} is not label_values(...)")
        metric, label = m.groups()
        expr = f"count by ({label}) ({substitute(metric)})"
        out.append(Query(f"{name}: variable {var['name']}", expr, "variable"))
    return out


def rule_queries() -> list[Query]:
    """Every recording and alerting rule expression of dashboards/prometheus."""
    out: list[Query] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    out.append(Query(f"record {rule['record']}", rule["expr"], "record"))
                else:
                    out.append(Query(f"alert {rule['alert']}", rule["expr"], "alert"))
    return out


def selectors(expr: str) -> list[str]:
    """The series selectors of this project's metrics in `expr`, matchers included."""
    return [name + (matchers or "").strip() for name, matchers in _SELECTOR.findall(expr)]


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in _SELECTOR.findall(expr)}


class PrometheusAPI:
    """The HTTP query API of one Prometheus."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def query(self, expr: str) -> tuple[str | None, list[dict[str, Any]]]:
        """(error or None, result vector) of an instant query now."""
        async with self.session.post(f"{self.url}/api/v1/query", data={"query": expr}) as r:
            body = await r.json()
        if body.get("status") != "success":
            return f"{body.get('errorType')}: {body.get('error')}", []
        data = body["data"]
        if data["resultType"] == "scalar":
            return None, [{"metric": {}, "value": data["result"]}]
        return None, list(data["result"])


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


async def problems(api: PrometheusAPI, queries: list[Query]) -> list[str]:
    """Why each query does not return data, one line per failure (empty: all good)."""
    out: list[str] = []
    known: dict[str, bool] = {}
    for q in queries:
        for name in sorted(metric_names(q.expr)):
            if name not in known:
                error, result = await api.query(f"count({name})")
                known[name] = error is None and bool(result)
            if not known[name]:
                out.append(f"{q.source}: no series named {name}")
        error, result = await api.query(q.expr)
        if error is not None:
            out.append(f"{q.source}: query failed: {error}")
        elif q.kind == "alert":
            for sel in selectors(q.expr):
                sel_error, sel_result = await api.query(sel)
                if sel_error is not None or not sel_result:
                    out.append(f"{q.source}: no data for its series {sel}")
        elif not result:
            out.append(f"{q.source}: empty result for {q.expr!r}")
        elif not _finite(result):
            out.append(f"{q.source}: only NaN/Inf for {q.expr!r}")
    return out
