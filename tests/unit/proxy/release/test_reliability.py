"""The last hour's golden-path reliability per route and backend (proxy/release/reliability.py)."""

from __future__ import annotations

import pytest

from strangler.proxy.release.reliability import FAILED, MINUTES, Recent, Reliability, judged
from strangler.proxy.telemetry.metrics import TURN_OUTCOMES


def test_every_outcome_is_good_failed_or_not_judged() -> None:
    assert set(TURN_OUTCOMES) == {"completed", "abandoned", *FAILED}
    assert not judged("abandoned")
    assert all(judged(o) for o in ("completed", *FAILED))


def test_abandoned_turns_count_nowhere_and_interrupted_ones_are_failures() -> None:
    recent = Recent()
    now = 1_000_000.0
    recent.ended("main", "unified", "completed", 3, now)
    recent.ended("main", "unified", "interrupted", 1, now)
    recent.ended("main", "unified", "abandoned", 5, now)
    recent.ended("main", "legacy", "abandoned", 2, now)
    last = recent.last_hour(now)
    assert last == {"main": {"unified": Reliability(4, 3)}}
    assert last["main"]["unified"].ratio == 0.75
    assert last["main"]["unified"].as_json() == {"turns": 4, "completed": 3, "ratio": 0.75}


@pytest.mark.parametrize("outcome", FAILED)
def test_each_failed_outcome_spends_the_budget(outcome: str) -> None:
    recent = Recent()
    recent.ended("api", "legacy", outcome, 1, 60.0)
    assert recent.last_hour(60.0)["api"]["legacy"] == Reliability(1, 0)


def test_turns_older_than_an_hour_leave_and_their_slots_are_reused() -> None:
    recent = Recent()
    start = 6000 * 60.0
    for minute in range(MINUTES + 30):  # 90 minutes, one failed and one completed each
        recent.ended("main", "unified", "completed", 1, start + minute * 60)
        recent.ended("main", "unified", "errored", 1, start + minute * 60)
    now = start + (MINUTES + 29) * 60
    assert recent.last_hour(now)["main"]["unified"] == Reliability(2 * MINUTES, MINUTES)
    # Two hours later nothing is left, and the ring is still one slot per minute.
    assert recent.last_hour(now + 2 * 3600)["main"]["unified"] == Reliability(0, 0)
    assert recent.last_hour(now + 2 * 3600)["main"]["unified"].ratio is None
    ring = recent._rings[("main", "unified")]
    assert len(ring.slots) == MINUTES


def test_a_minute_counts_in_the_hour_that_ends_with_it() -> None:
    recent = Recent()
    recent.ended("main", "legacy", "completed", 1, 120.0)  # minute 2
    assert recent.last_hour(120.0 + 59 * 60)["main"]["legacy"].turns == 1  # minute 61
    assert recent.last_hour(120.0 + 60 * 60)["main"]["legacy"].turns == 0  # minute 62
