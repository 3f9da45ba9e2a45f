"""The fleet guard's reading of Prometheus answers, and the fleet drain arithmetic: silence
is never a verdict, min_samples counts the whole fleet, a shared rate is divided."""

from __future__ import annotations

import math
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from strangler.flags.model import MISMATCH_RATIO, Flag, FlagSet, Guard, Mode
from strangler.flags.watch import FlagWatcher, ReloadResult
from strangler.proxy.config import LimitSettings
from strangler.proxy.relay.connections import OpenConnections
from strangler.proxy.release.control import ReleaseControl
from strangler.proxy.release.fleet import (
    AnswerError,
    Evidence,
    Verdict,
    evidence,
    observations_query,
    per_replica_rate,
    replica_count,
    replicas_query,
    vector,
    verdict,
)
from strangler.proxy.release.guards import FleetCheck, Guards, judges_locally
from strangler.proxy.telemetry.metrics import Metrics


def answer(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    """An /api/v1/query answer as Prometheus writes it (values are strings)."""
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1700000000.0, v]} for m, v in series],
        },
    }


def test_the_query_sums_the_fleet_over_the_guard_window_under_this_file_only() -> None:
    expr = observations_query(
        'job="strangler"', "unified_router", MISMATCH_RATIO, 300, "1c26ab8eab6d" + "0" * 52, 15
    )
    assert expr == (
        "sum by (result) (increase((strangler_guard_observations_total"
        '{job="strangler", flag="unified_router", guard="mismatch_ratio"}'
        " * on (job, instance) group_left () "
        '(strangler_flags_info{job="strangler", hash="1c26ab8eab6d"} == 1))[300s:15s]))'
    )
    # No selector: the flag and guard still select; fractions round up.
    expr = observations_query("", "f", MISMATCH_RATIO, 2.5, "ab", 0.5)
    assert '{flag="f", guard="mismatch_ratio"}' in expr and "[3s:1s]" in expr
    assert replicas_query('job="s"') == 'count(strangler_build_info{job="s"})'


def test_fleet_counts_are_summed_from_the_ok_and_bad_series() -> None:
    seen = evidence(vector(answer(({"result": "ok"}, "90"), ({"result": "bad"}, "12.5"))))
    assert seen == Evidence(total=102.5, bad=12.5)


@pytest.mark.parametrize(
    "body",
    [
        answer(),  # no series: no traffic yet, or nothing scraped
        answer(({"result": "ok"}, "NaN"), ({"result": "bad"}, "NaN")),
        answer(({"result": "ok"}, "100"), ({"result": "bad"}, "+Inf")),
    ],
)
def test_an_empty_or_nan_answer_is_inconclusive_never_a_trip_nor_a_clean_bill(
    body: dict[str, Any],
) -> None:
    seen = evidence(vector(body))
    assert seen is None
    assert verdict(0.0, 1, seen) is Verdict.INCONCLUSIVE


def test_min_samples_is_counted_over_the_whole_fleet() -> None:
    # Three replicas with 40 observations each: none alone reaches 100, the fleet does.
    per_replica = Evidence(total=40, bad=10)
    fleet = Evidence(total=120, bad=30)
    assert verdict(0.1, 100, per_replica) is Verdict.INCONCLUSIVE
    assert verdict(0.1, 100, fleet) is Verdict.TRIP
    assert verdict(0.3, 100, fleet) is Verdict.WITHIN  # 25% is within 30%
    assert verdict(0.25, 100, fleet) is Verdict.WITHIN  # at the limit is within it


@pytest.mark.parametrize(
    "body",
    [
        {"status": "error", "errorType": "bad_data", "error": "parse error"},
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
        "<html>not prometheus</html>",
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
    ],
)
def test_an_answer_that_is_not_an_instant_vector_is_an_error(body: Any) -> None:
    with pytest.raises(AnswerError):
        vector(body)


def test_the_replica_count_is_one_finite_number_or_unknown() -> None:
    assert replica_count(vector(answer(({}, "3")))) == 3
    assert replica_count(vector(answer())) is None
    assert replica_count(vector(answer(({}, "NaN")))) is None


def test_a_fleet_rate_is_divided_by_the_replicas_prometheus_sees() -> None:
    drain = per_replica_rate(fleet_rate=60, rate=None, replicas_seen=3, replicas_hint=10)
    assert drain is not None and drain.per_replica == 20
    assert "3 replicas seen by Prometheus" in drain.basis


def test_without_prometheus_the_fleet_rate_falls_back_in_the_documented_order() -> None:
    hint = per_replica_rate(fleet_rate=60, rate=5, replicas_seen=None, replicas_hint=4)
    assert hint is not None and hint.per_replica == 15
    own = per_replica_rate(fleet_rate=60, rate=5, replicas_seen=None, replicas_hint=None)
    assert own is not None and own.per_replica == 5
    alone = per_replica_rate(fleet_rate=60, rate=None, replicas_seen=None, replicas_hint=None)
    assert alone is not None and alone.per_replica == 60 and "alone" in alone.basis


def test_a_per_replica_rate_stays_what_it_says_and_keep_drains_nothing() -> None:
    drain = per_replica_rate(fleet_rate=None, rate=7, replicas_seen=3, replicas_hint=None)
    assert drain is not None and drain.per_replica == 7
    assert per_replica_rate(None, None, 3, None) is None


