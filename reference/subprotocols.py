"""The legacy subprotocol answer rule.

Pure. A browser that offered a subprotocol and gets none back fails the connection,
so the answer must follow exactly what the legacy code did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

TOKEN_PREFIXES: Final = ("jwt.", "jwt-auth.", "bearer.")
BARE_PROTOCOLS: Final = ("jwt-auth", "jwt", "bearer")


class UnsupportedSubprotocolError(ValueError):
    """The client offered subprotocols, none of which the legacy code accepted."""


def parse_offer(header_values: Iterable[str]) -> list[str]:
    """Split ``Sec-WebSocket-Protocol`` header values into offered entries, in order."""
    return [entry.strip() for value in header_values for entry in value.split(",") if entry.strip()]


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    """The entry to answer: the first token-carrying one, else the first bare known one.

    Returns None when nothing was offered; raises UnsupportedSubprotocolError when
    something was offered but none of it is acceptable.
    """
    for entry in offered:
        if entry.startswith(TOKEN_PREFIXES):
            return entry
    for entry in offered:
        if entry in BARE_PROTOCOLS:
            return entry
    if offered:
        raise UnsupportedSubprotocolError("no supported subprotocol offered")
    return None
