"""What a flag change does to the connections open now, and what it changed (pure).

Flag systems decide per request; a WebSocket decision lives as long as its connection.
This module answers the release manager's questions about that gap: which open
connections would move, and to where (`plan`), how many have drifted from what the
flags now say (`drift`), and what a reload changed (`audit_changes`). It never sees
a socket; the proxy hands it snapshots of its open connections.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from strangler.flags.model import BASIS_POINTS, Condition, Flag, FlagSet, Mode, Rule, Segment

# How the proxy decides a mode (flags.evaluate plus anything layered on top, such as
# tripped guards), for a given flag set.
Decide = Callable[[FlagSet, str, str | None, Mapping[str, Any]], Mode]


@dataclass(frozen=True, slots=True)
class OpenConnection:
    """What the proxy knows of one open connection, for planning (no socket)."""

    route: str
    user_id: str | None
    claims: Mapping[str, Any]
    mode: Mode


@dataclass(frozen=True, slots=True)
class Move:
    route: str
    from_mode: str
    to_mode: str
    connections: int


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying a candidate flag file would do, without applying it."""

    current_hash: str
    candidate_hash: str
    open_connections: int
    moves: tuple[Move, ...]  # open connections whose mode would change
    population: tuple[dict[str, Any], ...]  # per flag: rollout percent before and after


def drifted(
    connections: Iterable[OpenConnection], flagset: FlagSet, decide: Decide
) -> Counter[str]:
    """Open connections per route whose mode differs from what `flagset` says now."""
    out: Counter[str] = Counter()
    for c in connections:
        if decide(flagset, c.route, c.user_id, c.claims) is not c.mode:
            out[c.route] += 1
    return out


def plan(
    connections: Iterable[OpenConnection],
    current: FlagSet,
    candidate: FlagSet,
    decide: Decide,
) -> Plan:
    """Counts by route and from-mode -> to-mode, and how the rollout shares move."""
    moves: Counter[tuple[str, str, str]] = Counter()
    total = 0
    for c in connections:
        total += 1
        after = decide(candidate, c.route, c.user_id, c.claims)
        if after is not c.mode:
            moves[(c.route, c.mode.value, after.value)] += 1
    return Plan(
        current_hash=current.digest[:12],
        candidate_hash=candidate.digest[:12],
        open_connections=total,
        moves=tuple(Move(r, f, t, n) for (r, f, t), n in sorted(moves.items())),
        population=tuple(_population(current, candidate)),
    )


def rollout_points(flag: Flag) -> dict[str, int]:
    """The flag's (untargeted) users per mode in basis points, adding up to 10,000."""
    if flag.kill_switch:
        return {Mode.LEGACY.value: BASIS_POINTS}
    points = {mode.value: n for mode, n in flag.rollout.items() if n}
    rest = BASIS_POINTS - sum(points.values())
    if rest > 0:
        points[flag.default.value] = points.get(flag.default.value, 0) + rest
    return points


def rollout_shares(flag: Flag) -> dict[str, float]:
    """The share of the flag's (untargeted) users per mode, 0..1 (the metric's unit)."""
    return {mode: points / BASIS_POINTS for mode, points in rollout_points(flag).items()}


def percent(points: int) -> int | float:
    """Basis points as the percent a flag file says: 1000 -> 10, 50 -> 0.5.

    Whole percents stay integers; otherwise points / 100 is the float nearest that
    decimal, which prints as the decimal itself (0.5, never 0.5000000001)."""
    whole, rest = divmod(points, 100)
    return whole if rest == 0 else points / 100


def rollout_percent(flag: Flag) -> dict[str, int | float]:
    """The flag's (untargeted) users per mode in percent, as people and the file say it."""
    return {mode: percent(points) for mode, points in rollout_points(flag).items()}


def _population(current: FlagSet, candidate: FlagSet) -> Iterable[dict[str, Any]]:
    for key in sorted(set(current.flags) | set(candidate.flags)):
        before, after = current.flags.get(key), candidate.flags.get(key)
        yield {
            "flag": key,
            # In percent, the file's own unit: 10 here is the file's `unified: 10`.
            "percent_before": rollout_percent(before) if before else None,
            "percent_after": rollout_percent(after) if after else None,
            "targets_before": _target_counts(before),
            "targets_after": _target_counts(after),
        }


def _target_counts(flag: Flag | None) -> dict[str, int]:
    if flag is None:
        return {}
    return dict(Counter(mode.value for mode in flag.targets.values()))


def audit_changes(old: FlagSet, new: FlagSet) -> list[dict[str, Any]]:
    """Per flag, what a reload changed. Target lists and segment users are summarised as
    counts and condition values left out, so the record (logged at info level) never
    names a user. Rollout values are in percent, as the file writes them."""
    changes: list[dict[str, Any]] = []
    for key in sorted(set(old.flags) | set(new.flags)):
        before, after = old.flags.get(key), new.flags.get(key)
        if before is None:
            changes.append({"flag": key, "change": "added"})
        elif after is None:
            changes.append({"flag": key, "change": "removed"})
        elif before != after:
            changes.append(
                {"flag": key, "change": "changed", "fields": _field_changes(before, after)}
            )
    return changes


def _field_changes(before: Flag, after: Flag) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(before):
        if f.name.startswith("_") or f.name == "thresholds":
            continue
        a, b = getattr(before, f.name), getattr(after, f.name)
        if a == b:
            continue
        if f.name == "targets":
            out["targets"] = _target_delta(a, b)
        elif f.name == "rollout":
            out["rollout"] = {"from": _rollout_percent(a), "to": _rollout_percent(b)}
        else:
            out[f.name] = {"from": _plain(a), "to": _plain(b)}
    return out


def _target_delta(a: Mapping[str, Mode], b: Mapping[str, Mode]) -> dict[str, str]:
    """Per mode, how many users a change targets to it anew and how many it no longer
    does (one pass over each side: files carry up to hundreds of thousands of targets)."""
    added = Counter(m for u, m in b.items() if a.get(u) is not m)
    removed = Counter(m for u, m in a.items() if b.get(u) is not m)
    return {
        mode.value: f"+{added[mode]} -{removed[mode]}"
        for mode in Mode
        if added[mode] or removed[mode]
    }


def _rollout_percent(rollout: Mapping[Mode, int]) -> dict[str, int | float]:
    return {mode.value: percent(points) for mode, points in rollout.items()}


def _plain(value: Any) -> Any:
    """A JSON-friendly rendering of a flag field for the audit record.

    The record is logged at info level, so what could name a user is summarised: a
    segment's users as a count, a condition as its claim and operator without the value
    it compares with (an email address or an id, as often as an organisation)."""
    if isinstance(value, Mode):
        return value.value
    if isinstance(value, Segment):
        return {
            "name": value.name,
            "users": len(value.users),
            "when": [_plain(c) for c in value.when],
        }
    if isinstance(value, Condition):
        return f"{value.claim} {value.op.value}"
    if isinstance(value, Rule):
        rule = _fields(value)
        rule["rollout"] = percent(value.rollout)  # basis points inside, percent in the file
        return rule
    if isinstance(value, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _fields(value: Any) -> dict[str, Any]:
    # Field by field (asdict would turn a nested segment into a dict of its users).
    return {
        f.name: _plain(getattr(value, f.name))
        for f in dataclasses.fields(value)
        if not f.name.startswith("_")
    }
