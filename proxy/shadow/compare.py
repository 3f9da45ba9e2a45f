"""The turn comparator: aligns the legacy and unified event streams and judges each turn.

Pure code: no sockets, no asyncio, no clock. The relay feeds it the client's requests
and both backends' canonical events together with the time it saw them, and gets back
one `Verdict` per turn, in turn order, each exactly once.

Legacy is always the reference, whichever side answers the client: a
``missing_event`` means the unified router did not send an event legacy sent, in
``shadow`` and ``live`` mode alike.

Differences never carry user data: their details name event types, tool names, field
paths and short values of status fields only, so they are safe for logs and metrics.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import NOT_COMPARED, CompareSettings


class Outcome(StrEnum):
    """The verdict on one turn."""

    MATCH = "match"
    MISMATCH = "mismatch"
    SHADOW_TIMEOUT = "shadow_timeout"
    SHADOW_ERROR = "shadow_error"
    PRIMARY_INCOMPLETE = "primary_incomplete"


class Category(StrEnum):
    """What kind of difference a mismatch found (a bounded metric label)."""

    MISSING_EVENT = "missing_event"
    EXTRA_EVENT = "extra_event"
    ORDER = "order"
    TOOL_SET = "tool_set"
    TOOL_ARGS = "tool_args"
    FINAL_STATUS = "final_status"
    FIELD = "field"


class Side(StrEnum):
    """One of the two backends being compared."""

    LEGACY = "legacy"
    UNIFIED = "unified"


TURN_TYPES = frozenset({"start_agent", "user_message", "agent_request"})
"""Client message types that start a turn."""

TURN_END = frozenset({"agent_completed", "agent_error"})
"""Event types that end a turn on the side that sent them."""

_THINKING = "agent_thinking"
_TOOL_EXECUTING = "tool_executing"
_TOOL_TYPES = frozenset({_TOOL_EXECUTING, "tool_completed"})
_STATUS_PATH = "data.status"
_UNTYPED = "<untyped>"
_UNNAMED = "<unnamed>"
_SHORT = 32  # longest status value quoted in a difference detail

# -- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference between the turns; ``detail`` never carries user data."""

    category: Category
    detail: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judgement on one turn of one connection."""

    turn: int
    """0-based index of the turn on this connection."""
    request_type: str
    outcome: Outcome
    differences: tuple[Difference, ...]
    """Empty unless the outcome is MISMATCH."""
    primary: Side
    """Which side answered the client."""
    legacy_duration: float | None
    """Seconds from the client request to the turn end on that side (None: no end seen)."""
    unified_duration: float | None
    legacy_first_event: float | None
    """Seconds from the client request to the first compared event on that side."""
    unified_first_event: float | None
    dropped: bool
    """Secondary data was lost for this turn (queue overflow); the outcome is SHADOW_ERROR."""
    legacy_events: tuple[Mapping[str, Any], ...] = ()
    """The turn's events on each side, kept only when the outcome is not MATCH."""
    unified_events: tuple[Mapping[str, Any], ...] = ()


# -- pure comparison ------------------------------------------------------------------

# A compared event: its type and its events (a run of agent_thinking collapses into one
# item with several chunks).
_Item = tuple[str, list[Mapping[str, Any]]]
_ABSENT: Any = object()
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _type_of(event: Mapping[str, Any]) -> str:
    kind = event.get("type")
    return kind if isinstance(kind, str) else _UNTYPED


def _collapse(events: Sequence[Mapping[str, Any]]) -> list[_Item]:
    """Drop control frames; merge runs of agent_thinking (chunking is not a difference)."""
    items: list[_Item] = []
    for event in events:
        kind = _type_of(event)
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


# -- the per-connection comparator ----------------------------------------------------


@dataclass(slots=True)
class _Track:
    """One side's view of one turn."""

    events: list[Mapping[str, Any]] = field(default_factory=list)
    first: float | None = None
    end: float | None = None
    cut: int = 0  # events beyond max_events_per_turn, not kept
    keep: bool = True  # False once its data is worthless (dropped, secondary failed)


