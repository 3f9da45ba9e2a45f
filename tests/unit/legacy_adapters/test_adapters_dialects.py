"""Each dialect renders each canonical event exactly as the legacy routes sent it.

The expected frames are written out literally, in the shapes of reference/envelopes.py
(the reference legacy backend), which is deliberately not imported here.
"""

from __future__ import annotations

import copy
from types import ModuleType
from typing import Any

import pytest

from strangler.legacy_adapters import factory, flat, isolated, legacy, main, main_payload
from strangler.legacy_adapters.base import Adapter, Context

Message = dict[str, Any]

MODULES: dict[str, ModuleType] = {
    "main": main,
    "main_payload": main_payload,
    "flat": flat,
    "factory": factory,
    "isolated": isolated,
    "legacy": legacy,
}
DATA_DIALECTS = ("main", "factory", "isolated")
SYSTEM_MESSAGE_DIALECTS = ("main_payload", "legacy")
FLAT_ERROR_DIALECTS = ("flat", "legacy")

TS = "2024-09-10T20:26:40.123456+00:00"
RESULT = {
    "query": "Optimize my costs",
    "monthly_cost_usd": 4321.5,
    "currency": "USD",
    "top_services": ["compute", "storage"],
}
SUMMARY = "Your monthly cost is $4321.50; the largest share is compute."


def adapter_of(dialect: str) -> Adapter:
    adapter: Adapter = MODULES[dialect].ADAPTER
    return adapter


def ctx_of(dialect: str, **kw: Any) -> Context:
    return Context(route=dialect, user_id="u1", mode=MODULES[dialect].MODE, **kw)


# The canonical turn, as the unified router sends it.
CANONICAL_TURN: list[Message] = [
    {
        "type": "agent_started",
        "run_id": "run_1",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "data": {"status": "started", "message": "supervisor started", "context": {}},
    },
    {
        "type": "agent_thinking",
        "run_id": "run_1",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "data": {"reasoning": "Reading the request.", "step_number": 1, "progress_percentage": 33},
    },
    {
        "type": "tool_executing",
        "run_id": "run_1",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "tool_name": "cost_query",
        "data": {"tool_name": "cost_query", "parameters": {"query": "Optimize my costs"}},
    },
    {
        "type": "tool_completed",
        "run_id": "run_1",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "tool_name": "cost_query",
        "results": RESULT,
        "data": {
            "tool_name": "cost_query",
            "result": RESULT,
            "execution_time_ms": 12.3,
            "status": "completed",
            "message": "cost_query completed",
        },
    },
    {
        "type": "agent_completed",
        "run_id": "run_1",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "data": {
            "status": "completed",
            "result": {"summary": SUMMARY, "thread_id": None},
            "final_response": SUMMARY,
            "execution_time_ms": 150.5,
        },
    },
]

# demo.envelopes.turn_event(Nesting.PAYLOAD, ...)
PAYLOAD_TURN: list[Message] = [
    {
        "type": "agent_started",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "payload": {"status": "started", "message": "supervisor started", "context": {}},
    },
    {
        "type": "agent_thinking",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "payload": {
            "reasoning": "Reading the request.",
            "step_number": 1,
            "progress_percentage": 33,
        },
    },
    {
        "type": "tool_executing",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "payload": {"tool_name": "cost_query", "parameters": {"query": "Optimize my costs"}},
    },
    {
        "type": "tool_completed",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "payload": {
            "tool_name": "cost_query",
            "result": RESULT,
            "execution_time_ms": 12.3,
            "status": "completed",
            "message": "cost_query completed",
        },
    },
    {
        "type": "agent_completed",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "payload": {
            "status": "completed",
            "result": {"summary": SUMMARY, "thread_id": None},
            "final_response": SUMMARY,
            "execution_time_ms": 150.5,
        },
    },
]

# demo.envelopes.turn_event(Nesting.FLAT, ...)
FLAT_TURN: list[Message] = [
    {
        "type": "agent_started",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "status": "started",
        "message": "supervisor started",
        "context": {},
        "critical": True,
    },
    {
        "type": "agent_thinking",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "reasoning": "Reading the request.",
        "step_number": 1,
        "progress_percentage": 33,
        "critical": True,
    },
    {
        "type": "tool_executing",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "tool_name": "cost_query",
        "parameters": {"query": "Optimize my costs"},
        "critical": True,
    },
    {
        "type": "tool_completed",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "tool_name": "cost_query",
        "result": RESULT,
        "execution_time_ms": 12.3,
        "status": "completed",
        "message": "cost_query completed",
        "critical": True,
    },
    {
        "type": "agent_completed",
        "run_id": "run_1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "status": "completed",
        "result": {"summary": SUMMARY, "thread_id": None},
        "final_response": SUMMARY,
        "execution_time_ms": 150.5,
        "critical": True,
    },
]

