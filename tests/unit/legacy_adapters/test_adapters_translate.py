"""Translator (bytes in, text frames out) and the dialect registry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from strangler.legacy_adapters.base import Context
from strangler.legacy_adapters.registry import (
    DIALECTS,
    adapter,
    connection_mode,
    needs_translation,
    select_dialect,
)
from strangler.legacy_adapters.translate import Translated, Translator

FLAT_ERROR_DIALECTS = {"flat", "legacy"}
TS = "2024-09-10T20:26:40.123456+00:00"


def translator(dialect: str, route: str = "main", user_id: str | None = "u1") -> Translator:
    return Translator(adapter(dialect), Context(route, user_id, connection_mode(dialect)))


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@pytest.fixture(params=sorted(DIALECTS))
def dialect(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# -- client frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{not json", "Invalid JSON"),
        (b"", "Invalid JSON"),
        (b'{"type": "ping"', "Invalid JSON"),
        (b"\xff\xfe{}", "Invalid JSON"),  # not UTF-8
        (b'{"type": "ping", "x": "\xc3"}', "Invalid JSON"),  # truncated UTF-8 sequence
        (b"[" * 100_000, "Invalid JSON"),  # deeper than the recursion limit
        (b"[1, 2]", "Message must be a JSON object"),
        (b'"user_message"', "Message must be a JSON object"),
        (b"42", "Message must be a JSON object"),
        (b"null", "Message must be a JSON object"),
        (b"{}", "Message must have a string 'type'"),
        (b'{"payload": {"text": "hi"}}', "Message must have a string 'type'"),
        (b'{"type": 7}', "Message must have a string 'type'"),
        (b'{"type": null}', "Message must have a string 'type'"),
    ],
)
def test_unparseable_client_frame_gets_the_dialect_reply(
    dialect: str, raw: bytes, problem: str
) -> None:
    result = translator(dialect).client_frame(raw)
    assert result.to_peer == ()
    assert result.problem == problem
    assert len(result.to_sender) == 1
    reply = json.loads(result.to_sender[0])
    if dialect in FLAT_ERROR_DIALECTS:
        assert reply == {"type": "error", "error": "invalid_json", "message": problem}
    else:
        assert isinstance(reply.pop("timestamp"), float)
        assert reply == {
            "type": "error",
            "data": {"error_code": "INVALID_MESSAGE", "message": problem},
        }


def test_a_dialect_without_a_reply_answers_nothing() -> None:
    class Silent:
        name = "silent"

        def client_to_canonical(self, msg: dict[str, Any]) -> dict[str, Any]:
            return msg

        def event_from_canonical(self, event: dict[str, Any], ctx: Context) -> dict[str, Any]:
            return event

        def event_to_canonical(self, frame: dict[str, Any]) -> dict[str, Any]:
            return frame

        def invalid_frame_reply(self, problem: str) -> dict[str, Any] | None:
            return None

    result = Translator(Silent(), Context("x", None, "main")).client_frame(b"nope")
    assert result == Translated(problem="Invalid JSON")


def test_canonical_client_frame_is_forwarded_byte_for_byte(dialect: str) -> None:
    raw = b'{ "type" : "user_message", "payload": {"text": "caf\\u00e9", "references": []}}'
    assert translator(dialect).client_frame(raw) == Translated(to_peer=(raw.decode(),))


def test_alias_is_rewritten(dialect: str) -> None:
    raw = dumps({"type": "chat_message", "content": "Grüße 👋", "thread_id": "t", "user_id": "x"})
    result = translator(dialect).client_frame(raw)
    assert result.to_sender == ()
    (frame,) = result.to_peer
    assert "Grüße 👋" in frame  # not \u-escaped
    assert json.loads(frame) == {
        "type": "user_message",
        "payload": {"text": "Grüße 👋", "thread_id": "t", "references": []},
    }


def test_ping_gets_the_canonical_envelope(dialect: str) -> None:
    result = translator(dialect).client_frame(b'{"type":"ping","timestamp":1726000000000}')
    assert [json.loads(f) for f in result.to_peer] == [
        {"type": "ping", "payload": {"timestamp": 1726000000000}}
    ]


def test_binary_looking_text_passes(dialect: str) -> None:
    # Escaped NUL, control characters and lone surrogates, raw non-ASCII: valid JSON text.
    raw = '{"type":"echo","blob":"\\u0000\\u0001\\ud800\u00ff\ufffd\\t"}'.encode()
    assert translator(dialect).client_frame(raw) == Translated(to_peer=(raw.decode(),))
    raw = b'{"type":"agent_request","query":"\\u0000\\u001f","agent_type":"x"}'
    (frame,) = translator(dialect).client_frame(raw).to_peer
    assert json.loads(frame)["payload"]["query"] == "\x00\x1f"


def test_raw_control_character_is_invalid_json_as_in_legacy(dialect: str) -> None:
    result = translator(dialect).client_frame(b'{"type":"echo","blob":"\x07"}')
    assert result.to_peer == ()
    assert "Invalid JSON" in result.to_sender[0]


def test_unknown_client_type_passes_unchanged(dialect: str) -> None:
    raw = b'{"type":"close_me","payload":{"code":4001,"reason":"bye"}}'
    assert translator(dialect).client_frame(raw) == Translated(to_peer=(raw.decode(),))


# -- backend frames -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"x" * 64,
        b"\x00\x01\x02\x03 not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"12.5",
        b"null",
        b"",
        b'{"type":"flood","seq":0,"pad":"xxxxxxxx"}',
        b'{"type":"pong","data":{"timestamp":1726000000000}}',
        b"{" * 10 + b"truncated",
        b"[" * 100_000,
    ],
)
def test_backend_non_translatable_frames_pass_unchanged(dialect: str, raw: bytes) -> None:
    assert translator(dialect).backend_frame(raw) == Translated(to_peer=(raw.decode(),))


def test_backend_invalid_utf8_is_made_sendable(dialect: str) -> None:
    result = translator(dialect).backend_frame(b'{"type":"x"}\xff')
    assert result == Translated(to_peer=('{"type":"x"}\ufffd',))


def test_backend_turn_event_is_rendered_in_the_dialect() -> None:
    event = {
        "type": "tool_executing",
        "run_id": "r",
        "user_id": "u1",
        "agent_name": "supervisor",
        "timestamp": TS,
        "tool_name": "cost_query",
        "data": {"tool_name": "cost_query", "parameters": {"query": "Optimize €"}},
    }
    raw = dumps(event)
    assert translator("main").backend_frame(raw) == Translated(to_peer=(raw.decode(),))
    (payload_frame,) = translator("main_payload").backend_frame(raw).to_peer
    assert "€" in payload_frame
    assert json.loads(payload_frame) == {
        "type": "tool_executing",
        "run_id": "r",
        "agent_name": "supervisor",
        "timestamp": TS,
        "payload": {"tool_name": "cost_query", "parameters": {"query": "Optimize €"}},
    }
    (flat_frame,) = translator("legacy").backend_frame(raw).to_peer
    assert json.loads(flat_frame) == {
        "type": "tool_executing",
        "run_id": "r",
        "agent_name": "supervisor",
        "timestamp": TS,
        "tool_name": "cost_query",
        "parameters": {"query": "Optimize €"},
        "critical": True,
    }


GREETING = {
    "type": "connection_established",
    "data": {
        "mode": "main",
        "user_id": "u1",
        "connection_id": "main_89abcdef01234567",
        "golden_path_events": [],
    },
    "timestamp": 1726000000.25,
    "server_id": "unified",
    "correlation_id": None,
}
HEARTBEAT = {
    "type": "heartbeat",
    "data": {"connection_id": "main_89abcdef01234567", "timestamp": 2.0},
}


@pytest.mark.parametrize(
    ("dialect_name", "connection_id"),
    [
        ("main_payload", "ws_1726000000250_89abcdef"),
        ("legacy", "ws_1726000000250_89abcdef"),
        ("factory", "factory_89abcdef01234567"),
        ("isolated", "isolated_89abcdef01234567"),
        ("main", "main_89abcdef01234567"),
        ("flat", "main_89abcdef01234567"),
    ],
)
def test_heartbeats_repeat_the_greeting_connection_id(
    dialect_name: str, connection_id: str
) -> None:
    t = translator(dialect_name)
    (greeting,) = t.backend_frame(dumps(GREETING)).to_peer
    assert json.loads(greeting)["data"]["connection_id"] == connection_id
    (heartbeat,) = t.backend_frame(dumps(HEARTBEAT)).to_peer
    assert json.loads(heartbeat) == {
        "type": "heartbeat",
        "data": {"connection_id": connection_id, "timestamp": 2.0},
    }
    if dialect_name not in ("main", "flat"):  # these pass this greeting through untouched
        assert t.context.connection_id == connection_id


def test_factory_greeting_through_a_main_route() -> None:
    # /ws?mode=factory: the unified router was told route "main" and said mode "main".
    t = Translator(adapter("factory"), Context("main", "u1", connection_mode("factory")))
    (frame,) = t.backend_frame(dumps(GREETING)).to_peer
    assert json.loads(frame)["data"]["mode"] == "factory"


def test_backend_error_in_flat_dialects() -> None:
    raw = dumps({"type": "error", "data": {"error_code": "INVALID_MESSAGE", "message": "m"}})
    assert json.loads(translator("legacy").backend_frame(raw).to_peer[0]) == {
        "type": "error",
        "error": "invalid_json",
        "message": "m",
    }
    assert translator("main_payload").backend_frame(raw) == Translated(to_peer=(raw.decode(),))


# -- registry -----------------------------------------------------------------------------


def test_dialects() -> None:
    assert {"main", "main_payload", "flat", "factory", "isolated", "legacy"} == DIALECTS
    for name in DIALECTS:
        assert adapter(name).name == name
    with pytest.raises(ValueError, match="unknown dialect"):
        adapter("klingon")


def test_connection_mode() -> None:
    assert {d: connection_mode(d) for d in DIALECTS} == {
        "main": "main",
        "main_payload": "main",
        "flat": "main",
        "factory": "factory",
        "isolated": "isolated",
        "legacy": "legacy",
    }
    with pytest.raises(ValueError, match="unknown dialect"):
        connection_mode("klingon")


def test_needs_translation() -> None:
    for name in DIALECTS:
        assert needs_translation(name, "legacy") is False
        assert needs_translation(name, "unified") is (name != "main")
    with pytest.raises(ValueError, match="unknown backend"):
        needs_translation("main", "shadow")
    with pytest.raises(ValueError, match="unknown dialect"):
        needs_translation("klingon", "legacy")


@pytest.mark.parametrize(
    ("route_dialect", "mode", "user_agent", "expected"),
    [
        ("main", None, None, "main"),
        ("main", "factory", None, "factory"),
        ("main", "isolated", None, "isolated"),
        ("main", "legacy", None, "legacy"),
        ("main", "main", "FactoryClient/1.0", "main"),  # the query wins over the User-Agent
        ("main", "ISOLATED", "factory-bot", "isolated"),  # case-insensitive
        ("main", "isolated", "factory-bot", "isolated"),
        ("main", None, "MyApp factory-client/2", "factory"),
        ("main", None, "Isolated-Runner", "isolated"),
        ("main", None, "factory and isolated", "factory"),
        ("main", None, "Mozilla/5.0", "main"),
        ("main", "", "factory", "factory"),  # an empty or unknown mode falls to the UA
        ("main", "main_payload", None, "main"),
        ("main", "flat", "isolated", "isolated"),
        ("main", "bogus", None, "main"),
        ("main", None, "", "main"),
        # Only main routes select; the others keep their dialect.
        ("main_payload", "factory", "factory", "main_payload"),
        ("factory", "isolated", "isolated", "factory"),
        ("isolated", "main", None, "isolated"),
        ("legacy", "factory", "factory", "legacy"),
        ("flat", "legacy", None, "flat"),
    ],
)
def test_select_dialect(
    route_dialect: str, mode: str | None, user_agent: str | None, expected: str
) -> None:
    assert select_dialect(route_dialect, mode, user_agent) == expected
