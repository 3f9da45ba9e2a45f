"""Guard arithmetic: windows, the minimum-sample rule, trips that hold until the file changes."""

from __future__ import annotations

import pytest

from strangler.flags.model import (
    MISMATCH_RATIO,
    UNIFIED_ERROR_RATIO,
    UNIFIED_TURN_FAILURE_RATIO,
    Flag,
    FlagSet,
    Guard,
    Mode,
)
from strangler.proxy.release.guards import Guards, Window, exceeded


def flagset(guard: Guard | None, digest: str = "d1", key: str = "f") -> FlagSet:
    flag = Flag(
        key=key,
        routes=("main",),
        default=Mode.LEGACY,
        anonymous=Mode.LEGACY,
        kill_switch=False,
        targets={},
        rollout={Mode.SHADOW: 10_000},
        guard=guard,
    )
    return FlagSet.from_flags([flag], digest=digest, source="flags.yaml")


def test_window_counts_only_what_falls_inside_it() -> None:
    w = Window(10.0)
    w.add(100.0, bad=True)
    w.add(100.5, bad=False)
    w.add(105.0, bad=False)
    assert w.counts(105.0) == (3, 1)
    # The bucket of second 100 is older than the window at t=111.5; 105 still counts.
    assert w.counts(111.5) == (1, 0)
    assert w.counts(200.0) == (0, 0)


def test_window_memory_is_bounded_by_its_length_not_by_the_traffic() -> None:
    w = Window(5.0)
    for i in range(10_000):
        w.add(1000.0 + i / 100, bad=False)  # 100 per second for 100 s
    assert len(w._buckets) <= 7
    assert w.counts(1100.0)[0] <= 700


@pytest.mark.parametrize(
    ("limit", "min_samples", "total", "bad", "trips"),
    [
        (0.1, 100, 99, 99, False),  # every sample bad, but too few of them
        (0.1, 100, 100, 10, False),  # exactly at the limit is within it
        (0.1, 100, 100, 11, True),
        (0.0, 1, 1, 1, True),  # a zero budget trips on the first failure
        (0.0, 1, 5, 0, False),
        (1.0, 1, 10, 10, False),  # a ratio of 1 can never be exceeded
    ],
)
def test_trip_rule(limit: float, min_samples: int, total: int, bad: int, trips: bool) -> None:
    assert exceeded(limit, min_samples, total, bad) is trips


def test_guard_needs_min_samples_then_trips_on_the_ratio() -> None:
    guards = Guards()
    guards.configure(flagset(Guard(max_mismatch_ratio=0.2, window=60, min_samples=5)))
    t = 1000.0
    # Four mismatches in a row: 100% bad, but fewer than five samples.
    for i in range(4):
        assert guards.observe("f", MISMATCH_RATIO, True, t + i) is None
    assert not guards.tripped("f")
    trip = guards.observe("f", MISMATCH_RATIO, True, t + 4)
    assert trip is not None
    assert (trip.flag, trip.watched, trip.samples, trip.ratio, trip.limit) == (
        "f",
        MISMATCH_RATIO,
        5,
        1.0,
        0.2,
    )
    assert guards.tripped("f")


def test_good_samples_keep_the_ratio_under_the_limit() -> None:
    guards = Guards()
    guards.configure(flagset(Guard(max_mismatch_ratio=0.25, window=60, min_samples=4)))
    for i in range(30):
        # One mismatch in every four turns: 25%, exactly the limit.
        assert guards.observe("f", MISMATCH_RATIO, i % 4 == 3, 1000.0 + i) is None
    assert not guards.tripped("f")


def test_old_failures_leave_the_window() -> None:
    guards = Guards()
    guards.configure(flagset(Guard(max_unified_error_ratio=0.5, window=10, min_samples=4)))
    for i in range(3):
        guards.observe("f", UNIFIED_ERROR_RATIO, True, 1000.0 + i)
    # Much later: the early failures are gone, so one more failure among good ones is fine.
    for i in range(3):
        guards.observe("f", UNIFIED_ERROR_RATIO, False, 2000.0 + i)
    assert guards.observe("f", UNIFIED_ERROR_RATIO, True, 2003.0) is None
    assert guards.snapshot(2003.0)["f"]["watching"][UNIFIED_ERROR_RATIO]["samples"] == 4


