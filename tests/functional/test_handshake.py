"""The tunnel's own upstream handshake: the same refusals, reasons and headers as aiohttp's.

A scripted raw backend on loopback answers each upgrade with exactly the bytes a test
chooses, so both relay paths can be held to the same answer for the same backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from multidict import CIMultiDict

from strangler.proxy.relay.handshake import accept_key, open_upstream
from strangler.proxy.relay.upstream import UpstreamRefused, UpstreamUnavailable
from tests.functional.conftest import StartProxy, free_port, token


@dataclass
class Scripted:
    """A backend that records each request head and answers with `answer(key)`."""

    answer: bytes | None = None  # None: say nothing at all
    good_101: bool = False  # answer a proper 101 (with extensions and a frame after it)
    requests: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        self.requests.append(head)
        if self.good_101:
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            writer.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n"
                    "Sec-WebSocket-Protocol: b\r\n"
                    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
                    "\r\n"
                ).encode()
                + b"\x81\x02hi"
            )
        elif self.answer is not None:
            writer.write(self.answer)
            await writer.drain()
            writer.close()
            return
        await reader.read()  # hold the connection until the other side ends it
        writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    backend = Scripted()
    backend.port = free_port()
    server = await asyncio.start_server(backend.handle, "127.0.0.1", backend.port)
    yield backend
    server.close()
    await server.wait_closed()


def url(backend: Scripted, path: str = "/ws?x=1") -> str:
    return f"ws://127.0.0.1:{backend.port}{path}"


CHUNKED_429 = (
    b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n"
    b"Content-Type: text/plain\r\nX-Internal: no\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


async def test_a_good_101_gives_the_raw_socket_subprotocol_and_extensions(
    scripted: Scripted,
) -> None:
    scripted.good_101 = True
    headers = CIMultiDict({"Authorization": "Bearer t", "X-Strangler-Route": "main"})
    raw = await open_upstream(url(scripted), protocols=["a", "b"], headers=headers, timeout=2)
    try:
        assert raw.subprotocol == "b"
        assert raw.extensions == "permessage-deflate; server_no_context_takeover"
        # A frame that came with the 101 waits for the tunnel, not lost.
        assert bytes(raw.protocol.buffer) == b"\x81\x02hi"
        head = scripted.requests[0]
        assert head.startswith("GET /ws?x=1 HTTP/1.1\r\n")
        for line in (
            f"Host: 127.0.0.1:{scripted.port}",
            "Sec-WebSocket-Protocol: a,b",
            "Sec-WebSocket-Version: 13",
            "Authorization: Bearer t",
            "X-Strangler-Route: main",
        ):
            assert line in head.split("\r\n")
    finally:
        raw.transport.close()


async def test_a_chunked_refusal_keeps_status_body_and_the_headers_that_travel(
    scripted: Scripted,
) -> None:
    scripted.answer = CHUNKED_429
    with pytest.raises(UpstreamRefused) as refused:
        await open_upstream(url(scripted), protocols=[], headers=CIMultiDict(), timeout=2)
    assert refused.value.status == 429
    assert refused.value.body == b"hello world"
    assert refused.value.headers == {"Retry-After": "3", "Content-Type": "text/plain"}


async def test_a_refusal_without_a_length_is_read_to_the_end(scripted: Scripted) -> None:
    scripted.answer = b"HTTP/1.0 503 Service Unavailable\r\n\r\ncome back later"
    with pytest.raises(UpstreamRefused) as refused:
        await open_upstream(url(scripted), protocols=[], headers=CIMultiDict(), timeout=2)
    assert (refused.value.status, refused.value.body) == (503, b"come back later")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
            "bad_handshake",
        ),
        (b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "bad_handshake"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "error"),
        (b"HTTP/1.1 101 Swi", "error"),  # the backend hung up halfway through
        (None, "handshake_timeout"),
    ],
)
async def test_a_backend_that_does_not_complete_the_handshake_is_unavailable_with_a_reason(
    scripted: Scripted, answer: bytes | None, reason: str
) -> None:
    scripted.answer = answer
    with pytest.raises(UpstreamUnavailable) as failed:
        await open_upstream(url(scripted), protocols=[], headers=CIMultiDict(), timeout=0.3)
    assert failed.value.reason == reason


async def test_nothing_listening_is_refused() -> None:
    with pytest.raises(UpstreamUnavailable) as failed:
        await open_upstream(
            f"ws://127.0.0.1:{free_port()}/", protocols=[], headers=CIMultiDict(), timeout=2
        )
    assert failed.value.reason == "refused"


@pytest.mark.parametrize("tunnel", ["auto", "off"], ids=["tunnel", "per_frame"])
@pytest.mark.parametrize(
    ("answer", "status", "reason"),
    [
        (CHUNKED_429, 429, "status"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n",
            502,
            "bad_handshake",
        ),
        (None, 504, "handshake_timeout"),
    ],
)
async def test_both_paths_answer_the_client_alike_for_the_same_backend(
    start_proxy: StartProxy,
    scripted: Scripted,
    tunnel: str,
    answer: bytes | None,
    status: int,
    reason: str,
) -> None:
    scripted.answer = answer
    p = await start_proxy(
        legacy_url=url(scripted, ""),
        relay=f"{{tunnel: {tunnel}, grace_period: 0.2}}",
        connect_timeout=0.5,
    )
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Authorization": f"Bearer {token('bob')}",
    }
    async with aiohttp.ClientSession() as s, s.get(p.http("/ws"), headers=headers) as r:
        assert r.status == status
        if status == 429:
            assert await r.read() == b"hello world"
            assert r.headers["Retry-After"] == "3"
            assert "X-Internal" not in r.headers
    assert (
        await p.metric("strangler_upstream_connect_failures_total", backend="legacy", reason=reason)
        == 1
    )


@pytest.mark.parametrize("tunnel", ["auto", "off"], ids=["tunnel", "per_frame"])
async def test_forwarded_header_bytes_reach_the_backend_unchanged(
    start_proxy: StartProxy, tunnel: str
) -> None:
    p = await start_proxy(relay=f"{{tunnel: {tunnel}, grace_period: 0.2}}")
    agent = "klient/1.0 (Zürich; ✓)"
    headers = {"Authorization": f"Bearer {token('bob')}", "User-Agent": agent}
    async with aiohttp.ClientSession() as s, s.ws_connect(p.url(), headers=headers) as ws:
        await ws.send_str("who")
        assert (await ws.receive_json()) == {"backend": "legacy"}
    assert p.legacy.handshakes[-1]["headers"]["User-Agent"] == agent
