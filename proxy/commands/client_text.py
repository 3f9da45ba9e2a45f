"""What `strangler client` prints and sends, as pure functions of frames and close codes.

Kept apart from the connection code so each wording can be checked without a socket:
one line per event, the line for a close, the verdict on an authentication failure, and
the frame a line typed on stdin becomes.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from strangler.legacy_adapters.canonical import ALIASES, TURN_EVENTS, TURN_TYPES

# The names RFC 6455 (section 7.4.1) and the IANA registry give the close codes a person
# meets here; others print as their number alone.
CLOSE_NAMES: Final = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1006: "abnormal closure, no close frame",
    1007: "invalid payload",
    1008: "policy violation",
    1009: "message too big",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
}
CLOSE_POLICY_VIOLATION: Final = 1008
AUTH_ERROR_CODE: Final = "AUTH_FAILED"
# The handshake statuses that mean the credential was refused (the factory route's 403).
AUTH_STATUSES: Final = frozenset({401, 403})
TURN_END: Final = frozenset({"agent_completed", "agent_error"})
# What the legacy surface answers each client frame with (docs: "Messages from clients"):
# a turn for a turn message, nothing for these two, one frame for anything else (pong,
# ack, or an error for a frame that is not a JSON object with a type).
SILENT_TYPES: Final = frozenset({"pong", "heartbeat_ack"})
# Frames the server sends of its own accord, answering nothing.
UNPROMPTED_TYPES: Final = frozenset({"connection_established", "system_message", "heartbeat"})


def describe(event: dict[str, Any]) -> str:
    """One line for an event: its type and the field a person wants to see."""
    kind = str(event.get("type", "?"))
    body = event.get("data") or event.get("payload") or event
    if not isinstance(body, dict):
        body = {}
    detail = (
        (f"mode={body['mode']}" if kind == "connection_established" and "mode" in body else "")
        or _error_detail(event)
        or body.get("reasoning")
        or body.get("tool_name")
        or event.get("tool_name")
        or body.get("final_response")
        or body.get("message")
        or body.get("event")
        or ""
    )
    return f"{kind:<24} {str(detail)[:70]}".rstrip()


def _error_detail(event: dict[str, Any]) -> str:
    """`CODE: message` of an error frame in any of the dialects' shapes ("" otherwise)."""
    code, message = _error_fields(event)
    return f"{code}: {message}" if code and message else code or message


def _error_fields(event: dict[str, Any]) -> tuple[str, str]:
    if event.get("type") not in ("error", "error_message"):
        return "", ""
    data = event.get("data")
    nested = data if isinstance(data, dict) else {}
    code = event.get("error_code") or nested.get("error_code") or event.get("error") or ""
    message = event.get("error_message") or nested.get("message") or event.get("message") or ""
    return str(code), str(message)


def close_text(code: int | None, reason: str) -> str:
    """`1012 (service restart) "service restart"`: the code, its name, and the reason."""
    if code is None:
        return "no close code"
    name = CLOSE_NAMES.get(code)
    text = f"{code} ({name})" if name else str(code)
    return f"{text} {json.dumps(reason)}" if reason else text


def auth_failure(events: list[dict[str, Any]], code: int | None, reason: str) -> str | None:
    """Why authentication failed, from the frames and the close; None when it did not.

    The routes refuse in their legacy styles: main sends an AUTH_FAILED frame and closes
    1008, isolated closes 1008 with a reason and no frame (see docs/LEGACY_SURFACE).
    1008 alone also means "too many connections", so only a reason naming authentication
    counts without the frame.
    """
    frame = next((e for e in events if _error_fields(e)[0] == AUTH_ERROR_CODE), None)
    closed = f"the server closed the connection with {close_text(code, reason)}"
    if frame is not None:
        _, message = _error_fields(frame)
        return f"{AUTH_ERROR_CODE} {json.dumps(message)}; {closed}"
    if code == CLOSE_POLICY_VIOLATION and "auth" in reason.lower():
        return closed
    return None


def refusal_text(status: int, reason: str, body: bytes) -> str:
    """`HTTP 403 Forbidden: {"error": ...}`: a refused handshake's status line and body."""
    text = body.decode(errors="replace").strip()
    if len(text) > 300:
        text = text[:300] + "..."
    head = f"HTTP {status} {reason}".rstrip()
    return f"{head}: {text}" if text else f"{head}, empty body"


def user_frame(line: str) -> str | None:
    """The text frame a line typed on stdin becomes; None for a blank line.

    A line starting with `{` is sent as typed (JSON of the client's choosing, malformed
    on purpose or not). Any other line is a chat message in the canonical envelope, which
    every route's dialect accepts (the adapters canonicalise client messages).
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    if text.lstrip().startswith("{"):
        return text
    return json.dumps(
        {"type": "user_message", "payload": {"text": text, "references": [], "thread_id": None}}
    )


def sent_text(frame: str) -> str:
    """The line echoed for a frame the client sent: its type, or that it is not JSON."""
    try:
        message = json.loads(frame)
    except ValueError:
        return f"{'(not JSON)':<24} {frame[:70]}".rstrip()
    if not isinstance(message, dict):
        return f"{'(not an object)':<24} {frame[:70]}".rstrip()
    payload = message.get("payload")
    text = (payload.get("text") or payload.get("user_request")) if isinstance(payload, dict) else ""
    return f"{message.get('type', '?')!s:<24} {str(text or '')[:70]}".rstrip()


def expects(frame: str) -> Literal["turn", "reply", "nothing"]:
    """What the server answers `frame` with: a whole turn, one frame, or nothing."""
    try:
        message = json.loads(frame)
    except ValueError:
        return "reply"  # an error frame
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        return "reply"
    if ALIASES.get(kind, kind) in TURN_TYPES:
        return "turn"
    return "nothing" if kind in SILENT_TYPES else "reply"


def answers(event: dict[str, Any]) -> Literal["turn", "reply", "nothing"]:
    """What a received frame completes: a turn (its last event), a reply, or nothing."""
    kind = event.get("type")
    if kind in TURN_END:
        return "turn"
    if kind in TURN_EVENTS or kind in UNPROMPTED_TYPES:
        return "nothing"
    return "reply"
