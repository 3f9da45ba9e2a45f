"""Reading a compared frame's type from its first bytes, and only where it is safe."""

from __future__ import annotations

import json

import pytest

from strangler.proxy.shadow.frames import parse, peek_type


@pytest.mark.parametrize(
    "kind", ["agent_started", "agent_thinking", "tool_completed", "agent_completed", "heartbeat"]
)
@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_the_type_where_producers_write_it_is_read_without_parsing(
    kind: str, separators: tuple[str, str]
) -> None:
    frame = json.dumps({"type": kind, "data": {"x": [1, 2]}}, separators=separators).encode()
    assert peek_type(frame) == kind


@pytest.mark.parametrize(
    "frame",
    [
        b'{"data": {}, "type": "agent_completed"}',  # type not first
        b'{ "type": "agent_completed"}',  # whitespace after the brace
        b'{"type": "agent_\\u0063ompleted"}',  # an escape in the value
        b'{"type": "error", "error": "x"}',  # a type a dialect rewrites
        b'{"type": "made_up_event"}',  # not a type the pairing knows
        b'{"type": "' + b"a" * 100 + b'"}',  # too long to be one
        b'{"type": "agent_completed',  # cut short
        b"not json",
    ],
)
def test_anything_else_is_left_to_the_parser(frame: bytes) -> None:
    assert peek_type(frame) is None


def test_parse_gives_objects_only() -> None:
    assert parse(b'{"type": "x"}') == {"type": "x"}
    assert parse(b"[1]") is None
    assert parse(b"{") is None
