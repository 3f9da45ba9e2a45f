"""The byte tunnel end to end: what only a tunnel does, and the boundaries it keeps.

tests/functional/test_relay.py runs every relay behaviour against both the tunnel and
the per-frame relay; these tests pin what is the tunnel's own: extensions and pings
pass end to end, fragments count as one message, and a close of the proxy's own never
lands inside a frame.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from strangler.proxy.app import Proxy
from strangler.proxy.relay.wsframes import OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT, frame
from tests.functional.conftest import ProxyUnderTest, StartProxy, free_port, token, wait_for

TUNNEL = "{tunnel: auto, max_message_bytes: 65536, grace_period: 0.2}"
PER_FRAME = "{tunnel: off, max_message_bytes: 65536, grace_period: 0.2}"


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user)}"}


def tunnelled(proxy: Proxy) -> list[bool]:
    return [c.tunnel is not None for c in proxy.connections]


async def counted(p: ProxyUnderTest, name: str, direction: str) -> float:
    return await p.metric(name, route="main", backend="legacy", direction=direction)


@pytest.fixture
async def pinging_backend() -> AsyncIterator[str]:
    """A backend that answers pings itself, with a payload that says it was the backend."""

    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.PING:
                await ws.pong(b"backend:" + msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"ws://127.0.0.1:{port}"
    await runner.cleanup()


async def test_identity_connections_are_tunnelled_translated_ones_are_not(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(relay=TUNNEL)
    proxy = p.running.proxy
    async with aiohttp.ClientSession() as s:
        # bob on legacy, alice on the unified router in its own dialect: bytes pass.
        async with (
            s.ws_connect(p.url(), headers=bearer("bob")) as bob,
            s.ws_connect(p.url(), headers=bearer("alice")) as alice,
        ):
            await bob.send_str("who")
            assert (await bob.receive_json()) == {"backend": "legacy"}
            await alice.send_str("who")
            assert (await alice.receive_json()) == {"backend": "unified"}
            assert tunnelled(proxy) == [True, True]
        await wait_for(lambda: _true(not proxy.connections))
        # alice on a route whose dialect the unified router does not speak: translated.
        async with s.ws_connect(p.url("/ws/alice"), headers=bearer("alice")):
            await wait_for(lambda: _true(len(proxy.connections) == 1))
            assert tunnelled(proxy) == [False]


async def test_compared_connections_ride_the_tunnel_when_their_primary_speaks_the_dialect(
    start_proxy: StartProxy,
) -> None:
    flags = (
        "flags:\n  unified_router:\n    routes: [main, main_user, factory, isolated]\n"
        "    targets: {shadow: [sam], live: [liv]}\n"
    )
    p = await start_proxy(flags, relay=TUNNEL)
    proxy = p.running.proxy
    async with aiohttp.ClientSession() as s:
        # Shadow's primary is legacy, live's on /ws the unified router in the main
        # dialect: the primary's bytes pass, and no extension is agreed even when the
        # client offers one (the comparison reads the messages).
        for user, backend in (("sam", "legacy"), ("liv", "unified")):
            async with s.ws_connect(p.url(), headers=bearer(user), compress=15) as ws:
                assert not ws.compress
                await ws.send_str("who")
                assert (await ws.receive_json()) == {"backend": backend}
                assert [c.mode.value for c in proxy.connections] == [
                    "shadow" if user == "sam" else "live"
                ]
                assert tunnelled(proxy) == [True]
            await wait_for(lambda: _true(not proxy.connections))
        extensions = p.legacy.handshakes[-1]["headers"].get("Sec-WebSocket-Extensions", "")
        assert extensions == ""
        # Live on a route whose dialect the unified router does not speak: translated.
        async with s.ws_connect(p.url("/ws/factory"), headers=bearer("liv")):
            await wait_for(lambda: _true(len(proxy.connections) == 1))
            assert tunnelled(proxy) == [False]


async def test_tunnel_off_relays_every_connection_frame_by_frame(start_proxy: StartProxy) -> None:
    p = await start_proxy(relay=PER_FRAME)
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=bearer("bob")) as ws:
        await ws.send_str("who")
        assert (await ws.receive_json()) == {"backend": "legacy"}
        assert tunnelled(p.running.proxy) == [False]


@pytest.mark.parametrize(("relay", "negotiated"), [(TUNNEL, True), (PER_FRAME, False)])
async def test_permessage_deflate_is_agreed_end_to_end_only_by_the_tunnel(
    start_proxy: StartProxy, relay: str, negotiated: bool
) -> None:
    p = await start_proxy(relay=relay)
    text = '{"type": "agent_thinking", "payload": "' + "thinking " * 4000 + '"}'
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), compress=15) as ws,
    ):
        assert bool(ws.compress) is negotiated
        await ws.send_str(text)
        assert (await ws.receive()).data == text
        await ws.send_str("who")
        assert (await ws.receive_json()) == {"backend": "legacy"}
    extensions = p.legacy.handshakes[-1]["headers"].get("Sec-WebSocket-Extensions", "")
    assert ("permessage-deflate" in extensions) is negotiated
    if negotiated:
        # The tunnel counts the bytes on the wire: compressed, far fewer than the text.
        sent = await counted(p, "strangler_bytes_total", "client_to_backend")
        assert 0 < sent < len(text) / 10


async def test_pings_are_answered_by_the_backend_through_the_tunnel(
    start_proxy: StartProxy, pinging_backend: str
) -> None:
    p = await start_proxy(relay=TUNNEL, legacy_url=pinging_backend)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), autoping=False) as ws,
    ):
        await ws.ping(b"are you there")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"backend:are you there")


class RawClient:
    """A client that writes frames byte by byte, so a test can stop inside one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, p: ProxyUnderTest, user: str) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", p.running.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token(user)}\r\n\r\n"
            ).encode()
        )
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        async with asyncio.timeout(5):
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return b0 & 0x0F, await self.reader.readexactly(n)


