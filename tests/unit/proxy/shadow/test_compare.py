"""Playbook tests for the turn comparator: feed both streams in, assert verdicts out."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.shadow.compare import (
    NOT_COMPARED,
    TURN_END,
    TURN_TYPES,
    VOLATILE_FIELDS,
    Category,
    Comparator,
    CompareSettings,
    Difference,
    Outcome,
    Side,
    Verdict,
    compare_events,
)

DEFAULTS = CompareSettings()
_ids = itertools.count()

# -- canonical event builders ---------------------------------------------------------


def ev(kind: str, *, tool: str | None = None, **data: Any) -> dict[str, Any]:
    """A canonical event whose volatile fields differ on every call."""
    n = next(_ids)
    event: dict[str, Any] = {
        "type": kind,
        "run_id": f"run-{n}",
        "user_id": f"user-{n}",
        "agent_name": "supervisor",
        "timestamp": f"2024-09-10T12:00:{n % 60:02d}Z",
        "data": dict(data),
    }
    if tool is not None:
        event["tool_name"] = tool
        event["data"]["tool_name"] = tool
    return event


def started() -> dict[str, Any]:
    return ev("agent_started", status="started", message="Starting")


def thinking(text: str = "Looking at your costs") -> dict[str, Any]:
    return ev("agent_thinking", reasoning=text, step_number=1)


def executing(tool: str, **params: Any) -> dict[str, Any]:
    return ev("tool_executing", tool=tool, parameters=params)


def completed_tool(tool: str) -> dict[str, Any]:
    return ev("tool_completed", tool=tool, result={"rows": 3}, execution_time_ms=next(_ids))


def completed(status: str = "completed", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"status": status, "result": {"ok": True}, "final_response": "Done"}
    data.update(extra)
    return ev("agent_completed", **data)


def error(message: str = "boom") -> dict[str, Any]:
    return ev("agent_error", error=message, message=message)


def golden() -> list[dict[str, Any]]:
    """The golden path: started, thinking, one tool, completed."""
    return [
        started(),
        thinking(),
        executing("cost_query", window="30d"),
        completed_tool("cost_query"),
        completed(),
    ]


def categories(differences: Iterable[Difference]) -> set[Category]:
    return {difference.category for difference in differences}


# -- the playbook ---------------------------------------------------------------------


@dataclass
class Playbook:
    """Drives one Comparator and collects every verdict it returns."""

    primary: Side = Side.LEGACY
    settings: CompareSettings = DEFAULTS
    verdicts: list[Verdict] = field(default_factory=list)
    comparator: Comparator = field(init=False)

    def __post_init__(self) -> None:
        self.comparator = Comparator(self.primary, self.settings)

    def request(self, at: float, kind: str = "start_agent") -> None:
        self.comparator.client_message({"type": kind, "payload": {"user_request": "hi"}}, at)

    def feed(
        self, side: Side, events: Sequence[Mapping[str, Any]], at: float, step: float = 0.1
    ) -> None:
        """Send ``events`` from ``side`` at ``at``, ``at + step``, ..."""
        for position, event in enumerate(events):
            self.verdicts += self.comparator.event(side, event, at + position * step)

    def legacy(self, events: Sequence[Mapping[str, Any]], at: float, step: float = 0.1) -> None:
        self.feed(Side.LEGACY, events, at, step)

    def unified(self, events: Sequence[Mapping[str, Any]], at: float, step: float = 0.1) -> None:
        self.feed(Side.UNIFIED, events, at, step)

    def poll(self, at: float) -> list[Verdict]:
        found = self.comparator.poll(at)
        self.verdicts += found
        return found

    def only(self) -> Verdict:
        assert len(self.verdicts) == 1, self.verdicts
        return self.verdicts[0]


def play_turn(
    legacy: Sequence[Mapping[str, Any]],
    unified: Sequence[Mapping[str, Any]],
    *,
    primary: Side = Side.LEGACY,
    settings: CompareSettings = DEFAULTS,
) -> Verdict:
    """One turn, both sides answering promptly; returns its verdict."""
    book = Playbook(primary, settings)
    book.request(0.0)
    book.legacy(legacy, 0.1)
    book.unified(unified, 0.2)
    return book.only()


# -- comparison outcomes --------------------------------------------------------------


def test_identical_streams_match() -> None:
    verdict = play_turn(golden(), golden())
    assert verdict.outcome is Outcome.MATCH
    assert verdict.differences == ()
    assert verdict.turn == 0
    assert verdict.request_type == "start_agent"
    assert verdict.primary is Side.LEGACY
    assert not verdict.dropped


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


def test_different_thinking_chunking_matches() -> None:
    one_chunk = [started(), thinking("Let me look at it all"), completed()]
    three_chunks = [
        started(),
        thinking("Let me "),
        thinking("look at "),
        thinking("it all"),
        completed(),
    ]
    assert play_turn(one_chunk, three_chunks).outcome is Outcome.MATCH


def test_volatile_fields_differing_still_match() -> None:
    legacy = golden()
    unified = golden()
    for event in unified:
        event["connection_id"] = "main_abc"
        event["data"]["execution_time_ms"] = 99.9
        event["data"]["thread_id"] = "t-other"
        event["data"]["stats"] = {"tokens": 7}
    # builders already gave every event its own run_id, user_id and timestamp
    assert play_turn(legacy, unified).outcome is Outcome.MATCH


def test_missing_tool_completed_is_missing_event() -> None:
    unified = [e for e in golden() if e["type"] != "tool_completed"]
    verdict = play_turn(golden(), unified)
    assert verdict.outcome is Outcome.MISMATCH
    assert verdict.differences == (Difference(Category.MISSING_EVENT, "tool_completed"),)


def test_an_extra_event_is_extra_event() -> None:
    unified = golden()
    unified.insert(1, ev("agent_progress", percent=50))
    verdict = play_turn(golden(), unified)
    assert verdict.differences == (Difference(Category.EXTRA_EVENT, "agent_progress"),)


def test_two_parallel_tools_in_swapped_order_match() -> None:
    legacy = [
        started(),
        thinking(),
        executing("cost_query", window="30d"),
        executing("usage_query", region="eu"),
        completed_tool("cost_query"),
        completed_tool("usage_query"),
        completed(),
    ]
    unified = [
        started(),
        thinking(),
        executing("usage_query", region="eu"),
        completed_tool("usage_query"),
        executing("cost_query", window="30d"),
        completed_tool("cost_query"),
        completed(),
    ]
    assert play_turn(legacy, unified).outcome is Outcome.MATCH


def test_reordered_non_tool_events_is_order() -> None:
    legacy = [started(), thinking(), ev("agent_progress"), completed()]
    unified = [started(), ev("agent_progress"), thinking(), completed()]
    verdict = play_turn(legacy, unified)
    assert categories(verdict.differences) == {Category.ORDER}
    assert verdict.differences[0].detail == "agent_thinking != agent_progress"


def test_tool_events_moved_across_thinking_is_order() -> None:
    legacy = [started(), thinking(), executing("a"), completed_tool("a"), completed()]
    unified = [started(), executing("a"), completed_tool("a"), thinking(), completed()]
    assert categories(play_turn(legacy, unified).differences) == {Category.ORDER}


def test_different_tool_set_is_tool_set() -> None:
    unified = golden()
    unified[2] = executing("usage_query", window="30d")
    unified[3] = completed_tool("usage_query")
    verdict = play_turn(golden(), unified)
    assert verdict.outcome is Outcome.MISMATCH
    assert verdict.differences == (
        Difference(Category.TOOL_SET, "tool cost_query"),
        Difference(Category.TOOL_SET, "tool usage_query"),
    )


def test_same_tool_different_params_is_tool_args() -> None:
    unified = golden()
    unified[2] = executing("cost_query", window="7d")
    verdict = play_turn(golden(), unified)
    assert verdict.differences == (Difference(Category.TOOL_ARGS, "tool cost_query"),)


def test_tool_params_ignore_key_order_and_volatile_keys() -> None:
    legacy = golden()
    legacy[2] = executing("cost_query", window="30d", scope={"a": 1, "b": 2}, thread_id="t1")
    unified = golden()
    unified[2] = executing("cost_query", scope={"b": 2, "a": 1}, window="30d", thread_id="t9")
    assert play_turn(legacy, unified).outcome is Outcome.MATCH


def test_agent_error_instead_of_agent_completed_is_final_status_only() -> None:
    unified = [*golden()[:-1], error()]
    verdict = play_turn(golden(), unified)
    assert verdict.differences == (
        Difference(Category.FINAL_STATUS, "agent_completed != agent_error"),
    )


def test_different_completed_status_is_final_status_with_both_values() -> None:
    unified = [*golden()[:-1], completed("failed")]
    verdict = play_turn(golden(), unified)
    assert verdict.differences == (
        Difference(Category.FINAL_STATUS, "data.status: 'completed' != 'failed'"),
    )


def test_configured_field_difference_names_type_and_path() -> None:
    custom = CompareSettings(fields={"agent_completed": ("data.result.ok",)})
    unified = [*golden()[:-1], completed(result={"ok": False})]
    verdict = play_turn(golden(), unified, settings=custom)
    assert verdict.differences == (Difference(Category.FIELD, "agent_completed.data.result.ok"),)


def test_default_agent_started_status_is_compared_by_value() -> None:
    unified = golden()
    unified[0]["data"]["status"] = "queued"
    verdict = play_turn(golden(), unified)
    assert verdict.differences == (Difference(Category.FIELD, "agent_started.data.status"),)


def test_free_text_present_on_one_side_only_is_field() -> None:
    unified = golden()
    del unified[-1]["data"]["final_response"]
    verdict = play_turn(golden(), unified)
    assert verdict.differences == (
        Difference(Category.FIELD, "agent_completed.data.final_response"),
    )


def test_free_text_with_different_wording_matches() -> None:
    unified = golden()
    unified[1]["data"]["reasoning"] = "Something else entirely"
    unified[-1]["data"]["final_response"] = "Here is a different answer"
    assert play_turn(golden(), unified).outcome is Outcome.MATCH


def test_differences_carry_no_user_text() -> None:
    secret = "card 4111-1111-1111-1111"
    legacy = [started(), thinking(secret), executing("cost_query", q=secret), completed()]
    unified = [started(), executing("cost_query", q="x"), completed("failed", final_response=None)]
    details = " ".join(d.detail for d in compare_events(legacy, unified, DEFAULTS))
    assert details
    assert "4111" not in details


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


def test_control_frames_are_ignored_and_do_not_break_turns() -> None:
    legacy = golden()
    legacy.insert(2, ev("heartbeat"))
    legacy.insert(1, ev("pong"))
    unified = [ev("connection_established"), *golden(), ev("ack")]
    unified.insert(3, ev("system_message"))
    assert play_turn(legacy, unified).outcome is Outcome.MATCH


def test_control_frames_between_thinking_chunks_do_not_split_the_run() -> None:
    legacy = [started(), thinking("a"), ev("heartbeat"), thinking("b"), completed()]
    unified = [started(), thinking("ab"), completed()]
    assert compare_events(legacy, unified, DEFAULTS) == ()


def test_first_event_time_skips_control_frames() -> None:
    book = Playbook()
    book.request(0.0)
    book.legacy([ev("heartbeat")], 0.2)
    book.legacy(golden(), 0.5)
    book.unified(golden(), 0.5)
    assert book.only().legacy_first_event == pytest.approx(0.5)


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


# -- settings -------------------------------------------------------------------------


def test_from_mapping_reads_every_key() -> None:
    loaded = CompareSettings.from_mapping(
        {
            "fields": {"tool_executing": ["tool_name"], "agent_completed": ["data.status"]},
            "free_text": ["data.reasoning"],
            "timeout_factor": 2,
            "timeout_floor": 0,
            "max_events_per_turn": 50,
        }
    )
    assert dict(loaded.fields) == {
        "tool_executing": ("tool_name",),
        "agent_completed": ("data.status",),
    }
    assert loaded.free_text == ("data.reasoning",)
    assert (loaded.timeout_factor, loaded.timeout_floor) == (2.0, 0.0)
    assert loaded.max_events_per_turn == 50


def test_from_mapping_of_nothing_is_the_defaults() -> None:
    assert CompareSettings.from_mapping({}) == CompareSettings()
    assert dict(DEFAULTS.fields) == {
        "agent_started": ("data.status",),
        "agent_completed": ("data.status",),
    }


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"timeout": 3}, "timeout"),
        ({"timeout_factor": 0}, "timeout_factor"),
        ({"timeout_factor": -1.5}, "timeout_factor"),
        ({"timeout_factor": "3"}, "timeout_factor"),
        ({"timeout_factor": True}, "timeout_factor"),
        ({"timeout_factor": float("inf")}, "timeout_factor"),
        ({"timeout_floor": -0.1}, "timeout_floor"),
        ({"timeout_floor": None}, "timeout_floor"),
        ({"max_events_per_turn": 0}, "max_events_per_turn"),
        ({"max_events_per_turn": 10.5}, "max_events_per_turn"),
        ({"fields": ["data.status"]}, "fields"),
        ({"fields": {"agent_completed": "data.status"}}, "fields.agent_completed"),
        ({"fields": {"agent_completed": ["data..status"]}}, "fields.agent_completed[0]"),
        ({"fields": {"agent_completed": [3]}}, "fields.agent_completed[0]"),
        ({"fields": {"agent_completed": ["data.timestamp"]}}, "fields.agent_completed[0]"),
        ({"fields": {"heartbeat": ["data.status"]}}, "fields.heartbeat"),
        ({"free_text": "data.reasoning"}, "free_text"),
        ({"free_text": ["data.reasoning", ""]}, "free_text[1]"),
    ],
)
def test_from_mapping_rejects_bad_values_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=r"^" + key.replace("[", r"\[").replace("]", r"\]") + ": "):
        CompareSettings.from_mapping(data)


def test_from_mapping_rejects_a_non_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        CompareSettings.from_mapping(["fields"])  # type: ignore[arg-type]


def test_settings_copy_the_callers_fields() -> None:
    fields = {"agent_completed": ["data.status"]}
    custom = CompareSettings(fields=fields)  # type: ignore[arg-type]
    fields["agent_completed"].append("data.result")
    assert custom.fields["agent_completed"] == ("data.status",)


# -- properties -----------------------------------------------------------------------

_names = st.sampled_from(["cost_query", "usage_query", "forecast", "budget"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
_params = st.dictionaries(
    st.sampled_from(["window", "region", "limit", "thread_id", "filters"]), _scalars, max_size=3
)
_volatile = st.dictionaries(st.sampled_from(sorted(VOLATILE_FIELDS)), _scalars, max_size=3)


@st.composite
def canonical_turn(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A plausible canonical turn: started, thinking, tools, thinking, an end."""
    events = [started()]
    for _ in range(draw(st.integers(1, 4))):
        events.append(thinking(draw(st.text(max_size=12))))
    tools = draw(st.lists(st.tuples(_names, _params), max_size=3))
    for name, params in tools:
        events.append(executing(name, **params))
    for name, _ in tools:
        events.append(completed_tool(name))
    if draw(st.booleans()):
        events.append(thinking("wrapping up"))
    if draw(st.booleans()):
        events.append(ev("heartbeat"))
    end = draw(st.sampled_from(["completed", "failed", "error"]))
    events.append(error() if end == "error" else completed(end))
    for event in events:
        event.update(draw(_volatile))
    return events


