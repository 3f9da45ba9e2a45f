"""The immutable flag model: what a validated flag file means, ready for fast evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

BASIS_POINTS = 10_000
"""Buckets and rollout shares are counted in basis points (1/100 of a percent)."""


class Mode(StrEnum):
    """Who answers a connection, and whether the other backend gets a copy."""

    LEGACY = "legacy"
    SHADOW = "shadow"
    LIVE = "live"
    UNIFIED = "unified"


class Reason(StrEnum):
    """Why a connection got its mode (a bounded metric label)."""

    TARGET = "target"
    RULE = "rule"
    """A rule matched; its name is in ``Decision.rule`` (not in the label: names are unbounded)."""
    ROLLOUT = "rollout"
    DEFAULT = "default"
    KILL_SWITCH = "kill_switch"
    ANONYMOUS = "anonymous"
    FALLBACK = "fallback"
    GUARD = "guard"
    """The flag's guard tripped and holds it on legacy until the file changes."""
    NO_FLAG = "no_flag"
    TICKET = "ticket"
    """A ticket connection kept off the backends that cannot redeem it (the proxy's
    `backends.unified.redeems_tickets`), and out of comparison: a ticket is single use."""


ROLLOUT_ORDER: tuple[Mode, Mode, Mode] = (Mode.UNIFIED, Mode.LIVE, Mode.SHADOW)
"""Rollout ranges are laid out from bucket 0 in this order; legacy is what remains."""


class Operator(StrEnum):
    """How a rule or segment condition tests one identity claim."""

    EQUALS = "equals"
    ONE_OF = "one_of"
    ENDS_WITH = "ends_with"
    EXISTS = "exists"


# Read per connection: a module constant costs less than an enum class attribute.
_EXISTS = Operator.EXISTS


def claim_text(value: object) -> str | None:
    """A scalar claim value as the text conditions compare; None if it has no such text.

    Strings are themselves, integers are decimal, booleans are ``true``/``false``: YAML
    and JSON disagree on little else, so ``equals: 42`` matches the claim ``"42"`` and 42.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return None


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of one claim: ``equals`` and ``ends_with`` take a string, ``one_of`` a
    tuple of strings, ``exists`` a bool. A list-valued claim holds if any element does."""

    claim: str
    op: Operator
    value: str | tuple[str, ...] | bool
    _choices: frozenset[str] = field(init=False, repr=False, compare=False)
    _text_test: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        value = self.value
        if self.op is Operator.EXISTS:
            ok = isinstance(value, bool)
        elif self.op is Operator.ONE_OF:
            ok = isinstance(value, tuple) and bool(value) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError(f"condition on {self.claim!r}: bad value for {self.op.value}")
        choices = frozenset(value) if isinstance(value, tuple) else frozenset()
        object.__setattr__(self, "_choices", choices)
        # The text test is chosen once here, not per evaluation: conditions run on every
        # connection of a flag with rules.
        text_test: Callable[[str], bool]
        if self.op is Operator.EQUALS:
            text_test = str(value).__eq__
        elif self.op is Operator.ONE_OF:
            text_test = choices.__contains__
        elif self.op is Operator.ENDS_WITH:
            suffix = str(value)
            text_test = lambda text: text.endswith(suffix)  # noqa: E731
        else:
            text_test = bool
        object.__setattr__(self, "_text_test", text_test)

    def holds(self, claims: Mapping[str, Any]) -> bool:
        """Whether the claims satisfy this condition (absent and null claims are missing)."""
        value = claims.get(self.claim)
        if self.op is _EXISTS:
            return (value is not None) is self.value
        if type(value) is str:  # the common case, first
            return self._text_test(value)
        if value is None:
            return False
        if isinstance(value, list | tuple):
            return any(self._test(claim_text(item)) for item in value)
        return self._test(claim_text(value))

    def _test(self, text: str | None) -> bool:
        return text is not None and self._text_test(text)


def all_hold(conditions: tuple[Condition, ...], claims: Mapping[str, Any]) -> bool:
    """Whether every condition holds (true for none)."""
    for condition in conditions:  # noqa: SIM110 (a loop, not all(): per connection)
        if not condition.holds(claims):
            return False
    return True


