"""Close codes and frame rules to the letter of RFC 6455, the same on both relays.

Each test runs against the byte tunnel and the per-frame relay. A backend that breaks
the protocol (a close code no peer may send, a 1-byte close body, a close reason that
is not UTF-8, a masked frame, an impossible length) is failed with 1002 (1007 for the
reason) and its client gets the backend-lost code, 1011: never the offending close.
A client that does the same is answered 1002 (1007) and counted as bad input.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.functional.conftest import ProxyUnderTest, StartProxy, token, wait_for
from tests.functional.rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_TEXT,
    HostileBackend,
    RawWebSocket,
    close_frame,
    frame,
)

# Close codes no peer may send (RFC 6455 7.4): reserved for reporting (1005, 1006,
# 1015), reserved and unassigned (1004, 1016-2999), or out of range.
FORBIDDEN = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
# Codes that travel as they are.
ALLOWED = [1000, 1003, 1012, 1014, 3000, 4999]


@pytest.fixture(params=["auto", "off"], ids=["tunnel", "per_frame"])
def relay(request: pytest.FixtureRequest) -> str:
    return f"{{tunnel: {request.param}, max_message_bytes: 65536, grace_period: 0.2}}"


@pytest.fixture
async def hostile() -> AsyncIterator[HostileBackend]:
    backend = HostileBackend()
    await backend.start()
    yield backend
    await backend.stop()


async def connect(p: ProxyUnderTest) -> RawWebSocket:
    ws = await RawWebSocket.open(p.running.port)
    answer = await ws.handshake("/ws", [("Authorization", f"Bearer {token('bob')}")])
    assert answer.status == 101
    return ws


async def frames_until_close(ws: RawWebSocket) -> tuple[list[tuple[int, bytes]], int | None]:
    """Every frame the client gets, then the code of the close that ends them."""
    got: list[tuple[int, bytes]] = []
    while True:
        _, opcode, payload = await ws.recv()
        if opcode == OP_CLOSE:
            return got, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        got.append((opcode, payload))


async def outcome(p: ProxyUnderTest, label: str) -> None:
    async def counted() -> bool:
        labels: dict[str, Any] = {"route": "main", "mode": "legacy", "outcome": label}
        return await p.metric("strangler_connections_total", **labels) == 1

    await wait_for(counted)


async def backend_breaks_the_rules(
    start_proxy: StartProxy, hostile: HostileBackend, relay: str, script: bytes
) -> tuple[ProxyUnderTest, list[tuple[int, bytes]], int | None]:
    hostile.script = script
    p = await start_proxy(relay=relay, legacy_url=hostile.url)
    ws = await connect(p)
    await ws.send(frame(OP_TEXT, b"go"))
    got, code = await frames_until_close(ws)
    await ws.close()
    await wait_for(lambda: _true(bool(hostile.closes)))
    return p, got, code


# -- a backend that breaks the rules ------------------------------------------------------


@pytest.mark.parametrize("code", FORBIDDEN)
async def test_backend_close_code_no_peer_may_send_never_reaches_the_client(
    start_proxy: StartProxy, hostile: HostileBackend, relay: str, code: int
) -> None:
    script = frame(OP_TEXT, b"before", mask=False) + struct.pack("!BBH", 0x88, 2, code)
    p, got, client_code = await backend_breaks_the_rules(start_proxy, hostile, relay, script)
    assert got == [(OP_TEXT, b"before")]  # what came before the close still went
    assert client_code == 1011
    assert hostile.closes == [1002]
    await outcome(p, "protocol_error")
    # The backend's fault is not the client's bad input.
    assert await p.metric("strangler_bad_input_total", route="main", reason="protocol_error") == 0


@pytest.mark.parametrize(
    ("body", "backend_code"),
    [(b"\x03", 1002), (b"\x03\xe8\xff\xfe bad", 1007)],
    ids=["one_byte_body", "reason_not_utf8"],
)
async def test_backend_close_with_a_broken_body_never_reaches_the_client(
    start_proxy: StartProxy, hostile: HostileBackend, relay: str, body: bytes, backend_code: int
) -> None:
    script = bytes((0x88, len(body))) + body
    p, got, client_code = await backend_breaks_the_rules(start_proxy, hostile, relay, script)
    assert (got, client_code) == ([], 1011)
    assert hostile.closes == [backend_code]
    await outcome(p, "protocol_error")


async def test_masked_backend_frame_fails_the_backend_and_never_reaches_the_client(
    start_proxy: StartProxy, hostile: HostileBackend, relay: str
) -> None:
    script = frame(OP_TEXT, b"fine", mask=False) + frame(OP_TEXT, b"masked", mask=True)
    p, got, client_code = await backend_breaks_the_rules(start_proxy, hostile, relay, script)
    assert (got, client_code) == ([(OP_TEXT, b"fine")], 1011)
    assert hostile.closes == [1002]
    await outcome(p, "protocol_error")


async def test_backend_64_bit_length_with_the_top_bit_set_is_1002_not_1009(
    start_proxy: StartProxy, hostile: HostileBackend, relay: str
) -> None:
    script = bytes((0x82, 127)) + (1 << 63).to_bytes(8, "big") + b"x" * 16
    p, got, client_code = await backend_breaks_the_rules(start_proxy, hostile, relay, script)
    assert (got, client_code) == ([], 1011)
    assert hostile.closes == [1002]
    await outcome(p, "protocol_error")


@pytest.mark.parametrize("code", ALLOWED)
async def test_backend_close_codes_a_peer_may_send_reach_the_client(
    start_proxy: StartProxy, hostile: HostileBackend, relay: str, code: int
) -> None:
    script = struct.pack("!BBH", 0x88, 6, code) + "déjà".encode()
    _, got, client_code = await backend_breaks_the_rules(start_proxy, hostile, relay, script)
    assert (got, client_code) == ([], code)


# -- a client that breaks the rules -------------------------------------------------------


async def client_breaks_the_rules(p: ProxyUnderTest, bad: bytes) -> int | None:
    ws = await connect(p)
    await ws.send(frame(OP_TEXT, b"who"))
    assert await ws.recv_text() == '{"backend": "legacy"}'
    await ws.send(bad)
    got, code = await frames_until_close(ws)
    assert got == []
    await ws.close()
    return code


@pytest.mark.parametrize("code", FORBIDDEN)
async def test_client_close_code_no_peer_may_send_is_answered_1002(
    start_proxy: StartProxy, relay: str, code: int
) -> None:
    p = await start_proxy(relay=relay)
    assert await client_breaks_the_rules(p, frame(OP_CLOSE, struct.pack("!H", code))) == 1002
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1001  # the backend never sees the code
    await outcome(p, "protocol_error")
    assert await p.metric("strangler_bad_input_total", route="main", reason="protocol_error") == 1


async def test_client_close_with_a_one_byte_body_is_answered_1002(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=relay)
    assert await client_breaks_the_rules(p, frame(OP_CLOSE, b"\x03")) == 1002
    await outcome(p, "protocol_error")


async def test_client_close_reason_not_utf8_is_answered_1007(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=relay)
    assert await client_breaks_the_rules(p, close_frame(1000, b"\xff\xfe")) == 1007
    await outcome(p, "protocol_error")
    assert await p.metric("strangler_bad_input_total", route="main", reason="invalid_utf8") == 1


async def test_client_64_bit_length_with_the_top_bit_set_is_1002_not_1009(
    start_proxy: StartProxy, relay: str
) -> None:
    p = await start_proxy(relay=relay)
    bad = bytes((0x82, 0x80 | 127)) + (1 << 63).to_bytes(8, "big") + b"mask" + b"x" * 16
    assert await client_breaks_the_rules(p, bad) == 1002
    await outcome(p, "protocol_error")


@pytest.mark.parametrize("code", ALLOWED)
async def test_client_close_codes_a_peer_may_send_reach_the_backend(
    start_proxy: StartProxy, relay: str, code: int
) -> None:
    p = await start_proxy(relay=relay)
    ws = await connect(p)
    await ws.send(close_frame(code, "déjà".encode()))
    _, answer = await frames_until_close(ws)
    await ws.close()
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == code
    assert answer is not None and 1000 <= answer < 5000  # the backend's answer, or its echo


async def test_binary_frames_are_not_mistaken_for_closes(
    start_proxy: StartProxy, relay: str
) -> None:
    # A payload that looks like a close body with a forbidden code is just data.
    p = await start_proxy(relay=relay)
    ws = await connect(p)
    await ws.send(frame(OP_BINARY, struct.pack("!H", 1006)))
    assert await frames_until_close_or_data(ws) == (OP_BINARY, struct.pack("!H", 1006))
    await ws.close()


async def frames_until_close_or_data(ws: RawWebSocket) -> tuple[int, bytes]:
    while True:
        _, opcode, payload = await ws.recv()
        if opcode in (OP_TEXT, OP_BINARY, OP_CLOSE):
            return opcode, payload


async def _true(value: bool) -> bool:
    return value