def test_a_guard_watches_only_the_ratios_it_names() -> None:
    guards = Guards()
    guards.configure(flagset(Guard(max_mismatch_ratio=0.1, window=60, min_samples=1)))
    assert guards.observe("f", UNIFIED_ERROR_RATIO, True, 1.0) is None
    assert not guards.tripped("f")
    assert set(guards.snapshot(1.0)["f"]["watching"]) == {MISMATCH_RATIO}


def test_flags_without_guards_and_unknown_flags_are_never_held() -> None:
    guards = Guards()
    guards.configure(flagset(None))
    assert guards.observe("f", MISMATCH_RATIO, True, 1.0) is None
    assert guards.observe(None, MISMATCH_RATIO, True, 1.0) is None
    assert guards.observe("other", MISMATCH_RATIO, True, 1.0) is None
    assert not guards.tripped("f") and not guards.tripped(None)
    assert guards.snapshot(1.0) == {}


def test_a_trip_holds_until_the_file_changes() -> None:
    guards = Guards()
    guard = Guard(max_mismatch_ratio=0.0, window=60, min_samples=1)
    first = flagset(guard, digest="d1")
    guards.configure(first)
    assert guards.observe("f", MISMATCH_RATIO, True, 1.0) is not None
    # The same file again (a reload that changed nothing) keeps it tripped...
    assert guards.configure(flagset(guard, digest="d1")) == []
    assert guards.holds(first, "f")
    # ...a plan's candidate file is not held by the running file's trip...
    second = flagset(guard, digest="d2")
    assert not guards.holds(second, "f")
    # ...and applying a changed file clears it and starts a fresh window.
    assert guards.configure(second) == ["f"]
    assert not guards.holds(second, "f")
    assert guards.snapshot(2.0)["f"]["watching"][MISMATCH_RATIO]["samples"] == 0


def test_observations_after_a_trip_do_not_trip_again() -> None:
    guards = Guards()
    guards.configure(flagset(Guard(max_mismatch_ratio=0.0, window=60, min_samples=1)))
    assert guards.observe("f", MISMATCH_RATIO, True, 1.0) is not None
    assert guards.observe("f", MISMATCH_RATIO, True, 2.0) is None
    snap = guards.snapshot(2.0)["f"]
    assert snap["tripped"] is True
    assert snap["trip"]["guard"] == MISMATCH_RATIO


def test_the_turn_guard_judges_unified_turns_after_min_samples_turns() -> None:
    guards = Guards()
    guard = Guard(max_unified_turn_failure_ratio=0.25, window=60, min_samples=4)
    guards.configure(flagset(guard))
    for at, bad in enumerate((True, False, False)):
        assert guards.observe("f", UNIFIED_TURN_FAILURE_RATIO, bad, float(at)) is None
    # A third of the turns failed, over the limit, but three are fewer than min_samples.
    assert not guards.tripped("f")
    trip = guards.observe("f", UNIFIED_TURN_FAILURE_RATIO, True, 3.0)
    assert trip is not None and (trip.watched, trip.samples, trip.ratio) == (
        UNIFIED_TURN_FAILURE_RATIO,
        4,
        0.5,
    )
    assert set(guards.snapshot(3.0)["f"]["watching"]) == {UNIFIED_TURN_FAILURE_RATIO}


def test_the_turn_guard_is_one_of_the_fleets_checks_when_its_source_says_fleet() -> None:
    guards = Guards()
    guard = Guard(
        max_unified_error_ratio=0.1,
        max_unified_turn_failure_ratio=0.02,
        window=300,
        min_samples=200,
        source="fleet",
    )
    guards.configure(flagset(guard))
    checks = {c.watched: (c.limit, c.min_samples, c.window) for c in guards.fleet_checks()}
    assert checks == {
        UNIFIED_ERROR_RATIO: (0.1, 200, 300),
        UNIFIED_TURN_FAILURE_RATIO: (0.02, 200, 300),
    }
    # Fleet-sourced: the local window counts, but does not trip while the fleet answers.
    for at in range(200):
        assert guards.observe("f", UNIFIED_TURN_FAILURE_RATIO, True, float(at), True) is None
    assert guards.observe("f", UNIFIED_TURN_FAILURE_RATIO, True, 200.0, False) is not None
