"""Guardrails: per-flag error budgets that send a flag back to legacy when exceeded.

Pure arithmetic (no I/O, no asyncio): the proxy feeds observations in and asks whether
a flag is held on legacy. A flag's ``guard`` (flags.model.Guard) watches up to three
ratios over a sliding time window:

- ``mismatch_ratio``: compared turns (shadow and live) whose verdict is ``mismatch``,
  over compared turns that reached a verdict on both sides (``match`` + ``mismatch``);
- ``unified_error_ratio``: failed interactions with the unified router over all of them.
  An interaction is a handshake (failed: refused or unreachable), a connection end
  (failed: the client got 1011) or a compared turn (failed: the unified side ended it
  with ``agent_error`` while legacy did not);
- ``unified_turn_failure_ratio``: turns the unified router served, in every mode, that
  missed the golden path, over those that ended and were not abandoned (docs/SLO.md):
  the golden-path SLO's failure ratio, judged per flag.

No verdict is drawn from fewer than ``min_samples`` observations in the window, so one
bad turn out of three cannot roll a release back. A tripped guard stays tripped until
the flag file changes (a new digest): release managers decide when to try again.

A guard's ``source`` says whose observations it judges: this process's (``local``),
the fleet's as Prometheus sums them (``fleet``, proxy/release/fleet.py; the local
window judges only while Prometheus cannot be asked), or both. The local window always
counts, so the fallback has the recent past the moment the fleet guard goes down.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from strangler.flags.model import (
    MISMATCH_RATIO,
    UNIFIED_ERROR_RATIO,
    UNIFIED_TURN_FAILURE_RATIO,
    WATCHED,
    FlagSet,
    Guard,
)

_BUCKET_SECONDS = 1.0
"""Observations are counted in buckets of this width, so memory is bounded by the
window length, not by the traffic."""


@dataclass(slots=True)
class Window:
    """Counts of observations, and of bad ones, over the last ``seconds``."""

    seconds: float
    total: int = 0
    bad: int = 0
    # [bucket start, total, bad], oldest first.
    _buckets: deque[list[float]] = field(default_factory=deque)

    def add(self, now: float, bad: bool) -> None:
        self._expire(now)
        start = now - now % _BUCKET_SECONDS
        if self._buckets and self._buckets[-1][0] == start:
            bucket = self._buckets[-1]
        else:
            bucket = [start, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        self.total += 1
        if bad:
            bucket[2] += 1
            self.bad += 1

    def counts(self, now: float) -> tuple[int, int]:
        """(observations, bad ones) within the window ending at ``now``."""
        self._expire(now)
        return self.total, self.bad

    def _expire(self, now: float) -> None:
        # A bucket leaves once all of it is older than the window.
        horizon = now - self.seconds - _BUCKET_SECONDS
        buckets = self._buckets
        while buckets and buckets[0][0] <= horizon:
            _, total, bad = buckets.popleft()
            self.total -= int(total)
            self.bad -= int(bad)


@dataclass(frozen=True, slots=True)
class Trip:
    """Why and when a guard tripped."""

    flag: str
    watched: str  # one of WATCHED
    ratio: float
    limit: float
    samples: int
    at: float  # the caller's clock (wall time in the proxy)
    source: str = "local"  # whose observations: "local" (this process) or "fleet"


@dataclass(slots=True)
class _State:
    guard: Guard
    windows: dict[str, Window]
    trip: Trip | None = None

    def limit(self, watched: str) -> float | None:
        return _limit(self.guard, watched)


def _limit(guard: Guard, watched: str) -> float | None:
    """The guard's limit for what it watches; None when it does not watch that."""
    if watched == MISMATCH_RATIO:
        return guard.max_mismatch_ratio
    if watched == UNIFIED_ERROR_RATIO:
        return guard.max_unified_error_ratio
    if watched == UNIFIED_TURN_FAILURE_RATIO:
        return guard.max_unified_turn_failure_ratio
    return None


def judges_locally(source: str, fleet_up: bool) -> bool:
    """Whether the local window may trip a guard of this ``source`` now."""
    return source != "fleet" or not fleet_up


@dataclass(frozen=True, slots=True)
class FleetCheck:
    """One ratio a fleet guard watches: what to ask Prometheus and how to judge it."""

    flag: str
    watched: str
    limit: float
    min_samples: int
    window: float


