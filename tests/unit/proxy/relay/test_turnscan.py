"""Reading a text message's type from its first bytes agrees with a full JSON parse.

The scanner (proxy/relay/wsframes.py, `observe=True`) reads each text message's type
as the frames pass, however they are fragmented, masked or cut into TCP reads; the
per-frame relay reads it from the whole message (`message_code`). Both must say what
`json.loads` says, for every frame whose `type` lies within the first READ_LIMIT bytes.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from strangler.proxy.relay.turns import each_code
from strangler.proxy.relay.turnscan import (
    CLIENT_CODES,
    CLIENT_PREFIXES,
    EVENT_TYPES,
    OTHER_TYPES,
    READ_LIMIT,
    SERVER_CODES,
    SERVER_PREFIXES,
    TURN,
    TURN_TYPES,
    bounded_type,
    message_code,
)
from strangler.proxy.relay.wsframes import (
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    FrameScanner,
    frame,
)

# Each test runs on the Python scanner and on the native one (conftest.py).
pytestmark = pytest.mark.usefixtures("each_scanner")

KNOWN = (*TURN_TYPES, *EVENT_TYPES, *OTHER_TYPES)
SPACES = ("", " ", "  ", "\n", "\t", "\r\n  ")


def oracle(payload: bytes, client: bool) -> int:
    """What a full parse says: the code of the message's type, or 0."""
    try:
        value = json.loads(payload)
    except ValueError:
        return 0
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(kind, str):
        return 0
    codes = CLIENT_CODES if client else SERVER_CODES
    return codes.get(kind.encode("utf-8", "surrogatepass"), 0)


@dataclass(frozen=True)
class Message:
    payload: bytes
    type_within_limit: bool  # the whole `type` member lies in the first READ_LIMIT bytes


