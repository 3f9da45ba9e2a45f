"""Bad input from a client: each case gets the protocol's answer, is counted by reason,
leaves no traceback in the log, and a well-behaved client connected at the same time
keeps being served. Raw sockets send what aiohttp's client would refuse to."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest

from tests.functional.conftest import ProxyUnderTest, StartProxy, token, wait_for
from tests.functional.rawws import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    RawWebSocket,
    close_frame,
    frame,
)

LIMIT = 4096  # relay.max_message_bytes for these tests


def bearer(user: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token(user)}")]


@dataclass
class Guarded:
    """A proxy with a well-behaved client connected beside the misbehaving one."""

    proxy: ProxyUnderTest
    bystander: aiohttp.ClientWebSocketResponse
    caplog: pytest.LogCaptureFixture
    tunnelled: bool  # relay.tunnel: auto (the default) rather than off
    sockets: list[RawWebSocket] = field(default_factory=list)

    async def open(self) -> RawWebSocket:
        """A raw connection to the proxy, closed when the test ends."""
        ws = await RawWebSocket.open(self.proxy.running.port)
        self.sockets.append(ws)
        return ws

    async def bad_input(self, route: str, reason: str) -> float:
        return await self.proxy.metric("strangler_bad_input_total", route=route, reason=reason)

    async def counted(self, route: str, reason: str) -> None:
        """Once the misbehaving connection's end is recorded, its bad input was counted once.

        On the byte tunnel (relay.tunnel: auto, connections that need no translation)
        UTF-8 and reserved bits are judged by the backend; its close code is counted.
        """

        async def ended() -> bool:
            samples = await self.proxy.metrics()
            return any(
                name == "strangler_connections_total" and ("route", route) in labels and value
                for (name, labels), value in samples.items()
            )

        await wait_for(ended)  # the relay counts bad input before it records the end
        assert await self.bad_input(route, reason) == 1

    async def raw(self, path: str, user: str = "bob") -> RawWebSocket:
        ws = await self.open()
        answer = await ws.handshake(path, bearer(user))
        assert answer.status == 101
        return ws

    async def check(self) -> None:
        """The bystander is still served, and nothing was logged as a failure."""
        await self.bystander.send_str("who")
        reply = await asyncio.wait_for(self.bystander.receive_json(), 5)
        assert reply == {"backend": "legacy"}
        for record in self.caplog.records:
            assert record.levelno < logging.ERROR, record.getMessage()
            assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in self.caplog.text


@pytest.fixture(params=["auto", "off"], ids=["tunnel", "frames"])
async def guarded(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> AsyncIterator[Guarded]:
    caplog.set_level(logging.DEBUG)
    relay = f"{{max_message_bytes: {LIMIT}, grace_period: 1, tunnel: {request.param}}}"
    p = await start_proxy(relay=relay)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url("/ws"), headers=dict(bearer("bob"))) as bystander,
    ):
        guarded = Guarded(p, bystander, caplog, tunnelled=request.param == "auto")
        try:
            yield guarded
        finally:
            for ws in guarded.sockets:
                await ws.close()


# -- frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reply"),
    [
        # main_payload (alice is on unified, so the proxy translates): the data-nested error
        ("/ws/u1", {"type": "error", "data": {"error_code": "INVALID_MESSAGE"}}),
        # the legacy dialect chosen by ?mode= on /ws: the flat error
        ("/ws?mode=legacy", {"type": "error", "error": "invalid_json"}),
    ],
)
async def test_translated_dialect_answers_malformed_json_in_its_legacy_style(
    guarded: Guarded, path: str, reply: dict[str, object]
) -> None:
    route = "main_user" if path.startswith("/ws/u1") else "main"
    ws = await guarded.raw(path, user="alice")
    await ws.send(frame(OP_TEXT, b'{"type": "user_message", "payload": '))
    error = json.loads(await ws.recv_text())
    await ws.send(frame(OP_TEXT, b"[1, 2, 3]"))
    not_an_object = json.loads(await ws.recv_text())
    for answer, message in ((error, "Invalid JSON"), (not_an_object, "Message must be")):
        assert answer["type"] == reply["type"]
        if "data" in reply:
            assert answer["data"]["error_code"] == "INVALID_MESSAGE"
            assert answer["data"]["message"].startswith(message)
        else:
            assert answer["error"] == "invalid_json"
            assert answer["message"].startswith(message)
    # The socket stays open, as it did on the legacy route: a good frame still goes through.
    await ws.send(frame(OP_TEXT, json.dumps({"type": "ping", "timestamp": 1}).encode()))
    assert json.loads(await ws.recv_text())["type"] == "ping"
    await ws.send(close_frame(1000))
    assert (await ws.recv_close())[0] == 1000
    await ws.close()
    assert await guarded.bad_input(route, "invalid_json") == 2  # counted before the reply
    await guarded.check()


@pytest.mark.parametrize(
    ("path", "user", "route"),
    [
        ("/ws", "bob", "main"),  # identity dialect, legacy backend
        ("/ws", "alice", "main"),  # identity dialect, unified backend
        ("/ws/u1", "alice", "main_user"),  # translated for the unified backend
        ("/ws/isolated", "alice", "isolated"),  # translated for the unified backend
    ],
)
async def test_invalid_utf8_text_frame_is_closed_1007(
    guarded: Guarded, path: str, user: str, route: str
) -> None:
    ws = await guarded.raw(path, user=user)
    await ws.send(frame(OP_TEXT, b'{"type": "user_message", "text": "\xff\xfe"}'))
    code, _ = await ws.recv_close()
    assert code == 1007
    await ws.close()
    if not (guarded.tunnelled and path == "/ws"):
        # The relay stopped the frame: the backend only learns that the client went away.
        backend = guarded.proxy.unified if user == "alice" else guarded.proxy.legacy

        async def backend_closed() -> bool:
            return bool(backend.closes)

        await wait_for(backend_closed)
        assert backend.closes == [(1001, "")]
    await guarded.check()
    await guarded.counted(route, "invalid_utf8")
    assert await guarded.bad_input(route, "invalid_json") == 0


async def test_valid_multibyte_utf8_passes(guarded: Guarded) -> None:
    ws = await guarded.raw("/ws")
    text = "héllo ✓ 🙂".encode()
    await ws.send(frame(OP_TEXT, text))
    _, opcode, echoed = await ws.recv()
    assert (opcode, echoed) == (OP_TEXT, text)
    await ws.close()
    assert await guarded.bad_input("main", "invalid_utf8") == 0
    await guarded.check()


@pytest.mark.parametrize(
    "frames",
    [
        [frame(OP_TEXT, b"x" * (LIMIT + 1))],
        # fragments that only add up to more than the limit
        [frame(OP_TEXT, b"x" * (LIMIT // 2), fin=False), frame(OP_CONTINUATION, b"x" * LIMIT)],
    ],
    ids=["one_frame", "fragments"],
)
async def test_oversized_message_is_closed_1009(guarded: Guarded, frames: list[bytes]) -> None:
    ws = await guarded.raw("/ws")
    await ws.send(b"".join(frames))
    code, _ = await ws.recv_close()
    assert code == 1009
    await ws.close()
    await guarded.check()
    await guarded.counted("main", "too_big")


async def test_fragmented_messages_are_reassembled_and_relayed(guarded: Guarded) -> None:
    ws = await guarded.raw("/ws")
    await ws.send(
        frame(OP_TEXT, b"hel", fin=False)
        + frame(OP_PING, b"between fragments")  # a control frame may interleave
        + frame(OP_CONTINUATION, b"lo ", fin=False)
        + frame(OP_CONTINUATION, b"world")
        + frame(OP_BINARY, b"\x00\x01", fin=False)
        + frame(OP_CONTINUATION, b"\x02")
    )
    received = []
    while len(received) < 2:
        _, opcode, payload = await ws.recv()
        if opcode in (OP_TEXT, OP_BINARY):
            received.append((opcode, payload))
    assert received == [(OP_TEXT, b"hello world"), (OP_BINARY, b"\x00\x01\x02")]
    await ws.close()
    assert await guarded.proxy.metric("strangler_bad_input_total", route="main") == 0
    await guarded.check()


@pytest.mark.parametrize(
    "bad",
    [
        frame(OP_PING, b"p" * 126),  # a control frame over 125 bytes
        frame(0x3, b"x"),  # reserved data opcode
        frame(0xB, b"x"),  # reserved control opcode
        frame(OP_TEXT, b"x", rsv=0b010),  # a reserved bit nobody negotiated
        frame(OP_TEXT, b"hello", mask=False),  # clients must mask every frame
        frame(OP_CONTINUATION, b"x"),  # a continuation of nothing
    ],
    ids=["big_control", "opcode_3", "opcode_11", "rsv2", "unmasked", "orphan_continuation"],
)
async def test_protocol_violation_is_closed_1002(guarded: Guarded, bad: bytes) -> None:
    ws = await guarded.raw("/ws")
    await ws.send(frame(OP_TEXT, b"before"))
    assert await ws.recv_text() == "before"
    await ws.send(bad + frame(OP_TEXT, b"after"))
    code, _ = await ws.recv_close()
    assert code == 1002
    await ws.close()
    await guarded.check()
    # Reserved bits may belong to an extension agreed end to end: the tunnel lets the
    # backend judge them.
    await guarded.counted("main", "protocol_error")


async def test_unmasked_frame_sent_with_the_handshake_is_refused(guarded: Guarded) -> None:
    # Bytes that arrive right behind the upgrade request reach the parser first.
    ws = await guarded.open()
    answer = await ws.handshake("/ws", bearer("bob"), trailing=frame(OP_TEXT, b"early", mask=False))
    assert answer.status == 101
    code, _ = await ws.recv_close()
    assert code == 1002
    await ws.close()
    await guarded.check()
    await guarded.counted("main", "protocol_error")


# -- handshakes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "not base64 at all!",
        base64.b64encode(b"fifteen bytes..").decode(),  # valid base64, wrong length
        "",
        "\xe9t\xe9",  # not ASCII
    ],
    ids=["garbage", "15_bytes", "empty", "latin1"],
)
async def test_bad_websocket_key_is_refused_400_before_any_backend(
    guarded: Guarded, key: str
) -> None:
    p = guarded.proxy
    before = len(p.legacy.handshakes) + len(p.unified.handshakes)
    ws = await guarded.open()
    answer = await ws.handshake("/ws", bearer("bob"), key=key)
    await ws.close()
    assert answer.status == 400
    assert len(p.legacy.handshakes) + len(p.unified.handshakes) == before
    assert await guarded.bad_input("main", "bad_handshake") == 1
    assert (
        await p.metric("strangler_handshake_refusals_total", route="main", reason="bad_handshake")
        == 1
    )
    await guarded.check()


@pytest.mark.parametrize("with_marker", [False, True])
async def test_a_thousand_subprotocols_get_a_correct_answer(
    guarded: Guarded, with_marker: bool
) -> None:
    offer = [f"p{i}" for i in range(1000)]
    if with_marker:
        offer.insert(500, "jwt-auth")
    ws = await guarded.open()
    answer = await ws.handshake(
        "/ws", [*bearer("bob"), ("Sec-WebSocket-Protocol", ", ".join(offer))]
    )
    await ws.close()
    assert answer.status in (101, 400)
    if answer.status == 101:
        assert answer.headers.get("sec-websocket-protocol") in offer
    await guarded.check()


async def test_oversized_header_is_refused_without_a_traceback(guarded: Guarded) -> None:
    ws = await guarded.open()
    answer = await ws.handshake("/ws", [*bearer("bob"), ("X-Padding", "a" * 65536)])
    await ws.close()
    assert answer.status in (400, 431)
    assert await guarded.bad_input("none", "bad_request") == 1
    assert "aaaaaaaa" not in guarded.caplog.text  # the raw bytes are not logged
    await guarded.check()


@pytest.mark.parametrize(
    "raw",
    [
        b"Cookie: a=1\rX-Injected: evil\r\n",  # bare CR
        b"Cookie: a=1\nX-Injected: evil\r\n",  # bare LF
        b"Cookie: a=1\r\n X-Injected: evil\r\n",  # obsolete line folding
    ],
    ids=["bare_cr", "bare_lf", "folding"],
)
async def test_crlf_in_a_header_value_is_refused(guarded: Guarded, raw: bytes) -> None:
    p = guarded.proxy
    before = len(p.legacy.handshakes)
    ws = await guarded.open()
    answer = await ws.handshake("/ws", bearer("bob"), raw_extra=raw)
    await ws.close()
    assert answer.status == 400
    assert len(p.legacy.handshakes) == before  # nothing reached a backend
    assert await guarded.bad_input("none", "bad_request") == 1
    await guarded.check()


async def test_encoded_crlf_in_the_query_never_reaches_the_backend_raw(guarded: Guarded) -> None:
    p = guarded.proxy
    ws = await guarded.raw("/ws?next=%0D%0AX-Injected:%20evil")
    await ws.close()
    seen = p.legacy.handshakes[-1]
    assert "X-Injected" not in seen["headers"]
    assert "\r" not in seen["path"] and "\n" not in seen["path"]
    await guarded.check()
