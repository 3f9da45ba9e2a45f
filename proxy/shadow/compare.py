"""Where a turn is compared: two finished turns' events, legacy being the reference.

Pure code: no sockets, no asyncio, no clock. `compare_events` takes the canonical events
one turn got from each backend and names what differs. The comparator that cuts both
live streams into turns, times them and gives the verdicts is proxy/shadow/turns.py; the
verdict types are in proxy/shadow/verdict.py.

Legacy is always the reference, whichever side answers the client: a
``missing_event`` means the unified router did not send an event legacy sent, in
``shadow`` and ``live`` mode alike.

Differences never carry user data: their details name event types, tool names, field
paths and short values of status fields only, so they are safe for logs and metrics.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import NOT_COMPARED, CompareSettings
from strangler.proxy.shadow.verdict import Category, Difference

TURN_END = frozenset({"agent_completed", "agent_error"})
"""Event types that end a turn on the side that sent them."""

_THINKING = "agent_thinking"
_TOOL_EXECUTING = "tool_executing"
_TOOL_TYPES = frozenset({_TOOL_EXECUTING, "tool_completed"})
_STATUS_PATH = "data.status"
_UNTYPED = "<untyped>"
_UNNAMED = "<unnamed>"
_SHORT = 32  # longest status value quoted in a difference detail

# A compared event: its type and its events (a run of agent_thinking collapses into one
# item with several chunks).
_Item = tuple[str, list[Mapping[str, Any]]]
_ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})


def event_type(event: Mapping[str, Any]) -> str:
    """The event's ``type``, or ``<untyped>`` when it has none that is a string."""
    kind = event.get("type")
    return kind if isinstance(kind, str) else _UNTYPED


def _collapse(events: Sequence[Mapping[str, Any]]) -> list[_Item]:
    """Drop control frames; merge runs of agent_thinking (chunking is not a difference)."""
    items: list[_Item] = []
    for event in events:
        kind = event_type(event)
        if kind in NOT_COMPARED:
            continue
        if kind == _THINKING and items and items[-1][0] == _THINKING:
            items[-1][1].append(event)
        else:
            items.append((kind, [event]))
    return items


