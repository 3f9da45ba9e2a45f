"""docs/asyncapi.yaml: a valid AsyncAPI 3 document whose schemas say what PROTOCOL.md says."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp.test_utils import make_mocked_request

from strangler.legacy_adapters.canonical import ALIASES, TURN_TYPES
from strangler.proxy.commands.contract import (
    Contract,
    all_schemas,
    contract,
    package_text,
    turn_order_problem,
)
from strangler.proxy.relay.passthrough import forwarded_for
from strangler.proxy.serving.backends import AUTH_HEADER, FORWARDED_HEADERS, ROUTE_HEADER
from strangler.proxy.shadow.tee import SHADOW_HEADER

REPO = Path(__file__).resolve().parents[4]
DOCUMENT = REPO / "docs" / "asyncapi.yaml"
PROTOCOL = REPO / "docs" / "PROTOCOL.md"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return loaded


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_is_asyncapi_3(document: dict[str, Any]) -> None:
    assert str(document["asyncapi"]).startswith("3.")
    assert set(document["channels"]) == {"router"}
    assert document["channels"]["router"]["bindings"]["ws"]["method"] == "GET"


def test_the_packaged_copy_is_the_document() -> None:
    # Installed, the command reads the copy beside its code; docs/ is the one people edit.
    assert package_text() == DOCUMENT.read_text(), (
        "cp docs/asyncapi.yaml proxy/commands/asyncapi.yaml"
    )


def test_every_message_has_a_payload_schema(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    assert len(messages) >= 27
    for name, message in messages.items():
        payload = _resolve(document, message["payload"]["$ref"])
        assert payload.get("type") == "object" or "allOf" in payload, name


def test_every_schema_is_a_valid_json_schema(document: dict[str, Any]) -> None:
    checked = 0
    for where, schema in all_schemas(document):
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            pytest.fail(f"{where}: {exc.message}")
        checked += 1
    assert checked > 40


def test_a_schema_with_a_wrong_keyword_value_is_caught(document: dict[str, Any]) -> None:
    # check_schema is not a no-op: the same check refuses a broken schema.
    broken = dict(document["components"]["schemas"]["Ack"], required="type")
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft7Validator.check_schema(broken)


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        _resolve(document, ref)


def test_operations_name_only_the_channel_s_messages(document: dict[str, Any]) -> None:
    on_channel = {
        f"#/channels/router/messages/{name}" for name in document["channels"]["router"]["messages"]
    }
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        assert operation["channel"] == {"$ref": "#/channels/router"}
        for ref in [*operation["messages"], *operation.get("reply", {}).get("messages", [])]:
            assert ref["$ref"] in on_channel, (name, ref)


def test_every_message_has_one_direction_and_the_channel_carries_it(
    document: dict[str, Any],
) -> None:
    loaded = Contract(document)
    names = set(document["components"]["messages"])
    assert set(loaded.messages) == names
    assert set(document["channels"]["router"]["messages"]) == names
    client = {s.name for s in loaded.specs("client")}
    assert "startAgent" in client and "otherMessage" in client
    assert "connectionEstablished" not in client


def test_every_example_is_valid_for_its_own_message(document: dict[str, Any]) -> None:
    loaded = Contract(document)
    for name, message in document["components"]["messages"].items():
        examples = message.get("examples", [])
        assert examples, name
        for example in examples:
            frame = example["payload"]
            if loaded.messages[name].direction == "client":
                assert loaded.client_shape(frame) == name, (name, loaded.client_problem(frame))
            else:
                assert loaded.server_problem(frame) is None, name


def _section(text: str, number: int) -> str:
    start = text.index(f"\n## {number}.")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _json_lines(section: str) -> list[Any]:
    """The frames of a section's ```json blocks (one frame, possibly over several lines)."""
    frames = []
    for block in re.findall(r"```json\n(.*?)```", section, re.S):
        buffer = ""
        for line in block.splitlines():
            buffer += line
            try:
                frames.append(json.loads(buffer))
            except ValueError:
                continue
            buffer = ""
        assert not buffer.strip(), buffer
    return frames


def test_protocol_md_client_examples_are_accepted_shapes() -> None:
    frames = _json_lines(_section(PROTOCOL.read_text(), 2))
    assert len(frames) >= 4
    for frame in frames:
        assert contract().client_problem(frame) is None, frame


def test_protocol_md_server_examples_are_valid_events() -> None:
    frames = _json_lines(_section(PROTOCOL.read_text(), 3))
    kinds = {frame["type"] for frame in frames}
    assert kinds >= {"connection_established", "agent_started", "tool_completed", "ack"}
    for frame in frames:
        assert contract().server_problem(frame) is None, frame


def test_the_ws_binding_lists_every_header_the_proxy_sends(document: dict[str, Any]) -> None:
    listed = set(document["channels"]["router"]["bindings"]["ws"]["headers"]["properties"])
    sent = {*FORWARDED_HEADERS, ROUTE_HEADER, AUTH_HEADER, SHADOW_HEADER}
    sent |= set(forwarded_for(make_mocked_request("GET", "/ws")))
    assert sent <= listed, sent - listed


