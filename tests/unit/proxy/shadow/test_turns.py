"""Playbook tests for the turn comparator: feed both streams in, assert verdicts out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.config.compare import CompareSettings
from strangler.proxy.shadow.turns import TURN_TYPES
from strangler.proxy.shadow.verdict import Category, Difference, Outcome, Side
from tests.unit.proxy.shadow.playbook import (
    Playbook,
    canonical_turn,
    completed,
    ev,
    golden,
    started,
    thinking,
)

# -- what a verdict reports -----------------------------------------------------------


def test_verdict_reports_durations_and_first_event_times_per_side() -> None:
    book = Playbook()
    book.request(10.0)
    book.legacy(golden(), 10.5, step=0.5)  # ends at 12.5
    book.unified(golden(), 11.0, step=0.25)  # ends at 12.0
    verdict = book.only()
    assert verdict.legacy_first_event == pytest.approx(0.5)
    assert verdict.unified_first_event == pytest.approx(1.0)
    assert verdict.legacy_duration == pytest.approx(2.5)
    assert verdict.unified_duration == pytest.approx(2.0)


# -- timing: shadow_timeout -----------------------------------------------------------


def test_slow_secondary_times_out_after_factor_times_primary_duration() -> None:
    book = Playbook(settings=CompareSettings(timeout_factor=3.0, timeout_floor=1.0))
    book.request(0.0)
    book.legacy(golden(), 0.0, step=0.5)  # primary ends at 2.0: deadline 2.0 + 3 x 2.0 = 8.0
    book.unified(golden()[:2], 0.1)
    assert book.poll(7.9) == []
    [verdict] = book.poll(8.1)
    assert verdict.outcome is Outcome.SHADOW_TIMEOUT
    assert verdict.legacy_duration == pytest.approx(2.0)
    assert verdict.unified_duration is None
    assert verdict.unified_first_event == pytest.approx(0.1)


def test_short_turn_timeout_uses_the_floor() -> None:
    book = Playbook(settings=CompareSettings(timeout_factor=3.0, timeout_floor=5.0))
    book.request(0.0)
    book.legacy(golden(), 0.0, step=0.1)  # ends at 0.4: 3 x 0.4 < floor, deadline 5.4
    assert book.poll(5.3) == []
    assert [v.outcome for v in book.poll(5.5)] == [Outcome.SHADOW_TIMEOUT]


def test_secondary_finishing_after_deadline_is_timeout_even_without_poll() -> None:
    book = Playbook(settings=CompareSettings(timeout_factor=1.0, timeout_floor=0.0))
    book.request(0.0)
    book.legacy(golden(), 0.0, step=0.25)  # ends at 1.0: deadline 2.0
    book.unified(golden(), 1.5, step=0.25)  # ends at 2.5
    assert [v.outcome for v in book.verdicts] == [Outcome.SHADOW_TIMEOUT]


def test_secondary_finishing_before_deadline_is_compared() -> None:
    book = Playbook(settings=CompareSettings(timeout_factor=1.0, timeout_floor=0.0))
    book.request(0.0)
    book.legacy(golden(), 0.0, step=0.25)  # deadline 2.0
    assert book.poll(1.9) == []
    book.unified(golden(), 0.9, step=0.25)  # ends at 1.9
    assert [v.outcome for v in book.verdicts] == [Outcome.MATCH]


def test_late_events_of_a_timed_out_turn_do_not_leak_into_the_next_turn() -> None:
    book = Playbook(settings=CompareSettings(timeout_factor=1.0, timeout_floor=1.0))
    book.request(0.0)
    book.legacy(golden(), 0.0)
    book.poll(10.0)  # turn 0: unified never answered in time
    book.request(11.0)
    book.legacy(golden(), 11.0)
    book.unified(golden(), 11.5)  # the late end of turn 0
    book.unified(golden(), 12.0)  # turn 1
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.SHADOW_TIMEOUT),
        (1, Outcome.MATCH),
    ]


# -- secondary failures ---------------------------------------------------------------


def test_secondary_failure_mid_turn_errors_that_turn_and_later_turns() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy(golden()[:2], 0.1)
    book.unified(golden()[:2], 0.1)
    failed = book.comparator.secondary_failed("connection reset", 0.5)
    assert [(v.turn, v.outcome) for v in failed] == [(0, Outcome.SHADOW_ERROR)]
    assert book.comparator.open_turns == 0
    book.legacy(golden()[2:], 0.6)  # the rest of turn 0 is discarded
    book.request(2.0)
    book.legacy(golden()[:2], 2.1)
    assert book.verdicts == []  # turn 1 waits for its primary end
    book.unified(golden(), 2.2)  # a dead secondary is not listened to
    book.legacy(golden()[2:], 2.5)
    [later] = book.verdicts
    assert (later.turn, later.outcome) == (1, Outcome.SHADOW_ERROR)
    assert later.legacy_duration == pytest.approx(0.7)  # last of three events at 2.7
    assert later.unified_duration is None


def test_secondary_failure_still_compares_turns_the_secondary_already_finished() -> None:
    book = Playbook()
    book.request(0.0)
    book.unified(golden(), 0.1)
    book.request(0.2)
    assert book.comparator.secondary_failed("closed 1011", 1.0) == []
    book.legacy(golden(), 1.1)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.MATCH),
        (1, Outcome.SHADOW_ERROR),
    ]


def test_failed_comparator_keeps_no_secondary_events() -> None:
    book = Playbook()
    book.request(0.0)
    book.unified(golden()[:3], 0.1)
    book.comparator.secondary_failed("refused", 0.5)
    book.request(1.0)
    book.unified(golden()[:3], 1.1)
    assert all(not turn.unified.events for turn in book.comparator._turns)


def test_dropped_secondary_data_is_shadow_error_with_dropped_flag() -> None:
    book = Playbook()
    book.request(0.0)
    book.unified(golden()[:2], 0.1)
    book.comparator.secondary_dropped(0.2)
    book.unified(golden()[2:], 0.3)
    book.legacy(golden(), 0.4)
    verdict = book.only()
    assert verdict.outcome is Outcome.SHADOW_ERROR
    assert verdict.dropped
    assert verdict.differences == ()


def test_drop_affects_only_turns_the_secondary_had_not_finished() -> None:
    book = Playbook()
    book.request(0.0)
    book.unified(golden(), 0.1)
    book.request(1.0)
    book.comparator.secondary_dropped(1.1)
    book.legacy(golden(), 1.2)
    book.legacy(golden(), 2.0)
    assert [(v.outcome, v.dropped) for v in book.verdicts] == [
        (Outcome.MATCH, False),
        (Outcome.SHADOW_ERROR, True),
    ]


# -- the client leaving ---------------------------------------------------------------


def test_client_leaving_mid_turn_is_primary_incomplete() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy(golden()[:2], 0.1)
    book.unified(golden(), 0.1)
    [verdict] = book.comparator.primary_closed(1.0)
    assert verdict.outcome is Outcome.PRIMARY_INCOMPLETE
    assert verdict.legacy_duration is None
    assert book.comparator.open_turns == 0


def test_client_leaving_before_secondary_finished_is_shadow_timeout() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy(golden(), 0.1)
    book.request(1.0)
    closed = book.comparator.primary_closed(1.5)
    assert [(v.turn, v.outcome) for v in closed] == [
        (0, Outcome.SHADOW_TIMEOUT),
        (1, Outcome.PRIMARY_INCOMPLETE),
    ]


def test_closed_comparator_ignores_everything_after() -> None:
    book = Playbook()
    book.request(0.0)
    book.comparator.primary_closed(0.1)
    book.request(0.2)
    book.legacy(golden(), 0.3)
    assert book.poll(100.0) == []
    assert book.comparator.primary_closed(101.0) == []
    assert book.comparator.open_turns == 0


# -- alignment ------------------------------------------------------------------------


def test_turns_interleaved_across_sides_are_reported_in_order() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy(golden(), 0.1)  # primary finishes turn 0
    book.unified(golden()[:2], 0.2)  # secondary still on turn 0
    book.request(1.0)
    book.legacy([started(), thinking(), completed()], 1.1)  # primary finishes turn 1
    assert book.verdicts == []
    assert book.comparator.open_turns == 2
    book.unified(golden()[2:], 1.5)  # secondary finishes turn 0
    assert [(v.turn, v.outcome) for v in book.verdicts] == [(0, Outcome.MATCH)]
    book.unified([started(), thinking("other"), completed()], 1.8)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.MATCH),
        (1, Outcome.MATCH),
    ]
    assert book.comparator.open_turns == 0


def test_a_later_turn_waits_for_an_earlier_one() -> None:
    book = Playbook()
    book.request(0.0)
    book.request(0.1, "user_message")
    book.legacy(golden(), 0.2)
    book.legacy(golden(), 1.0)
    book.unified(golden(), 0.3)
    assert [(v.turn, v.request_type) for v in book.verdicts] == [(0, "start_agent")]
    book.unified(golden(), 1.2)
    assert [(v.turn, v.request_type) for v in book.verdicts] == [
        (0, "start_agent"),
        (1, "user_message"),
    ]


def test_legacy_is_the_reference_in_live_mode_too() -> None:
    unified = [e for e in golden() if e["type"] != "tool_completed"]
    book = Playbook(primary=Side.UNIFIED)
    book.request(0.0)
    book.unified(unified, 0.1)  # unified answers the client
    book.legacy(golden(), 0.2)
    verdict = book.only()
    assert verdict.primary is Side.UNIFIED
    assert verdict.differences == (Difference(Category.MISSING_EVENT, "tool_completed"),)


def test_live_mode_times_out_on_slow_legacy() -> None:
    book = Playbook(primary=Side.UNIFIED, settings=CompareSettings(timeout_floor=1.0))
    book.request(0.0)
    book.unified(golden(), 0.0, step=0.1)
    book.legacy(golden()[:1], 0.1)
    assert [(v.outcome, v.legacy_duration) for v in book.poll(2.0)] == [
        (Outcome.SHADOW_TIMEOUT, None)
    ]


def test_events_before_any_request_are_ignored() -> None:
    book = Playbook()
    book.legacy(golden(), 0.0)
    book.unified([started(), completed("failed")], 0.0)
    assert book.verdicts == []
    book.request(1.0)
    book.legacy(golden(), 1.1)
    book.unified(golden(), 1.2)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [(0, Outcome.MATCH)]


def test_non_request_client_messages_do_not_start_turns() -> None:
    book = Playbook()
    for kind in ("ping", "stop_agent", "switch_thread", "heartbeat_ack"):
        book.request(0.0, kind)
    assert book.comparator.open_turns == 0
    for kind in sorted(TURN_TYPES):
        book.request(0.0, kind)
    assert book.comparator.open_turns == len(TURN_TYPES)


def test_first_event_time_skips_control_frames() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy([ev("heartbeat")], 0.2)
    book.legacy(golden(), 0.5)
    book.unified(golden(), 0.5)
    assert book.only().legacy_first_event == pytest.approx(0.5)


def _three_turns(book: Playbook, dup_side: Side, dup_before_next_request: bool) -> None:
    """Three turns; ``dup_side`` repeats the end of turn 0 once."""
    turn0 = golden()
    duplicated = [*turn0, completed()]
    other = Side.UNIFIED if dup_side is Side.LEGACY else Side.LEGACY
    book.request(0.0)
    book.feed(other, turn0, 0.1)
    if dup_before_next_request:
        book.feed(dup_side, duplicated, 0.2)
        book.request(1.0)
    else:
        book.feed(dup_side, turn0, 0.2)
        book.request(1.0)
        book.feed(dup_side, duplicated[-1:], 1.05)
    for n in (1, 2):
        if n == 2:
            book.request(float(n))
        book.legacy(golden(), n + 0.1)
        book.unified(golden(), n + 0.2)


@pytest.mark.parametrize("primary", list(Side))
@pytest.mark.parametrize("dup_side", list(Side))
@pytest.mark.parametrize("dup_before_next_request", [True, False])
def test_a_duplicated_agent_completed_never_shifts_later_turns(
    primary: Side, dup_side: Side, dup_before_next_request: bool
) -> None:
    book = Playbook(primary=primary)
    _three_turns(book, dup_side, dup_before_next_request)
    outcomes = [(v.turn, v.outcome) for v in book.verdicts]
    assert outcomes[1:] == [(1, Outcome.MATCH), (2, Outcome.MATCH)], book.verdicts


def test_a_duplicated_end_counts_in_its_own_turn_while_that_turn_waits() -> None:
    # Shadow: the unified secondary repeats its end before legacy has finished.
    book = Playbook(primary=Side.LEGACY)
    book.request(0.0)
    book.unified([*golden(), completed()], 0.1)
    book.legacy(golden(), 0.5)
    book.request(1.0)
    book.legacy(golden(), 1.1)
    book.unified(golden(), 1.2)
    first, second = book.verdicts
    assert first.differences == (Difference(Category.EXTRA_EVENT, "agent_completed"),)
    assert second.outcome is Outcome.MATCH


def test_a_duplicated_end_on_legacy_is_missing_on_unified() -> None:
    # Live: legacy is the compared copy and repeats its end while unified still works.
    book = Playbook(primary=Side.UNIFIED)
    book.request(0.0)
    book.legacy([*golden(), completed()], 0.1)
    book.unified(golden(), 0.5)
    assert book.only().differences == (Difference(Category.MISSING_EVENT, "agent_completed"),)


def test_an_end_with_no_turn_open_ends_nothing() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy([completed()], 0.1)  # a stray end: no turn open on legacy
    assert book.comparator.open_turns == 1
    book.legacy(golden(), 0.2)
    book.unified(golden(), 0.3)
    assert [v.outcome for v in book.verdicts] == [Outcome.MATCH]


# -- bounds ---------------------------------------------------------------------------


def test_turn_over_max_events_is_cut_and_counted_as_extra_event() -> None:
    book = Playbook(settings=CompareSettings(max_events_per_turn=5))
    book.request(0.0)
    long_turn = [started(), *(ev("agent_progress") for _ in range(10)), completed()]
    book.unified(long_turn, 0.1, step=0.01)
    assert len(book.comparator._turns[0].unified.events) == 5
    book.legacy(golden(), 0.2)
    verdict = book.only()
    assert verdict.outcome is Outcome.MISMATCH
    assert verdict.differences == (
        Difference(Category.EXTRA_EVENT, "more than 5 events (unified)"),
    )
    assert verdict.unified_duration == pytest.approx(0.21)


def test_verdicts_are_not_kept_after_being_returned() -> None:
    book = Playbook()
    for n in range(50):
        book.request(float(n))
        book.legacy(golden(), n + 0.1)
        book.unified(golden(), n + 0.2)
    assert len(book.verdicts) == 50
    assert [v.turn for v in book.verdicts] == list(range(50))
    assert book.comparator.open_turns == 0
    assert not book.comparator._turns


# -- properties -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(canonical_turn(), st.randoms(use_true_random=False))
def test_property_comparator_matches_a_turn_replayed_on_both_sides(
    turn: list[dict[str, Any]], rnd: Any
) -> None:
    book = Playbook(primary=rnd.choice(list(Side)))
    book.request(0.0)
    book.legacy(turn, rnd.random())
    book.unified(turn, rnd.random())
    assert [v.outcome for v in book.verdicts] == [Outcome.MATCH]


# -- a side that begins its next turn without ending this one -------------------------


@pytest.mark.parametrize("primary", list(Side))
def test_a_hung_secondary_turn_times_out_alone_and_later_turns_still_match(
    primary: Side,
) -> None:
    book = Playbook(primary=primary)
    secondary = Side.UNIFIED if primary is Side.LEGACY else Side.LEGACY
    for n in range(4):
        book.request(float(n))
        book.feed(primary, golden(), n + 0.1)
        # Turn 1: the secondary starts, then says nothing more of it.
        book.feed(secondary, [started()] if n == 1 else golden(), n + 0.2)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.MATCH),
        (1, Outcome.SHADOW_TIMEOUT),
        (2, Outcome.MATCH),
        (3, Outcome.MATCH),
    ]


def test_a_primary_that_abandons_a_turn_is_incomplete_there_only() -> None:
    book = Playbook(primary=Side.LEGACY)
    book.request(0.0)
    book.legacy([started(), thinking()], 0.1)
    book.unified(golden(), 0.2)
    book.request(1.0)
    book.legacy(golden(), 1.1)
    book.unified(golden(), 1.2)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.PRIMARY_INCOMPLETE),
        (1, Outcome.MATCH),
    ]


def test_a_second_agent_started_in_the_last_turn_is_an_extra_event_not_a_new_turn() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy(golden(), 0.1)
    book.unified([started(), *golden()], 0.2)
    [verdict] = book.verdicts
    assert verdict.outcome is Outcome.MISMATCH
    assert Category.EXTRA_EVENT in {d.category for d in verdict.differences}
