"""The close-code rules of RFC 6455 7.4: which codes travel, which close bodies fail."""

from __future__ import annotations

import pytest

from strangler.proxy.relay.closecodes import (
    CLOSE_INVALID_TEXT,
    CLOSE_PROTOCOL_ERROR,
    close_body_error,
    on_the_wire,
)


def test_exactly_the_defined_registered_and_private_codes_may_be_sent() -> None:
    allowed = {c for c in range(70000) if on_the_wire(c)}
    assert allowed == {1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", 0),  # no code at all: reported as 1005, never sent as such
        (b"\x03\xe8", 0),
        (b"\x0f\xa1" + "déjà vu".encode(), 0),
        (b"\x03", CLOSE_PROTOCOL_ERROR),
        (b"\x03\xed", CLOSE_PROTOCOL_ERROR),  # 1005
        (b"\x03\xee", CLOSE_PROTOCOL_ERROR),  # 1006
        (b"\x13\x88", CLOSE_PROTOCOL_ERROR),  # 5000
        (b"\x03\xe8\xc3", CLOSE_INVALID_TEXT),  # a reason cut inside a character
        (b"\x03\xed\xff", CLOSE_PROTOCOL_ERROR),  # the code is judged before the reason
    ],
)
def test_close_body_error(body: bytes, error: int) -> None:
    assert close_body_error(body) == error
