"""The immutable flag model: what a validated flag file means, ready for fast evaluation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

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
    ROLLOUT = "rollout"
    DEFAULT = "default"
    KILL_SWITCH = "kill_switch"
    ANONYMOUS = "anonymous"
    FALLBACK = "fallback"
    NO_FLAG = "no_flag"


ROLLOUT_ORDER: tuple[Mode, Mode, Mode] = (Mode.UNIFIED, Mode.LIVE, Mode.SHADOW)
"""Rollout ranges are laid out from bucket 0 in this order; legacy is what remains."""


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
        # Frozen dataclass: derived fields are set once here, through object.__setattr__.
        object.__setattr__(self, "targets", MappingProxyType(dict(self.targets)))
        object.__setattr__(self, "rollout", MappingProxyType(rollout))
        object.__setattr__(self, "thresholds", (unified, unified + live, unified + live + shadow))


@dataclass(frozen=True, slots=True)
class FlagSet:
    """All flags of one flag file, indexed by route for evaluation."""

    flags: Mapping[str, Flag]
    by_route: Mapping[str, Flag]
    digest: str
    """sha256 hex digest of the file bytes ("" for a set that came from no file)."""
    source: str
    """Where the set came from (the file path), for messages."""

    @classmethod
    def empty(cls) -> FlagSet:
        """A set without flags: every route evaluates to legacy."""
        return cls(flags=MappingProxyType({}), by_route=MappingProxyType({}), digest="", source="")

    @classmethod
    def from_flags(cls, flags: Iterable[Flag], *, digest: str = "", source: str = "") -> FlagSet:
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
        return cls(
            flags=MappingProxyType(by_key),
            by_route=MappingProxyType(by_route),
            digest=digest,
            source=source,
        )
