"""What a text frame's `type` is, read from its first bytes (pure: no I/O, no asyncio).

Turn observation (proxy/relay/turns.py) needs one fact per text message: is it a turn
message (client to backend) or which golden-path event it is (backend to client). Both
relays ask here: the byte tunnel from inside its frame scanner (proxy/relay/wsframes.py),
on the first bytes of a payload as they pass, the per-frame relay on each whole message.

Every producer of these frames (json.dumps in the legacy code, the reference backends,
the router) writes `type` first, so `type_code` first tries the prefix it almost always
is, `{"type": "` or `{"type":"`, and looks the value up as bytes: nothing is parsed,
decoded or copied but the value itself. Only when the type is not there (another key
first, whitespace after the brace, an escape in the value) does it read the first
`READ_LIMIT` bytes with the JSON scanner, as far as the top-level `type` key. A type
beyond those bytes, or a frame that is not JSON, is "not a type we watch" (0): the cost
per frame stays bounded, however large the frame. A duplicated `type` key counts once,
the first (a JSON parser keeps the last; no producer writes two).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from strangler.legacy_adapters.canonical import ALIASES, GOLDEN_PATH
from strangler.legacy_adapters.canonical import TURN_TYPES as CANONICAL_TURN_TYPES

# Client messages that start a turn, by the type as sent: the canonical turn types and
# their legacy aliases (docs/PROTOCOL.md, section 2), as the adapters define them.
TURN_TYPES: Final = (
    *sorted(CANONICAL_TURN_TYPES),
    *sorted(alias for alias, kind in ALIASES.items() if kind in CANONICAL_TURN_TYPES),
)
TURN: Final = 1  # the code of every turn message

# The turn's events in golden-path order, then its failure (docs/PROTOCOL.md, section 3).
EVENT_TYPES: Final = (*GOLDEN_PATH, "agent_error")
AGENT_STARTED: Final = 1
AGENT_COMPLETED: Final = 5
AGENT_ERROR: Final = 6

# Codes are small and never 0, so a scanner can pack a chunk's codes into one int,
# four bits each, in the order the frames came.
CODE_BITS: Final = 4


def code_count(codes: int) -> int:
    """How many codes a scanner packed into one int (each nonzero, CODE_BITS wide)."""
    return (codes.bit_length() + CODE_BITS - 1) // CODE_BITS


CLIENT_CODES: Final[Mapping[bytes, int]] = {t.encode(): TURN for t in TURN_TYPES}
SERVER_CODES: Final[Mapping[bytes, int]] = {
    t.encode(): i for i, t in enumerate(EVENT_TYPES, start=1)
}

# The other types of the protocol (sections 2 and 3): known, never watched.
OTHER_TYPES: Final = (
    "ping",
    "pong",
    "heartbeat",
    "heartbeat_ack",
    "stop_agent",
    "switch_thread",
    "connection_established",
    "system_message",
    "ack",
    "error",
    "error_message",
)


def _by_prefix(codes: Mapping[bytes, int]) -> dict[bytes, int]:
    """Every known type's usual start (`{"type": "T`, `{"type":"T`): its code, or 0."""
    known = {t.encode(): 0 for t in (*TURN_TYPES, *EVENT_TYPES, *OTHER_TYPES)}
    known.update(codes)
    return {p + t: code for t, code in known.items() for p in (b'{"type": "', b'{"type":"')}


