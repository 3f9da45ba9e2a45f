"""What `strangler flags` prints for a person: plans, status, buckets (no I/O here).

The admin port answers in JSON for machines; these turn its answers into lines a
release manager reads at a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from strangler.flags.load import format_instant
from strangler.flags.model import BASIS_POINTS, FlagSet
from strangler.proxy.admin.reliability_text import (
    BACKENDS,
    below_objective,
    objective_text,
    reliability_text,
)
from strangler.proxy.release.reliability import DEFAULT_OBJECTIVE


def plan_text(plan: dict[str, Any], candidate: FlagSet | None) -> str:
    """The admin port's /flags/plan answer as `strangler flags plan` prints it."""
    moves = plan.get("moves", [])
    moving = sum(int(m["connections"]) for m in moves)
    out = [
        f"flags {plan.get('current_hash')} -> {plan.get('candidate_hash')} "
        "(plan only: nothing is applied)",
        f"open connections now: {plan.get('open_connections')}; would change mode: {moving}",
    ]
    if moves:
        rows = [("route", "from", "to", "connections", "on change")]
        for m in moves:
            rows.append(
                (
                    str(m["route"]),
                    str(m["from_mode"]),
                    str(m["to_mode"]),
                    str(m["connections"]),
                    _policy(candidate, str(m["route"])),
                )
            )
        out.extend("  " + line for line in _table(rows))
    out.append("population (users not targeted), per flag, before -> after:")
    for entry in plan.get("population", []):
        before, after = entry.get("percent_before"), entry.get("percent_after")
        out.append(f"  {entry['flag']}: {_shares(before)} -> {_shares(after)}")
        targets_before, targets_after = entry.get("targets_before"), entry.get("targets_after")
        if targets_before != targets_after:
            out.append(f"    targets: {_counts(targets_before)} -> {_counts(targets_after)}")
    return "\n".join(out)


def _policy(candidate: FlagSet | None, route: str) -> str:
    """What the proxy does to open connections the new file moves (the new flag's policy)."""
    if candidate is None:
        return "?"
    flag = candidate.by_route.get(route)
    if flag is not None and flag.drain_fleet_rate is not None:
        return f"drain (closed 1012, at most {flag.drain_fleet_rate:g}/s across the fleet)"
    if flag is None or flag.drain_rate is None:
        return "keep (finish in their mode)"
    return f"drain (closed 1012, at most {flag.drain_rate:g}/s)"


def _shares(percents: dict[str, float] | None) -> str:
    """Rollout shares as the plan sends them, in percent (the file's unit): exact to the
    file's two decimals, so 0.5 prints as 0.5%."""
    if percents is None:
        return "(no flag)"
    order = ("unified", "live", "shadow", "legacy")
    ranked = sorted(percents.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    return ", ".join(f"{mode} {value:g}%" for mode, value in ranked) or "(none)"


def _counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{mode} {n}" for mode, n in sorted(counts.items()))


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def status_text(s: dict[str, Any], now: float) -> str:
    """The admin port's /flags/status answer as `strangler flags status` prints it."""
    loaded = s.get("loaded_at")
    when = "never" if not loaded else f"{format_instant(round(loaded))} ({now - loaded:.0f}s ago)"
    out = [
        f"flags:       {s.get('hash')} from {s.get('source')}, loaded {when}",
        f"last reload: {'error: ' + s['last_error'] if s.get('last_error') else 'ok'}",
        f"flag keys:   {', '.join(s.get('flags', [])) or '(none)'}",
    ]
    open_now = s.get("open_connections", {})
    out.append("open connections:" + ("" if open_now else " none"))
    for route, modes in sorted(open_now.items()):
        out.append(f"  {route}: {_counts(modes)}")
    drift = {route: n for route, n in s.get("drift", {}).items() if n}
    total = sum(drift.values())
    out.append(
        f"drift:       {total} open connection{'s' if total != 1 else ''} "
        "in a mode the flags in force no longer give" + (f" ({_counts(drift)})" if drift else "")
    )
    guards = s.get("guards") or {}
    out.append("guards:" + ("" if guards else "      none"))
    for key, state in sorted(guards.items()):
        out.append(f"  {key}: {_guard(state)}")
    out.extend(_reliability(s.get("reliability")))
    return "\n".join(out)


def _reliability(by_route: Any) -> list[str]:
    """Golden-path reliability per route, legacy then unified, last hour, this process."""
    objective = objective_text(DEFAULT_OBJECTIVE)
    head = f"golden path: last hour, this process, objective {objective}"
    if not isinstance(by_route, dict) or not by_route:
        return [f"{head}: no turns ended"]
    out = [f"{head}:"]
    for route, backends in sorted(by_route.items()):
        entries = backends if isinstance(backends, dict) else {}
        cells = []
        for backend in BACKENDS:
            entry = entries.get(backend)
            below = " (BELOW OBJECTIVE)" if below_objective(entry, DEFAULT_OBJECTIVE) else ""
            cells.append(f"{backend} {reliability_text(entry)}{below}")
        out.append(f"  {route}: {'; '.join(cells)}")
    return out


def _guard(state: Any) -> str:
    """One line per guarded flag; the endpoint's shape may grow, so read it defensively."""
    if not isinstance(state, dict):
        return json.dumps(state, sort_keys=True)
    parts = ["TRIPPED (held on legacy)" if state.get("tripped") else "ok"]
    for watched, w in sorted((state.get("watching") or {}).items()):
        if isinstance(w, dict):
            ratio, samples = w.get("ratio"), w.get("samples")
            seen = "no samples yet" if ratio is None else f"{ratio:.2%} over {samples} samples"
            parts.append(
                f"{watched} {seen} (limit {w.get('limit')}, "
                f"judged from {state.get('min_samples')} samples)"
            )
    trip = state.get("trip")
    if isinstance(trip, dict) and trip.get("at"):
        parts.append(f"tripped at {format_instant(round(trip['at']))} on {trip.get('guard')}")
    return "; ".join(parts)


def bucket_text(value: int | None) -> str:
    """A decision's bucket for `explain`: basis points and percent."""
    if value is None:
        return "- (not read for this decision)"
    return f"{value} of {BASIS_POINTS} ({value / 100:.2f}%)"


def count(n: int, noun: str) -> str:
    """`1 flag`, `2 flags`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
