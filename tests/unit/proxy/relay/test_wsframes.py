"""The frame-header scanner: every frame kind, every chunk boundary, every error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from strangler.proxy.relay.closecodes import CLOSE_INVALID_TEXT
from strangler.proxy.relay.wsframes import (
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameScanner,
    Scan,
    apply_mask,
    close_frame,
    frame,
)

# Each test runs on the Python scanner and on the native one (conftest.py).
pytestmark = pytest.mark.usefixtures("each_scanner")

MASK = b"\x37\xfa\x21\x3d"


def f(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool) -> bytes:
    return frame(opcode, payload, fin=fin, mask=MASK if masked else None)


@dataclass(frozen=True)
class Layout:
    """Where each frame of a stream starts, where its payload starts, where it ends."""

    starts: tuple[int, ...]
    payloads: tuple[int, ...]
    ends: tuple[int, ...]


def layout(frames: list[bytes]) -> Layout:
    starts, payloads, ends = [], [], []
    pos = 0
    for fr in frames:
        b1 = fr[1]
        ln = b1 & 0x7F
        hl = (2 if ln < 126 else 4 if ln == 126 else 10) + (4 if b1 & 0x80 else 0)
        starts.append(pos)
        payloads.append(pos + hl)
        pos += len(fr)
        ends.append(pos)
    return Layout(tuple(starts), tuple(payloads), tuple(ends))


def feed_all(scanner: FrameScanner, chunks: list[bytes]) -> list[Scan]:
    return [scanner.feed(c) for c in chunks]


def totals(scans: list[Scan]) -> tuple[int, int, list[int | None]]:
    closes = [s.close_code for s in scans if s.close_seen]
    return sum(s.messages for s in scans), sum(s.payload_bytes for s in scans), closes


def conversation(masked: bool) -> tuple[list[bytes], int, int]:
    """A stream with every frame kind and length encoding; its messages and data bytes."""
    frames = [
        f(OP_TEXT, b'{"type":"user_message"}', masked=masked),
        f(OP_BINARY, bytes(range(256)) * 2, masked=masked),  # 16-bit length
        f(OP_TEXT, b"par", fin=False, masked=masked),
        f(OP_PING, b"are you there", masked=masked),  # control inside a fragmented message
        f(OP_CONTINUATION, b"t o", fin=False, masked=masked),
        f(OP_CONTINUATION, b"ne", masked=masked),
        f(OP_PONG, b"", masked=masked),
        f(OP_BINARY, b"\x00" * 70000, masked=masked),  # 64-bit length
        f(OP_TEXT, b"", masked=masked),
        close_frame(4001, b"app: done", mask=MASK if masked else None),
    ]
    data_bytes = 23 + 512 + 3 + 3 + 2 + 70000 + 0
    return frames, 5, data_bytes


@pytest.mark.parametrize("masked", [True, False])
def test_whole_stream_counts_messages_bytes_and_the_close(masked: bool) -> None:
    frames, messages, nbytes = conversation(masked)
    scan = FrameScanner(0, masked=masked).feed(b"".join(frames))
    assert (scan.messages, scan.payload_bytes) == (messages, nbytes)
    assert scan.close_seen and scan.close_code == 4001
    assert scan.at_boundary and scan.pending == 0 and scan.error == 0


@pytest.mark.parametrize("masked", [True, False])
def test_two_chunks_split_at_every_byte_offset_agree_with_the_whole(masked: bool) -> None:
    frames, messages, nbytes = conversation(masked)
    # The 64-bit frame is skipped arithmetically; cut it short so every offset is quick.
    frames[7] = f(OP_BINARY, b"\x00" * 65536, masked=masked)
    nbytes -= 70000 - 65536
    stream = b"".join(frames)
    where = layout(frames)
    boundaries = set(where.starts) | {len(stream)}
    for k in range(len(stream) + 1):
        scanner = FrameScanner(0, masked=masked)
        first = scanner.feed(stream[:k])
        if first.at_boundary:
            # What may go is whole frames; what is held is the start of the next header,
            # or of the close frame, which is judged whole.
            assert k - first.pending in boundaries, k
            i = where.starts.index(k - first.pending) if k - first.pending < len(stream) else -1
            is_close = frames[i][0] & 0x0F == OP_CLOSE
            assert first.pending == 0 or k < where.payloads[i] or is_close, k
            assert scanner.remaining == 0
        else:
            # Cut inside a payload: the scanner knows how much of it is still to come.
            i = next(j for j, end in enumerate(where.ends) if where.payloads[j] <= k < end)
            assert scanner.remaining == where.ends[i] - k, k
            assert first.pending == 0
        second = scanner.feed(stream[k:])
        assert second.at_boundary and second.pending == 0
        got = totals([first, second])
        assert got == (messages, nbytes, [4001]), k


@pytest.mark.parametrize("masked", [True, False])
def test_one_byte_chunks_count_the_same(masked: bool) -> None:
    frames, messages, nbytes = conversation(masked)
    frames[7] = f(OP_BINARY, b"\x00" * 300, masked=masked)
    nbytes -= 70000 - 300
    stream = b"".join(frames)
    scans = feed_all(
        FrameScanner(0, masked=masked), [stream[i : i + 1] for i in range(len(stream))]
    )
    assert totals(scans) == (messages, nbytes, [4001])


def test_held_bytes_plus_forwarded_bytes_are_the_stream_in_order() -> None:
    """A forwarder that holds back `pending` bytes sends exactly the stream, frames whole."""
    frames, _, _ = conversation(True)
    stream = b"".join(frames)
    for size in (1, 2, 3, 7, 13, 64, 1000):
        scanner = FrameScanner(0, masked=True)
        held, sent = b"", bytearray()
        for i in range(0, len(stream), size):
            buf = held + stream[i : i + size]
            scan = scanner.feed(stream[i : i + size])
            cut = len(buf) - scan.pending
            sent += buf[:cut]
            held = buf[cut:]
        assert bytes(sent) == stream and held == b""


def test_length_encodings_at_their_edges() -> None:
    for n in (0, 125, 126, 127, 65535, 65536, 65537):
        for masked in (True, False):
            stream = f(OP_BINARY, b"a" * n, masked=masked)
            scan = FrameScanner(0, masked=masked).feed(stream)
            assert (scan.messages, scan.payload_bytes, scan.at_boundary) == (1, n, True), n
            # Header alone: payload still to come, counted as it arrives.
            s = FrameScanner(0, masked=masked)
            head = len(stream) - n
            first = s.feed(stream[:head])
            assert first.payload_bytes == 0 and first.messages == (n == 0)
            assert s.remaining == n and first.at_boundary == (n == 0)


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize(
    ("body", "code"),
    [(b"\x03\xe8", 1000), (b"\x0f\xa1bye", 4001), (b"", None), (b"\x0b\xb8\xc3\xa9", 3000)],
)
def test_close_codes_are_read_through_the_mask_at_every_split(
    masked: bool, body: bytes, code: int | None
) -> None:
    stream = f(OP_TEXT, b"hi", masked=masked) + f(OP_CLOSE, body, masked=masked)
    for k in range(len(stream) + 1):
        scanner = FrameScanner(0, masked=masked)
        scans = feed_all(scanner, [stream[:k], stream[k:]])
        assert totals(scans) == (1, 2, [code]), k
        assert scanner.closed and scanner.close_code == code


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\x03", CLOSE_PROTOCOL_ERROR),  # a code cut in half
        *[
            (code.to_bytes(2, "big"), CLOSE_PROTOCOL_ERROR)
            for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
        ],
        (b"\x03\xe8\xff\xfe", CLOSE_INVALID_TEXT),  # a reason that is not UTF-8
        (b"\x03\xe8\xce", CLOSE_INVALID_TEXT),  # a character cut short
    ],
)
def test_a_close_frame_that_breaks_the_rules_is_failed_where_it_starts(
    masked: bool, body: bytes, error: int
) -> None:
    """Wherever the reads split it, the close is never reported as a close, and nothing
    of it may go: the error's offset is the close frame's first byte."""
    ok = f(OP_TEXT, b"hi", masked=masked)
    stream = ok + f(OP_CLOSE, body, masked=masked)
    for k in range(len(stream) + 1):
        scanner = FrameScanner(0, masked=masked)
        a, b = scanner.feed(stream[:k]), scanner.feed(stream[k:])
        err = a if a.error else b
        assert err.error == error, k
        # The offset counts from the start of the chunk it is reported in.
        assert (k if err is b else 0) + err.error_offset == len(ok), k
        assert not a.close_seen and not b.close_seen and not scanner.closed
        assert a.messages + b.messages == 1
        assert scanner.feed(close_frame(1000)) == Scan(error=error)


def test_a_close_frame_waits_whole_before_it_may_go() -> None:
    stream = f(OP_CLOSE, b"\x03\xe8" + b"r" * 100, masked=True)
    scanner = FrameScanner(0, masked=True)
    first = scanner.feed(stream[:-1])
    assert (first.pending, first.close_seen, first.at_boundary) == (len(stream) - 1, False, True)
    last = scanner.feed(stream[-1:])
    assert (last.pending, last.close_seen, last.close_code) == (0, True, 1000)


def test_reserved_bits_break_the_protocol_where_no_extension_can_be_agreed() -> None:
    for rsv in (0x10, 0x20, 0x40):
        stream = frame(OP_TEXT, b"ok") + frame(OP_TEXT, b"x", rsv=rsv)
        scan = FrameScanner(0, masked=False, extensions=False).feed(stream)
        assert (scan.error, scan.error_offset, scan.messages) == (CLOSE_PROTOCOL_ERROR, 4, 1)


def test_only_the_first_close_is_the_connections_close() -> None:
    scanner = FrameScanner(0, masked=False)
    scan = scanner.feed(close_frame(4002) + close_frame(1000))
    assert scan.close_code == 4002 and scanner.close_code == 4002


@pytest.mark.parametrize(
    ("masked", "stream", "offset", "before"),
    [
        # a reserved data opcode, then a reserved control opcode
        (False, frame(OP_TEXT, b"ok") + frame(0x3, b"?"), 4, (1, 2)),
        (False, frame(OP_TEXT, b"ok") + frame(0xB, b"?"), 4, (1, 2)),
        # a control frame over 125 bytes, and a fragmented one
        (False, frame(OP_PING, b"x" * 126), 0, (0, 0)),
        (False, frame(OP_PING, b"x", fin=False), 0, (0, 0)),
        # a client that does not mask, a server that does
        (True, frame(OP_TEXT, b"x"), 0, (0, 0)),
        (False, frame(OP_TEXT, b"x", mask=MASK), 0, (0, 0)),
        # a continuation without a start; a new message inside a fragmented one
        (False, frame(OP_CONTINUATION, b"x"), 0, (0, 0)),
        (False, frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b"), 3, (0, 1)),
        # a 64-bit length with its most significant bit set
        (False, bytes((0x82, 127)) + (1 << 63).to_bytes(8, "big"), 0, (0, 0)),
    ],
)
def test_protocol_violations_are_1002_at_the_offending_frame(
    masked: bool, stream: bytes, offset: int, before: tuple[int, int]
) -> None:

    scanner = FrameScanner(0, masked=masked)
    scan = scanner.feed(stream)
    assert (scan.error, scan.error_offset) == (CLOSE_PROTOCOL_ERROR, offset)
    assert (scan.messages, scan.payload_bytes) == before
    # Framing is lost: nothing after is walked, nothing more may go.
    later = scanner.feed(frame(OP_TEXT, b"more", mask=MASK if masked else None))
    assert later == Scan(error=CLOSE_PROTOCOL_ERROR)
    assert scanner.error == CLOSE_PROTOCOL_ERROR


def test_a_violation_whose_header_began_in_an_earlier_chunk_has_a_negative_offset() -> None:
    stream = frame(OP_TEXT, b"ok") + frame(0x3, b"?")
    scanner = FrameScanner(0, masked=False)
    first = scanner.feed(stream[:5])  # "ok" frame whole, then one byte of the bad header
    assert (first.messages, first.pending) == (1, 1)
    second = scanner.feed(stream[5:])
    assert (second.error, second.error_offset) == (CLOSE_PROTOCOL_ERROR, -1)


def test_a_message_over_the_limit_is_1009_where_it_starts() -> None:
    limit = 1000
    ok = frame(OP_TEXT, b"a" * limit, mask=MASK)
    big = frame(OP_BINARY, b"b" * (limit + 1), mask=MASK)
    scanner = FrameScanner(limit, masked=True)
    scan = scanner.feed(ok + big + close_frame(1000, mask=MASK))
    assert (scan.error, scan.error_offset) == (CLOSE_TOO_BIG, len(ok))
    assert (scan.messages, scan.payload_bytes) == (1, limit)
    # The framing is intact: the offender's close is still noticed, nothing counted.
    later = scanner.feed(frame(OP_TEXT, b"x", mask=MASK) + close_frame(1009, mask=MASK))
    assert later.error == CLOSE_TOO_BIG and later.error_offset == 0
    assert later.close_seen and later.close_code == 1009
    assert (later.messages, later.payload_bytes) == (0, 0)


def test_an_oversize_frame_first_in_a_chunk_is_reported_at_offset_zero() -> None:
    scanner = FrameScanner(1024, masked=False)
    scan = scanner.feed(frame(OP_BINARY, b"x" * 1025) + frame(0x3))
    assert (scan.error, scan.error_offset, scan.messages, scan.payload_bytes) == (
        CLOSE_TOO_BIG,
        0,
        0,
        0,
    )


def test_fragments_that_add_up_over_the_limit_are_1009_at_the_fragment_that_crosses() -> None:
    parts = [
        frame(OP_TEXT, b"a" * 400, fin=False),
        frame(OP_CONTINUATION, b"b" * 400, fin=False),
        frame(OP_PING, b"p"),
        frame(OP_CONTINUATION, b"c" * 400),
    ]
    stream = b"".join(parts)
    for k in range(len(stream) + 1):
        scanner = FrameScanner(1000, masked=False)
        a, b = scanner.feed(stream[:k]), scanner.feed(stream[k:])
        err = a if a.error else b
        assert err.error == CLOSE_TOO_BIG, k
        crossing = len(parts[0]) + len(parts[1]) + len(parts[2])
        # The offset is relative to the chunk it is reported in; held header bytes count
        # back into the previous chunk.
        if err is a:
            assert a.error_offset == crossing
        else:
            assert k - a.pending + 0 <= crossing
            assert b.error_offset == crossing - k
        assert a.messages + b.messages == 0


def test_exactly_the_limit_passes() -> None:
    scanner = FrameScanner(1024, masked=False)
    scan = scanner.feed(frame(OP_TEXT, b"a" * 1000, fin=False) + frame(OP_CONTINUATION, b"b" * 24))
    assert (scan.error, scan.messages, scan.payload_bytes) == (0, 1, 1024)


def test_rsv_bits_pass_unjudged_for_permessage_deflate() -> None:
    scan = FrameScanner(0, masked=False).feed(frame(OP_TEXT, b"\xf2\x48\x05\x00", rsv=0x40))
    assert (scan.error, scan.messages, scan.payload_bytes) == (0, 1, 4)


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="max_message_bytes"):
        FrameScanner(-1, masked=True)


def test_masking_round_trips_and_close_frames_cut_long_reasons() -> None:
    payload = bytes(range(251))
    assert apply_mask(apply_mask(payload, MASK), MASK) == payload
    assert apply_mask(b"", MASK) == b""
    fr = close_frame(1001, b"r" * 200)
    assert fr[1] == 125 and fr[2:4] == (1001).to_bytes(2, "big")