EXPECTED_TURN: dict[str, list[Message]] = {
    "main": CANONICAL_TURN,
    "factory": CANONICAL_TURN,
    "isolated": CANONICAL_TURN,
    "main_payload": PAYLOAD_TURN,
    "flat": FLAT_TURN,
    "legacy": FLAT_TURN,
}

GREETING: Message = {
    "type": "connection_established",
    "data": {
        "mode": "main",
        "user_id": "u1",
        "connection_id": "main_0123456789abcdef",
        "golden_path_events": [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        ],
    },
    "timestamp": 1726000000.5,
    "server_id": "unified",
    "correlation_id": None,
}
SYSTEM_MESSAGE: Message = {
    "type": "system_message",
    "data": {
        "event": "connection_established",
        "connection_id": "ws_1726000000500_01234567",
        "user_id": "u1",
        "server_time": "2024-09-10T20:26:40.500000+00:00",
        "connection_ready": True,
        "config": {"heartbeat_interval": 25, "max_message_size": 8192},
    },
}


@pytest.fixture(params=sorted(MODULES))
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_module_constants(dialect: str) -> None:
    module = MODULES[dialect]
    assert dialect == module.NAME
    assert module.ADAPTER.name == dialect
    assert isinstance(module.DROPPED_FIELDS, frozenset)
    assert {
        "main": "main",
        "main_payload": "main",
        "flat": "main",
        "factory": "factory",
        "isolated": "isolated",
        "legacy": "legacy",
    }[dialect] == module.MODE


# -- turn events ------------------------------------------------------------------------


def test_golden_turn_rendering(dialect: str) -> None:
    adapter = adapter_of(dialect)
    canonical = copy.deepcopy(CANONICAL_TURN)
    rendered = [adapter.event_from_canonical(e, ctx_of(dialect)) for e in canonical]
    assert rendered == EXPECTED_TURN[dialect]
    assert canonical == CANONICAL_TURN  # inputs untouched


@pytest.mark.parametrize("dialect_name", DATA_DIALECTS)
def test_data_dialects_send_turn_events_unchanged(dialect_name: str) -> None:
    adapter = adapter_of(dialect_name)
    for event in CANONICAL_TURN:
        assert adapter.event_from_canonical(event, ctx_of(dialect_name)) is event
        assert adapter.event_to_canonical(event) is event


def test_golden_turn_back_to_canonical(dialect: str) -> None:
    adapter = adapter_of(dialect)
    dropped = MODULES[dialect].DROPPED_FIELDS
    expected = [{k: v for k, v in e.items() if k not in dropped} for e in CANONICAL_TURN]
    frames = copy.deepcopy(EXPECTED_TURN[dialect])
    assert [adapter.event_to_canonical(f) for f in frames] == expected
    assert frames == EXPECTED_TURN[dialect]


def test_agent_error(dialect: str) -> None:
    event = {
        "type": "agent_error",
        "run_id": "r",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "data": {"error": "tool_failed", "message": "cost_query timed out"},
    }
    expected = {
        "main_payload": {
            "type": "agent_error",
            "run_id": "r",
            "agent_name": "supervisor",
            "timestamp": TS,
            "payload": {"error": "tool_failed", "message": "cost_query timed out"},
        },
        "flat": {
            "type": "agent_error",
            "run_id": "r",
            "agent_name": "supervisor",
            "timestamp": TS,
            "error": "tool_failed",
            "message": "cost_query timed out",
            "critical": True,
        },
    }
    expected["legacy"] = expected["flat"]
    assert adapter_of(dialect).event_from_canonical(event, ctx_of(dialect)) == expected.get(
        dialect, event
    )


def test_payload_puts_a_missing_tool_name_inside() -> None:
    event = {
        "type": "tool_completed",
        "run_id": "r",
        "agent_name": "a",
        "timestamp": TS,
        "tool_name": "t",
        "results": [1],
        "data": {"status": "completed"},
    }
    assert main_payload.ADAPTER.event_from_canonical(event, ctx_of("main_payload")) == {
        "type": "tool_completed",
        "run_id": "r",
        "agent_name": "a",
        "timestamp": TS,
        "payload": {"status": "completed", "tool_name": "t", "result": [1]},
    }
    assert event["data"] == {"status": "completed"}


@pytest.mark.parametrize("dialect_name", FLAT_ERROR_DIALECTS)
def test_flat_envelope_wins_over_colliding_data(dialect_name: str) -> None:
    event = {
        "type": "agent_thinking",
        "run_id": "r",
        "agent_name": "a",
        "timestamp": TS,
        "data": {"type": "sneaky", "critical": False, "run_id": "x", "reasoning": "hm"},
    }
    assert adapter_of(dialect_name).event_from_canonical(event, ctx_of(dialect_name)) == {
        "type": "agent_thinking",
        "run_id": "r",
        "agent_name": "a",
        "timestamp": TS,
        "reasoning": "hm",
        "critical": True,
    }


