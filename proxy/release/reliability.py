"""Golden-path reliability: which ended turns count, and the last hour of them (pure).

The definition (docs/SLO.md) in one place, for the Prometheus rules
(proxy/commands/slo.py), the unified turn guard and the status page: of the turns that
ended (proxy/relay/turns.py), `abandoned` ones do not count (the client left: not the
backend's failure); of the rest, `completed` (the whole golden path) is good and every
other outcome is a failure, `interrupted` included (the user did not get the answer,
whether the backend dropped the connection or the proxy closed it).

`Recent` keeps, per route and backend, judged and completed turns per minute for the
last hour, in a ring of fixed size: memory is bounded by routes x backends, never by
traffic, and holds no user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_OBJECTIVE: Final = 99.5
"""The objective in percent: the share of judged turns that must get the whole golden path."""

GOOD: Final = "completed"
NOT_JUDGED: Final = frozenset({"abandoned"})
FAILED: Final = ("incomplete", "errored", "interrupted", "timed_out")
"""The outcomes (metrics.TURN_OUTCOMES) that spend the error budget."""

MINUTES: Final = 60


def judged(outcome: str) -> bool:
    """Whether a turn that ended so counts in reliability at all."""
    return outcome not in NOT_JUDGED


@dataclass(frozen=True, slots=True)
class Reliability:
    """Judged turns and completed ones over a span; `ratio` is None without turns."""

    turns: int
    completed: int

    @property
    def ratio(self) -> float | None:
        return self.completed / self.turns if self.turns else None

    def as_json(self) -> dict[str, float | int | None]:
        return {"turns": self.turns, "completed": self.completed, "ratio": self.ratio}


class _Ring:
    """Per minute of the last hour: [minute number, judged, completed]."""

    __slots__ = ("slots",)

    def __init__(self) -> None:
        self.slots = [[-1, 0, 0] for _ in range(MINUTES)]

    def add(self, minute: int, turns: int, completed: int) -> None:
        slot = self.slots[minute % MINUTES]
        if slot[0] != minute:  # a minute an hour old: reused
            slot[0], slot[1], slot[2] = minute, 0, 0
        slot[1] += turns
        slot[2] += completed

    def total(self, minute: int) -> Reliability:
        turns = completed = 0
        for at, n, good in self.slots:
            if minute - MINUTES < at <= minute:
                turns += n
                completed += good
        return Reliability(turns, completed)


class Recent:
    """Golden-path reliability per route and backend over the last hour, in this process."""

    def __init__(self) -> None:
        self._rings: dict[tuple[str, str], _Ring] = {}

    def ended(self, route: str, backend: str, outcome: str, count: int, now: float) -> None:
        """`count` turns of `route` served by `backend` ended with `outcome` at `now`
        (Unix seconds)."""
        if not judged(outcome):
            return
        ring = self._rings.get((route, backend))
        if ring is None:
            ring = self._rings[(route, backend)] = _Ring()
        ring.add(int(now // 60), count, count if outcome == GOOD else 0)

    def last_hour(self, now: float) -> dict[str, dict[str, Reliability]]:
        """Route -> backend -> the last hour's judged and completed turns (routes and
        backends without turns ended in this process are absent)."""
        minute = int(now // 60)
        out: dict[str, dict[str, Reliability]] = {}
        for (route, backend), ring in sorted(self._rings.items()):
            out.setdefault(route, {})[backend] = ring.total(minute)
        return out
