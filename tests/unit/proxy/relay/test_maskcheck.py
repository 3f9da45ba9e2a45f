"""MaskCheck: the first unmasked client frame is found wherever the reads split it."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.proxy.relay.maskcheck import MaskCheck
from tests.functional.rawws import OP_BINARY, OP_PING, OP_TEXT, frame

# (opcode, payload size, masked): sizes around the 7-bit, 16-bit and 64-bit length forms.
frames = st.tuples(
    st.sampled_from([OP_TEXT, OP_BINARY, OP_PING]),
    st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000]),
    st.booleans(),
)


def feed_in_chunks(check: MaskCheck, data: bytes, cuts: list[int]) -> int:
    """Feed `data` split at `cuts`; how many bytes were passed before the check failed."""
    passed = 0
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(bounds):
        chunk = data[start:end]
        ok = check.feed(chunk)
        passed += ok
        if ok < len(chunk):
            break
    return passed


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, min_size=1, max_size=6), st.lists(st.integers(0, 10**6), max_size=8))
def test_first_unmasked_frame_is_found_across_any_split(
    spec: list[tuple[int, int, bool]], cuts: list[int]
) -> None:
    wire = [frame(op, b"x" * size, mask=masked) for op, size, masked in spec]
    data = b"".join(wire)
    check = MaskCheck()
    passed = feed_in_chunks(check, data, cuts)
    first_bad = next((i for i, (_, _, masked) in enumerate(spec) if not masked), None)
    if first_bad is None:
        assert passed == len(data) and not check.failed
        return
    assert check.failed
    start = sum(len(w) for w in wire[:first_bad])
    # Everything before the unmasked frame passes; of the frame itself at most the first
    # header byte, when a read ended right after it (one byte cannot be judged).
    assert passed in (start, start + 1)
    assert check.feed(b"\x81\x80\x00\x00\x00\x00") == 0  # once failed, nothing more passes


def test_masked_frames_pass_whole() -> None:
    check = MaskCheck()
    data = frame(OP_TEXT, b"hello") + frame(OP_BINARY, b"\x00" * 300)
    assert check.feed(data) == len(data)
    assert not check.failed


def test_unmasked_frame_after_a_masked_one_stops_at_its_start() -> None:
    good = frame(OP_TEXT, b"ok")
    assert MaskCheck().feed(good + frame(OP_TEXT, b"bad", mask=False)) == len(good)
