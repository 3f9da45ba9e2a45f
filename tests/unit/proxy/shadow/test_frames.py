"""Reading a compared frame's type from its first bytes, and only where it is safe."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _loads_object(data: bytes) -> object:
    """What the comparison must get: json.loads's object, or None."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@pytest.mark.parametrize(
    "frame",
    [
        b' \t\r\n{"type": "x"} \n',  # JSON's whitespace around the object
        b'\xef\xbb\xbf{"type": "x"}',  # a UTF-8 byte order mark
        b'{"type": "x"} {"type": "y"}',  # two objects
        b'{"type": "x"}garbage',
        b'{"type": "x"}\x0b',  # vertical tab: whitespace to Python, not to JSON
        b'\x0c{"type": "x"}',
        b'{"n": NaN, "i": -Infinity}',  # what json.loads accepts, beyond JSON
        b'{"big": 123456789012345678901234567890}',  # past 64 bits: still exact
        b'{"a": 1, "a": 2}',  # a repeated key: the last wins
        b'{"t": "caf\xc3\xa9 \\u00e9 \\ud83d\\ude00"}',
        b'{"t": "\xff"}',  # not UTF-8
        b'{"t": "\\ud800"}',  # a lone surrogate escape
        b"",
        b"   ",
        b'"a string"',
        b"null",
        b"{}",
        b'{"a": [1, 2.5, true, false, null, {"b": []}]}',
    ],
)
def test_parse_reads_what_json_loads_reads(frame: bytes) -> None:
    assert parse(frame) == _loads_object(frame)
    if frame.startswith(b'{"big"'):
        assert parse(frame) == {"big": 123456789012345678901234567890}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_JSON, st.sampled_from(["", " ", "\n\t", "\ufeff"]), st.sampled_from(["", " ", "x", "}"]))
def test_property_parse_agrees_with_json_loads(value: object, before: str, after: str) -> None:
    frame = (before + json.dumps(value, ensure_ascii=False) + after).encode()
    assert parse(frame) == _loads_object(frame)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_parse_refuses_text_that_is_not_utf8(encoding: str) -> None:
    """json.loads on bytes would guess these; a text frame is UTF-8 (RFC 6455, 8.1)."""
    frame = '{"type": "x"}'.encode(encoding)
    assert json.loads(frame) == {"type": "x"}
    assert parse(frame) is None
