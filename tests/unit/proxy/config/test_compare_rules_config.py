"""shadow.compare.rules in strangler.yaml: read at start-up, every bad rule named by key
and line, and the keys of the previous version refused with the way to write them now."""

from __future__ import annotations

import pytest

from strangler.proxy.config import ConfigError, parse_config
from strangler.proxy.config.compare import FieldRule, RuleName

SOURCE = "strangler.yaml"
SECRET = "a-test-secret-long-enough-for-hs256-0123456789"


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMP_RULES_SECRET", SECRET)


def config(compare: str) -> str:
    return (
        'backends: {legacy: {url: "ws://127.0.0.1:1"}, unified: {url: "ws://127.0.0.1:2"}}\n'
        "routes: [{name: main, path: /ws, dialect: main}]\n"
        "jwt: {secret_env: CMP_RULES_SECRET}\n"
        "shadow:\n"
        "  compare:\n"
        f"{compare}"
    )


def problems(compare: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(compare), SOURCE)
    return str(caught.value).splitlines()


def test_rules_are_read_into_the_shadow_settings() -> None:
    loaded = parse_config(
        config(
            "    rules:\n"
            "      tool_completed:\n"
            "        data.result.cost: {rule: numeric, rel: 0.01, abs: 0.5}\n"
            "        data.result.services: unordered\n"
            "      '*': {data.debug: ignore}\n"
        ),
        SOURCE,
    )
    rules = loaded.shadow.compare.rules
    assert rules["tool_completed"]["data.result.cost"] == FieldRule(RuleName.NUMERIC, 0.01, 0.5)
    assert rules["tool_completed"]["data.result.services"] == FieldRule(RuleName.UNORDERED)
    assert rules["*"]["data.debug"] == FieldRule(RuleName.IGNORE)


def test_every_bad_rule_is_named_by_its_key_and_line() -> None:
    assert problems(
        "    rules:\n"
        "      tool_completed:\n"
        "        data.result.cost: fuzzy\n"
        "        data.result.total: {rule: exact, rel: 0.1}\n"
        "        data.timestamp: ignore\n"
        "        data..x: ignore\n"
        "      heartbeat: {data: ignore}\n"
    ) == [
        f"{SOURCE}:8:9: shadow.compare.rules.tool_completed.data.result.cost: unknown rule "
        "'fuzzy' (one of exact, presence, ignore, numeric, unordered)",
        f"{SOURCE}:9:9: shadow.compare.rules.tool_completed.data.result.total: rel is a "
        "tolerance of the numeric rule, not of exact",
        f"{SOURCE}:10:9: shadow.compare.rules.tool_completed.data.timestamp: "
        "'data.timestamp' names the volatile field 'timestamp'",
        f"{SOURCE}:11:9: shadow.compare.rules.tool_completed.data..x: 'data..x' is not a "
        "dotted field path like 'data.result.items.*.id'",
        f"{SOURCE}:12:7: shadow.compare.rules.heartbeat: heartbeat events are never compared",
    ]


@pytest.mark.parametrize(
    ("key", "value", "advice"),
    [
        ("fields", "{agent_completed: [data.status]}", "{'*': {data.status: exact}}"),
        ("free_text", "[data.reasoning]", "{'*': {data.reasoning: presence}}"),
    ],
)
def test_the_previous_keys_are_refused_with_the_way_to_write_them_now(
    key: str, value: str, advice: str
) -> None:
    [line] = problems(f"    {key}: {value}\n")
    assert f"shadow.compare.{key}: was replaced by 'rules'" in line
    assert advice in line
