"""The native scanner answers as the Python one does, chunk by chunk, on any stream.

The native core (proxy/relay/_wsscan.c) walks the usual chunk itself and hands every
other to the Python walk. A wrong hand-over, or a fast path that reads a frame otherwise,
shows here as a difference in a Scan or in the state left behind: generated streams mix
every frame kind, length encoding, mask mistakes, reserved bits and opcodes, close bodies
good and bad, text whose type is where it usually is and where it is not, fragments, and
messages over the limit, cut into chunks at arbitrary places.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from strangler.proxy.relay.turnscan import EVENT_TYPES, OTHER_TYPES, TURN_TYPES
from strangler.proxy.relay.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameRules,
    PyFrameScanner,
    frame,
)
from tests.unit.proxy.relay.conftest import native_scanner

STATE = (
    "_need",
    "_kind",
    "_fragmented",
    "_msg_bytes",
    "_limit",
    "_error",
    "_stash",
    "closed",
    "close_code",
    "queued",
)
TURN_MESSAGE = b'{"type": "user_message"}'
TYPES = (*TURN_TYPES, *EVENT_TYPES, *OTHER_TYPES, "", "agent_", "x" * 40, "agent_start\\u0065d")


def state(scanner: FrameRules) -> tuple[object, ...]:
    typing = scanner._typing
    reading = (typing.buf, typing.key, typing.phase) if hasattr(typing, "buf") else typing
    return (*(getattr(scanner, name) for name in STATE), reading)


@st.composite
def text_payload(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["usual", "spaced", "other_key_first", "raw", "cut"]))
    name = draw(st.sampled_from(TYPES))
    tail = draw(st.binary(max_size=40))
    if kind == "usual":
        return b'{"type": "' + name.encode() + b'", "payload": ' + tail + b"}"
    if kind == "spaced":
        return b'{"type":"' + name.encode() + b'"' + tail
    if kind == "other_key_first":
        return b'{"id": 7, "type": "' + name.encode() + b'"}'
    if kind == "cut":
        whole = b'{"type": "' + name.encode() + b'"}'
        return whole[: draw(st.integers(0, len(whole)))]
    return draw(st.binary(max_size=60))


@st.composite
def one_frame(draw: st.DrawFn, masked: bool) -> bytes:
    op = draw(
        st.sampled_from(
            [OP_TEXT] * 6
            + [OP_BINARY, OP_CONTINUATION, OP_CONTINUATION, OP_PING, OP_PONG]
            + [OP_CLOSE, 0x3, 0xB]
        )
    )
    fin = draw(st.booleans()) if op <= OP_BINARY else draw(st.integers(0, 9)) > 0
    if op == OP_TEXT or (op == OP_CONTINUATION and draw(st.booleans())):
        payload = draw(text_payload())
    elif op == OP_CLOSE:
        payload = draw(
            st.sampled_from(
                [b"", b"\x03", b"\x03\xe8", b"\x03\xe8bye", b"\x03\xed", b"\x0f\xa1\xff\xfe"]
            )
        )
    else:
        size = draw(st.sampled_from([0, 1, 5, 125, 126, 200, 70000]))
        payload = b"\x00" * size
    rsv = draw(st.sampled_from([0] * 8 + [0x40, 0x10]))
    wrong_mask = draw(st.integers(0, 30)) == 0
    mask = draw(st.binary(min_size=4, max_size=4)) if masked != wrong_mask else None
    wire = frame(op, payload, fin=fin, mask=mask, rsv=rsv)
    if draw(st.integers(0, 60)) == 0:
        # A 64-bit length with its top bit set.
        wire = bytes((wire[0], (wire[1] & 0x80) | 127)) + b"\x80" + b"\x00" * 7
    return wire


@st.composite
def stream(draw: st.DrawFn) -> tuple[bool, bool, bool, int, list[bytes]]:
    masked = draw(st.booleans())
    observe = draw(st.booleans())
    extensions = draw(st.booleans())
    limit = draw(st.sampled_from([0, 0, 64, 4096]))
    frames = draw(st.lists(one_frame(masked), min_size=1, max_size=12))
    data = b"".join(frames)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return masked, observe, extensions, limit, chunks


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream())
@example((True, True, True, 0, [frame(OP_TEXT, TURN_MESSAGE, mask=b"abcd")]))
@example((False, True, True, 0, [frame(OP_TEXT, b'{"type":"agent_started"}') * 20]))
@example((True, True, True, 0, [frame(OP_TEXT, TURN_MESSAGE, mask=b"abcd", rsv=0x40)]))
def test_native_and_python_scanners_agree_chunk_by_chunk(
    case: tuple[bool, bool, bool, int, list[bytes]],
) -> None:
    masked, observe, extensions, limit, chunks = case
    native_class = native_scanner()
    python = PyFrameScanner(limit, masked=masked, extensions=extensions, observe=observe)
    native = native_class(limit, masked=masked, extensions=extensions, observe=observe)
    for i, chunk in enumerate(chunks):
        # The tunnel has a client's scanner count turn messages while a turn is open.
        native.queueing = python.queueing = masked and i % 3 == 1
        assert native.feed(chunk) == python.feed(chunk)
        assert state(native) == state(python)


def test_the_native_core_takes_the_usual_chunk_without_the_python_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path is really taken: a whole echo of JSON messages, both directions,
    never reaches `_walk` (else the native core would be only a detour)."""
    native_class = native_scanner()

    def walk(self: FrameRules, data: bytes) -> None:
        raise AssertionError("handed to the Python walk")

    monkeypatch.setattr(FrameRules, "_walk", walk)
    message = b'{"type": "user_message", "payload": {"message": "hello"}}'
    for masked in (True, False):
        scanner = native_class(1 << 20, masked=masked, observe=True)
        wire = frame(OP_TEXT, message, mask=b"\x01\x02\x03\x04" if masked else None)
        scan = scanner.feed(wire * 3 + frame(OP_PING, b"", mask=b"abcd" if masked else None))
        assert (scan.messages, scan.payload_bytes, scan.at_boundary) == (3, 3 * len(message), True)
        assert scan.events == (0x111 if masked else 0)  # three turn messages from a client


@pytest.mark.parametrize("native", [False, True])
def test_turn_messages_behind_an_open_turn_are_counted_not_reported(native: bool) -> None:
    scanner_class = native_scanner() if native else PyFrameScanner
    scanner = scanner_class(1 << 20, masked=True, observe=True)
    turn = frame(OP_TEXT, TURN_MESSAGE, mask=b"abcd")
    assert scanner.feed(turn).events == 0x1
    scanner.queueing = True
    assert scanner.feed(turn * 2).events == 0 and scanner.queued == 2
    # A type only the Python walk settles (another key first) is counted the same way.
    other_first = frame(OP_TEXT, b'{"id": 1, "type": "user_message"}', mask=b"abcd")
    assert scanner.feed(other_first).events == 0 and scanner.queued == 3
    scanner.queueing = False
    assert scanner.feed(other_first).events == 0x1 and scanner.queued == 3


def test_an_idle_native_scanner_is_smaller_than_the_python_one() -> None:
    native = native_scanner()(1 << 20, masked=True, observe=True)
    python = PyFrameScanner(1 << 20, masked=True, observe=True)
    assert sys.getsizeof(native) < sys.getsizeof(python)