def rechunk(events: Sequence[dict[str, Any]], cuts: Sequence[int]) -> list[dict[str, Any]]:
    """The same turn with each agent_thinking split into several chunks."""
    out: list[dict[str, Any]] = []
    for position, event in enumerate(events):
        if event["type"] != "agent_thinking":
            out.append(event)
            continue
        text = event["data"]["reasoning"]
        cut = cuts[position % len(cuts)] % (len(text) + 1)
        for piece in (text[:cut], text[cut:]):
            out.append({**event, "data": {**event["data"], "reasoning": piece}})
    return out


@settings(max_examples=200, deadline=None)
@given(canonical_turn())
def test_property_a_turn_always_matches_itself(turn: list[dict[str, Any]]) -> None:
    assert compare_events(turn, turn, DEFAULTS) == ()


@settings(max_examples=200, deadline=None)
@given(canonical_turn(), canonical_turn(), st.lists(st.integers(0, 20), min_size=1))
def test_property_rechunking_thinking_changes_nothing(
    turn: list[dict[str, Any]], other: list[dict[str, Any]], cuts: list[int]
) -> None:
    chunked = rechunk(turn, cuts)
    assert compare_events(turn, chunked, DEFAULTS) == ()
    assert compare_events(chunked, other, DEFAULTS) == compare_events(turn, other, DEFAULTS)
    assert compare_events(other, chunked, DEFAULTS) == compare_events(other, turn, DEFAULTS)


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


def test_module_constants_are_as_documented() -> None:
    assert frozenset({"agent_completed", "agent_error"}) == TURN_END
    assert "heartbeat" in NOT_COMPARED
    assert "timestamp" in VOLATILE_FIELDS