def fleet_flagset(source: str, digest: str = "d1") -> FlagSet:
    guard = Guard(max_mismatch_ratio=0.1, window=60, min_samples=10, source=source)
    flag = Flag(
        key="f",
        routes=("main",),
        default=Mode.LEGACY,
        anonymous=Mode.LEGACY,
        kill_switch=False,
        targets={},
        rollout={Mode.SHADOW: 10_000},
        guard=guard,
    )
    return FlagSet.from_flags([flag], digest=digest, source="flags.yaml")


def test_a_fleet_guard_judges_locally_only_while_the_fleet_guard_is_down() -> None:
    assert not judges_locally("fleet", fleet_up=True)
    assert judges_locally("fleet", fleet_up=False)
    assert judges_locally("both", fleet_up=True) and judges_locally("local", fleet_up=True)
    guards = Guards()
    guards.configure(fleet_flagset("fleet"))
    for i in range(20):
        assert guards.observe("f", MISMATCH_RATIO, True, 100.0 + i / 10, fleet_up=True) is None
    # The window counted all along: the fallback trips on the next bad observation.
    trip = guards.observe("f", MISMATCH_RATIO, True, 103.0, fleet_up=False)
    assert trip is not None and trip.source == "local" and trip.samples == 21


def test_only_fleet_and_both_guards_ask_prometheus() -> None:
    guards = Guards()
    guards.configure(fleet_flagset("local"))
    assert guards.fleet_checks() == []
    guards.configure(fleet_flagset("both", digest="d2"))
    assert guards.fleet_checks() == [FleetCheck("f", MISMATCH_RATIO, 0.1, 10, 60)]


def test_a_fleet_verdict_made_under_another_file_trips_nothing() -> None:
    guards = Guards()
    guards.configure(fleet_flagset("fleet"))
    (check,) = guards.fleet_checks()
    assert guards.fleet_trip(check, 100, 50, "old-digest", 1.0) is None
    trip = guards.fleet_trip(check, 100, 50, "d1", 1.0)
    assert trip is not None and (trip.source, trip.samples, trip.ratio) == ("fleet", 100, 0.5)
    assert guards.fleet_trip(check, 100, 50, "d1", 2.0) is None  # already holding


async def test_a_fleet_trip_is_audited_and_held_like_a_local_one(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text(
        "flags:\n  f:\n    routes: [main]\n    rollout: {unified: 100}\n"
        "    guard: {max_mismatch_ratio: 0.1, min_samples: 10, source: fleet}\n"
    )
    watcher = FlagWatcher(path, known_routes=("main",))
    started = watcher.load_initial()
    metrics = Metrics()
    control = ReleaseControl(
        watcher,
        metrics,
        ("main",),
        OpenConnections(metrics, LimitSettings(), 1.0, _never_spawned),
        _never_spawned,
    )
    control.on_reload(ReloadResult("applied", started, None))
    (check,) = control.guards.fleet_checks()
    silent = control.fleet_verdict(check, None, started.digest)
    assert silent is Verdict.INCONCLUSIVE and not control.guards.tripped("f")
    assert control.fleet_verdict(check, Evidence(8, 8), started.digest) is Verdict.INCONCLUSIVE
    assert control.fleet_verdict(check, Evidence(40, 2), started.digest) is Verdict.WITHIN
    assert not control.guards.tripped("f")
    assert control.fleet_verdict(check, Evidence(40, 20), started.digest) is Verdict.TRIP
    record = control.audit[-1]
    assert (record["outcome"], record["source"], record["flag"]) == ("guard_tripped", "fleet", "f")
    assert math.isclose(record["ratio"], 0.5)
    assert control.evaluate(started, "main", "u1", {}).reason.value == "guard"
    # A later "within" changes nothing: only a new file releases the hold.
    control.fleet_verdict(check, Evidence(400, 0), started.digest)
    assert control.guards.tripped("f")


def test_observations_are_counted_per_guarded_flag_for_the_fleet(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text("flags:\n  f:\n    routes: [main]\n    guard: {max_mismatch_ratio: 0.5}\n")
    watcher = FlagWatcher(path, known_routes=("main",))
    metrics = Metrics()
    control = ReleaseControl(
        watcher,
        metrics,
        ("main",),
        OpenConnections(metrics, LimitSettings(), 1.0, _never_spawned),
        _never_spawned,
    )
    control.on_reload(ReloadResult("applied", watcher.load_initial(), None))
    control.observe("f", MISMATCH_RATIO, True)
    control.observe("f", MISMATCH_RATIO, False)
    control.observe("f", MISMATCH_RATIO, False)
    control.observe("unguarded", MISMATCH_RATIO, True)
    metrics.flush()

    def value(flag: str, result: str) -> float | None:
        return metrics.registry.get_sample_value(
            "strangler_guard_observations_total",
            {"flag": flag, "guard": MISMATCH_RATIO, "result": result},
        )

    assert (value("f", "bad"), value("f", "ok")) == (1.0, 2.0)
    assert value("unguarded", "bad") is None  # labels stay bounded by the guarded flags


def _never_spawned(work: Coroutine[Any, Any, None]) -> None:
    work.close()
    raise AssertionError("nothing here drains")
