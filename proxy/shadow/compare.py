"""Where a turn is compared: two finished turns' events, legacy being the reference.

Pure code: no sockets, no asyncio, no clock. `judge_events` takes the canonical events
one turn got from each backend and names what differs, and which differences the field
policy tolerated (noise). The comparator that cuts both live streams into turns, times
them and gives the verdicts is proxy/shadow/turns.py; the verdict types are in
proxy/shadow/verdict.py; which rule judges a field is proxy/shadow/policy.py.

Legacy is always the reference, whichever side answers the client: a
``missing_event`` means the unified router did not send an event legacy sent, in
``shadow`` and ``live`` mode alike.

Differences and noise never carry user data: they name event types, tool names, field
paths and short values of status fields only, and a path keeps a key only when it is
made of letters and underscores (any other key, an index, an id, shows as ``*``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import NOT_COMPARED, CompareSettings, FieldRule, RuleName
from strangler.proxy.shadow.policy import Policy, policy
from strangler.proxy.shadow.verdict import Category, Difference

TURN_END = frozenset({"agent_completed", "agent_error"})
"""Event types that end a turn on the side that sent them."""

_THINKING = "agent_thinking"
_TOOL_EXECUTING = "tool_executing"
_TOOL_COMPLETED = "tool_completed"
_TOOL_TYPES = frozenset({_TOOL_EXECUTING, _TOOL_COMPLETED})
_STATUS = ("data", "status")
_PARAMETERS = ("data", "parameters")
_UNTYPED = "<untyped>"
_UNNAMED = "<unnamed>"
_SHORT = 32  # longest status value quoted in a difference detail
_SAFE_KEY = re.compile(r"[A-Za-z_]{1,64}")
_MAX_DEPTH = 12  # segments shown in a reported path

# A compared event: its type and its events (a run of agent_thinking collapses into one
# item with several chunks).
_Item = tuple[str, list[Mapping[str, Any]]]
_Path = tuple[str, ...]
_ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NUMBERS = frozenset({int, float})
_DESCEND = frozenset({RuleName.EXACT, RuleName.NUMERIC})
_CONTAINERS = frozenset({dict, list})


class _Distinct(tuple[Any, ...]):
    """The distinct values one field took across a thinking run's chunks."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """What one turn's comparison found: differences, and tolerated differences (noise)."""

    differences: tuple[Difference, ...]
    noise: tuple[tuple[str, str], ...] = ()
    """(event type, path) of each field that differed within its rule, once per turn."""


def event_type(event: Mapping[str, Any]) -> str:
    """The event's ``type``, or ``<untyped>`` when it has none that is a string."""
    kind = event.get("type")
    return kind if isinstance(kind, str) else _UNTYPED


def shown_path(path: Sequence[str]) -> str:
    """``path`` as it may be logged: keys that might be data (ids, indexes) become ``*``."""
    shown = [part if _SAFE_KEY.fullmatch(part) else "*" for part in path[:_MAX_DEPTH]]
    if len(path) > _MAX_DEPTH:
        shown.append("...")
    return ".".join(shown)


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


def _strip(value: Any) -> Any:
    """``value`` without volatile fields, at any depth."""
    if type(value) in _SCALARS:
        return value  # the common leaf: skip the ABC checks below
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value


def _canon(value: Any) -> str:
    if value is _ABSENT:
        return "<absent>"
    # default=repr: canonical events come from JSON, but a stray object must not raise.
    return json.dumps(_strip(value), sort_keys=True, separators=(",", ":"), default=repr)


def _lookup(event: Mapping[str, Any], path: _Path) -> Any:
    value: Any = event
    for part in path:
        if not isinstance(value, Mapping):
            return _ABSENT
        value = value.get(part, _ABSENT)
        if value is _ABSENT:
            return _ABSENT
    return value