def test_the_normalisation_is_the_adapters_own(document: dict[str, Any]) -> None:
    channel = document["channels"]["router"]
    assert channel["x-normalisation"]["aliases"] == dict(ALIASES)
    assert set(channel["x-answers"]["turn_types"]) == TURN_TYPES


GOOD_TOOL_COMPLETED: dict[str, Any] = {
    "type": "tool_completed",
    "run_id": "r1",
    "user_id": "u1",
    "agent_name": "supervisor",
    "timestamp": "2024-09-10T20:26:40.4+00:00",
    "tool_name": "cost_query",
    "results": {"n": 1},
    "data": {
        "tool_name": "cost_query",
        "result": {"n": 1},
        "execution_time_ms": 12.3,
        "status": "completed",
        "message": "cost_query completed",
    },
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"results": None, "drop": "results"},
            "tool_completed does not match the schema at the top level: "
            "'results' is a required property",
        ),
        ({"results": {"n": 2}}, "tool_completed: top-level results differs from data.result"),
        ({"tool_name": "other"}, "tool_completed: top-level tool_name differs from data.tool_name"),
        (
            {"timestamp": "2024-09-10T22:26:40+02:00"},
            "tool_completed does not match the schema at timestamp: "
            "'2024-09-10T22:26:40+02:00' does not match "
            "'^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]{1,9})?(Z|\\\\+00:00)$'",
        ),
        (
            {"run_id": 7},
            "tool_completed does not match the schema at run_id: 7 is not of type 'string'",
        ),
    ],
)
def test_a_turn_event_breaking_the_contract_is_named(change: dict[str, Any], problem: str) -> None:
    frame = dict(GOOD_TOOL_COMPLETED)
    drop = change.pop("drop", None)
    frame.update(change)
    if drop:
        del frame[drop]
    assert contract().server_problem(GOOD_TOOL_COMPLETED) is None
    assert contract().server_problem(frame) == problem


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "connection_established", "data": {"mode": "legacy"}, "timestamp": 1.0},
        {"type": "pong", "data": {}},
        {"type": "ack", "data": {"timestamp": 1.0}},
        {"type": "error", "data": {"error_code": "invalid_json", "message": "x"}, "timestamp": 1},
        {"type": "error_message", "error_code": "AUTH_FAILED", "error_message": "x"},
        {"type": "system_message", "data": {}},
        {"type": "agent_started", "data": {}},
    ],
)
def test_server_frames_the_contract_refuses(frame: dict[str, Any]) -> None:
    assert contract().server_problem(frame) is not None


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "start_agent", "payload": "Optimize"},
        {"type": "user_message", "payload": {"references": []}},
        {"type": "ping", "timestamp": "now"},
        {"type": "agent_request"},
        {"payload": {}},
    ],
)
def test_client_frames_the_contract_refuses(frame: dict[str, Any]) -> None:
    assert contract().client_problem(frame) is not None


def _turn(*kinds: str, run_ids: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    ids = run_ids or ("r1",) * len(kinds)
    return [{"type": kind, "run_id": run_id} for kind, run_id in zip(kinds, ids, strict=True)]


@pytest.mark.parametrize(
    ("kinds", "problem"),
    [
        (("agent_started", "agent_thinking", "agent_completed"), None),
        (
            (
                "agent_started",
                "agent_thinking",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "tool_executing",
                "tool_completed",
                "agent_error",
            ),
            None,
        ),
        (
            ("agent_thinking", "agent_completed"),
            "the turn starts with agent_thinking, expected agent_started",
        ),
        (
            ("agent_started", "agent_completed"),
            "agent_completed right after agent_started, expected agent_thinking",
        ),
        (
            (
                "agent_started",
                "agent_thinking",
                "tool_completed",
                "tool_executing",
                "agent_completed",
            ),
            "tool_completed without a tool_executing before it",
        ),
        (
            ("agent_started", "agent_thinking", "tool_executing", "agent_completed"),
            "tool_executing followed by agent_completed, expected tool_completed",
        ),
        (
            (
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "agent_thinking",
                "agent_completed",
            ),
            "agent_thinking where a tool pair or the end of the turn was expected",
        ),
        (
            ("agent_started", "agent_thinking", "tool_executing"),
            "the turn ends with tool_executing, expected agent_completed or agent_error",
        ),
    ],
)
def test_turn_order(kinds: tuple[str, ...], problem: str | None) -> None:
    assert turn_order_problem(_turn(*kinds)) == problem


def test_a_turn_with_two_run_ids_is_not_one_turn() -> None:
    events = _turn("agent_started", "agent_thinking", "agent_completed", run_ids=("a", "a", "b"))
    assert turn_order_problem(events) == "the turn's events carry 2 different run_ids"
