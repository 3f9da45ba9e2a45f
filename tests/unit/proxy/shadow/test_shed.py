"""The shedding level: what samples of loop lag and comparison time make of it."""

from __future__ import annotations

import pytest

from strangler.proxy.config.settings import ShedSettings
from strangler.proxy.shadow.shed import Level, Reading, Shedder

# 20 ms of lag, 30 % of the time comparing; step up after 2, back after 3.
SETTINGS = ShedSettings(
    max_loop_lag_ms=20.0,
    max_shadow_cpu_share=0.3,
    escalate_after=2,
    recover_after=3,
    close_share=0.25,
)
LAGGING = 0.050
CALM = 0.001


def feed(
    shedder: Shedder, lag: float, times: int, *, busy: float = 0.0, cpu: float = 0.0
) -> list[Reading]:
    return [shedder.sample(lag, busy, cpu, 0.05, 8) for _ in range(times)]


def test_within_budget_nothing_is_shed() -> None:
    shedder = Shedder(SETTINGS)
    readings = feed(shedder, 0.015, 50, busy=0.01)  # under both limits, if not calm
    assert {r.level for r in readings} == {Level.NONE}
    assert not any(r.over or r.close for r in readings)


def test_lag_over_budget_steps_up_one_level_per_run_of_samples_in_order() -> None:
    shedder = Shedder(SETTINGS)
    levels = [r.level for r in feed(shedder, LAGGING, 6)]
    assert levels == [
        Level.NONE,
        Level.REFUSE,
        Level.REFUSE,
        Level.SKIP,
        Level.SKIP,
        Level.CLOSE,
    ]


def test_a_loop_far_behind_steps_up_on_every_sample() -> None:
    shedder = Shedder(SETTINGS)
    readings = feed(shedder, 0.080, 4)  # four times the 20 ms budget
    assert [r.level for r in readings] == [Level.REFUSE, Level.SKIP, Level.CLOSE, Level.CLOSE]
    # ... and at the last level closes every open secondary (feed's 8), not a share.
    assert [r.close for r in readings] == [0, 0, 0, 8]
    # Just under that, the run of samples still decides.
    shedder = Shedder(SETTINGS)
    assert [r.level for r in feed(shedder, 0.079, 2)] == [Level.NONE, Level.REFUSE]


def test_a_whole_core_budget_never_sheds_for_cpu_whatever_the_clocks_say() -> None:
    shedder = Shedder(ShedSettings(max_process_cpu_share=1.0, escalate_after=1))
    readings = [shedder.sample(0.001, 0.0, 0.0506, 0.05, 8) for _ in range(5)]  # 1.012
    assert {r.level for r in readings} == {Level.NONE}


def test_one_late_sample_is_not_a_trend() -> None:
    shedder = Shedder(SETTINGS)
    for _ in range(10):
        feed(shedder, LAGGING, 1)
        feed(shedder, CALM, 1)
    assert shedder.level is Level.NONE


def test_comparison_time_alone_is_over_budget() -> None:
    shedder = Shedder(SETTINGS)
    feed(shedder, CALM, 2, busy=0.02)  # 40 % of 50 ms
    assert shedder.level is Level.REFUSE
    assert shedder.share == pytest.approx(0.4)


def test_a_process_without_spare_cpu_is_over_budget_and_recovers_below_four_fifths() -> None:
    # The comparison may take little; the secondary's socket work is not counted there.
    shedder = Shedder(SETTINGS)  # the process's budget: 0.9 of its core by default
    feed(shedder, CALM, 2, cpu=0.048)  # 96 % of 50 ms
    assert shedder.level is Level.REFUSE
    assert shedder.process == pytest.approx(0.96)
    feed(shedder, CALM, 10, cpu=0.040)  # 80 %: within budget, not calm
    assert shedder.level is Level.REFUSE
    feed(shedder, CALM, 3, cpu=0.035)  # 70 %: calm
    assert shedder.level is Level.NONE


def test_at_the_last_level_every_sample_over_budget_closes_a_share_of_secondaries() -> None:
    shedder = Shedder(SETTINGS)
    readings = feed(shedder, LAGGING, 6)
    # Nothing is closed on the step up itself: what it sheds has not shown yet.
    assert [r.close for r in readings] == [0] * 6
    assert shedder.sample(LAGGING, 0.0, 0.0, 0.05, 8).close == 2  # a quarter of 8
    assert shedder.sample(LAGGING, 0.0, 0.0, 0.05, 1).close == 1  # at least one
    assert shedder.sample(LAGGING, 0.0, 0.0, 0.05, 0).close == 0
    # Within budget but not calm: nothing more is closed, and the level holds.
    reading = shedder.sample(0.015, 0.0, 0.0, 0.05, 8)
    assert (reading.level, reading.close) == (Level.CLOSE, 0)


def test_recovery_steps_back_one_level_per_run_of_calm_samples() -> None:
    shedder = Shedder(SETTINGS)
    feed(shedder, LAGGING, 6)
    assert shedder.level is Level.CLOSE
    levels = [r.level for r in feed(shedder, CALM, 9)]
    assert levels == [
        Level.CLOSE,
        Level.CLOSE,
        Level.SKIP,
        Level.SKIP,
        Level.SKIP,
        Level.REFUSE,
        Level.REFUSE,
        Level.REFUSE,
        Level.NONE,
    ]


def test_a_sample_neither_calm_nor_over_budget_restarts_the_recovery() -> None:
    shedder = Shedder(SETTINGS)
    feed(shedder, LAGGING, 2)
    for _ in range(5):
        feed(shedder, CALM, 2)
        feed(shedder, 0.015, 1)  # over half the budget: not calm
    assert shedder.level is Level.REFUSE


def test_switched_off_never_sheds() -> None:
    shedder = Shedder(ShedSettings(enabled=False, escalate_after=1))
    assert {r.level for r in feed(shedder, 10.0, 20, busy=1.0)} == {Level.NONE}