@dataclass(frozen=True, slots=True)
class Segment:
    """A named group of users: listed by id, or matching every ``when`` condition."""

    name: str
    users: frozenset[str]
    when: tuple[Condition, ...]

    def __post_init__(self) -> None:
        if not self.users and not self.when:
            raise ValueError(f"segment {self.name!r} needs users or conditions")

    def contains(self, user_id: str, claims: Mapping[str, Any]) -> bool:
        """Whether the user is listed, or (if there are conditions) satisfies them all."""
        if user_id in self.users:
            return True
        return bool(self.when) and all_hold(self.when, claims)


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of a flag's ``rules``: matching users get ``mode`` (within ``rollout``).

    A rule matches when the user is in ``segment`` (if any) and every ``when`` condition
    holds. ``rollout`` (basis points) limits it to users whose bucket is below it.
    """

    name: str
    mode: Mode
    when: tuple[Condition, ...] = ()
    segment: Segment | None = None
    rollout: int = BASIS_POINTS

    def __post_init__(self) -> None:
        if not self.when and self.segment is None:
            raise ValueError(f"rule {self.name!r} needs conditions or a segment")
        if not 0 <= self.rollout <= BASIS_POINTS:
            raise ValueError(f"rule {self.name!r}: rollout {self.rollout} out of range")

    def matches(self, user_id: str, claims: Mapping[str, Any]) -> bool:
        """Whether the user matches (ignoring ``rollout``)."""
        segment = self.segment
        if segment is not None and not segment.contains(user_id, claims):
            return False
        return all_hold(self.when, claims)


@dataclass(frozen=True, slots=True)
class Before:
    """How a flag with ``effective_at`` serves its routes until that instant."""

    default: Mode
    anonymous: Mode = Mode.LEGACY


MISMATCH_RATIO = "mismatch_ratio"
UNIFIED_ERROR_RATIO = "unified_error_ratio"
UNIFIED_TURN_FAILURE_RATIO = "unified_turn_failure_ratio"
WATCHED = (MISMATCH_RATIO, UNIFIED_ERROR_RATIO, UNIFIED_TURN_FAILURE_RATIO)
"""What a guard watches: the ratio behind each of its limits (the ``guard`` label of the
guard metrics; the proxy's guards count observations under these names)."""

GUARD_SOURCES = ("local", "fleet", "both")
"""Whose observations a guard judges: this process's own (``local``), every replica's
as Prometheus sums them (``fleet``; the local guard judges only while Prometheus cannot
be asked), or either of the two (``both``: the local guard stays the fast breaker)."""


@dataclass(frozen=True, slots=True)
class Guard:
    """Limits the proxy watches for a flag; a tripped guard is the proxy's business.

    Ratios are 0..1 and None when not watched; ``window`` is seconds; no verdict is
    drawn from fewer than ``min_samples`` observations (turns, for the turn ratios).
    """

    max_mismatch_ratio: float | None = None
    max_unified_error_ratio: float | None = None
    max_unified_turn_failure_ratio: float | None = None
    """Unified turns (every mode) that missed the golden path, over those that ended and
    were not abandoned (docs/SLO.md)."""
    window: float = 300.0
    min_samples: int = 100
    source: str = "local"
    """One of GUARD_SOURCES: whose observations are judged."""

    def __post_init__(self) -> None:
        if self.source not in GUARD_SOURCES:
            raise ValueError(f"guard source must be one of {', '.join(GUARD_SOURCES)}")
        ratios = (
            self.max_mismatch_ratio,
            self.max_unified_error_ratio,
            self.max_unified_turn_failure_ratio,
        )
        if all(r is None for r in ratios):
            raise ValueError("a guard needs at least one ratio")
        if any(r is not None and not 0 <= r <= 1 for r in ratios):
            raise ValueError("guard ratios must be within 0..1")
        if not (math.isfinite(self.window) and self.window > 0):
            raise ValueError("guard window must be a positive number of seconds")
        if self.min_samples < 1:
            raise ValueError("guard min_samples must be at least 1")


@dataclass(frozen=True, slots=True)
class Flag:
    """One flag: the routes it covers and how it picks a mode for a user.

    ``targets`` and ``rollout`` are copied into read-only mappings, so a Flag never
    changes under a running evaluation. ``thresholds`` is derived from ``rollout``.
    """

    key: str
    routes: tuple[str, ...]
    default: Mode
    anonymous: Mode
    kill_switch: bool
    # hash=False: the mappings are unhashable; equality still compares them.
    targets: Mapping[str, Mode] = field(hash=False)
    rollout: Mapping[Mode, int] = field(hash=False)
    rules: tuple[Rule, ...] = ()
    """Tried in order after targets and before the rollout; the first match wins."""
    effective_at: float | None = None
    """Unix time from which this definition applies; before it, ``before`` (or no flag)."""
    before: Before | None = None
    drain_rate: float | None = None
    """Open connections to close per second after a change moves them; None: keep them.
    Per replica (per process); with ``drain_fleet_rate`` it is the fallback rate when the
    number of replicas cannot be known."""
    drain_fleet_rate: float | None = None
    """Open connections to close per second across every replica: each closes its share
    (proxy/release/fleet.py, ``per_replica_rate``)."""
    guard: Guard | None = None
    thresholds: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    """Cumulative upper bounds (exclusive) of the unified, live and shadow bucket ranges."""

    def __post_init__(self) -> None:
        rollout = dict(self.rollout)
        for mode, share in rollout.items():
            if mode not in ROLLOUT_ORDER:
                raise ValueError(f"flag {self.key!r}: rollout has no share for {mode!r}")
            if not 0 <= share <= BASIS_POINTS:
                raise ValueError(f"flag {self.key!r}: rollout share {share} out of range")
        unified, live, shadow = (rollout.get(mode, 0) for mode in ROLLOUT_ORDER)
        if unified + live + shadow > BASIS_POINTS:
            raise ValueError(f"flag {self.key!r}: rollout shares add up to more than 100%")
        if self.before is not None and self.effective_at is None:
            raise ValueError(f"flag {self.key!r}: 'before' needs effective_at")
        if self.drain_rate is not None and not (
            math.isfinite(self.drain_rate) and self.drain_rate > 0
        ):
            raise ValueError(f"flag {self.key!r}: drain rate must be positive")
        if self.drain_fleet_rate is not None and not (
            math.isfinite(self.drain_fleet_rate) and self.drain_fleet_rate > 0
        ):
            raise ValueError(f"flag {self.key!r}: drain fleet rate must be positive")
        # Frozen dataclass: derived fields are set once here, through object.__setattr__.
        object.__setattr__(self, "targets", MappingProxyType(dict(self.targets)))
        object.__setattr__(self, "rollout", MappingProxyType(rollout))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "thresholds", (unified, unified + live, unified + live + shadow))


