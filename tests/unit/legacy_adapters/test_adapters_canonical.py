"""The canonical model: client message shapes, constants, volatile fields."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from strangler.legacy_adapters.canonical import (
    ALIASES,
    CONTROL_TYPES,
    GOLDEN_PATH,
    TURN_EVENTS,
    TURN_TYPES,
    VOLATILE_FIELDS,
    attach_data,
    canonical_client,
    strip_volatile,
    turn_event,
)


def test_constants() -> None:
    assert dict(ALIASES) == {
        "user": "user_message",
        "user_input": "user_message",
        "chat_message": "user_message",
        "message": "user_message",
        "execute_agent": "start_agent",
    }
    assert {"start_agent", "user_message", "agent_request"} == TURN_TYPES
    assert GOLDEN_PATH == (
        "agent_started",
        "agent_thinking",
        "tool_executing",
        "tool_completed",
        "agent_completed",
    )
    assert {*GOLDEN_PATH, "agent_error"} == TURN_EVENTS
    assert {
        "ping",
        "pong",
        "heartbeat",
        "heartbeat_ack",
        "ack",
        "connection_established",
        "system_message",
    } == CONTROL_TYPES
    assert {
        "timestamp",
        "connection_id",
        "run_id",
        "thread_id",
        "request_id",
        "message_id",
        "user_id",
        "execution_time_ms",
        "duration",
        "stats",
        "attempt",
        "server_time",
        "server_id",
    } == VOLATILE_FIELDS


def test_aliases_are_read_only() -> None:
    with pytest.raises(TypeError):
        ALIASES["chat"] = "user_message"  # type: ignore[index]


# -- client messages ------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["user", "user_input", "chat_message", "message"])
def test_user_message_aliases_with_payload(alias: str) -> None:
    msg = {"type": alias, "payload": {"text": "Hi", "references": [], "thread_id": "t1"}}
    assert canonical_client(msg) == {
        "type": "user_message",
        "payload": {"text": "Hi", "references": [], "thread_id": "t1"},
    }


def test_execute_agent_is_start_agent() -> None:
    payload: dict[str, Any] = {
        "user_request": "Optimize my costs",
        "thread_id": None,
        "context": {},
    }
    assert canonical_client({"type": "execute_agent", "payload": payload}) == {
        "type": "start_agent",
        "payload": payload,
    }


def test_canonical_message_is_returned_as_is() -> None:
    for msg in (
        {
            "type": "start_agent",
            "payload": {
                "user_request": "Optimize my costs",
                "thread_id": None,
                "context": {},
                "settings": {},
            },
        },
        {"type": "user_message", "payload": {"text": "Hi", "references": [], "thread_id": "t"}},
        {"type": "ping", "payload": {"timestamp": 1}},
        {"type": "agent_request", "payload": {"query": "q"}},
    ):
        assert canonical_client(msg) is msg


def test_flat_chat_message() -> None:
    msg = {
        "type": "chat_message",
        "content": "How much do I spend?",
        "user_id": "mallory",
        "thread_id": "t",
        "run_id": "r",
        "timestamp": 1726000000.0,
    }
    before = copy.deepcopy(msg)
    assert canonical_client(msg) == {
        "type": "user_message",
        # run_id kept: legacy answered with the client's run_id; user_id never trusted.
        "payload": {
            "text": "How much do I spend?",
            "thread_id": "t",
            "references": [],
            "run_id": "r",
        },
    }
    assert msg == before


def test_flat_chat_message_minimal() -> None:
    assert canonical_client({"type": "chat_message", "content": "hi"}) == {
        "type": "user_message",
        "payload": {"text": "hi", "thread_id": None, "references": []},
    }
    assert canonical_client({"type": "message", "text": "hi", "references": ["d1"]}) == {
        "type": "user_message",
        "payload": {"text": "hi", "thread_id": None, "references": ["d1"]},
    }
    assert canonical_client({"type": "user"}) == {
        "type": "user_message",
        "payload": {"text": "", "thread_id": None, "references": []},
    }


def test_content_in_payload_becomes_text() -> None:
    msg = {"type": "user_message", "payload": {"content": "Hi", "references": [], "thread_id": "t"}}
    assert canonical_client(msg) == {
        "type": "user_message",
        "payload": {"text": "Hi", "references": [], "thread_id": "t"},
    }
    assert msg["payload"] == {"content": "Hi", "references": [], "thread_id": "t"}
    assert canonical_client({"type": "chat_message", "payload": {"content": "x"}}) == {
        "type": "user_message",
        "payload": {"text": "x"},
    }


def test_text_wins_over_content() -> None:
    msg = {"type": "user_message", "payload": {"text": "a", "content": "b"}}
    assert canonical_client(msg) is msg


def test_agent_request_flat() -> None:
    msg = {
        "type": "agent_request",
        "thread_id": "t",
        "query": "Why so expensive?",
        "agent_type": "supervisor",
        "parameters": {"depth": 2},
    }
    assert canonical_client(msg) == {
        "type": "agent_request",
        "payload": {
            "query": "Why so expensive?",
            "agent_type": "supervisor",
            "thread_id": "t",
            "parameters": {"depth": 2},
        },
    }


def test_ping_timestamp_moves_into_payload() -> None:
    assert canonical_client({"type": "ping", "timestamp": 1726000000000}) == {
        "type": "ping",
        "payload": {"timestamp": 1726000000000},
    }
    assert canonical_client({"type": "ping"}) == {"type": "ping", "payload": {}}


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        ({"type": "pong", "timestamp": 5}, {"type": "pong", "payload": {"timestamp": 5}}),
        ({"type": "heartbeat_ack"}, {"type": "heartbeat_ack", "payload": {}}),
        (
            {"type": "stop_agent", "run_id": "r"},
            {"type": "stop_agent", "payload": {"run_id": "r"}},
        ),
        (
            {"type": "switch_thread", "thread_id": "t2"},
            {"type": "switch_thread", "payload": {"thread_id": "t2"}},
        ),
        (
            {"type": "start_agent", "user_request": "go"},
            {"type": "start_agent", "payload": {"user_request": "go"}},
        ),
    ],
)
def test_control_and_flat_turn_messages(msg: dict[str, Any], expected: dict[str, Any]) -> None:
    assert canonical_client(msg) == expected


def test_top_level_fields_join_the_payload_which_wins_but_for_run_id() -> None:
    msg = {"type": "stop_agent", "x": 1, "payload": {"x": 2, "y": 3}}
    assert canonical_client(msg) == {"type": "stop_agent", "payload": {"x": 2, "y": 3}}
    # Legacy read run_id from the top level first, so the events carried that one.
    msg = {"type": "stop_agent", "run_id": "outer", "payload": {"run_id": "inner"}, "x": 1}
    assert canonical_client(msg) == {"type": "stop_agent", "payload": {"run_id": "outer", "x": 1}}
    msg = {"type": "stop_agent", "run_id": "", "payload": {"run_id": "inner"}}
    assert canonical_client(msg)["payload"]["run_id"] == "inner"
    msg = {"type": "execute_agent", "thread_id": "t", "payload": {"user_request": "go"}}
    assert canonical_client(msg) == {
        "type": "start_agent",
        "payload": {"thread_id": "t", "user_request": "go"},
    }


def test_null_and_non_object_payload() -> None:
    assert canonical_client({"type": "ping", "payload": None}) == {"type": "ping", "payload": {}}
    assert canonical_client({"type": "stop_agent", "payload": "r1"}) == {
        "type": "stop_agent",
        "payload": {"payload": "r1"},
    }


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "echo", "n": 1},
        {"type": "close_me", "payload": {"code": 4001, "reason": "bye"}},
        {"type": "flood", "payload": {"count": 1, "size": 10}},
        {"type": "get_thread_history", "thread_id": "t"},
        {"type": "heartbeat"},
        {"type": "ack"},
        {"type": "USER_MESSAGE", "text": "case matters"},
        {"type": 7},
        {"payload": {}},
    ],
)
def test_unknown_types_pass_unchanged(msg: dict[str, Any]) -> None:
    before = copy.deepcopy(msg)
    assert canonical_client(msg) is msg
    assert msg == before


# -- canonical events -----------------------------------------------------------------


def test_turn_event_mirrors_tool_fields() -> None:
    data = {"tool_name": "cost_query", "result": {"a": 1}, "execution_time_ms": 1.0}
    assert turn_event(
        "tool_completed", data, run_id="r", agent_name="a", timestamp="T", user_id="u"
    ) == {
        "type": "tool_completed",
        "run_id": "r",
        "user_id": "u",
        "agent_name": "a",
        "timestamp": "T",
        "tool_name": "cost_query",
        "results": {"a": 1},
        "data": data,
    }
    # results only on tool_completed; no user_id when None.
    assert turn_event(
        "agent_completed", {"result": 1}, run_id="r", agent_name="a", timestamp="T"
    ) == {
        "type": "agent_completed",
        "run_id": "r",
        "agent_name": "a",
        "timestamp": "T",
        "data": {"result": 1},
    }


def test_attach_data_returns_head() -> None:
    head: dict[str, Any] = {"type": "tool_executing"}
    assert attach_data(head, {"tool_name": "t"}) is head
    assert head == {"type": "tool_executing", "tool_name": "t", "data": {"tool_name": "t"}}


def test_strip_volatile() -> None:
    obj = {
        "type": "tool_completed",
        "run_id": "r",
        "user_id": "u",
        "timestamp": "T",
        "data": {
            "execution_time_ms": 3.0,
            "result": [{"thread_id": "t", "value": 1}, ("x", {"attempt": 2, "k": None})],
            "stats": {"n": 1},
        },
        "server_id": "legacy",
        "server_time": "T",
    }
    before = copy.deepcopy(obj)
    assert strip_volatile(obj) == {
        "type": "tool_completed",
        "data": {"result": [{"value": 1}, ("x", {"k": None})]},
    }
    assert obj == before
    assert strip_volatile([1, "a", None]) == [1, "a", None]
    assert strip_volatile("timestamp") == "timestamp"
