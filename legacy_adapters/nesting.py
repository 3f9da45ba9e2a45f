"""Envelope transforms the dialects share: where event fields live, greetings, errors.

Every function is pure and rebuilds only the levels it changes (shallow copies), so
nested event data is shared with the input, never copied deeply.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any, Final

from strangler.legacy_adapters.base import Context, Greeting
from strangler.legacy_adapters.canonical import GOLDEN_PATH, Message, attach_data, canonical_client

CANONICAL_ID_PREFIX: Final = "main_"  # the unified router's connection ids: main_<hex>
CONNECTION_ESTABLISHED: Final = "connection_established"
SYSTEM_MESSAGE: Final = "system_message"
# Either greeting's type ("x in tuple" is safe for unhashable JSON values).
GREETING_TYPES: Final = (CONNECTION_ESTABLISHED, SYSTEM_MESSAGE)
ANONYMOUS: Final = "anonymous"
HEARTBEAT_INTERVAL_S: Final = 25
MAX_MESSAGE_SIZE: Final = 8192
INVALID_MESSAGE: Final = "INVALID_MESSAGE"

# Top-level fields of a flat (critical) event; every other top-level key is event data.
FLAT_HEAD: Final = frozenset({"type", "run_id", "agent_name", "timestamp"})
# Data keys a flat event cannot carry: they would collide with its envelope.
FLAT_RESERVED_DATA_KEYS: Final = FLAT_HEAD | {"critical"}
# Canonical error codes that the flat error frame spells differently.
_FLAT_ERROR_NAMES: Final = {INVALID_MESSAGE: "invalid_json"}
_CANONICAL_ERROR_CODES: Final = {flat: code for code, flat in _FLAT_ERROR_NAMES.items()}
# datetime cannot represent later instants; a clock is never that far off anyway.
_MAX_EPOCH: Final = 253_402_300_799.0
_ABSENT: Final[Any] = object()


# -- turn events ----------------------------------------------------------------------


def data_to_payload(event: Message, data: Message) -> Message:
    """A canonical turn event in the older generation: under ``payload``, no user_id."""
    frame = event.copy()
    del frame["data"]
    frame.pop("user_id", None)
    tool_name = frame.pop("tool_name", _ABSENT)
    results = frame.pop("results", _ABSENT)
    # Normally mirrors of data; otherwise they move inside, where this generation reads.
    missing_tool = tool_name is not _ABSENT and "tool_name" not in data
    missing_result = results is not _ABSENT and "result" not in data
    if missing_tool or missing_result:
        data = data.copy()
        if missing_tool:
            data["tool_name"] = tool_name
        if missing_result:
            data["result"] = results
    frame["payload"] = data
    return frame


def payload_to_data(frame: Message, payload: Message) -> Message:
    """An older-generation turn event back in the canonical ``data`` nesting."""
    head = frame.copy()
    del head["payload"]
    return attach_data(head, payload)


def data_to_flat(event: Message, data: Message) -> Message:
    """A canonical turn event as a flat critical event: every field top-level."""
    head = event.copy()
    del head["data"]
    head.pop("user_id", None)
    tool_name = head.pop("tool_name", _ABSENT)
    results = head.pop("results", _ABSENT)
    if tool_name is not _ABSENT and "tool_name" not in data:
        head["tool_name"] = tool_name
    if results is not _ABSENT and "result" not in data:
        head["result"] = results
    frame = {**head, **data}
    if not data.keys().isdisjoint(head):
        frame.update(head)  # the envelope wins: a data key must never retype an event
    frame["critical"] = True
    return frame


def flat_to_data(frame: Message) -> Message:
    """A flat critical event back in the canonical ``data`` nesting."""
    head: Message = {}
    data: Message = {}
    for key, value in frame.items():
        if key in FLAT_HEAD:
            head[key] = value
        elif key != "critical":
            data[key] = value
    return attach_data(head, data)


# -- connection ids, greetings, heartbeats ----------------------------------------------


def swap_prefix(connection_id: Any, old: str, new: str) -> Any:
    """``connection_id`` in another generation's prefix (non-strings unchanged)."""
    if not isinstance(connection_id, str) or connection_id.startswith(new):
        return connection_id
    return new + connection_id.removeprefix(old)