def _tool_name(event: Mapping[str, Any]) -> str:
    name = event.get("tool_name")
    if not isinstance(name, str):
        data = event.get("data")
        name = data.get("tool_name") if isinstance(data, Mapping) else None
    return name if isinstance(name, str) else _UNNAMED


def _short(value: Any) -> str:
    if value is _ABSENT:
        return "<absent>"
    if value is None or isinstance(value, str | int | float | bool):
        text = repr(value)
        return text if len(text) <= _SHORT else text[: _SHORT - 3] + "..."
    # A structured "status" is not a status; its content might be user data.
    return f"<{type(value).__name__}>"


# -- which events are there, and in which order ----------------------------------------


def _counts(items: Sequence[_Item]) -> Counter[str]:
    # Thinking counts by presence: how often a model thinks aloud is not a difference,
    # whether it does is. Where it thinks is the order's business.
    counts = Counter(kind for kind, _ in items if kind != _THINKING)
    if any(kind == _THINKING for kind, _ in items):
        counts[_THINKING] = 1
    return counts


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
        if kind == _THINKING and tokens and tokens[-1] == _THINKING:
            continue
        tokens.append(kind)
    if run:
        tokens.append("+".join(sorted(run)))
    return tokens


def _early_completion(items: Sequence[_Item]) -> str | None:
    """The first tool whose tool_completed came before its tool_executing, if any.

    Parallel tools may finish in any order; a tool cannot finish before it started.
    """
    started: Counter[str] = Counter()
    for kind, events in items:
        if kind == _TOOL_EXECUTING:
            started[_tool_name(events[0])] += 1
        elif kind == _TOOL_COMPLETED:
            name = _tool_name(events[0])
            if started[name] == 0:
                return name
            started[name] -= 1
    return None


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
    for a, b in zip(left_tokens, right_tokens, strict=False):
        if a != b:
            out.append(Difference(Category.ORDER, f"{a} != {b}"))
            return
    if len(left_tokens) != len(right_tokens):
        # Thinking in one more place: the same events, somewhere else.
        n = min(len(left_tokens), len(right_tokens))
        a = left_tokens[n] if n < len(left_tokens) else "<end>"
        b = right_tokens[n] if n < len(right_tokens) else "<end>"
        out.append(Difference(Category.ORDER, f"{a} != {b}"))
        return
    early = _early_completion(right)
    if early is not None and _early_completion(left) is None:
        out.append(
            Difference(Category.ORDER, f"tool_completed before tool_executing (tool {early})")
        )


def _tool_calls(items: Sequence[_Item]) -> Counter[str]:
    return Counter(_tool_name(events[0]) for kind, events in items if kind == _TOOL_EXECUTING)


def _compare_tools(left: Sequence[_Item], right: Sequence[_Item], out: list[Difference]) -> None:
    left_calls, right_calls = _tool_calls(left), _tool_calls(right)
    for name in sorted(left_calls.keys() | right_calls.keys()):
        if left_calls[name] != right_calls[name]:
            out.append(Difference(Category.TOOL_SET, f"tool {name}"))


def _compare_final(
    pol: Policy, left: _Item, right: _Item, out: list[Difference], noise: list[tuple[str, str]]
) -> None:
    kind = left[0]
    if kind != right[0]:
        out.append(Difference(Category.FINAL_STATUS, f"{kind} != {right[0]}"))
        return
    a, b = _lookup(left[1][0], _STATUS), _lookup(right[1][0], _STATUS)
    # The status is data (exact) unless a rule says otherwise, like any field.
    walk = _Walk(pol, kind)
    walk.node(_STATUS, a, b)
    for path, rule in walk.differs:
        detail = f"data.status: {_short(a)} != {_short(b)}"
        out.append(Difference(Category.FINAL_STATUS, detail, shown_path(path), str(rule)))
    noise.extend((kind, shown_path(path)) for path in walk.tolerated)


# -- what the fields say, judged by the field policy -----------------------------------


