"""Every frame the proxy hands the router is a client message the contract accepts.

A `main` client's frames reach the router as sent (the byte tunnel), every other
dialect's through its adapter; both must be shapes docs/asyncapi.yaml names. The
shapes are LEGACY_SURFACE.md's, every alias flat and nested.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from strangler.legacy_adapters.base import Context
from strangler.legacy_adapters.canonical import canonical_client
from strangler.legacy_adapters.registry import DIALECTS, adapter, connection_mode
from strangler.legacy_adapters.translate import Translator
from strangler.proxy.commands.conformance_checks import (
    ACKED_FRAMES,
    CHECKS,
    PING_FRAMES,
    SILENT_FRAMES,
    TURN_FRAMES,
)
from strangler.proxy.commands.contract import contract

USER_ALIASES = ("user_message", "user", "user_input", "chat_message", "message")

# LEGACY_SURFACE.md "Messages from clients", and each alias in every form legacy took.
LEGACY_SHAPES: list[dict[str, Any]] = [
    {
        "type": "start_agent",
        "payload": {
            "user_request": "Optimize my costs",
            "thread_id": None,
            "context": {},
            "settings": {},
        },
    },
    {"type": "execute_agent", "payload": {"user_request": "Optimize my costs", "thread_id": None}},
    {"type": "execute_agent", "user_request": "Optimize my costs"},
    *(
        {"type": t, "payload": {"text": "Hi", "references": [], "thread_id": "t1"}}
        for t in USER_ALIASES
    ),
    *({"type": t, "payload": {"content": "Hi", "thread_id": "t1"}} for t in USER_ALIASES),
    *(
        {
            "type": t,
            "content": "Hi",
            "user_id": "u",
            "thread_id": "t",
            "run_id": "r",
            "timestamp": 1726000000.0,
        }
        for t in USER_ALIASES
    ),
    {
        "type": "agent_request",
        "payload": {
            "query": "Why?",
            "agent_type": "supervisor",
            "thread_id": "t1",
            "parameters": {},
        },
    },
    {
        "type": "agent_request",
        "thread_id": "t",
        "query": "Why?",
        "agent_type": "supervisor",
        "parameters": {},
    },
    {"type": "ping", "timestamp": 1726000000000},
    {"type": "ping", "payload": {"timestamp": 1726000000000}},
    {"type": "ping"},
    {"type": "pong"},
    {"type": "pong", "timestamp": 1726000000000},
    {"type": "heartbeat_ack"},
    {"type": "heartbeat_ack", "payload": {}},
    {"type": "stop_agent"},
    {"type": "stop_agent", "run_id": "r1"},
    {"type": "stop_agent", "payload": {"run_id": "r1"}},
    {"type": "switch_thread", "thread_id": "t2"},
    {"type": "switch_thread", "payload": {"thread_id": "t2"}},
    {"type": "get_thread_history", "payload": {"thread_id": "t1"}},
]


def _id(shape: dict[str, Any]) -> str:
    return json.dumps(shape, sort_keys=True)[:70]


@pytest.mark.parametrize("shape", LEGACY_SHAPES, ids=_id)
def test_a_legacy_shape_reaches_the_router_as_an_accepted_shape(shape: dict[str, Any]) -> None:
    # The main dialect's byte tunnel forwards it as the client sent it.
    assert contract().client_problem(shape) is None


@pytest.mark.parametrize("shape", LEGACY_SHAPES, ids=_id)
def test_canonical_client_output_is_an_accepted_shape(shape: dict[str, Any]) -> None:
    assert contract().client_problem(canonical_client(shape)) is None


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_every_adapter_hands_the_router_accepted_shapes(dialect: str) -> None:
    translator = Translator(
        adapter(dialect), Context(route=dialect, user_id="u1", mode=connection_mode(dialect))
    )
    for shape in LEGACY_SHAPES:
        out = adapter(dialect).client_to_canonical(shape)
        assert contract().client_problem(out) is None, (dialect, shape)
        # And the bytes the relay actually sends on.
        translated = translator.client_frame(json.dumps(shape).encode())
        assert translated.problem is None
        for text in translated.to_peer:
            assert contract().client_problem(json.loads(text)) is None, (dialect, text)


def test_a_rejected_client_frame_never_reaches_the_router() -> None:
    translator = Translator(
        adapter("factory"), Context(route="factory", user_id="u1", mode="factory")
    )
    for raw in (b"{not json", b"[1]", b'{"payload": {}}'):
        assert translator.client_frame(raw).to_peer == ()


def test_every_frame_conformance_sends_is_an_accepted_shape() -> None:
    for frames in (TURN_FRAMES, ACKED_FRAMES, SILENT_FRAMES, PING_FRAMES):
        for name, frame in frames.items():
            assert contract().client_problem(frame) is None, name


def test_conformance_sends_every_client_message_of_the_contract() -> None:
    # A message shape the document adds must get a check that sends it.
    sent = {contract().client_shape(frame) for check in CHECKS for frame in check.sends}
    every = {spec.name for spec in contract().specs("client")}
    assert every - sent == set()


def test_check_names_are_unique_and_have_no_colon() -> None:
    names = [check.name for check in CHECKS]
    assert len(names) == len(set(names))
    assert not [name for name in names if ":" in name or " " in name]
