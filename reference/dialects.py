"""The legacy dialects: which greeting, envelope and auth style each one uses.

Pure: the backends look traits up here instead of branching on route names.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Dialect(StrEnum):
    """A wire format spoken by one family of legacy routes."""

    MAIN = "main"
    MAIN_PAYLOAD = "main_payload"
    FACTORY = "factory"
    ISOLATED = "isolated"
    LEGACY = "legacy"


class AuthStyle(StrEnum):
    """When a route authenticates and how it tells the client it failed."""

    FRAME_THEN_CLOSE = "frame_then_close"  # accept, AUTH_FAILED frame, close 1008
    REFUSE_HANDSHAKE = "refuse_handshake"  # authenticate before accept, HTTP 403
    SILENT_CLOSE = "silent_close"  # accept, close 1008 with a reason, no frame
    NONE = "none"  # no authentication at all


class Greeting(StrEnum):
    """Which generation of the first frame a route sends."""

    CONNECTION_ESTABLISHED = "connection_established"
    SYSTEM_MESSAGE = "system_message"


class Nesting(StrEnum):
    """Where golden-path event fields live in the envelope."""

    DATA = "data"  # newer: nested under "data", top-level user_id and tool_name
    PAYLOAD = "payload"  # older: nested under "payload", no top-level user_id
    FLAT = "flat"  # critical events: every field top-level, "critical": true


AUTH_STYLE: Mapping[Dialect, AuthStyle] = {
    Dialect.MAIN: AuthStyle.FRAME_THEN_CLOSE,
    Dialect.MAIN_PAYLOAD: AuthStyle.FRAME_THEN_CLOSE,
    Dialect.FACTORY: AuthStyle.REFUSE_HANDSHAKE,
    Dialect.ISOLATED: AuthStyle.SILENT_CLOSE,
    Dialect.LEGACY: AuthStyle.NONE,
}
GREETING: Mapping[Dialect, Greeting] = {
    Dialect.MAIN: Greeting.CONNECTION_ESTABLISHED,
    Dialect.MAIN_PAYLOAD: Greeting.SYSTEM_MESSAGE,
    Dialect.FACTORY: Greeting.CONNECTION_ESTABLISHED,
    Dialect.ISOLATED: Greeting.CONNECTION_ESTABLISHED,
    Dialect.LEGACY: Greeting.SYSTEM_MESSAGE,
}
NESTING: Mapping[Dialect, Nesting] = {
    Dialect.MAIN: Nesting.DATA,
    Dialect.MAIN_PAYLOAD: Nesting.PAYLOAD,
    Dialect.FACTORY: Nesting.DATA,
    Dialect.ISOLATED: Nesting.DATA,
    Dialect.LEGACY: Nesting.FLAT,
}

# The values ``?mode=`` accepts on the main routes.
_MODE_DIALECTS: Mapping[str, Dialect] = {
    "main": Dialect.MAIN,
    "factory": Dialect.FACTORY,
    "isolated": Dialect.ISOLATED,
    "legacy": Dialect.LEGACY,
}


def select_dialect(mode: str | None, user_agent: str | None) -> Dialect:
    """The dialect of a main route (``/ws``): ``?mode=`` wins over the User-Agent."""
    if mode is not None and mode.lower() in _MODE_DIALECTS:
        return _MODE_DIALECTS[mode.lower()]
    agent = (user_agent or "").lower()
    if "factory" in agent:
        return Dialect.FACTORY
    if "isolated" in agent:
        return Dialect.ISOLATED
    return Dialect.MAIN


def connection_mode(dialect: Dialect) -> str:
    """The ``data.mode`` a connection_established greeting reports for a dialect."""
    return "main" if dialect is Dialect.MAIN_PAYLOAD else dialect.value
