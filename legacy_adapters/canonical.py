"""The canonical protocol the unified router speaks (the newest ``main`` generation).

Server events nest their fields under ``data``; tool events repeat ``tool_name`` at the
top level and ``tool_completed`` repeats ``data.result`` as top-level ``results``.
Client messages are ``{"type": T, "payload": {...}}`` with the legacy aliases resolved.
See docs/PROTOCOL.md. Pure: plain dicts in, plain dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

Message = dict[str, Any]

ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "user": "user_message",
        "user_input": "user_message",
        "chat_message": "user_message",
        "message": "user_message",
        "execute_agent": "start_agent",
    }
)
TURN_TYPES: Final = frozenset({"start_agent", "user_message", "agent_request"})
# Client control messages: same envelope as a turn, answered without starting one.
CLIENT_CONTROL_TYPES: Final = frozenset(
    {"ping", "pong", "heartbeat_ack", "stop_agent", "switch_thread"}
)
# The client types canonical_client puts into the envelope; any other type is unknown.
ENVELOPED_TYPES: Final = TURN_TYPES | CLIENT_CONTROL_TYPES

GOLDEN_PATH: Final = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
)
# Every event of a turn: the golden path plus the failure that may end it instead.
TURN_EVENTS: Final = frozenset((*GOLDEN_PATH, "agent_error"))
CONTROL_TYPES: Final = frozenset(
    {
        "ping",
        "pong",
        "heartbeat",
        "heartbeat_ack",
        "ack",
        "connection_established",
        "system_message",
    }
)
VOLATILE_FIELDS: Final = frozenset(
    {
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
        "server_id",  # which instance answered, never what it answered
    }
)

# Where a flat user message (chat_message) may carry its text, in the legacy order.
_FLAT_TEXT_KEYS: Final = ("content", "text", "message")


def canonical_client(msg: Message) -> Message:
    """A client message of any legacy shape in the canonical envelope.

    Returns ``msg`` itself when it is already canonical or of an unknown type, so a
    caller can forward the original bytes; otherwise a new dict (``msg`` is not changed).
    """
    msg_type = msg.get("type")
    if not isinstance(msg_type, str):
        return msg
    canonical_type = ALIASES.get(msg_type, msg_type)
    if canonical_type not in ENVELOPED_TYPES:
        return msg  # unknown types reach the router as sent; it acks them by that type
    payload = msg.get("payload")
    if isinstance(payload, dict):
        if canonical_type == "user_message" and "content" in payload and "text" not in payload:
            payload = {("text" if key == "content" else key): v for key, v in payload.items()}
        elif canonical_type == msg_type and len(msg) == 2:
            return msg  # already {"type", "payload"}: the common case costs nothing
        if len(msg) > 2:
            # Stray top-level fields join the payload; the payload's own keys win, but
            # for run_id, which legacy read from the top level first (PROTOCOL.md 2).
            payload = {**_top_level_fields(msg), **payload}
            run_id = msg.get("run_id")
            if isinstance(run_id, str) and run_id:
                payload["run_id"] = run_id
    elif canonical_type == "user_message":
        payload = _flat_user_payload(msg)
    else:
        payload = _top_level_fields(msg)
    return {"type": canonical_type, "payload": payload}


def _top_level_fields(msg: Message) -> Message:
    fields = {key: value for key, value in msg.items() if key != "type" and key != "payload"}
    payload = msg.get("payload")
    if payload is not None and not isinstance(payload, dict):
        fields["payload"] = payload  # kept rather than lost; only null means "none"
    return fields


def _flat_user_payload(msg: Message) -> Message:
    # The flat chat_message: {"type", "content", "user_id", "thread_id", "run_id", ...}.
    text = ""
    for key in _FLAT_TEXT_KEYS:
        value = msg.get(key)
        if isinstance(value, str):
            text = value
            break
    references = msg.get("references")
    payload: Message = {
        "text": text,
        "thread_id": msg.get("thread_id"),
        "references": references if isinstance(references, list) else [],
    }
    # Legacy answered with the client's run_id; keeping it keeps the events' run_id.
    # user_id is dropped: identity comes from the verified credential, never the body.
    run_id = msg.get("run_id")
    if run_id is not None:
        payload["run_id"] = run_id
    return payload


def attach_data(head: Message, data: Message) -> Message:
    """Complete ``head`` into a canonical turn event: the top-level mirrors, then ``data``.

    ``tool_name`` is mirrored whenever ``data`` has one, ``results`` on ``tool_completed``
    whenever ``data`` has a ``result``. Mutates and returns ``head``.
    """
    if "tool_name" in data:
        head["tool_name"] = data["tool_name"]
    if "result" in data and head.get("type") == "tool_completed":
        head["results"] = data["result"]
    head["data"] = data
    return head


def turn_event(
    event_type: str,
    data: Message,
    *,
    run_id: str,
    agent_name: str,
    timestamp: str,
    user_id: str | None = None,
) -> Message:
    """A canonical turn event (``user_id`` omitted when None)."""
    head: Message = {"type": event_type, "run_id": run_id}
    if user_id is not None:
        head["user_id"] = user_id
    head["agent_name"] = agent_name
    head["timestamp"] = timestamp
    return attach_data(head, data)


def strip_volatile(obj: Any) -> Any:
    """``obj`` without any VOLATILE_FIELDS key, at any depth (new lists and dicts)."""
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in VOLATILE_FIELDS}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(strip_volatile(v) for v in obj)
    return obj
