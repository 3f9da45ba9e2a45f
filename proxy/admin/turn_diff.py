"""One recorded turn made readable: both sides' events aligned, the differing paths
marked, and the rule that judged each difference (pure).

Reads a mismatch record as the hub keeps it and `/shadow` serves it (`MismatchSample`
as a dict: its events are already redacted). The status page's turn page
(proxy/admin/turn_page.py) and `strangler shadow show` (proxy/commands/shadow_show.py)
both render a `TurnView`, so a person sees the same in a browser and a terminal.

Legacy is the reference, on the left. Events are aligned by type (and tool name) with
`difflib`, so a missing or extra event sits opposite a gap. Within a pair, every leaf
(a dotted path to a scalar) is listed; a leaf is marked when a difference names it or
a path above it and its value differs between the sides (or when only the path is
known, as for prose compared by presence, every leaf under it).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS

# What each built-in check compares, for differences whose record names no rule.
CHECKS: Mapping[str, str] = {
    "missing_event": "event check: every event legacy sent must come from unified too",
    "extra_event": "event check: unified sent an event legacy did not",
    "order": "order check: events in legacy's order (a run of tools in any order)",
    "tool_set": "tool check: the same tools, called as many times",
    "tool_args": "tool check: the same parameters for each tool call (exact)",
    "final_status": "end check: the same final event and data.status",
    "field": "field policy: exact, unless a rule for the path says otherwise",
}

# Why a turn was not compared (MismatchSample.reason), in words.
REASONS: Mapping[str, str] = {
    "secondary_overflow": "the secondary sent faster than it could be compared (or read "
    "the client's copy too slowly); it was closed, and its turns were not compared",
    "secondary_refused": "the secondary refused the handshake",
    "secondary_unavailable": "the secondary could not be reached",
    "secondary_died": "the secondary's connection ended before the turn did",
    "secondary_protocol_error": "the secondary broke the WebSocket protocol",
    "secondary_late": "the secondary did not finish the turn in time",
    "client_left": "the client left before the primary finished the turn",
    "compare_overflow": "the comparison fell behind the primary and lost frames of the turn",
}

_TOOL_TYPES = frozenset({"tool_executing", "tool_completed"})
_MAX_VALUE = 240  # characters of one value shown; the rest is cut with an ellipsis
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Leaf:
    """One scalar of an event: its dotted path, its value as JSON text, and marks."""

    path: str
    value: str
    differs: bool  # a difference names this field and its value differs
    volatile: bool  # never compared (timestamps, ids, durations)


@dataclass(frozen=True, slots=True)
class EventView:
    """One event of one side, flattened to leaves."""

    position: int  # 1-based, in the order the side sent it
    type: str
    tool: str | None
    leaves: tuple[Leaf, ...]
    differs: bool  # the event as a whole is part of a difference (missing, extra, ...)


@dataclass(frozen=True, slots=True)
class Row:
    """Two aligned events; None where a side has nothing opposite the other's."""

    legacy: EventView | None
    unified: EventView | None


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference of the turn and the rule that judged it."""

    category: str
    detail: str
    rule: str  # the policy rule's name from the record, or "" when it gave none
    check: str  # what the category's built-in check compares, in words


@dataclass(frozen=True, slots=True)
class TurnView:
    """Everything a person needs to see why a turn was judged as it was."""

    id: str
    at: float
    route: str
    mode: str
    turn: int
    request_type: str
    outcome: str
    reason: str | None
    reason_text: str
    findings: tuple[Finding, ...]
    rows: tuple[Row, ...]

    @property
    def primary(self) -> str:
        """The side that answered the client (legacy in shadow mode, unified in live)."""
        return "unified" if self.mode == "live" else "legacy"


@dataclass(frozen=True, slots=True)
class _Mark:
    """Where a difference points: events of a type (and tool), a path or all of them."""

    type: str | None
    tool: str | None = None
    path: str | None = None
    side: str | None = None  # only that side's events (missing: legacy, extra: unified)


def turn_view(record: Mapping[str, Any]) -> TurnView:
    """The view of one mismatch record (a `MismatchSample` as a dict)."""
    differences = [_pair(d) for d in record.get("differences") or ()]
    rules = list(record.get("rules") or ())
    findings = tuple(
        Finding(
            category=category,
            detail=detail,
            rule=str(rules[i]) if i < len(rules) and rules[i] else "",
            check=CHECKS.get(category, "comparison"),
        )
        for i, (category, detail) in enumerate(differences)
    )
    marks = [mark for category, detail in differences for mark in _marks(category, detail)]
    reason = record.get("reason")
    return TurnView(
        id=str(record.get("id", "")),
        at=float(record.get("at") or 0.0),
        route=str(record.get("route", "")),
        mode=str(record.get("mode", "")),
        turn=int(record.get("turn") or 0),
        request_type=str(record.get("request_type", "")),
        outcome=str(record.get("outcome", "")),
        reason=str(reason) if reason else None,
        reason_text=REASONS.get(str(reason), "") if reason else "",
        findings=findings,
        rows=_rows(_events(record.get("legacy")), _events(record.get("unified")), marks),
    )


def _pair(value: Any) -> tuple[str, str]:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) >= 2:
        return str(value[0]), str(value[1])
    return str(value), ""


def _events(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [e for e in value if isinstance(e, Mapping)]


def _type(event: Mapping[str, Any]) -> str:
    kind = event.get("type")
    return kind if isinstance(kind, str) else "<untyped>"


def _tool(event: Mapping[str, Any]) -> str | None:
    if _type(event) not in _TOOL_TYPES:
        return None
    name = event.get("tool_name")
    data = event.get("data")
    if not isinstance(name, str) and isinstance(data, Mapping):
        name = data.get("tool_name")
    return name if isinstance(name, str) else None


def _marks(category: str, detail: str) -> list[_Mark]:
    """Where a difference's detail points (compare.py writes the details)."""
    if category == "missing_event":
        return [_Mark(detail, side="legacy")]
    if category == "extra_event":
        return [_Mark(detail, side="unified")]
    if category == "order":
        return [_Mark(kind) for token in detail.split(" != ") for kind in token.split("+")]
    if category in ("tool_set", "tool_args"):
        tool = detail.removeprefix("tool ")
        if category == "tool_set":
            return [_Mark("tool_executing", tool), _Mark("tool_completed", tool)]
        return [_Mark("tool_executing", tool, "data.parameters")]
    if category == "final_status":
        if " != " in detail and ":" not in detail:  # one side ended another way
            return [_Mark(kind) for kind in detail.split(" != ")]
        path = detail.partition(":")[0] or "data.status"
        return [_Mark("agent_completed", path=path), _Mark("agent_error", path=path)]
    if category == "field":
        kind, _, path = detail.partition(".")
        return [_Mark(kind, path=path or None)]
    return []


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar under ``value`` with its dotted path (list items by index)."""
    if isinstance(value, Mapping):
        if not value and prefix:
            yield prefix, value
        for key, item in value.items():
            yield from leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple):
        if not value and prefix:
            yield prefix, []
        for index, item in enumerate(value):
            yield from leaves(item, f"{prefix}.{index}" if prefix else str(index))
    else:
        yield prefix, value


def _text(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _under(path: str, root: str) -> bool:
    """Whether `path` is `root` or inside it; ``*`` in `root` stands for any one key."""
    mine, theirs = path.split("."), root.split(".")
    return len(mine) >= len(theirs) and all(
        b in (a, "*") for a, b in zip(mine, theirs, strict=False)
    )


def _view(
    position: int,
    event: Mapping[str, Any],
    other: Mapping[str, Any] | None,
    side: str,
    marks: Sequence[_Mark],
) -> EventView:
    kind, tool = _type(event), _tool(event)
    mine = [
        m
        for m in marks
        if m.type in (None, kind) and m.tool in (None, tool) and m.side in (None, side)
    ]
    whole = any(m.path is None for m in mine)
    paths = [m.path for m in mine if m.path is not None]
    flat = list(leaves(event))
    values = dict(flat)
    theirs = dict(leaves(other)) if other is not None else {}
    named = [p for p, _ in flat if any(_under(p, root) for root in paths)]
    # Of the named leaves, those whose value differs; if none does (presence, a path
    # only on one side), every named leaf.
    differing = {p for p in named if other is None or theirs.get(p, _MISSING) != values[p]}
    marked = differing or set(named)
    return EventView(
        position=position,
        type=kind,
        tool=tool,
        leaves=tuple(
            Leaf(
                path=p,
                value=_text(v),
                differs=p in marked,
                volatile=bool(VOLATILE_FIELDS.intersection(p.split("."))),
            )
            for p, v in flat
        ),
        differs=whole,
    )


def _key(event: Mapping[str, Any]) -> str:
    tool = _tool(event)
    return f"{_type(event)}/{tool}" if tool else _type(event)


def _rows(
    legacy: list[Mapping[str, Any]], unified: list[Mapping[str, Any]], marks: Sequence[_Mark]
) -> tuple[Row, ...]:
    matcher = difflib.SequenceMatcher(
        a=[_key(e) for e in legacy], b=[_key(e) for e in unified], autojunk=False
    )
    rows: list[Row] = []
    for _, a0, a1, b0, b1 in matcher.get_opcodes():
        for offset in range(max(a1 - a0, b1 - b0)):
            i, j = a0 + offset, b0 + offset
            left = legacy[i] if i < a1 else None
            right = unified[j] if j < b1 else None
            rows.append(
                Row(
                    legacy=None if left is None else _view(i + 1, left, right, "legacy", marks),
                    unified=None if right is None else _view(j + 1, right, left, "unified", marks),
                )
            )
    return tuple(rows)
