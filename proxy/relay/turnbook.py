"""The turn counters of each route, mode and backend, shared by their connections.

A connection's turns (proxy/relay/turns.py, pure) count into the `TurnMeters` of its
route, mode and serving backend: plain-integer tallies flushed with the proxy's others
(telemetry.metrics.Tally), so a turn costs integer adds, and histogram children looked
up once. Timers run on the event loop. One `TurnBook` per serving process.
"""

from __future__ import annotations

import asyncio
import time

from strangler.proxy.relay.turns import OUTCOMES, Cancellable, Owner, Turn, TurnMeters
from strangler.proxy.relay.turnscan import GOLDEN_PATH
from strangler.proxy.telemetry.metrics import Metrics


class LoopClock:
    """Monotonic time, and timers on the running event loop."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def later(self, delay: float, owner: Owner, turn: Turn) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, owner.turn_expired, turn)


class TurnBook:
    """The shared `TurnMeters` per route, mode and backend (a bounded set, as labels are)."""

    def __init__(self, metrics: Metrics, timeout: float) -> None:
        self._metrics = metrics
        self._timeout = timeout
        self._clock = LoopClock()
        self._meters: dict[tuple[str, str, str], TurnMeters] = {}

    def meters(self, route: str, mode: str, backend: str) -> TurnMeters:
        key = (route, mode, backend)
        found = self._meters.get(key)
        if found is None:
            m = self._metrics
            found = self._meters[key] = TurnMeters(
                started=m.tally(m.turns_started, *key),
                outcomes=tuple(m.tally(m.turns, *key, o) for o in OUTCOMES),
                missing=tuple(m.tally(m.turn_missing_events, *key, e) for e in GOLDEN_PATH),
                first_event=m.turn_time_to_first_event.labels(*key),
                duration=m.turn_time_to_complete.labels(*key),
                timeout=self._timeout,
                clock=self._clock,
            )
        return found
