"""The comparison of one turn's events: what differs between legacy's answer and unified's.

Most cases play one turn through a Comparator, so each pins the verdict a client's turn
would get; the properties call `compare_events` directly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import NOT_COMPARED, CompareSettings, FieldRule, RuleName
from strangler.proxy.shadow.compare import TURN_END, compare_events
from strangler.proxy.shadow.verdict import Category, Difference, Outcome, Side
from tests.unit.proxy.shadow.playbook import (
    DEFAULTS,
    canonical_turn,
    categories,
    completed,
    completed_tool,
    error,
    ev,
    executing,
    golden,
    play_turn,
    started,
    thinking,
)

# -- comparison outcomes --------------------------------------------------------------


def test_identical_streams_match() -> None:
    verdict = play_turn(golden(), golden())
    assert verdict.outcome is Outcome.MATCH
    assert verdict.differences == ()
    assert verdict.turn == 0
    assert verdict.request_type == "start_agent"
    assert verdict.primary is Side.LEGACY
    assert not verdict.dropped


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


def test_configured_rule_relaxes_one_field_only() -> None:
    custom = CompareSettings(rules={"agent_completed": {"data.result.ok": "ignore"}})
    unified = [*golden()[:-1], completed(result={"ok": False})]
    assert play_turn(golden(), unified, settings=custom).outcome is Outcome.MATCH
    assert play_turn(golden(), unified).differences == (
        Difference(Category.FIELD, "agent_completed.data.result.ok"),
    )


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


# -- settings -------------------------------------------------------------------------


def test_from_mapping_reads_every_key() -> None:
    loaded = CompareSettings.from_mapping(
        {
            "rules": {
                "tool_completed": {"data.result.cost": {"rule": "numeric", "rel": 0.01}},
                "*": {"data.result.items": "unordered"},
            },
            "timeout_factor": 2,
            "timeout_floor": 0,
            "max_events_per_turn": 50,
        }
    )
    assert {kind: dict(paths) for kind, paths in loaded.rules.items()} == {
        "tool_completed": {"data.result.cost": FieldRule(RuleName.NUMERIC, rel=0.01)},
        "*": {"data.result.items": FieldRule(RuleName.UNORDERED)},
    }
    assert (loaded.timeout_factor, loaded.timeout_floor) == (2.0, 0.0)
    assert loaded.max_events_per_turn == 50


def test_from_mapping_of_nothing_is_the_defaults() -> None:
    assert CompareSettings.from_mapping({}) == CompareSettings()
    assert dict(DEFAULTS.rules) == {}


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
        ({"rules": ["data.status"]}, "rules"),
        ({"rules": {"agent_completed": "data.status"}}, "rules.agent_completed"),
        (
            {"rules": {"agent_completed": {"data..status": "exact"}}},
            "rules.agent_completed.data..status",
        ),
        (
            {"rules": {"agent_completed": {"data.timestamp": "ignore"}}},
            "rules.agent_completed.data.timestamp",
        ),
        ({"rules": {"heartbeat": {"data": "ignore"}}}, "rules.heartbeat"),
        ({"rules": {"*": {"data.x": "fuzzy"}}}, "rules.*.data.x"),
        ({"rules": {"*": {"data.x": {"rule": "exact", "rel": 0.1}}}}, "rules.*.data.x"),
        ({"fields": {"agent_completed": ["data.status"]}}, "fields"),
        ({"free_text": ["data.reasoning"]}, "free_text"),
    ],
)
def test_from_mapping_rejects_bad_values_naming_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=r"^" + re.escape(key) + ": "):
        CompareSettings.from_mapping(data)


def test_from_mapping_rejects_a_non_mapping() -> None:
    with pytest.raises(ValueError, match="mapping"):
        CompareSettings.from_mapping(["rules"])  # type: ignore[arg-type]


def test_settings_copy_the_callers_rules() -> None:
    rules = {"agent_completed": {"data.result": "ignore"}}
    custom = CompareSettings(rules=rules)  # type: ignore[arg-type]
    rules["agent_completed"]["data.other"] = "ignore"
    assert dict(custom.rules["agent_completed"]) == {"data.result": FieldRule(RuleName.IGNORE)}


# -- properties -----------------------------------------------------------------------


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


def test_module_constants_are_as_documented() -> None:
    assert frozenset({"agent_completed", "agent_error"}) == TURN_END
    assert "heartbeat" in NOT_COMPARED
    assert "timestamp" in VOLATILE_FIELDS
