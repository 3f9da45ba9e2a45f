"""Each field rule as a turn's verdict shows it, the noise it reports, and two properties:
a turn always matches itself under any policy, and noise within policy never mismatches."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import CompareSettings, FieldRule, RuleName
from strangler.proxy.shadow import compare
from strangler.proxy.shadow.compare import judge_events
from strangler.proxy.shadow.policy import rule_for
from strangler.proxy.shadow.verdict import Category, Difference, Outcome
from tests.unit.proxy.shadow.playbook import (
    DEFAULTS,
    canonical_turn,
    completed,
    completed_tool,
    golden,
    play_turn,
)


def with_result(result: Any) -> list[dict[str, Any]]:
    turn = golden()
    turn[3] = completed_tool("cost_query")
    turn[3]["data"]["result"] = result
    return turn


def judge(legacy: Any, unified: Any, **rules: dict[str, Any]) -> Any:
    return judge_events(with_result(legacy), with_result(unified), CompareSettings(rules=rules))


# -- one rule at a time ---------------------------------------------------------------


def test_exact_names_the_differing_path_and_the_rule() -> None:
    [difference] = judge({"items": [{"id": 1}]}, {"items": [{"id": 2}]}).differences
    assert difference == Difference(Category.FIELD, "tool_completed.data.result.items.*.id")
    assert (difference.path, difference.rule) == ("data.result.items.*.id", "exact")


def test_exact_tells_a_number_from_a_boolean_and_absent_from_null() -> None:
    assert judge({"a": 1}, {"a": True}).differences
    assert judge({"a": None}, {}).differences
    assert not judge({"a": 1}, {"a": 1.0}).differences  # the same JSON number


def test_presence_tolerates_other_values_but_not_absence() -> None:
    rules = {"tool_completed": {"data.result.note": "presence"}}
    same = judge({"note": "a"}, {"note": "b"}, **rules)
    assert same.differences == ()
    assert same.noise == (("tool_completed", "data.result.note"),)
    assert judge({"note": "a"}, {"note": None}, **rules).differences


def test_ignore_tolerates_anything_and_counts_it_as_noise() -> None:
    rules = {"tool_completed": {"data.result.debug": "ignore"}}
    judged = judge({"debug": {"x": 1}}, {}, **rules)
    assert judged.differences == ()
    assert judged.noise == (("tool_completed", "data.result.debug"),)


@pytest.mark.parametrize(
    ("rule", "a", "b", "tolerated"),
    [
        ({"rule": "numeric", "abs": 0.5}, 10.0, 10.5, True),
        ({"rule": "numeric", "abs": 0.5}, 10.0, 10.6, False),
        ({"rule": "numeric", "rel": 0.1}, 100, 109, True),  # 9 <= 0.1 * 109
        ({"rule": "numeric", "rel": 0.1}, 100, 112, False),  # 12 > 0.1 * 112
        ({"rule": "numeric", "rel": 0.01, "abs": 1}, 0, 1, True),
        ({"rule": "numeric", "rel": 0.5}, 1, "1", False),  # not a number: exact
        ({"rule": "numeric", "rel": 0.5}, True, False, False),  # a boolean is no number
        ("numeric", 3, 3.0, True),
    ],
)
def test_numeric_is_diffys_noise_rule(rule: Any, a: Any, b: Any, tolerated: bool) -> None:
    judged = judge({"cost": a}, {"cost": b}, tool_completed={"data.result.cost": rule})
    assert (judged.differences == ()) is tolerated


def test_numeric_on_a_container_applies_to_every_number_inside() -> None:
    rules = {"tool_completed": {"data.result": {"rule": "numeric", "rel": 0.05}}}
    assert not judge({"a": 100, "b": [1.0]}, {"a": 101, "b": [1.01]}, **rules).differences
    assert judge({"a": 100, "name": "x"}, {"a": 100, "name": "y"}, **rules).differences


def test_unordered_compares_lists_as_multisets() -> None:
    rules = {"tool_completed": {"data.result.services": "unordered"}}
    swapped = judge({"services": ["a", {"b": 1}]}, {"services": [{"b": 1}, "a"]}, **rules)
    assert swapped.differences == ()
    assert swapped.noise == (("tool_completed", "data.result.services"),)
    assert judge({"services": ["a", "a"]}, {"services": ["a"]}, **rules).differences
    assert judge({"services": ["a", "b"]}, {"services": ["b", "a"]}).differences  # exact


def test_a_deeper_rule_inside_an_ignored_field_still_counts() -> None:
    rules = {"tool_completed": {"data.result": "ignore", "data.result.total": "exact"}}
    assert not judge({"total": 1, "other": 1}, {"total": 1, "other": 2}, **rules).differences
    assert judge({"total": 1, "other": 1}, {"total": 2, "other": 1}, **rules).differences


def test_tool_parameters_follow_the_policy_and_stay_tool_args() -> None:
    legacy, unified = golden(), golden()
    unified[2]["data"]["parameters"]["window"] = "7d"
    assert judge_events(legacy, unified, DEFAULTS).differences == (
        Difference(Category.TOOL_ARGS, "tool cost_query"),
    )
    relaxed = CompareSettings(rules={"tool_executing": {"data.parameters.window": "ignore"}})
    assert judge_events(legacy, unified, relaxed).differences == ()


def test_the_final_status_follows_the_policy_too() -> None:
    unified = [*golden()[:-1], completed("done")]
    assert play_turn(golden(), unified).outcome is Outcome.MISMATCH
    relaxed = CompareSettings(rules={"agent_completed": {"data.status": "ignore"}})
    assert play_turn(golden(), unified, settings=relaxed).outcome is Outcome.MATCH


def test_paths_keep_no_key_that_may_be_data() -> None:
    [difference] = judge({"user-42@example.com": 1}, {"user-42@example.com": 2}).differences
    assert "42" not in difference.detail and "example" not in difference.detail
    assert difference.detail == "tool_completed.data.result.*"


def test_the_default_policy_reports_prose_as_noise() -> None:
    unified = golden()
    unified[1]["data"]["reasoning"] = "other words"
    verdict = play_turn(golden(), unified)
    assert verdict.outcome is Outcome.MATCH
    assert verdict.noise == (("agent_thinking", "data.reasoning"),)


# -- properties -----------------------------------------------------------------------

_TYPES = st.sampled_from(
    ["*", "agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
)
_PATHS = st.sampled_from(
    [
        "data",
        "data.status",
        "data.result",
        "data.result.rows",
        "data.result.ok",
        "data.parameters",
        "data.parameters.*",
        "data.reasoning",
        "data.step_number",
        "data.*",
        "agent_name",
        "data.final_response",
    ]
)
_TOLERANCE = st.floats(min_value=0, max_value=10, allow_nan=False, allow_infinity=False)
_RULES = st.one_of(
    st.sampled_from(["exact", "presence", "ignore", "unordered", "numeric"]),
    st.builds(
        lambda rel, abs_: {"rule": "numeric", "rel": rel, "abs": abs_}, _TOLERANCE, _TOLERANCE
    ),
)
policies = st.dictionaries(_TYPES, st.dictionaries(_PATHS, _RULES, max_size=4), max_size=4).map(
    lambda rules: CompareSettings(rules=rules)
)


@settings(max_examples=200, deadline=None)
@given(canonical_turn(), policies)
def test_property_identical_turns_never_mismatch_under_any_policy(
    turn: list[dict[str, Any]], policy: CompareSettings
) -> None:
    judged = judge_events(turn, copy.deepcopy(turn), policy)
    assert judged.differences == ()
    assert judged.noise == ()


def _tolerated_change(rule: FieldRule) -> Callable[[Any], Any] | None:
    """A change of a leaf that ``rule`` tolerates (the same for equal values), if any."""
    if rule.name is RuleName.IGNORE:
        return lambda value: ["changed", value]
    if rule.name is RuleName.PRESENCE:
        return lambda value: None if value is None else f"other {value!r}"
    if rule.name is RuleName.NUMERIC:
        half = rule.abs / 2

        def nudge(value: Any) -> Any:
            if type(value) not in (int, float):
                return value
            return value + half + rule.rel * abs(value) / 2

        return nudge
    return None


def _perturb(event: dict[str, Any], policy: CompareSettings) -> None:
    kind = event["type"]

    def visit(node: dict[str, Any], path: tuple[str, ...]) -> None:
        for key, value in list(node.items()):
            where = (*path, key)
            if where in (("type",), ("tool_name",), ("data", "tool_name")):
                continue  # the turn's structure, not a field
            if isinstance(value, dict):
                visit(value, where)
                continue
            rule, _ = rule_for(policy, kind, ".".join(where))
            change = _tolerated_change(rule)
            if key in VOLATILE_FIELDS:
                node[key] = "volatile changed"
            elif change is not None and not isinstance(value, list):
                node[key] = change(value)

    visit(event, ())


@settings(max_examples=300, deadline=None)
@given(canonical_turn(), policies)
def test_property_noise_within_policy_never_mismatches(
    turn: list[dict[str, Any]], policy: CompareSettings
) -> None:
    noisy = copy.deepcopy(turn)
    for event in noisy:
        _perturb(event, policy)
    assert noisy != turn  # the defaults alone make the prose differ
    assert judge_events(turn, noisy, policy).differences == ()


_LEAVES = st.sampled_from([0, 1, 1.0, 0.0, True, False, None, "", "1", "a", 2**70, -1])
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "run_id", "n"]), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, _VALUES, policies)
def test_property_the_same_json_shortcut_judges_as_the_full_walk(
    legacy: Any, unified: Any, policy: CompareSettings
) -> None:
    """Skipping a field that is the same JSON on both sides never changes a judgement:
    values Python calls equal but JSON does not (``true`` and ``1``) are still walked."""
    for a, b in ((legacy, unified), (legacy, copy.deepcopy(legacy))):
        fast = judge_events(with_result(a), with_result(b), policy)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(compare, "_same_json", lambda a, b: False)  # every field walked
            full = judge_events(with_result(a), with_result(b), policy)
        assert fast == full
