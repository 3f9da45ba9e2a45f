"""Server frames of every dialect, rendered as JSON-ready dicts.

Pure: callers pass clocks and identities in, so the shapes are easy to pin in tests.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final

from strangler.reference.dialects import Dialect, Greeting, Nesting, connection_mode
from strangler.reference.script import GOLDEN_PATH_EVENTS

HEARTBEAT_INTERVAL_S: Final = 25
MAX_MESSAGE_SIZE: Final = 8192


def iso_now() -> str:
    """The current UTC time in ISO-8601, as event timestamps carry it."""
    return datetime.now(UTC).isoformat()


def new_connection_id(dialect: Dialect, greeting_kind: Greeting) -> str:
    """A connection id in the greeting generation's format: ``<mode>_<hex>`` for
    connection_established, ``ws_<ms>_<hex>`` for the older system_message."""
    if greeting_kind is Greeting.SYSTEM_MESSAGE:
        return f"ws_{int(time.time() * 1000)}_{secrets.token_hex(4)}"
    return f"{connection_mode(dialect)}_{secrets.token_hex(8)}"


def connection_established(
    *, mode: str, user_id: str, connection_id: str, server_id: str
) -> dict[str, Any]:
    """The newer first frame (the canonical one)."""
    return {
        "type": "connection_established",
        "data": {
            "mode": mode,
            "user_id": user_id,
            "connection_id": connection_id,
            "golden_path_events": list(GOLDEN_PATH_EVENTS),
        },
        "timestamp": time.time(),
        "server_id": server_id,
        "correlation_id": None,
    }


def system_message(*, user_id: str, connection_id: str) -> dict[str, Any]:
    """The older first frame of ``/ws/{user_id}`` and the compatibility routes."""
    return {
        "type": "system_message",
        "data": {
            "event": "connection_established",
            "connection_id": connection_id,
            "user_id": user_id,
            "server_time": iso_now(),
            "connection_ready": True,
            "config": {
                "heartbeat_interval": HEARTBEAT_INTERVAL_S,
                "max_message_size": MAX_MESSAGE_SIZE,
            },
        },
    }


def greeting(
    greeting_kind: Greeting,
    *,
    dialect: Dialect,
    user_id: str,
    connection_id: str,
    server_id: str,
    mode: str | None = None,
) -> dict[str, Any]:
    """The first frame a dialect sends; ``mode`` overrides the dialect's own."""
    if greeting_kind is Greeting.SYSTEM_MESSAGE:
        return system_message(user_id=user_id, connection_id=connection_id)
    return connection_established(
        mode=mode or connection_mode(dialect),
        user_id=user_id,
        connection_id=connection_id,
        server_id=server_id,
    )


def turn_event(nesting: Nesting, item: dict[str, Any], *, user_id: str) -> dict[str, Any]:
    """Render one canonical golden-turn item (see demo.script) in a dialect's envelope."""
    data: dict[str, Any] = item["data"]
    head: dict[str, Any] = {"type": item["type"], "run_id": item["run_id"]}
    if nesting is Nesting.DATA:
        frame = {**head, "user_id": user_id, "agent_name": item["agent_name"]}
        frame["timestamp"] = iso_now()
        if "tool_name" in item:
            frame["tool_name"] = item["tool_name"]
        if "result" in data and item["type"] == "tool_completed":
            frame["results"] = data["result"]
        frame["data"] = data
        return frame
    frame = {**head, "agent_name": item["agent_name"], "timestamp": iso_now()}
    if nesting is Nesting.PAYLOAD:
        # tool_name already sits inside the event data, where this generation wants it.
        frame["payload"] = data
        return frame
    return {**frame, **data, "critical": True}


def pong(timestamp: Any = None) -> dict[str, Any]:
    """Answer to a client ping, echoing the client's timestamp when it sent one."""
    return {"type": "pong", "data": {"timestamp": time.time() if timestamp is None else timestamp}}


def heartbeat(connection_id: str) -> dict[str, Any]:
    """Sent after the client has been idle for a while."""
    return {"type": "heartbeat", "data": {"connection_id": connection_id, "timestamp": time.time()}}


def ack(received_type: str) -> dict[str, Any]:
    """Acknowledges a control or unknown message type."""
    return {"type": "ack", "data": {"received_type": received_type, "timestamp": time.time()}}


def invalid_message(nesting: Nesting, message: str) -> dict[str, Any]:
    """Reply to a frame that is not a JSON object with a type; the socket stays open."""
    if nesting is Nesting.FLAT:
        return {"type": "error", "error": "invalid_json", "message": message}
    return {
        "type": "error",
        "data": {"error_code": "INVALID_MESSAGE", "message": message},
        "timestamp": time.time(),
    }


def auth_failed(message: str) -> dict[str, Any]:
    """The main route's last frame before it closes 1008."""
    return {
        "type": "error_message",
        "error_code": "AUTH_FAILED",
        "error_message": message,
        "details": {},
        "timestamp": time.time(),
    }