def _merge(values: Sequence[Any]) -> Any:
    """One value for a thinking run: fields all chunks agree on, else their distinct values."""
    if len(values) == 1:
        return values[0]
    if all(isinstance(value, Mapping) for value in values):
        keys = dict.fromkeys(key for value in values for key in value)
        return {key: _merge([v[key] for v in values if key in v]) for key in keys}
    distinct = {_canon(value): value for value in values}
    return next(iter(distinct.values())) if len(distinct) == 1 else _Distinct(distinct.values())


def _present(value: Any) -> bool:
    if isinstance(value, _Distinct):
        return any(_present(v) for v in value)
    return value is not None and value is not _ABSENT


def _number(value: Any) -> bool:
    return type(value) in _NUMBERS and math.isfinite(value)


def _within(rule: FieldRule, a: Any, b: Any) -> bool:
    """Diffy's noise rule: numbers differ when |a-b| > abs + rel * max(|a|, |b|)."""
    return bool(abs(a - b) <= rule.abs + rule.rel * max(abs(a), abs(b)))


def _same_json(a: Any, b: Any) -> bool:
    """Whether two decoded values are the same JSON, key for key and in order: equal
    values of JSON's types print alike, and ``true`` and ``1`` print apart, which ``==``
    alone does not tell."""
    kind = type(a)
    if kind is not type(b) or a != b:
        return False
    return kind in _SCALARS or (kind in _CONTAINERS and repr(a) == repr(b))


@dataclass(slots=True)
class _Walk:
    """One pair of events compared field by field under the policy."""

    policy: Policy
    kind: str
    differs: list[tuple[_Path, FieldRule]] = field(default_factory=list)
    tolerated: list[_Path] = field(default_factory=list)

    def node(self, path: _Path, a: Any, b: Any) -> None:
        if _same_json(a, b):
            # No rule finds a difference in it, nor tolerates one. Most compared fields
            # are the same, and walking them, or finding their rule, costs several times
            # this check.
            return
        rule, _ = self.policy.rule(self.kind, path)
        name = rule.name
        if name is RuleName.UNORDERED and isinstance(a, list) and isinstance(b, list):
            if Counter(map(_canon, a)) != Counter(map(_canon, b)):
                self.differs.append((path, rule))
            elif _canon(a) != _canon(b):
                self.tolerated.append(path)
            return
        # exact and numeric judge each field inside a container by its own rule;
        # presence, ignore and unordered judge the container whole, unless a deeper rule
        # names a field inside it.
        inside = name in _DESCEND or self.policy.deeper(self.kind, path)
        if inside and isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in dict.fromkeys([*a, *b]):
                if key not in VOLATILE_FIELDS:
                    self.node((*path, key), a.get(key, _ABSENT), b.get(key, _ABSENT))
            return
        if inside and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                self.node((*path, str(index)), x, y)
            return
        self.leaf(rule, path, a, b)

    def leaf(self, rule: FieldRule, path: _Path, a: Any, b: Any) -> None:
        # Equal scalars of one type never get here: `node` returned on them.
        if _number(a) and _number(b) and a == b:
            return  # 1 and 1.0 are the same JSON number
        if _canon(a) == _canon(b):
            return
        name = rule.name
        if name is RuleName.IGNORE:
            tolerated = True
        elif name is RuleName.PRESENCE:
            tolerated = _present(a) == _present(b)
        elif name is RuleName.NUMERIC:
            tolerated = _number(a) and _number(b) and _within(rule, a, b)
        else:
            tolerated = False
        if tolerated:
            self.tolerated.append(path)
        else:
            self.differs.append((path, rule))


def _walk(
    pol: Policy, kind: str, a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]
) -> _Walk:
    walk = _Walk(pol, kind)
    walk.node((), _merge(a), _merge(b))
    return walk


