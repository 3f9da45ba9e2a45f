"""The reference legacy backend greets per path: its dialect's generation, or the one
BackendSettings.greetings names for the path (as a deployment that greeted that way)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from strangler.reference import envelopes
from strangler.reference.dialects import GREETING, Dialect, Greeting, connection_mode
from strangler.reference.legacy_backend import WEBSOCKET_PATHS, build_legacy_app
from strangler.reference.settings import BackendSettings


def test_each_dialect_keeps_its_own_greeting_by_default() -> None:
    assert {d.value: g.value for d, g in GREETING.items()} == {
        "main": "connection_established",
        "main_payload": "system_message",
        "factory": "connection_established",
        "isolated": "connection_established",
        "legacy": "system_message",
    }


@pytest.mark.parametrize("dialect", list(Dialect))
def test_connection_ids_follow_the_greeting_not_the_dialect(dialect: Dialect) -> None:
    newer = envelopes.new_connection_id(dialect, Greeting.CONNECTION_ESTABLISHED)
    assert re.fullmatch(rf"{connection_mode(dialect)}_[0-9a-f]{{16}}", newer)
    older = envelopes.new_connection_id(dialect, Greeting.SYSTEM_MESSAGE)
    assert re.fullmatch(r"ws_[0-9]{13}_[0-9a-f]{8}", older)


@pytest.mark.parametrize("dialect", list(Dialect))
def test_either_greeting_in_any_dialect(dialect: Dialect) -> None:
    def greeting(kind: Greeting) -> dict[str, Any]:
        return envelopes.greeting(
            kind, dialect=dialect, user_id="u1", connection_id="c1", server_id="legacy"
        )

    newer = greeting(Greeting.CONNECTION_ESTABLISHED)
    assert newer["type"] == "connection_established"
    # legacy reports its own mode; main_payload is an older main
    assert newer["data"]["mode"] == {"main_payload": "main"}.get(dialect, dialect.value)
    older = greeting(Greeting.SYSTEM_MESSAGE)
    assert older["type"] == "system_message"
    assert older["data"]["event"] == "connection_established"
    assert older["data"]["connection_id"] == "c1"
    assert older["data"]["connection_ready"] is True


def test_greetings_name_paths_as_registered() -> None:
    assert set(WEBSOCKET_PATHS) == {
        "/ws",
        "/api/v1/websocket",
        "/ws/factory",
        "/ws/isolated",
        "/websocket",
        "/ws/test",
        "/ws/{user_id}",
        "/ws/v1/{user_id}",
    }
    every = {path: Greeting.SYSTEM_MESSAGE for path in WEBSOCKET_PATHS}
    build_legacy_app(BackendSettings(greetings=every))
    # Plain strings, as a caller might write them, are taken too.
    build_legacy_app(BackendSettings(greetings={"/websocket": "connection_established"}))  # type: ignore[dict-item]


def test_a_greeting_for_a_path_it_does_not_serve_is_refused() -> None:
    with pytest.raises(ValueError, match="no WebSocket route /nowhere"):
        build_legacy_app(BackendSettings(greetings={"/nowhere": Greeting.SYSTEM_MESSAGE}))
    with pytest.raises(ValueError, match="hello"):
        build_legacy_app(BackendSettings(greetings={"/ws": "hello"}))  # type: ignore[dict-item]