def _empty_segments() -> Mapping[str, Segment]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FlagSet:
    """All flags of one flag file, indexed by route for evaluation."""

    flags: Mapping[str, Flag]
    by_route: Mapping[str, Flag]
    digest: str
    """sha256 hex digest of the file bytes ("" for a set that came from no file)."""
    source: str
    """Where the set came from (the file path), for messages."""
    segments: Mapping[str, Segment] = field(default_factory=_empty_segments)
    """The file's named segments (rules hold their own reference; this is for tools)."""

    @classmethod
    def empty(cls) -> FlagSet:
        """A set without flags: every route evaluates to legacy."""
        return cls(flags=MappingProxyType({}), by_route=MappingProxyType({}), digest="", source="")

    @classmethod
    def from_flags(
        cls,
        flags: Iterable[Flag],
        *,
        digest: str = "",
        source: str = "",
        segments: Iterable[Segment] = (),
    ) -> FlagSet:
        """Build a set and its route index; a key or route used twice is a ValueError."""
        by_key: dict[str, Flag] = {}
        by_route: dict[str, Flag] = {}
        for flag in flags:
            if flag.key in by_key:
                raise ValueError(f"flag {flag.key!r} is defined twice")
            by_key[flag.key] = flag
            for route in flag.routes:
                other = by_route.get(route)
                if other is not None:
                    raise ValueError(
                        f"route {route!r} is claimed by flags {other.key!r} and {flag.key!r}"
                    )
                by_route[route] = flag
        by_name: dict[str, Segment] = {}
        for segment in segments:
            if segment.name in by_name:
                raise ValueError(f"segment {segment.name!r} is defined twice")
            by_name[segment.name] = segment
        return cls(
            flags=MappingProxyType(by_key),
            by_route=MappingProxyType(by_route),
            digest=digest,
            source=source,
            segments=MappingProxyType(by_name),
        )