def exceeded(guard_limit: float, min_samples: int, total: float, bad: float) -> bool:
    """The trip rule: enough samples, and a bad ratio strictly above the limit."""
    return total >= min_samples and bad > guard_limit * total


class Guards:
    """The guard state of every flag that has a guard."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._digest: str | None = None

    def configure(self, flagset: FlagSet) -> list[str]:
        """Adopt the guards of a newly applied flag set; the flags whose trip it clears.

        A changed file (new digest) starts every guard afresh, tripped or not: the file
        is how release managers say "try again". The same file reapplied keeps state.
        """
        if flagset.digest == self._digest:
            return []
        cleared = [key for key, state in self._states.items() if state.trip is not None]
        self._digest = flagset.digest
        self._states = {
            key: _State(
                flag.guard,
                {
                    watched: Window(flag.guard.window)
                    for watched in WATCHED
                    if _limit(flag.guard, watched) is not None
                },
            )
            for key, flag in flagset.flags.items()
            if flag.guard is not None
        }
        return cleared

    def observe(
        self, flag: str | None, watched: str, bad: bool, now: float, fleet_up: bool = False
    ) -> Trip | None:
        """Record one observation; returns the Trip if this observation tripped the guard
        (`fleet_up`: the fleet guard answers, so a `fleet` guard does not judge locally)."""
        if flag is None:
            return None
        state = self._states.get(flag)
        if state is None or state.trip is not None:
            return None
        window = state.windows.get(watched)
        if window is None:
            return None
        window.add(now, bad)
        limit = state.limit(watched)
        assert limit is not None
        if not bad or not exceeded(limit, state.guard.min_samples, window.total, window.bad):
            return None
        if not judges_locally(state.guard.source, fleet_up):
            return None
        state.trip = Trip(flag, watched, window.bad / window.total, limit, window.total, now)
        return state.trip

    def fleet_checks(self) -> list[FleetCheck]:
        """The ratios the fleet guard asks Prometheus about, for the file in force."""
        return [
            FleetCheck(key, watched, limit, state.guard.min_samples, state.guard.window)
            for key, state in self._states.items()
            if state.guard.source != "local"
            for watched in state.windows
            if (limit := state.limit(watched)) is not None
        ]

    def fleet_trip(
        self, check: FleetCheck, samples: float, bad: float, digest: str, now: float
    ) -> Trip | None:
        """A fleet-wide verdict over the limit for `check`, made under the file `digest`:
        the Trip, unless that file is no longer in force or the guard already holds."""
        state = self._states.get(check.flag)
        if digest != self._digest or state is None or state.trip is not None:
            return None
        ratio = bad / samples if samples else 0.0
        state.trip = Trip(
            check.flag, check.watched, ratio, check.limit, round(samples), now, "fleet"
        )
        return state.trip

    def holds(self, flagset: FlagSet, flag: str | None) -> bool:
        """Whether the guard holds ``flag`` of ``flagset`` on legacy.

        Only the flag set the guards were configured from is held: a candidate file
        (a plan) is a new file, and a new file starts every guard afresh.
        """
        return flagset.digest == self._digest and self.tripped(flag)

    def tripped(self, flag: str | None) -> bool:
        """Whether the flag is held on legacy by its guard."""
        if flag is None:
            return False
        state = self._states.get(flag)
        return state is not None and state.trip is not None

    def snapshot(self, now: float) -> dict[str, Any]:
        """Per guarded flag: limits, current counts in the window, and the trip if any."""
        out: dict[str, Any] = {}
        for key, state in self._states.items():
            watching = {}
            for watched, window in state.windows.items():
                total, bad = window.counts(now)
                watching[watched] = {
                    "limit": state.limit(watched),
                    "samples": total,
                    "bad": bad,
                    "ratio": bad / total if total else None,
                }
            trip = state.trip
            out[key] = {
                "tripped": trip is not None,
                "window_seconds": state.guard.window,
                "min_samples": state.guard.min_samples,
                "source": state.guard.source,
                "watching": watching,
                "trip": None
                if trip is None
                else {
                    "guard": trip.watched,
                    "ratio": round(trip.ratio, 4),
                    "limit": trip.limit,
                    "samples": trip.samples,
                    "at": trip.at,
                    "source": trip.source,
                },
            }
        return out
