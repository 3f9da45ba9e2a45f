"""Each dialect renders either greeting shape a route may be configured with, and reads
both back: the shape is per route (strangler.yaml `greeting:`), not per dialect.

Expected frames are written out literally, in the shapes of LEGACY_SURFACE.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from strangler.legacy_adapters.base import GREETINGS, Context, Greeting
from strangler.legacy_adapters.canonical import strip_volatile
from strangler.legacy_adapters.registry import (
    DIALECTS,
    adapter,
    connection_mode,
    default_greeting,
    needs_translation,
)
from strangler.legacy_adapters.translate import Translator

Message = dict[str, Any]

GOLDEN = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
# What the unified router sends on every route that is not main, factory or isolated.
CANONICAL: Message = {
    "type": "connection_established",
    "data": {
        "mode": "main",
        "user_id": "u1",
        "connection_id": "main_0123456789abcdef",
        "golden_path_events": GOLDEN,
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
# The data.mode and connection id prefix of each dialect's connection_established.
ESTABLISHED = {
    "main": ("main", "main_"),
    "main_payload": ("main", "main_"),
    "flat": ("main", "main_"),
    "factory": ("factory", "factory_"),
    "isolated": ("isolated", "isolated_"),
    "legacy": ("legacy", "legacy_"),
}
DEFAULTS = {
    "main": "connection_established",
    "main_payload": "system_message",
    "flat": "connection_established",
    "factory": "connection_established",
    "isolated": "connection_established",
    "legacy": "system_message",
}
SHAPES: tuple[Greeting, ...] = ("connection_established", "system_message")


def ctx(dialect: str, greeting: Greeting | None, **kw: Any) -> Context:
    return Context(dialect, "u1", connection_mode(dialect), greeting=greeting, **kw)


def established(dialect: str) -> Message:
    mode, prefix = ESTABLISHED[dialect]
    data = {**CANONICAL["data"], "mode": mode, "connection_id": f"{prefix}0123456789abcdef"}
    return {**CANONICAL, "data": data}


def test_every_dialect_has_a_default_greeting() -> None:
    assert {d: default_greeting(d) for d in DIALECTS} == DEFAULTS
    assert set(DEFAULTS.values()) == GREETINGS
    with pytest.raises(ValueError, match="unknown dialect"):
        default_greeting("fancy")


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_connection_established_shape(dialect: str) -> None:
    rendered = adapter(dialect).event_from_canonical(
        CANONICAL, ctx(dialect, "connection_established")
    )
    assert rendered == established(dialect)
    # Read back: the canonical greeting, reporting the dialect's mode.
    back = adapter(dialect).event_to_canonical(rendered)
    assert back == {**CANONICAL, "data": {**CANONICAL["data"], "mode": ESTABLISHED[dialect][0]}}


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_system_message_shape(dialect: str) -> None:
    rendered = adapter(dialect).event_from_canonical(CANONICAL, ctx(dialect, "system_message"))
    assert rendered == SYSTEM_MESSAGE
    back = adapter(dialect).event_to_canonical(rendered)
    assert back == {
        "type": "connection_established",
        "data": {
            "mode": ESTABLISHED[dialect][0],
            "user_id": "u1",
            "connection_id": "ws_1726000000500_01234567",
            "golden_path_events": GOLDEN,
        },
        "timestamp": 1726000000.5,
        "server_id": None,
        "correlation_id": None,
    }


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_no_configured_greeting_is_the_dialects_default(dialect: str) -> None:
    a = adapter(dialect)
    assert a.event_from_canonical(CANONICAL, ctx(dialect, None)) == a.event_from_canonical(
        CANONICAL, ctx(dialect, default_greeting(dialect))
    )


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("shape", SHAPES)
def test_both_shapes_read_back_alike_but_for_volatile_fields(dialect: str, shape: Greeting) -> None:
    # Whatever shape legacy sent, a stream reads back as the same canonical greeting.
    a = adapter(dialect)
    back = a.event_to_canonical(a.event_from_canonical(CANONICAL, ctx(dialect, shape)))
    expected = {**CANONICAL, "data": {**CANONICAL["data"], "mode": ESTABLISHED[dialect][0]}}
    assert strip_volatile(back) == strip_volatile(expected)


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("shape", SHAPES)
def test_heartbeats_repeat_the_configured_greetings_id(dialect: str, shape: Greeting) -> None:
    t = Translator(adapter(dialect), ctx(dialect, shape))
    (greeting,) = t.backend_frame(json.dumps(CANONICAL).encode()).to_peer
    given = json.loads(greeting)["data"]["connection_id"]
    if shape == "system_message":
        assert given == "ws_1726000000500_01234567"
    else:
        assert given == f"{ESTABLISHED[dialect][1]}0123456789abcdef"
    heartbeat = {"type": "heartbeat", "data": {"connection_id": "main_0123456789abcdef"}}
    (rendered,) = t.backend_frame(json.dumps(heartbeat).encode()).to_peer
    assert json.loads(rendered) == {"type": "heartbeat", "data": {"connection_id": given}}
    # And a heartbeat of the dialect reads back with the canonical id where it has one.
    back = adapter(dialect).event_to_canonical(json.loads(rendered))
    if shape == "connection_established":
        assert back == heartbeat


def test_a_heartbeat_before_any_greeting_keeps_what_can_be_derived() -> None:
    heartbeat = {"type": "heartbeat", "data": {"connection_id": "main_0123456789abcdef"}}
    legacy = adapter("legacy")
    # The older id cannot be derived from a canonical one: the heartbeat passes as sent.
    assert legacy.event_from_canonical(heartbeat, ctx("legacy", None)) is heartbeat
    assert legacy.event_from_canonical(heartbeat, ctx("legacy", "connection_established")) == {
        "type": "heartbeat",
        "data": {"connection_id": "legacy_0123456789abcdef"},
    }
    factory = adapter("factory")
    assert factory.event_from_canonical(heartbeat, ctx("factory", "system_message")) is heartbeat


def test_ids_of_the_older_form_are_never_reprefixed() -> None:
    for dialect in ("legacy", "factory", "isolated"):
        frame = {"type": "heartbeat", "data": {"connection_id": "ws_1726000000500_01234567"}}
        assert adapter(dialect).event_to_canonical(frame) is frame


def test_an_unconfigured_main_route_to_the_router_stays_untranslated() -> None:
    # The byte tunnel carries it: the router's greeting already is main's.
    assert not needs_translation("main", "unified")
    assert not needs_translation("main", "unified", "connection_established")
    assert needs_translation("main", "unified", "system_message")
    for dialect in DIALECTS - {"main"}:
        assert needs_translation(dialect, "unified", None)
        for shape in SHAPES:
            assert needs_translation(dialect, "unified", shape)
    # The legacy backend speaks each route's configured greeting itself.
    for dialect in DIALECTS:
        for configured in (None, *SHAPES):
            assert not needs_translation(dialect, "legacy", configured)


def test_a_system_message_route_on_the_main_dialect_reports_the_anonymous_user() -> None:
    anonymous = Context("main", None, "main", greeting="system_message")
    frame = {**CANONICAL, "data": {**CANONICAL["data"], "user_id": None}}
    rendered = adapter("main").event_from_canonical(frame, anonymous)
    assert rendered["type"] == "system_message"
    assert rendered["data"]["user_id"] == "anonymous"
