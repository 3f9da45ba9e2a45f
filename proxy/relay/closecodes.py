"""Which close frames may travel, to the letter of RFC 6455 (pure: no I/O, no aiohttp).

A close frame's body is empty, or a 2-byte code and a UTF-8 reason (RFC 6455 5.5.1).
The code must be one a peer may send (7.4):

- 1000-1003 and 1007-1014: defined by the RFC and the IANA registry;
- 3000-4999: registered by libraries and frameworks (3xxx) or private use (4xxx);
- never 1005, 1006 or 1015 (reserved for reporting: "no code", "no close frame", "TLS
  failure"), never 1004 or 1016-2999 (reserved, unassigned), never below 1000 or above
  4999.

Both relays judge every close frame of both peers by these rules, whatever aiohttp's
reader lets through (it takes 1006 and anything from 3000 up): a peer that breaks them
has broken the protocol, and its close never reaches the other side as it was.
"""

from __future__ import annotations

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_TEXT = 1007

_DEFINED = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def on_the_wire(code: int) -> bool:
    """Whether a peer may send `code` in a close frame."""
    return code in _DEFINED or 3000 <= code <= 4999


def close_body_error(body: bytes) -> int:
    """0 for a valid close frame body, else the close code its sender is failed with.

    1002 for a 1-byte body or a code that may not be sent, 1007 for a reason that is not
    UTF-8 (RFC 6455 8.1, as for a text frame).
    """
    if not body:
        return 0
    if len(body) < 2 or not on_the_wire(body[0] << 8 | body[1]):
        return CLOSE_PROTOCOL_ERROR
    reason = body[2:]
    if reason and not reason.isascii():
        try:
            reason.decode("utf-8")
        except UnicodeDecodeError:
            return CLOSE_INVALID_TEXT
    return 0