@pytest.mark.parametrize(
    "event",
    [
        {"type": "agent_started", "data": "not an object"},
        {"type": ["agent_started"], "data": {}},
        {"type": {"x": 1}},
        {"type": None, "payload": {}},
        {"type": "flood", "seq": 3, "pad": "xxxx"},
        {"type": "echo", "n": 1},
        {"no_type": True},
    ],
)
def test_odd_frames_pass_unchanged(dialect: str, event: Message) -> None:
    adapter = adapter_of(dialect)
    assert adapter.event_from_canonical(event, ctx_of(dialect)) is event
    assert adapter.event_to_canonical(event) is event


# -- greetings --------------------------------------------------------------------------


@pytest.mark.parametrize("dialect_name", ["main", "flat"])
def test_connection_established_reports_the_mode(dialect_name: str) -> None:
    adapter = adapter_of(dialect_name)
    ctx = ctx_of(dialect_name)
    assert adapter.event_from_canonical(GREETING, ctx) is GREETING  # mode already "main"
    other = Context(route="main", user_id="u1", mode="isolated")
    rendered = adapter.event_from_canonical(GREETING, other)
    assert rendered == {**GREETING, "data": {**GREETING["data"], "mode": "isolated"}}
    assert GREETING["data"]["mode"] == "main"


@pytest.mark.parametrize("dialect_name", ["factory", "isolated"])
def test_factory_and_isolated_greeting(dialect_name: str) -> None:
    adapter = adapter_of(dialect_name)
    rendered = adapter.event_from_canonical(GREETING, ctx_of(dialect_name))
    assert rendered == {
        "type": "connection_established",
        "data": {
            "mode": dialect_name,
            "user_id": "u1",
            "connection_id": f"{dialect_name}_0123456789abcdef",
            "golden_path_events": [
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "agent_completed",
            ],
        },
        "timestamp": 1726000000.5,
        "server_id": "unified",
        "correlation_id": None,
    }
    back = adapter.event_to_canonical(rendered)
    assert back == {**GREETING, "data": {**GREETING["data"], "mode": dialect_name}}


@pytest.mark.parametrize("dialect_name", SYSTEM_MESSAGE_DIALECTS)
def test_system_message_greeting(dialect_name: str) -> None:
    adapter = adapter_of(dialect_name)
    assert adapter.event_from_canonical(GREETING, ctx_of(dialect_name)) == SYSTEM_MESSAGE
    assert adapter.event_to_canonical(SYSTEM_MESSAGE) == {
        "type": "connection_established",
        "data": {
            "mode": MODULES[dialect_name].MODE,
            "user_id": "u1",
            "connection_id": "ws_1726000000500_01234567",
            "golden_path_events": [
                "agent_started",
                "agent_thinking",
                "tool_executing",
                "tool_completed",
                "agent_completed",
            ],
        },
        "timestamp": 1726000000.5,
        "server_id": None,
        "correlation_id": None,
    }


@pytest.mark.parametrize("dialect_name", SYSTEM_MESSAGE_DIALECTS)
def test_system_message_fallbacks(dialect_name: str) -> None:
    adapter = adapter_of(dialect_name)
    anonymous = Context(route="legacy", user_id=None, mode="legacy")
    for bad_clock in (None, float("nan"), float("inf"), -1.0, 1e300, True, "soon"):
        greeting: Message = {"type": "connection_established", "data": {}, "timestamp": bad_clock}
        rendered = adapter.event_from_canonical(greeting, anonymous)
        data = rendered["data"]
        assert data["user_id"] == "anonymous"
        assert data["connection_id"].startswith("ws_")
        assert data["server_time"].endswith("+00:00")
    named = adapter.event_from_canonical(
        {"type": "connection_established", "data": {}}, ctx_of(dialect_name)
    )
    assert named["data"]["user_id"] == "u1"
    # A system_message that is not a greeting is not touched.
    other = {"type": "system_message", "data": {"event": "maintenance"}}
    assert adapter.event_to_canonical(other) is other
    odd_time = {
        "type": "system_message",
        "data": {"event": "connection_established", "server_time": "yesterday"},
    }
    assert adapter.event_to_canonical(odd_time)["timestamp"] is None


# -- pong, heartbeat, ack, errors ---------------------------------------------------------