def with_connection_id(frame: Message, connection_id: Any) -> Message:
    """``frame`` with ``data.connection_id`` replaced; ``frame`` itself if nothing changes."""
    data = frame.get("data")
    if not isinstance(data, dict) or data.get("connection_id", _ABSENT) == connection_id:
        return frame
    return {**frame, "data": {**data, "connection_id": connection_id}}


def prefixed(frame: Message, old: str, new: str) -> Message:
    """``frame`` with its ``data.connection_id`` moved from prefix ``old`` to ``new``."""
    data = frame.get("data")
    if not isinstance(data, dict) or "connection_id" not in data:
        return frame
    return with_connection_id(frame, swap_prefix(data["connection_id"], old, new))


def established_for(event: Message, mode: str, id_prefix: str | None) -> Message:
    """A canonical connection_established reporting ``mode`` (and the dialect's id prefix)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return event
    changes: Message = {}
    if data.get("mode") != mode:
        changes["mode"] = mode
    if id_prefix is not None and "connection_id" in data:
        connection_id = swap_prefix(data["connection_id"], CANONICAL_ID_PREFIX, id_prefix)
        if connection_id != data["connection_id"]:
            changes["connection_id"] = connection_id
    if not changes:
        return event
    return {**event, "data": {**data, **changes}}


def unprefixed(frame: Message, id_prefix: str | None) -> Message:
    """``frame`` with a ``data.connection_id`` of prefix ``id_prefix`` in the canonical one.

    Ids of another form (the older ``ws_<ms>_<hex>``) are left as they are.
    """
    data = frame.get("data")
    if id_prefix is None or not isinstance(data, dict):
        return frame
    connection_id = data.get("connection_id")
    if not isinstance(connection_id, str) or not connection_id.startswith(id_prefix):
        return frame
    return with_connection_id(frame, CANONICAL_ID_PREFIX + connection_id.removeprefix(id_prefix))


def greeting_from_canonical(
    event: Message, ctx: Context, default: Greeting, id_prefix: str | None
) -> Message:
    """The canonical greeting in the route's configured shape (``default``: the dialect's).

    ``connection_established`` reports ``ctx.mode`` with a ``<id_prefix><hex>`` id (None:
    the canonical ``main_``); ``system_message`` is the older greeting and its ws_ id.
    """
    if (ctx.greeting or default) == SYSTEM_MESSAGE:
        return to_system_message(event, ctx)
    return established_for(event, ctx.mode, id_prefix)


def greeting_to_canonical(frame: Message, mode: str, id_prefix: str | None) -> Message:
    """Either greeting shape of a dialect as the canonical connection_established.

    Whichever shape the route was configured with, so a stream can be read back without
    knowing the configuration; ``data.mode`` stays the dialect's ``mode``.
    """
    if frame.get("type") == SYSTEM_MESSAGE:
        return from_system_message(frame, mode)
    return unprefixed(frame, id_prefix)


def heartbeat_for(
    event: Message, ctx: Context, default: Greeting, id_prefix: str | None
) -> Message:
    """A canonical heartbeat carrying the connection id the route's greeting gave.

    Before a greeting was seen, only a ``connection_established`` id can be derived.
    """
    if ctx.connection_id is not None:
        return with_connection_id(event, ctx.connection_id)
    if id_prefix is None or (ctx.greeting or default) != CONNECTION_ESTABLISHED:
        return event
    return prefixed(event, CANONICAL_ID_PREFIX, id_prefix)


def to_system_message(event: Message, ctx: Context) -> Message:
    """A canonical connection_established as the older ``system_message`` greeting."""
    data = event.get("data")
    if not isinstance(data, dict):
        data = {}
    # The greeting's own clock, so the rendering stays a function of its input.
    stamp = _epoch(event.get("timestamp"))
    user_id = data.get("user_id")
    if user_id is None:
        user_id = ctx.user_id if ctx.user_id is not None else ANONYMOUS
    return {
        "type": "system_message",
        "data": {
            "event": "connection_established",
            "connection_id": ws_connection_id(data.get("connection_id"), stamp),
            "user_id": user_id,
            "server_time": datetime.fromtimestamp(stamp, UTC).isoformat(),
            "connection_ready": True,
            "config": {
                "heartbeat_interval": HEARTBEAT_INTERVAL_S,
                "max_message_size": MAX_MESSAGE_SIZE,
            },
        },
    }


def from_system_message(frame: Message, mode: str) -> Message:
    """An older ``system_message`` greeting as the canonical connection_established."""
    data = frame.get("data")
    if not isinstance(data, dict) or data.get("event") != "connection_established":
        return frame
    return {
        "type": "connection_established",
        "data": {
            "mode": mode,
            "user_id": data.get("user_id"),
            "connection_id": data.get("connection_id"),
            "golden_path_events": list(GOLDEN_PATH),
        },
        "timestamp": _iso_epoch(data.get("server_time")),
        "server_id": None,
        "correlation_id": None,
    }


def ws_connection_id(canonical_id: Any, stamp: float) -> str:
    """The older ``ws_<ms>_<8 hex>`` id, keeping the random part of the canonical id."""
    suffix = ""
    if isinstance(canonical_id, str):
        suffix = (canonical_id.partition("_")[2] or canonical_id)[:8]
    return f"ws_{int(stamp * 1000)}_{suffix}"


def _epoch(value: Any) -> float:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= _MAX_EPOCH
    ):
        return float(value)
    return time.time()


def _iso_epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


# -- errors -----------------------------------------------------------------------------


def data_error(message: str) -> Message:
    """The ``data``-nested error of the main generations (the socket stays open)."""
    return {
        "type": "error",
        "data": {"error_code": INVALID_MESSAGE, "message": message},
        "timestamp": time.time(),
    }


def flat_error(message: str) -> Message:
    """The flat error of the flat and legacy dialects."""
    return {"type": "error", "error": "invalid_json", "message": message}


def error_to_flat(event: Message) -> Message:
    """A canonical ``error`` frame in the flat spelling (no timestamp, code renamed)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return event
    frame = {key: value for key, value in event.items() if key != "data" and key != "timestamp"}
    for key, value in data.items():
        if key == "error_code":
            frame["error"] = _flat_error_name(value)
        else:
            frame[key] = value
    return frame