def _groups(items: Sequence[_Item]) -> dict[tuple[str, str], list[list[Mapping[str, Any]]]]:
    """Items by pairing key: tool events pair by tool name, so parallel tools may swap."""
    groups: dict[tuple[str, str], list[list[Mapping[str, Any]]]] = {}
    for kind, events in items:
        key = (kind, _tool_name(events[0]) if kind in _TOOL_TYPES else "")
        groups.setdefault(key, []).append(events)
    return groups


def _pairs(
    pol: Policy,
    kind: str,
    left: list[list[Mapping[str, Any]]],
    right: list[list[Mapping[str, Any]]],
) -> list[_Walk]:
    """Walks of the group's pairs: each left item with the first right one it agrees with,
    then the rest in order (two calls of one tool may come back in either order)."""
    if len(left) == 1 and len(right) == 1:
        return [_walk(pol, kind, left[0], right[0])]
    walks: list[_Walk] = []
    remaining = list(right)
    unpaired: list[list[Mapping[str, Any]]] = []
    for a in left:
        for position, b in enumerate(remaining):
            walk = _walk(pol, kind, a, b)
            if not walk.differs:
                walks.append(walk)
                del remaining[position]
                break
        else:
            unpaired.append(a)
    walks.extend(_walk(pol, kind, a, b) for a, b in zip(unpaired, remaining, strict=False))
    return walks


def _compare_fields(
    left: Sequence[_Item],
    right: Sequence[_Item],
    settings: CompareSettings,
    out: list[Difference],
    noise: list[tuple[str, str]],
) -> None:
    pol = policy(settings)
    right_groups = _groups(right)
    for (kind, tool), left_list in _groups(left).items():
        right_list = right_groups.get((kind, tool))
        if right_list is None:
            continue  # already a missing/extra event or a tool set difference
        for walk in _pairs(pol, kind, left_list, right_list):
            for path, rule in walk.differs:
                if kind in TURN_END and path == _STATUS:
                    continue  # the terminal's status is FINAL_STATUS's business
                shown = shown_path(path)
                if kind == _TOOL_EXECUTING and path[:2] == _PARAMETERS:
                    category, detail = Category.TOOL_ARGS, f"tool {tool}"
                else:
                    category, detail = Category.FIELD, f"{kind}.{shown}"
                out.append(Difference(category, detail, path=shown, rule=str(rule)))
            noise.extend((kind, shown_path(path)) for path in walk.tolerated)


def judge_events(
    legacy: Sequence[Mapping[str, Any]],
    unified: Sequence[Mapping[str, Any]],
    settings: CompareSettings,
) -> Judgement:
    """Compare two finished turns' canonical events, legacy being the reference.

    No differences is a match. Volatile fields and control frames are ignored, runs of
    agent_thinking count as one event, tool events pair by tool name, and every field is
    judged by its rule (proxy/shadow/policy.py): data exactly, model prose by presence.
    """
    left, right = _collapse(legacy), _collapse(unified)
    out: list[Difference] = []
    noise: list[tuple[str, str]] = []
    left_end = left[-1] if left and left[-1][0] in TURN_END else None
    right_end = right[-1] if right and right[-1][0] in TURN_END else None
    if left_end is not None and right_end is not None:
        # Both ended: agent_completed vs agent_error is one FINAL_STATUS difference,
        # not a missing agent_completed plus an extra agent_error.
        _compare_types(left[:-1], right[:-1], out)
        _compare_final(policy(settings), left_end, right_end, out, noise)
    else:
        _compare_types(left, right, out)
    _compare_tools(left, right, out)
    _compare_fields(left, right, settings, out, noise)
    return Judgement(tuple(dict.fromkeys(out)), tuple(dict.fromkeys(noise)))


def compare_events(
    legacy: Sequence[Mapping[str, Any]],
    unified: Sequence[Mapping[str, Any]],
    settings: CompareSettings,
) -> tuple[Difference, ...]:
    """The differences of `judge_events`: an empty tuple is a match."""
    return judge_events(legacy, unified, settings).differences