def test_pong_and_ack_keep_the_data_shape(dialect: str) -> None:
    adapter = adapter_of(dialect)
    for frame in (
        {"type": "pong", "data": {"timestamp": 1726000000000}},
        {"type": "ack", "data": {"received_type": "stop_agent", "timestamp": 1726000000.1}},
        {
            "type": "error_message",
            "error_code": "AUTH_FAILED",
            "error_message": "Token has expired",
            "details": {},
            "timestamp": 1726000000.2,
        },
    ):
        assert adapter.event_from_canonical(frame, ctx_of(dialect)) is frame
        assert adapter.event_to_canonical(frame) is frame


HEARTBEAT: Message = {
    "type": "heartbeat",
    "data": {"connection_id": "main_0123456789abcdef", "timestamp": 1726000030.0},
}


def test_heartbeat(dialect: str) -> None:
    adapter = adapter_of(dialect)
    rendered = adapter.event_from_canonical(HEARTBEAT, ctx_of(dialect))
    if dialect in ("factory", "isolated"):
        assert rendered == {
            "type": "heartbeat",
            "data": {"connection_id": f"{dialect}_0123456789abcdef", "timestamp": 1726000030.0},
        }
        assert adapter.event_to_canonical(rendered) == HEARTBEAT
    else:
        assert rendered is HEARTBEAT


@pytest.mark.parametrize("dialect_name", [*SYSTEM_MESSAGE_DIALECTS, "factory", "isolated"])
def test_heartbeat_repeats_the_greeting_connection_id(dialect_name: str) -> None:
    # The Translator stores the id the greeting gave the client in the context.
    ctx = ctx_of(dialect_name, connection_id="ws_1726000000500_01234567")
    rendered = adapter_of(dialect_name).event_from_canonical(HEARTBEAT, ctx)
    assert rendered == {
        "type": "heartbeat",
        "data": {"connection_id": "ws_1726000000500_01234567", "timestamp": 1726000030.0},
    }


CANONICAL_ERROR: Message = {
    "type": "error",
    "data": {"error_code": "INVALID_MESSAGE", "message": "close_me needs a valid close code"},
    "timestamp": 1726000000.0,
}
FLAT_ERROR: Message = {
    "type": "error",
    "error": "invalid_json",
    "message": "close_me needs a valid close code",
}


def test_error_frames(dialect: str) -> None:
    adapter = adapter_of(dialect)
    rendered = adapter.event_from_canonical(CANONICAL_ERROR, ctx_of(dialect))
    if dialect in FLAT_ERROR_DIALECTS:
        assert rendered == FLAT_ERROR
        back = adapter.event_to_canonical(rendered)
        assert back == {k: v for k, v in CANONICAL_ERROR.items() if k != "timestamp"}
    else:
        assert rendered is CANONICAL_ERROR


@pytest.mark.parametrize("dialect_name", FLAT_ERROR_DIALECTS)
def test_flat_error_codes(dialect_name: str) -> None:
    adapter = adapter_of(dialect_name)
    event = {
        "type": "error",
        "data": {"error_code": "RATE_LIMITED", "message": "slow down", "retry_after": 2},
        "timestamp": 1.0,
    }
    rendered = adapter.event_from_canonical(event, ctx_of(dialect_name))
    assert rendered == {
        "type": "error",
        "error": "rate_limited",
        "message": "slow down",
        "retry_after": 2,
    }
    assert adapter.event_to_canonical(rendered) == {
        "type": "error",
        "data": {"error_code": "RATE_LIMITED", "message": "slow down", "retry_after": 2},
    }
    odd = {"type": "error", "data": {"error_code": 7}}
    assert adapter.event_from_canonical(odd, ctx_of(dialect_name)) == {"type": "error", "error": 7}
    assert adapter.event_to_canonical({"type": "error", "error": 7, "timestamp": 2}) == {
        "type": "error",
        "data": {"error_code": 7},
        "timestamp": 2,
    }
    shapeless = {"type": "error", "data": "boom"}
    assert adapter.event_from_canonical(shapeless, ctx_of(dialect_name)) is shapeless


def test_invalid_frame_reply(dialect: str) -> None:
    reply = adapter_of(dialect).invalid_frame_reply("Invalid JSON")
    assert reply is not None
    if dialect in FLAT_ERROR_DIALECTS:
        assert reply == {"type": "error", "error": "invalid_json", "message": "Invalid JSON"}
    else:
        assert isinstance(reply.pop("timestamp"), float)
        assert reply == {
            "type": "error",
            "data": {"error_code": "INVALID_MESSAGE", "message": "Invalid JSON"},
        }


def test_client_messages_are_canonicalised_by_every_dialect(dialect: str) -> None:
    adapter = adapter_of(dialect)
    assert adapter.client_to_canonical({"type": "chat_message", "content": "hi"}) == {
        "type": "user_message",
        "payload": {"text": "hi", "thread_id": None, "references": []},
    }
    unknown = {"type": "echo"}
    assert adapter.client_to_canonical(unknown) is unknown
