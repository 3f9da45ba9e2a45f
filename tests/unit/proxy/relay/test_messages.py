"""Text messages read back out of forwarded bytes, however the bytes were cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.relay.messages import TextMessages
from strangler.proxy.relay.wsframes import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_frame,
    frame,
)


@st.composite
def message(draw: st.DrawFn, masked: bool) -> tuple[bytes | None, list[bytes]]:
    """A message as frames: its text (None for binary), and the frames on the wire, with
    control frames between its fragments."""
    text = draw(st.booleans())
    payload = draw(st.binary(max_size=300)) if text else draw(st.binary(max_size=70_000))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]

    def mask() -> bytes | None:
        return draw(st.binary(min_size=4, max_size=4)) if masked else None

    frames = []
    for i, piece in enumerate(pieces):
        op = (OP_TEXT if text else OP_BINARY) if i == 0 else OP_CONTINUATION
        frames.append(frame(op, piece, fin=i == len(pieces) - 1, mask=mask()))
        if draw(st.integers(0, 4)) == 0:
            frames.append(frame(draw(st.sampled_from([OP_PING, OP_PONG])), b"hi", mask=mask()))
    return (payload if text else None), frames


@st.composite
def stream(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    masked = draw(st.booleans())
    messages = draw(st.lists(message(masked), max_size=6))
    wire = b"".join(f for _, fs in messages for f in fs)
    wire += close_frame(1000, mask=b"abcd" if masked else None)
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    return [text for text, _ in messages if text is not None], chunks


@settings(max_examples=300, deadline=None)
@given(stream())
def test_every_text_message_comes_out_whole_and_in_order(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    texts, chunks = case
    seen: list[bytes] = []
    reader = TextMessages(seen.append)
    for chunk in chunks:
        reader.feed(chunk)
    assert seen == texts


def test_a_message_is_delivered_with_the_chunk_that_ends_it() -> None:
    seen: list[bytes] = []
    reader = TextMessages(seen.append)
    wire = frame(OP_TEXT, b'{"type": "agent_started"}', mask=b"\x01\x02\x03\x04")
    reader.feed(wire[:5])
    reader.feed(wire[5:-1])
    assert seen == []
    reader.feed(wire[-1:] + frame(OP_TEXT, b"next", mask=b"abcd")[:3])
    assert seen == [b'{"type": "agent_started"}']
