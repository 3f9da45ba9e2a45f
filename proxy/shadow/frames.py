"""Reading a compared frame: its whole JSON object, or only its ``type`` when that is all
the comparison needs (pure: no I/O).

A turn that is not being compared (shed, or its secondary gone) still needs each event's
type, so both sides' turns stay paired with their requests; `peek_type` reads it from the
frame's first bytes, where every producer writes it (``{"type":"...`` or
``{"type": "...``), without parsing the rest. It answers only for the types whose
meaning for the pairing no dialect changes (the turn events, and the control frames the
comparison ignores); anything else, and any frame written another way, is parsed whole.
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any, Final

from strangler.legacy_adapters.canonical import TURN_EVENTS
from strangler.proxy.config.compare import NOT_COMPARED

_PREFIXES: Final = (b'{"type":"', b'{"type": "')
# A type beyond this many bytes, or with an escape in it, is not one of ours.
_LONGEST: Final = 40
_PEEKABLE: Final = frozenset(t.encode() for t in (*TURN_EVENTS, *NOT_COMPARED))


def peek_type(data: bytes) -> str | None:
    """The frame's ``type`` read from its first bytes, if it is a type the pairing knows
    and written where producers write it; None when the frame must be parsed."""
    for prefix in _PREFIXES:
        if data.startswith(prefix):
            start = len(prefix)
            end = data.find(b'"', start, start + _LONGEST)
            if end < 0:
                return None
            value = data[start:end]
            return value.decode() if value in _PEEKABLE else None
    return None


# The decoder's own scanner (C when available), called on the decoded text: json.loads
# on bytes first guesses the encoding, then goes through two Python layers per call, which
# cost twice the scan of a short event. A text frame is UTF-8 (RFC 6455, section 8.1).
# (typeshed types the C scanner's argument as another scanner; it reads a decoder's
# settings, as json.decoder does when it builds its own.)
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_WHITESPACE: Final = " \t\n\r"  # JSON's (RFC 8259, section 2)
_BOM: Final = "\ufeff"  # json.loads skips one before UTF-8 bytes; so does this


def parse(data: bytes) -> dict[str, Any] | None:
    """The frame as a JSON object; None when it is not one: not UTF-8 (a text frame
    must be, so UTF-16 or UTF-32, which ``json.loads`` would guess, is refused), what
    ``json.loads`` would refuse, or any other JSON value."""
    try:
        text = data.decode()
        if text.startswith(_BOM):
            text = text[1:]
        text = text.strip(_WHITESPACE)
        if not text.startswith("{"):
            return None
        value, end = _scan(text, 0)
    except (ValueError, StopIteration):  # bad UTF-8 or JSON (JSONDecodeError is one)
        return None
    return value if end == len(text) else None