@lru_cache(maxsize=512)
def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _lookup(event: Mapping[str, Any], path: str) -> Any:
    value: Any = event
    for part in _split(path):
        # Events are JSON dicts; the exact type test skips the slow ABC check.
        if type(value) is not dict and not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(part, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def _strip(value: Any) -> Any:
    """``value`` without volatile fields, at any depth."""
    if type(value) in _SCALARS:
        return value  # the common leaf: skip the ABC checks below
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value


def _tool_name(event: Mapping[str, Any]) -> str:
    name = event.get("tool_name")
    if not isinstance(name, str):
        data = event.get("data")
        name = data.get("tool_name") if isinstance(data, Mapping) else None
    return name if isinstance(name, str) else _UNNAMED


def _parameters(event: Mapping[str, Any]) -> str:
    params = _lookup(event, "data.parameters")
    if params is _ABSENT:
        params = None
    # default=repr: canonical events come from JSON, but a stray object must not raise.
    return json.dumps(_strip(params), sort_keys=True, separators=(",", ":"), default=repr)


def _short(value: Any) -> str:
    if value is _ABSENT:
        return "<absent>"
    if value is None or isinstance(value, str | int | float | bool):
        text = repr(value)
        return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."
    # A structured "status" is not a status; its content might be user data.
    return f"<{type(value).__name__}>"


def _order_tokens(items: Sequence[_Item]) -> list[str]:
    """The type sequence with each run of tool events as one unordered token."""
    tokens: list[str] = []
    run: list[str] = []
    for kind, _ in items:
        if kind in _TOOL_TYPES:
            run.append(kind)
            continue
        if run:
            tokens.append("+".join(sorted(run)))
            run = []
        tokens.append(kind)
    if run:
        tokens.append("+".join(sorted(run)))
    return tokens


def _counts(items: Sequence[_Item]) -> Counter[str]:
    return Counter(kind for kind, _ in items)


def _compare_types(left: Sequence[_Item], right: Sequence[_Item], out: list[Difference]) -> None:
    left_counts, right_counts = _counts(left), _counts(right)
    if left_counts != right_counts:
        for kind in dict.fromkeys(kind for kind, _ in left):
            if left_counts[kind] > right_counts[kind]:
                out.append(Difference(Category.MISSING_EVENT, kind))
        for kind in dict.fromkeys(kind for kind, _ in right):
            if right_counts[kind] > left_counts[kind]:
                out.append(Difference(Category.EXTRA_EVENT, kind))
        return
    left_tokens, right_tokens = _order_tokens(left), _order_tokens(right)
    # Equal multisets make a differing token appear within the shorter sequence.
    for a, b in zip(left_tokens, right_tokens, strict=False):
        if a != b:
            out.append(Difference(Category.ORDER, f"{a} != {b}"))
            return


def _tool_calls(items: Sequence[_Item]) -> dict[str, Counter[str]]:
    calls: dict[str, Counter[str]] = {}
    for kind, events in items:
        if kind == _TOOL_EXECUTING:
            event = events[0]
            calls.setdefault(_tool_name(event), Counter())[_parameters(event)] += 1
    return calls


def _compare_tools(left: Sequence[_Item], right: Sequence[_Item], out: list[Difference]) -> None:
    left_calls, right_calls = _tool_calls(left), _tool_calls(right)
    if left_calls == right_calls:
        return
    for name in sorted(left_calls.keys() | right_calls.keys()):
        a, b = left_calls.get(name, Counter()), right_calls.get(name, Counter())
        if a.total() != b.total():
            out.append(Difference(Category.TOOL_SET, f"tool {name}"))
        elif a != b:
            out.append(Difference(Category.TOOL_ARGS, f"tool {name}"))


def _compare_final(left: _Item, right: _Item, out: list[Difference]) -> None:
    if left[0] != right[0]:
        out.append(Difference(Category.FINAL_STATUS, f"{left[0]} != {right[0]}"))
        return
    a, b = _lookup(left[1][0], _STATUS_PATH), _lookup(right[1][0], _STATUS_PATH)
    if a != b:
        out.append(Difference(Category.FINAL_STATUS, f"{_STATUS_PATH}: {_short(a)} != {_short(b)}"))


def _groups(items: Sequence[_Item]) -> dict[tuple[str, str], list[list[Mapping[str, Any]]]]:
    """Items by pairing key: tool events pair by tool name, so parallel tools may swap."""
    groups: dict[tuple[str, str], list[list[Mapping[str, Any]]]] = {}
    for kind, events in items:
        key = (kind, _tool_name(events[0]) if kind in _TOOL_TYPES else "")
        groups.setdefault(key, []).append(events)
    return groups


def _present(events: Sequence[Mapping[str, Any]], path: str) -> bool:
    # A collapsed thinking run has the text if any of its chunks has it.
    for event in events:
        value = _lookup(event, path)
        if value is not None and value is not _ABSENT:
            return True
    return False


def _compare_fields(
    left: Sequence[_Item],
    right: Sequence[_Item],
    settings: CompareSettings,
    out: list[Difference],
) -> None:
    right_groups = _groups(right)
    for key, left_list in _groups(left).items():
        right_list = right_groups.get(key)
        if right_list is None:
            continue  # already a missing/extra event or a tool set difference
        kind = key[0]
        paths = settings.fields.get(kind, ())
        if kind in TURN_END:
            # The terminal's status is FINAL_STATUS's business; do not report it twice.
            paths = tuple(path for path in paths if path != _STATUS_PATH)
        presence = tuple(path for path in settings.free_text if path not in paths)
        for a, b in zip(left_list, right_list, strict=False):
            for path in paths:
                if _strip(_lookup(a[0], path)) != _strip(_lookup(b[0], path)):
                    out.append(Difference(Category.FIELD, f"{kind}.{path}"))
            for path in presence:
                if _present(a, path) != _present(b, path):
                    out.append(Difference(Category.FIELD, f"{kind}.{path}"))


def compare_events(
    legacy: Sequence[Mapping[str, Any]],
    unified: Sequence[Mapping[str, Any]],
    settings: CompareSettings,
) -> tuple[Difference, ...]:
    """Compare two finished turns' canonical events, legacy being the reference.

    An empty tuple is a match. Volatile fields and control frames are ignored, runs of
    agent_thinking count as one event, tool calls compare as a multiset of
    (tool name, parameters), and free-text fields compare by presence only.
    """
    left, right = _collapse(legacy), _collapse(unified)
    out: list[Difference] = []
    left_end = left[-1] if left and left[-1][0] in TURN_END else None
    right_end = right[-1] if right and right[-1][0] in TURN_END else None
    if left_end is not None and right_end is not None:
        # Both ended: agent_completed vs agent_error is one FINAL_STATUS difference,
        # not a missing agent_completed plus an extra agent_error.
        _compare_types(left[:-1], right[:-1], out)
        _compare_final(left_end, right_end, out)
    else:
        _compare_types(left, right, out)
    _compare_tools(left, right, out)
    _compare_fields(left, right, settings, out)
    return tuple(dict.fromkeys(out))
