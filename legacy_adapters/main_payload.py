"""The ``main_payload`` dialect: the older generation of ``/ws/{user_id}``, ``/ws/v1/{user_id}``.

Turn events nest their fields under ``payload`` with no top-level ``user_id``; the tool
name sits inside the payload only. The greeting is the ``system_message`` form with a
``ws_<ms>_<id>`` connection id (a route configured with ``greeting:
connection_established`` gets the newer one, ``data.mode: "main"``, id ``main_<hex>``);
pong, heartbeat, ack and error keep the ``data`` shape.
"""

from __future__ import annotations

from typing import Final

from strangler.legacy_adapters.base import Adapter, Context, Greeting
from strangler.legacy_adapters.canonical import TURN_EVENTS, Message, canonical_client
from strangler.legacy_adapters.nesting import (
    CONNECTION_ESTABLISHED,
    GREETING_TYPES,
    data_error,
    data_to_payload,
    greeting_from_canonical,
    greeting_to_canonical,
    heartbeat_for,
    payload_to_data,
)

NAME: Final = "main_payload"
MODE: Final = "main"
# The first frame unless the route configures another (strangler.yaml `greeting:`).
GREETING: Final[Greeting] = "system_message"
# Turn-event fields this dialect cannot carry. Top-level tool_name and results are
# mirrors of payload.tool_name and payload.result, so they come back from the payload.
DROPPED_FIELDS: Final = frozenset({"user_id"})


class MainPayloadAdapter:
    """Canonical events rendered in the older ``payload`` envelope."""

    __slots__ = ()
    name = NAME

    def client_to_canonical(self, msg: Message) -> Message:
        """A client message as a canonical client message."""
        return canonical_client(msg)

    def event_from_canonical(self, event: Message, ctx: Context) -> Message:
        """Turn events under ``payload``, the greeting in the route's shape."""
        kind = event.get("type")
        if isinstance(kind, str) and kind in TURN_EVENTS:
            data = event.get("data")
            return data_to_payload(event, data) if isinstance(data, dict) else event
        if kind == CONNECTION_ESTABLISHED:
            return greeting_from_canonical(event, ctx, GREETING, None)
        if kind == "heartbeat":
            return heartbeat_for(event, ctx, GREETING, None)
        return event

    def event_to_canonical(self, frame: Message) -> Message:
        """Turn events back under ``data``, either greeting shape canonical."""
        kind = frame.get("type")
        if isinstance(kind, str) and kind in TURN_EVENTS:
            payload = frame.get("payload")
            return payload_to_data(frame, payload) if isinstance(payload, dict) else frame
        if kind in GREETING_TYPES:
            return greeting_to_canonical(frame, MODE, None)
        return frame

    def invalid_frame_reply(self, problem: str) -> Message | None:
        """The ``data``-nested INVALID_MESSAGE error."""
        return data_error(problem)


ADAPTER: Final[Adapter] = MainPayloadAdapter()