# The scanners' fast path: the bytes from the payload's start to the quote after the
# value, looked up whole (one find, one slice, one lookup); a miss goes to type_code.
CLIENT_PREFIXES: Final[Mapping[bytes, int]] = _by_prefix(CLIENT_CODES)
SERVER_PREFIXES: Final[Mapping[bytes, int]] = _by_prefix(SERVER_CODES)
VALUE_AT: Final = len(b'{"type":"')  # where a value starts, or its quote with a space
# A server frame's usual opening and its type's first character: 0 when no watched
# event starts so (pong, heartbeat, ack, a client's echo...), one slice and one lookup
# for most frames; a first character that may start one (or a backslash) is not here.
SERVER_OPENINGS: Final[Mapping[bytes, int]] = {
    b'{"type": "' + bytes((c,)): 0
    for c in range(256)
    if c not in {t.encode()[0] for t in EVENT_TYPES} | {ord("\\")}
}
NEED_MORE: Final = -1  # the bytes so far cannot tell: read on (at most READ_LIMIT)
READ_LIMIT: Final = 256  # bytes of a payload read for its type, at most
PREFIX: Final = b'{"type":'
# Enough bytes for the usual prefix, a space and the longest known type with its
# quotes, in whole 4-byte words (a client's are unmasked a word at a time).
FAST_WINDOW: Final = (
    (len(PREFIX) + 1 + max(len(t) for t in (*TURN_TYPES, *EVENT_TYPES, *OTHER_TYPES)) + 2 + 3)
    // 4
    * 4
)
# What a client's fast path unmasks: enough for `{"type": "T"` of every type a client
# sends (turn types and controls), in whole words. Fewer bytes, less to unmask.
_CLIENT_SENDS = (*TURN_TYPES, "ping", "pong", "heartbeat_ack", "stop_agent", "switch_thread")
CLIENT_WINDOW: Final = (len(b'{"type": "') + max(len(t) for t in _CLIENT_SENDS) + 1 + 3) // 4 * 4

_QUOTE = 0x22
_SPACE = 0x20
MAX_VALUE: Final = FAST_WINDOW - len(PREFIX) - 2  # the longest value the fast path looks up


def type_code(payload: bytes, start: int, end: int, codes: Mapping[bytes, int], whole: bool) -> int:
    """The code of the message whose payload begins at `payload[start:end]`: its type's
    code in `codes`, 0 for any other type or no type, or NEED_MORE when those bytes
    cannot tell yet. `whole`: nothing more of the message will come (it ends at `end`)."""
    if payload.startswith(PREFIX, start):
        q = start + len(PREFIX)
        if q < end and payload[q] == _SPACE:
            q += 1
        if q < end and payload[q] == _QUOTE:
            close = payload.find(b'"', q + 1, min(end, q + 2 + MAX_VALUE))
            if close > 0:
                value = payload[q + 1 : close]
                code = codes.get(value)
                if code is not None:
                    return code
                if b"\\" not in value:
                    return 0  # a type, just not one watched
            elif end - q <= MAX_VALUE and not whole:
                return NEED_MORE  # the value is cut by the end of what came
    if end - start < READ_LIMIT and not whole:
        return NEED_MORE
    found = bounded_type(payload[start : min(end, start + READ_LIMIT)])
    if found is None:
        return 0
    return codes.get(found.encode("utf-8", "surrogatepass"), 0)


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, i: int) -> int:
    """Past the JSON whitespace at `i`."""
    found = _WS.match(text, i)
    return found.end() if found is not None else i


def bounded_type(window: bytes) -> str | None:
    """The top-level `type` of the JSON object these bytes begin, when it is a string
    and lies within them; None otherwise. The fallback of `type_code`: a JSON scan of
    the keys up to `type`, each other value skipped by the decoder."""
    text = window.decode("utf-8", "replace")  # a character cut at the end becomes U+FFFD
    try:
        i = _skip(text, 0)
        if text[i : i + 1] != "{":
            return None
        i = _skip(text, i + 1)
        while text[i : i + 1] == '"':
            key, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                return None
            i = _skip(text, i + 1)
            if key == "type":
                if text[i : i + 1] != '"':
                    return None
                value: str = _DECODER.raw_decode(text, i)[0]
                return value
            _, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ",":
                return None
            i = _skip(text, i + 1)
    except ValueError:  # not JSON, or cut by the window before `type`
        return None
    return None


def message_code(payload: bytes, prefixes: Mapping[bytes, int], codes: Mapping[bytes, int]) -> int:
    """The code of a whole message (the per-frame relay's): the scanners' fast path, then
    `type_code`. `prefixes`/`codes`: CLIENT_PREFIXES/CLIENT_CODES or the SERVER pair."""
    close = payload.find(b'"', VALUE_AT + 1, FAST_WINDOW)
    if close > 0:
        code = prefixes.get(payload[:close])
        if code is not None:
            return code
    return type_code(payload, 0, len(payload), codes, True)