def _flat_error_name(code: Any) -> Any:
    if not isinstance(code, str):
        return code
    return _FLAT_ERROR_NAMES.get(code) or code.lower()


def error_from_flat(frame: Message) -> Message:
    """A flat ``error`` frame in the canonical ``data`` spelling."""
    if "data" in frame or "error" not in frame:
        return frame
    event: Message = {"type": frame["type"]}
    data: Message = {}
    for key, value in frame.items():
        if key == "error":
            if isinstance(value, str):
                value = _CANONICAL_ERROR_CODES.get(value) or value.upper()
            data["error_code"] = value
        elif key == "timestamp":
            event[key] = value
        elif key != "type":
            data[key] = value
    event["data"] = data
    return event


# -- the main generation's family -----------------------------------------------------


class DataNestingAdapter:
    """A dialect of the newest generation (events under ``data``): main, factory, isolated.

    Turn events are canonical already; only the greeting differs (``data.mode`` and
    the connection id prefix, or the older ``system_message`` where a route is
    configured with it), and heartbeats repeat the greeting's id.
    """

    __slots__ = ("_id_prefix", "_mode", "name")

    def __init__(self, name: str, mode: str, id_prefix: str | None) -> None:
        self.name = name
        self._mode = mode  # the data.mode a system_message greeting reads back as
        self._id_prefix = id_prefix  # None: the canonical main_ prefix is the dialect's

    def client_to_canonical(self, msg: Message) -> Message:
        """A client message as a canonical client message."""
        return canonical_client(msg)

    def event_from_canonical(self, event: Message, ctx: Context) -> Message:
        """The canonical event with the route's greeting and this dialect's connection id."""
        kind = event.get("type")
        if kind == CONNECTION_ESTABLISHED:
            return greeting_from_canonical(event, ctx, CONNECTION_ESTABLISHED, self._id_prefix)
        if kind == "heartbeat":
            return heartbeat_for(event, ctx, CONNECTION_ESTABLISHED, self._id_prefix)
        return event

    def event_to_canonical(self, frame: Message) -> Message:
        """Either greeting and heartbeats with the canonical id (``data.mode`` is kept)."""
        kind = frame.get("type")
        if kind in GREETING_TYPES:
            return greeting_to_canonical(frame, self._mode, self._id_prefix)
        if kind == "heartbeat":
            return unprefixed(frame, self._id_prefix)
        return frame

    def invalid_frame_reply(self, problem: str) -> Message | None:
        """The ``data``-nested INVALID_MESSAGE error."""
        return data_error(problem)
