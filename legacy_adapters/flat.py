"""The ``flat`` dialect: critical events with every field top-level and ``"critical": true``.

The greeting is the canonical connection_established (or, on a route configured with
``greeting: system_message``, the older greeting, whose id heartbeats then repeat); pong,
heartbeat and ack keep the ``data`` shape; errors are flat (``{"type": "error", "error":
"invalid_json", ...}``).
"""

from __future__ import annotations

from typing import Final

from strangler.legacy_adapters.base import Adapter, Context, Greeting
from strangler.legacy_adapters.canonical import TURN_EVENTS, Message, canonical_client
from strangler.legacy_adapters.nesting import (
    CONNECTION_ESTABLISHED,
    FLAT_RESERVED_DATA_KEYS,
    SYSTEM_MESSAGE,
    data_to_flat,
    error_from_flat,
    error_to_flat,
    flat_error,
    flat_to_data,
    greeting_from_canonical,
    greeting_to_canonical,
    heartbeat_for,
)

NAME: Final = "flat"
MODE: Final = "main"
# The first frame unless the route configures another (strangler.yaml `greeting:`).
GREETING: Final[Greeting] = "connection_established"
# Turn-event fields this dialect cannot carry. Top-level tool_name and results are
# mirrors of data.tool_name and data.result, so they come back from the flat fields.
DROPPED_FIELDS: Final = frozenset({"user_id"})
# Data keys lost in flattening: they collide with the envelope, which wins.
RESERVED_DATA_KEYS: Final = FLAT_RESERVED_DATA_KEYS


class FlatAdapter:
    """Canonical events rendered as flat critical events."""

    __slots__ = ()
    name = NAME

    def client_to_canonical(self, msg: Message) -> Message:
        """A client message as a canonical client message."""
        return canonical_client(msg)

    def event_from_canonical(self, event: Message, ctx: Context) -> Message:
        """Turn events flattened, errors flat, the greeting in the route's shape."""
        kind = event.get("type")
        if isinstance(kind, str) and kind in TURN_EVENTS:
            data = event.get("data")
            return data_to_flat(event, data) if isinstance(data, dict) else event
        if kind == CONNECTION_ESTABLISHED:
            return greeting_from_canonical(event, ctx, GREETING, None)
        if kind == "heartbeat":
            return heartbeat_for(event, ctx, GREETING, None)
        if kind == "error":
            return error_to_flat(event)
        return event

    def event_to_canonical(self, frame: Message) -> Message:
        """Flat turn events, errors and an older greeting back in canonical form."""
        if frame.get("critical") is True:
            return flat_to_data(frame)
        kind = frame.get("type")
        if kind == "error":
            return error_from_flat(frame)
        if kind == SYSTEM_MESSAGE:
            return greeting_to_canonical(frame, MODE, None)
        return frame

    def invalid_frame_reply(self, problem: str) -> Message | None:
        """The flat ``invalid_json`` error."""
        return flat_error(problem)


ADAPTER: Final[Adapter] = FlatAdapter()