def _escaped(text: str) -> str:
    """A JSON string with every character written as an escape."""
    return (
        '"'
        + "".join(
            json.dumps(c, ensure_ascii=True)[1:-1] if ord(c) > 0xFFFF else f"\\u{ord(c):04x}"
            for c in text
        )
        + '"'
    )


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A JSON text message as producers write it, and as odd ones might."""
    kind = draw(
        st.one_of(
            st.sampled_from(KNOWN),
            st.text(max_size=30),
            st.sampled_from(["user_message ", "agent_started\u00e9", ""]),
            st.integers(),
            st.none(),
        )
    )
    has_type = draw(st.booleans()) or draw(st.booleans())
    simple = st.one_of(st.integers(), st.text(max_size=12), st.booleans(), st.none())
    before = draw(st.lists(st.tuples(st.text(max_size=8), simple), max_size=3))
    after = draw(st.lists(st.tuples(st.text(max_size=8), simple), max_size=3))
    before = [(k, v) for k, v in before if k != "type"]
    after = [(k, v) for k, v in after if k != "type"]
    pad = draw(st.sampled_from([0, 0, 0, 10, 300, 70_000, 200_000]))
    if pad:
        after.append(("data", "x" * pad))
    ascii_only = draw(st.booleans())
    escape_type = draw(st.booleans()) and isinstance(kind, str)
    ws = draw(st.lists(st.sampled_from(SPACES), min_size=64, max_size=64))
    spaces = iter(ws * 100)

    def encode(value: object) -> str:
        return json.dumps(value, ensure_ascii=ascii_only)

    type_end = 0
    members = [*before, *([("type", kind)] if has_type else []), *after]
    text = "{" + next(spaces)
    for i, (key, value) in enumerate(members):
        if i:
            text += "," + next(spaces)
        text += encode(key) + next(spaces) + ":" + next(spaces)
        if key == "type" and escape_type:
            assert isinstance(value, str)
            text += _escaped(value)
        else:
            text += encode(value)
        if key == "type":
            type_end = len(text.encode("utf-8", "surrogatepass"))
        text += next(spaces)
    text += "}" + next(spaces)
    payload = text.encode("utf-8", "surrogatepass")
    return Message(payload, type_end <= READ_LIMIT)


def wire(payloads: list[bytes], client: bool, rng: random.Random) -> bytes:
    """The frames carrying these messages: some fragmented, pings between fragments."""
    out = b""
    for payload in payloads:
        cuts = sorted(rng.sample(range(1, len(payload)), min(rng.randint(0, 3), len(payload) - 1)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            mask = rng.randbytes(4) if client else None
            op = OP_TEXT if i == 0 else OP_CONTINUATION
            out += frame(op, piece, fin=i == len(pieces) - 1, mask=mask)
            if i < len(pieces) - 1 and rng.random() < 0.3:
                out += frame(OP_PING, b"hi", mask=rng.randbytes(4) if client else None)
    return out


def scanned(data: bytes, cuts: list[int], client: bool) -> list[int]:
    """The codes a scanner reports when `data` arrives cut at `cuts`."""
    scanner = FrameScanner(0, masked=client, observe=True)
    codes: list[int] = []
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        scan = scanner.feed(data[a:b])
        assert not scan.error
        codes += each_code(scan.events)
    return codes


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), min_size=1, max_size=4), st.booleans(), st.randoms())
def test_the_scanner_reads_each_type_as_a_full_parse_does(
    batch: list[Message], client: bool, rng: random.Random
) -> None:
    batch = [m for m in batch if m.type_within_limit]
    assume(batch)
    payloads = [m.payload for m in batch]
    want = [code for code in (oracle(p, client) for p in payloads) if code]
    data = wire(payloads, client, rng)
    # Whole, then cut into TCP reads at random points, then (when small) at every offset.
    assert scanned(data, [], client) == want
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
    assert scanned(data, cuts, client) == want
    if len(data) < 1500:
        for i in range(1, len(data)):
            assert scanned(data, [i], client) == want
    # The per-frame relay reads whole messages, unmasked.
    prefixes, codes = (CLIENT_PREFIXES, CLIENT_CODES) if client else (SERVER_PREFIXES, SERVER_CODES)
    assert [c for c in (message_code(p, prefixes, codes) for p in payloads) if c] == want


@settings(max_examples=200, deadline=None)
@given(messages())
def test_the_bounded_parse_finds_what_a_full_parse_finds(message: Message) -> None:
    try:
        parsed = json.loads(message.payload)
    except ValueError:
        return
    kind = parsed.get("type") if isinstance(parsed, dict) else None
    found = bounded_type(message.payload[:READ_LIMIT])
    if message.type_within_limit and isinstance(kind, str):
        assert found == kind
    elif not isinstance(kind, str):
        assert found is None


def test_a_type_beyond_the_first_bytes_is_not_read() -> None:
    payload = json.dumps({"note": "x" * READ_LIMIT, "type": "agent_started"}).encode()
    assert message_code(payload, SERVER_PREFIXES, SERVER_CODES) == 0
    assert scanned(frame(OP_TEXT, payload), [], client=False) == []


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"type": "agent_started", "run_id": "r1"}', 1),
        (b'{"type":"agent_completed"}', 5),
        (b'{ "type" : "agent_error" }', 6),
        (b'{\n  "type": "tool_executing"\n}', 3),
        (b'{"run_id": "r1", "type": "agent_thinking"}', 2),
        (b'{"type": "agent\\u005fstarted"}', 1),
        (b'{"type": "agent_started_late"}', 0),
        (b'{"type": "heartbeat"}', 0),
        (b'{"type": 5}', 0),
        (b'["agent_started"]', 0),
        (b"", 0),
    ],
)
def test_server_events_are_read_in_every_spelling(payload: bytes, code: int) -> None:
    assert message_code(payload, SERVER_PREFIXES, SERVER_CODES) == code
    for cut in range(len(payload) + 2):
        data = frame(OP_TEXT, payload)
        assert scanned(data, [min(cut, len(data) - 1)] if cut else [], False) == (
            [code] if code else []
        )


@pytest.mark.parametrize("alias", TURN_TYPES)
def test_every_turn_alias_is_a_turn_message(alias: str) -> None:
    payload = json.dumps({"type": alias, "payload": {"text": "hi"}}).encode()
    assert scanned(frame(OP_TEXT, payload, mask=b"\x01\x02\x03\x04"), [], True) == [TURN]
    assert message_code(payload, CLIENT_PREFIXES, CLIENT_CODES) == TURN


def test_a_scanner_without_observation_reports_nothing() -> None:
    scanner = FrameScanner(0, masked=False)
    assert scanner.feed(frame(OP_TEXT, b'{"type": "agent_started"}')).events == 0


def test_a_binary_message_is_never_a_turn() -> None:
    from strangler.proxy.relay.wsframes import OP_BINARY

    data = frame(OP_BINARY, b'{"type": "agent_started"}')
    assert scanned(data, [], False) == []


def test_a_compressed_message_is_not_read() -> None:
    # permessage-deflate (RSV1): the first bytes are deflate's, whatever they look like.
    payload = b'{"note": "' + b"x" * 40 + b'", "type": "agent_started"}'
    assert scanned(frame(OP_TEXT, payload, rsv=0x40), [], client=False) == []
    assert scanned(frame(OP_TEXT, payload, rsv=0x40, mask=b"abcd"), [], client=True) == []