MASK = b"\x11\x22\x33\x44"


async def test_fragments_count_as_one_message_and_every_payload_byte_counts(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(relay=TUNNEL)
    c = await RawClient.connect(p, "bob")
    # One text message in three fragments with a ping between them, then a binary one,
    # written one byte at a time so every header is cut by a chunk boundary.
    stream = (
        frame(OP_TEXT, b"par", fin=False, mask=MASK)
        + frame(OP_PING, b"?", mask=MASK)
        + frame(OP_CONTINUATION, b"t o", fin=False, mask=MASK)
        + frame(OP_CONTINUATION, b"ne", mask=MASK)
        + frame(OP_BINARY, bytes(300), mask=MASK)
    )
    for i in range(len(stream)):
        await c.send(stream[i : i + 1])
    got = [await c.read_frame() for _ in range(3)]
    # The backend answered the ping itself and echoed both messages whole.
    assert got == [(0xA, b"?"), (OP_TEXT, b"part one"), (OP_BINARY, bytes(300))]
    assert await counted(p, "strangler_messages_total", "client_to_backend") == 2
    assert await counted(p, "strangler_bytes_total", "client_to_backend") == 8 + 300
    assert await counted(p, "strangler_messages_total", "backend_to_client") == 2
    assert await counted(p, "strangler_bytes_total", "backend_to_client") == 8 + 300
    c.writer.close()


async def test_message_from_the_backend_over_the_limit_closes_both_sides_1009(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(relay=TUNNEL)
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), max_msg_size=0) as ws,
    ):
        await ws.send_str("flood 1 70000")
        msg = await ws.receive()
        assert (msg.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1009)
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1009
    await wait_for(
        lambda: _has(
            p, "strangler_connections_total", route="main", mode="legacy", outcome="too_big"
        )
    )


async def test_oversize_frame_arriving_in_pieces_never_reaches_the_backend(
    start_proxy: StartProxy,
) -> None:
    """The 1009 goes where the oversize frame began; none of its payload follows it."""
    p = await start_proxy(relay=TUNNEL)
    c = await RawClient.connect(p, "bob")
    big = frame(OP_BINARY, b"b" * 70000, mask=MASK)
    await c.send(frame(OP_TEXT, b"who", mask=MASK))
    assert await c.read_frame() == (OP_TEXT, b'{"backend": "legacy"}')
    await c.send(big[:1000])
    kind, body = await c.read_frame()
    assert (kind, int.from_bytes(body[:2], "big")) == (0x8, 1009)
    await c.send(big[1000:])  # the rest, which must go nowhere
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1009  # payload bytes after the close would be 1002
    await wait_for(lambda: _has(p, "strangler_bad_input_total", route="main", reason="too_big"))
    c.writer.close()


async def test_client_frame_without_a_mask_gets_1002_and_the_backend_1001(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(relay=TUNNEL)
    c = await RawClient.connect(p, "bob")
    await c.send(frame(OP_TEXT, b"who", mask=MASK) + frame(OP_TEXT, b"unmasked"))
    kind, body = await c.read_frame()
    assert (kind, int.from_bytes(body[:2], "big")) == (0x8, 1002)
    async with asyncio.timeout(5):
        assert await c.reader.read() == b""  # and then the socket ends
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1001
    await wait_for(
        lambda: _has(p, "strangler_bad_input_total", route="main", reason="protocol_error")
    )
    c.writer.close()


async def test_shutdown_close_waits_for_the_frame_in_flight(start_proxy: StartProxy) -> None:
    """A client halfway through a frame at shutdown: the backend still gets it whole,
    then the 1001, never a close frame inside the payload."""
    p = await start_proxy(relay=TUNNEL)
    c = await RawClient.connect(p, "bob")
    message = frame(OP_BINARY, b"m" * 1000, mask=MASK)
    await c.send(message[:500])
    await wait_for(lambda: _true(len(p.running.proxy.connections) == 1))
    stopping = asyncio.ensure_future(p.running.stop())
    # The client got its 1001 at once: nothing was in flight toward it.
    kind, body = await c.read_frame()
    assert (kind, int.from_bytes(body[:2], "big")) == (0x8, 1001)
    assert not p.legacy.closes  # the backend's close waits for the frame to end
    await c.send(message[500:])
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1001  # a close cut into the frame would be 1002
    await stopping
    c.writer.close()


async def test_shutdown_during_a_flood_closes_the_client_1001_between_messages(
    start_proxy: StartProxy,
) -> None:
    p = await start_proxy(relay=TUNNEL)
    size = 60000
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(p.url(), headers=bearer("bob"), max_msg_size=0) as ws,
    ):
        await ws.send_str(f"flood 400 {size}")
        first = await ws.receive()
        assert len(first.data) == size
        stopping = asyncio.ensure_future(p.running.stop())
        while True:
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            assert len(msg.data) == size  # every message whole up to the close
        assert (msg.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1001)
        await stopping
    await wait_for(lambda: _true(bool(p.legacy.closes)))
    assert p.legacy.closes[-1][0] == 1001


async def _true(value: bool) -> bool:
    return value


async def _has(p: ProxyUnderTest, name: str, **labels: str) -> bool:
    return await p.metric(name, **labels) >= 1
