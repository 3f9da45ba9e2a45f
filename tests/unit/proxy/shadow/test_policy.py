"""Which rule judges a field: built-in defaults, configured rules, and their precedence."""

from __future__ import annotations

import pytest

from strangler.proxy.config.compare import CompareSettings, FieldRule, RuleName
from strangler.proxy.shadow.policy import rule_for

DEFAULTS = CompareSettings()


@pytest.mark.parametrize(
    ("event_type", "path", "rule"),
    [
        ("tool_completed", "data.result", RuleName.EXACT),
        ("tool_completed", "results.monthly_cost_usd", RuleName.EXACT),
        ("tool_executing", "data.parameters.query", RuleName.EXACT),
        ("tool_completed", "data.status", RuleName.EXACT),
        ("agent_error", "data.error", RuleName.EXACT),
        ("agent_completed", "data.result.saving", RuleName.EXACT),
        ("agent_completed", "data.result.summary", RuleName.PRESENCE),
        ("agent_completed", "data.final_response", RuleName.PRESENCE),
        ("agent_thinking", "data.reasoning", RuleName.PRESENCE),
        ("agent_thinking", "data.step_number", RuleName.IGNORE),
        ("agent_error", "data.message", RuleName.PRESENCE),
        ("tool_completed", "data.message", RuleName.PRESENCE),
        ("tool_completed", "data.execution_time_ms", RuleName.IGNORE),  # volatile
        ("heartbeat", "data", RuleName.IGNORE),  # a control frame
    ],
)
def test_defaults_separate_data_from_prose(event_type: str, path: str, rule: RuleName) -> None:
    assert rule_for(DEFAULTS, event_type, path)[0].name is rule


def test_why_names_the_default_or_the_fallback() -> None:
    assert rule_for(DEFAULTS, "agent_thinking", "data.reasoning")[1].startswith(
        "built-in default agent_thinking data.reasoning"
    )
    assert "compared exactly" in rule_for(DEFAULTS, "tool_completed", "data.result")[1]
    assert "volatile" in rule_for(DEFAULTS, "x", "data.timestamp")[1]


def test_a_rule_governs_its_subtree() -> None:
    settings = CompareSettings(rules={"tool_completed": {"data.result": "ignore"}})
    rule, why = rule_for(settings, "tool_completed", "data.result.items.0.id")
    assert rule == FieldRule(RuleName.IGNORE)
    assert why == "shadow.compare.rules.tool_completed.data.result"


def test_the_longer_path_wins() -> None:
    settings = CompareSettings(
        rules={"*": {"data.result": "ignore"}, "tool_completed": {"data": "presence"}}
    )
    assert rule_for(settings, "tool_completed", "data.result.x")[0].name is RuleName.IGNORE


def test_a_literal_beats_a_wildcard_at_the_first_difference() -> None:
    settings = CompareSettings(
        rules={
            "tool_completed": {
                "data.*.id": "ignore",
                "data.result.*": {"rule": "numeric", "abs": 1},
            }
        }
    )
    rule, why = rule_for(settings, "tool_completed", "data.result.id")
    assert rule == FieldRule(RuleName.NUMERIC, abs=1.0)
    assert why.endswith("data.result.*")


def test_a_named_event_type_beats_the_wildcard_type() -> None:
    settings = CompareSettings(
        rules={"*": {"data.result": "ignore"}, "tool_completed": {"data.result": "unordered"}}
    )
    assert rule_for(settings, "tool_completed", "data.result")[0].name is RuleName.UNORDERED
    assert rule_for(settings, "agent_completed", "data.result")[0].name is RuleName.IGNORE


def test_a_configured_rule_replaces_the_default_it_names() -> None:
    settings = CompareSettings(rules={"agent_thinking": {"data.reasoning": "exact"}})
    rule, why = rule_for(settings, "agent_thinking", "data.reasoning")
    assert rule.name is RuleName.EXACT
    assert why == "shadow.compare.rules.agent_thinking.data.reasoning"


def test_a_configured_wildcard_type_beats_a_default_of_the_same_path() -> None:
    settings = CompareSettings(rules={"*": {"data.message": "exact"}})
    # Same length and literals; the default names no type either: configured wins.
    assert rule_for(settings, "agent_error", "data.message")[0].name is RuleName.EXACT
