"""The verdict on one turn: its outcome, what differed, and how long each side took.

Pure data, shared by the comparison of a turn's events (proxy/shadow/compare.py), the
comparator that hands verdicts out (proxy/shadow/turns.py) and their readers: the shadow
tee, metrics and mismatch samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """The verdict on one turn."""

    MATCH = "match"
    MISMATCH = "mismatch"
    SHADOW_TIMEOUT = "shadow_timeout"
    SHADOW_ERROR = "shadow_error"
    PRIMARY_INCOMPLETE = "primary_incomplete"
    SHED = "shed"
    """Not compared: shadow work was shed to keep the primary fast (proxy/shadow/shed.py).
    Never judged from the part it saw; guards count it neither way."""


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


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference between the turns; ``detail`` never carries user data."""

    category: Category
    detail: str
    # A field's difference also says where and by which rule (proxy/shadow/policy.py);
    # the built-in checks (events, order, tools, final status) leave both empty. Not
    # part of equality: the category and detail are the difference, these explain it.
    path: str = field(default="", compare=False)
    """The differing field's dotted path inside the event (keys that may be data: ``*``)."""
    rule: str = field(default="", compare=False)
    """The rule that judged it, e.g. ``exact`` or ``numeric (rel 0.01, abs 0)``."""


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
    noise: tuple[tuple[str, str], ...] = ()
    """(event type, path) of fields that differed within their rule (presence, ignore,
    numeric within tolerance, unordered): what the policy tolerated, never values."""