@dataclass(slots=True)
class _Turn:
    index: int
    request_type: str
    start: float
    legacy: _Track = field(default_factory=_Track)
    unified: _Track = field(default_factory=_Track)
    dropped: bool = False
    failed: bool = False  # the secondary failed before finishing it: report at once


def _since(when: float | None, start: float) -> float | None:
    return None if when is None else when - start


class Comparator:
    """Per connection: fed both streams as they arrive; yields verdicts as turns complete.

    Each side's events go to that side's oldest turn it has not finished, so the two
    sides may be on different turns at the same time. Verdicts come out in turn order.
    """

    __slots__ = (
        "_closed",
        "_cursor",
        "_failed",
        "_next",
        "_primary",
        "_secondary",
        "_settings",
        "_turns",
    )

    def __init__(self, primary: Side, settings: CompareSettings) -> None:
        self._primary = Side(primary)
        self._secondary = Side.UNIFIED if self._primary is Side.LEGACY else Side.LEGACY
        self._settings = settings
        self._turns: deque[_Turn] = deque()  # turns not yet reported, oldest first
        self._next = 0  # index of the next turn a client request opens
        # Per side, the index of the oldest turn that side has not finished. It keeps
        # counting through turns already reported so late events never leak forward.
        self._cursor = {Side.LEGACY: 0, Side.UNIFIED: 0}
        self._failed = False
        self._closed = False

    @property
    def open_turns(self) -> int:
        """Turns started and not yet reported."""
        return len(self._turns)

    def client_message(self, message: Mapping[str, Any], now: float) -> None:
        """Start a turn if ``message`` is a request; both sides get the same copy."""
        kind = message.get("type")
        if self._closed or not isinstance(kind, str) or kind not in TURN_TYPES:
            return
        turn = _Turn(self._next, kind, now)
        if self._failed:
            self._track(turn, self._secondary).keep = False
        self._turns.append(turn)
        self._next += 1

    def event(self, side: Side, event: Mapping[str, Any], now: float) -> list[Verdict]:
        """Take one canonical event from ``side``; return the verdicts it completes."""
        if self._closed:
            return []
        kind = _type_of(event)
        if kind in NOT_COMPARED or (self._failed and side == self._secondary):
            return self._drain(now)
        index = self._cursor[side]
        if index >= self._next:
            return self._drain(now)  # no request is open on that side: nothing to align
        turn = self._find(index)
        if turn is not None:  # None: already reported, the rest of it is discarded
            track = self._track(turn, side)
            if track.first is None:
                track.first = now
            if track.keep:
                if len(track.events) < self._settings.max_events_per_turn:
                    track.events.append(event)
                else:
                    track.cut += 1
            if kind in TURN_END:
                track.end = now
        if kind in TURN_END:
            self._cursor[side] = index + 1
        return self._drain(now)

    def secondary_failed(self, reason: str, now: float) -> list[Verdict]:
        """The secondary connection failed: its unfinished turns, and all later ones, error.

        Turns the secondary had already finished are still compared when the primary
        finishes them. ``reason`` is not kept: it may quote user data or tokens.
        """
        if self._closed or self._failed:
            return []
        self._failed = True
        for turn in self._turns:
            track = self._track(turn, self._secondary)
            if track.end is None:
                turn.failed = True
                track.keep = False
                track.events = []
        return self._drain(now)

    def secondary_dropped(self, now: float) -> None:
        """Secondary data was lost: the turns it had not finished become SHADOW_ERROR."""
        if self._closed:
            return
        for turn in self._turns:
            track = self._track(turn, self._secondary)
            if track.end is None:
                turn.dropped = True
                track.keep = False
                track.events = []

    def primary_closed(self, now: float) -> list[Verdict]:
        """The client left: report every open turn now; later input is ignored."""
        if self._closed:
            return []
        self._closed = True
        verdicts: list[Verdict] = []
        for turn in self._turns:
            verdict = self._resolve(turn, now)
            if verdict is None:
                primary = self._track(turn, self._primary)
                # Unfinished by the primary: the client did not wait. Otherwise the
                # secondary, which closes with the client, can no longer finish in time.
                unfinished = primary.end is None
                outcome = Outcome.PRIMARY_INCOMPLETE if unfinished else Outcome.SHADOW_TIMEOUT
                verdict = self._verdict(turn, outcome)
            verdicts.append(verdict)
        self._turns.clear()
        return verdicts

    def poll(self, now: float) -> list[Verdict]:
        """Report turns whose secondary deadline has passed."""
        return [] if self._closed else self._drain(now)

    # -- internals --

    @staticmethod
    def _track(turn: _Turn, side: Side) -> _Track:
        return turn.legacy if side == Side.LEGACY else turn.unified

    def _find(self, index: int) -> _Turn | None:
        if not self._turns:
            return None
        position = index - self._turns[0].index
        return self._turns[position] if 0 <= position < len(self._turns) else None

    def _drain(self, now: float) -> list[Verdict]:
        verdicts: list[Verdict] = []
        while self._turns:
            verdict = self._resolve(self._turns[0], now)
            if verdict is None:
                break  # later turns wait: verdicts come out in turn order
            self._turns.popleft()
            verdicts.append(verdict)
        return verdicts

    def _resolve(self, turn: _Turn, now: float) -> Verdict | None:
        """The verdict on ``turn`` if it can be given at ``now``, else None."""
        primary = self._track(turn, self._primary)
        secondary = self._track(turn, self._secondary)
        if turn.failed:
            return self._verdict(turn, Outcome.SHADOW_ERROR)
        if primary.end is None:
            return None
        if turn.dropped or (self._failed and secondary.end is None):
            return self._verdict(turn, Outcome.SHADOW_ERROR)
        duration = primary.end - turn.start
        settings = self._settings
        deadline = primary.end + max(settings.timeout_factor * duration, settings.timeout_floor)
        if secondary.end is None:
            return self._verdict(turn, Outcome.SHADOW_TIMEOUT) if now > deadline else None
        if secondary.end > deadline:
            # Late is late, however often the relay polls.
            return self._verdict(turn, Outcome.SHADOW_TIMEOUT)
        differences = self._cut_differences(turn) or compare_events(
            turn.legacy.events, turn.unified.events, settings
        )
        outcome = Outcome.MISMATCH if differences else Outcome.MATCH
        return self._verdict(turn, outcome, differences)

    def _cut_differences(self, turn: _Turn) -> tuple[Difference, ...]:
        # A cut turn cannot be compared faithfully: report the cut, not its side effects.
        limit = self._settings.max_events_per_turn
        return tuple(
            Difference(Category.EXTRA_EVENT, f"more than {limit} events ({side})")
            for side in Side
            if self._track(turn, side).cut
        )

    def _verdict(
        self, turn: _Turn, outcome: Outcome, differences: tuple[Difference, ...] = ()
    ) -> Verdict:
        legacy, unified = turn.legacy, turn.unified
        return Verdict(
            turn=turn.index,
            request_type=turn.request_type,
            outcome=outcome,
            differences=differences,
            primary=self._primary,
            legacy_duration=_since(legacy.end, turn.start),
            unified_duration=_since(unified.end, turn.start),
            legacy_first_event=_since(legacy.first, turn.start),
            unified_first_event=_since(unified.first, turn.start),
            dropped=turn.dropped,
            # Transcripts explain a non-match; a match needs none, so none are kept.
            legacy_events=() if outcome is Outcome.MATCH else tuple(legacy.events),
            unified_events=() if outcome is Outcome.MATCH else tuple(unified.events),
        )
