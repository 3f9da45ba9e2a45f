"""The comparison tells the truth: data is compared by value, a reorder is an order.

Each case pins a verdict a release manager reads; the first ones are the defects of
issue 15 (a wrong tool result was a match, a reordered event was an extra one).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from strangler.proxy.shadow.verdict import Category, Difference, Outcome
from tests.unit.proxy.shadow.playbook import (
    categories,
    completed,
    completed_tool,
    error,
    executing,
    golden,
    play_turn,
    started,
    thinking,
)


def tool_result(tool: str, result: Any, **data: Any) -> dict[str, Any]:
    """A tool_completed with its result and the top-level `results` mirror."""
    event = completed_tool(tool)
    event["data"]["result"] = result
    event["data"].update(data)
    event["results"] = result
    return event


# -- data is compared by value --------------------------------------------------------


def test_a_tool_returning_other_data_is_a_field_mismatch_by_default() -> None:
    legacy = golden()
    legacy[3] = tool_result("cost_query", {"monthly_cost_usd": 4321.5, "rows": 3})
    unified = golden()
    unified[3] = tool_result("cost_query", {"monthly_cost_usd": 1234.0, "rows": 3})
    verdict = play_turn(legacy, unified)
    assert verdict.outcome is Outcome.MISMATCH
    assert verdict.differences == (
        Difference(Category.FIELD, "tool_completed.data.result.monthly_cost_usd"),
        Difference(Category.FIELD, "tool_completed.results.monthly_cost_usd"),
    )


def test_a_tool_result_missing_a_key_is_a_field_mismatch() -> None:
    legacy = golden()
    legacy[3] = tool_result("cost_query", {"monthly_cost_usd": 1.0, "top_services": ["a"]})
    unified = golden()
    unified[3] = tool_result("cost_query", {"monthly_cost_usd": 1.0})
    assert categories(play_turn(legacy, unified).differences) == {Category.FIELD}


def test_a_changed_tool_status_is_a_field_mismatch() -> None:
    legacy = golden()
    legacy[3] = tool_result("cost_query", {"rows": 3}, status="completed")
    unified = golden()
    unified[3] = tool_result("cost_query", {"rows": 3}, status="partial")
    assert play_turn(legacy, unified).differences == (
        Difference(Category.FIELD, "tool_completed.data.status"),
    )


def test_a_changed_error_code_is_a_field_mismatch_but_its_message_is_prose() -> None:
    legacy = [*golden()[:-1], error("tool_failed")]
    unified = [*golden()[:-1], error("rate_limited")]
    unified[-1]["data"]["message"] = "worded otherwise"
    assert play_turn(legacy, unified).differences == (
        Difference(Category.FIELD, "agent_error.data.error"),
    )


def test_the_final_result_data_is_compared_but_its_summary_is_prose() -> None:
    legacy = [*golden()[:-1], completed(result={"summary": "Costs are fine.", "saving": 10})]
    reworded = [*golden()[:-1], completed(result={"summary": "All good.", "saving": 10})]
    assert play_turn(legacy, reworded).outcome is Outcome.MATCH
    changed = [*golden()[:-1], completed(result={"summary": "Costs are fine.", "saving": 99})]
    assert play_turn(legacy, changed).differences == (
        Difference(Category.FIELD, "agent_completed.data.result.saving"),
    )


def test_prose_is_compared_by_presence_only() -> None:
    unified = golden()
    unified[0]["data"]["message"] = "another greeting"
    unified[1]["data"]["reasoning"] = "Something else entirely"
    unified[-1]["data"]["final_response"] = "Here is a different answer"
    assert play_turn(golden(), unified).outcome is Outcome.MATCH


def test_other_thinking_counts_and_steps_match() -> None:
    legacy = [started(), thinking("a"), executing("q"), completed_tool("q"), completed()]
    unified = [started(), thinking("x"), thinking("y"), thinking("z")]
    for step, event in enumerate(unified[1:], start=1):
        event["data"]["step_number"] = step
        event["data"]["progress_percentage"] = 25 * step
    unified += [executing("q"), completed_tool("q"), completed()]
    assert play_turn(legacy, unified).outcome is Outcome.MATCH


# -- a reorder is an order ------------------------------------------------------------

GOLDEN_TWO_THOUGHTS = ("agent_started", "t1", "t2", "tool_executing", "tool_completed")


def _turn(order: tuple[str, ...]) -> list[dict[str, Any]]:
    make = {
        "agent_started": started,
        "t1": lambda: thinking("first thought"),
        "t2": lambda: thinking("second thought"),
        "tool_executing": lambda: executing("cost_query", window="30d"),
        "tool_completed": lambda: completed_tool("cost_query"),
    }
    return [*(make[name]() for name in order), completed()]


SWAPS = [
    (i, j)
    for i, j in itertools.combinations(range(len(GOLDEN_TWO_THOUGHTS)), 2)
    if {GOLDEN_TWO_THOUGHTS[i], GOLDEN_TWO_THOUGHTS[j]} != {"t1", "t2"}
]


@pytest.mark.parametrize(("i", "j"), SWAPS)
def test_any_two_golden_path_events_swapped_is_order(i: int, j: int) -> None:
    order = list(GOLDEN_TWO_THOUGHTS)
    order[i], order[j] = order[j], order[i]
    verdict = play_turn(_turn(GOLDEN_TWO_THOUGHTS), _turn(tuple(order)))
    assert verdict.outcome is Outcome.MISMATCH
    assert categories(verdict.differences) == {Category.ORDER}, verdict.differences


def test_thinking_moved_past_the_tool_is_order_not_extra_event() -> None:
    legacy = _turn(("agent_started", "t1", "t2", "tool_executing", "tool_completed"))
    unified = _turn(("agent_started", "t1", "tool_executing", "t2", "tool_completed"))
    verdict = play_turn(legacy, unified)
    assert verdict.differences == (
        Difference(Category.ORDER, "tool_completed+tool_executing != tool_executing"),
    )


def test_a_missing_thinking_run_is_still_missing_event() -> None:
    legacy = _turn(("agent_started", "t1", "tool_executing", "tool_completed"))
    unified = _turn(("agent_started", "tool_executing", "tool_completed"))
    assert play_turn(legacy, unified).differences == (
        Difference(Category.MISSING_EVENT, "agent_thinking"),
    )


def test_two_parallel_tools_finishing_in_another_order_match() -> None:
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
        executing("cost_query", window="30d"),
        completed_tool("usage_query"),
        completed_tool("cost_query"),
        completed(),
    ]
    assert play_turn(legacy, unified).outcome is Outcome.MATCH


def test_one_tool_called_twice_with_arguments_in_another_order_matches() -> None:
    def calls(first: str, second: str) -> list[dict[str, Any]]:
        return [
            started(),
            thinking(),
            executing("cost_query", window=first),
            executing("cost_query", window=second),
            tool_result("cost_query", {"window": first}),
            tool_result("cost_query", {"window": second}),
            completed(),
        ]

    assert play_turn(calls("7d", "30d"), calls("30d", "7d")).outcome is Outcome.MATCH
