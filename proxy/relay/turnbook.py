"""The turn counters of each route, mode and backend, shared by their connections.

A connection's turns (proxy/relay/turns.py, pure) count into the `TurnMeters` of its
route, mode and serving backend: plain-integer tallies flushed with the proxy's others
(telemetry.metrics.Tally), so a turn costs integer adds, and histogram children looked
up once. Timers run on the event loop. One `TurnBook` per serving process.

Each ended turn is also told to `ended` (the release control: the flag's turn guard and
the last hour's reliability), with the flag the connection was decided by; the meters of
a route, mode and backend are kept per flag for that.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from strangler.legacy_adapters.canonical import GOLDEN_PATH
from strangler.proxy.relay.turns import OUTCOMES, Cancellable, Counts, Owner, Turn, TurnMeters
from strangler.proxy.telemetry.metrics import Metrics, Tally


class TurnEnded(Protocol):
    """Told of every turn that ended: `count` turns of `route` on `backend`, decided by
    `flag`, ended with `outcome` (one of turns.OUTCOMES)."""

    def __call__(
        self, route: str, backend: str, flag: str | None, outcome: str, count: int
    ) -> None: ...


class _Told:
    """An outcome's tally that also tells `ended` (a turn ends once: no hot path)."""

    __slots__ = ("_backend", "_ended", "_flag", "_outcome", "_route", "_tally")

    def __init__(
        self, tally: Tally, ended: TurnEnded, key: tuple[str, str, str, str | None], outcome: str
    ) -> None:
        self._tally = tally
        self._ended = ended
        self._route, _, self._backend, self._flag = key
        self._outcome = outcome

    def add(self, amount: int = 1) -> None:
        self._tally.add(amount)
        self._ended(self._route, self._backend, self._flag, self._outcome, amount)


class LoopClock:
    """Monotonic time, and timers on the running event loop."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def later(self, delay: float, owner: Owner, turn: Turn) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, owner.turn_expired, turn)


class TurnBook:
    """The shared `TurnMeters` per route, mode and backend (a bounded set, as labels are)."""

    def __init__(self, metrics: Metrics, timeout: float, ended: TurnEnded | None = None) -> None:
        self._metrics = metrics
        self._timeout = timeout
        self._ended = ended
        self._clock = LoopClock()
        self._meters: dict[tuple[str, str, str, str | None], TurnMeters] = {}

    def meters(self, route: str, mode: str, backend: str, flag: str | None = None) -> TurnMeters:
        key = (route, mode, backend, flag)
        found = self._meters.get(key)
        if found is None:
            m, labels, ended = self._metrics, key[:3], self._ended
            tallies = tuple(m.tally(m.turns, *labels, o) for o in OUTCOMES)
            outcomes: tuple[Counts, ...] = tallies
            if ended is not None:
                outcomes = tuple(
                    _Told(tally, ended, key, o) for tally, o in zip(tallies, OUTCOMES, strict=True)
                )
            found = self._meters[key] = TurnMeters(
                started=m.tally(m.turns_started, *labels),
                outcomes=outcomes,
                missing=tuple(m.tally(m.turn_missing_events, *labels, e) for e in GOLDEN_PATH),
                first_event=m.turn_time_to_first_event.labels(*labels),
                duration=m.turn_time_to_complete.labels(*labels),
                timeout=self._timeout,
                clock=self._clock,
            )
        return found
