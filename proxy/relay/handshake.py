"""The byte tunnel's handshakes, done by hand so both sockets stay raw afterwards.

Upstream, the proxy is a WebSocket client: `open_upstream` sends the upgrade request
with the same forwarded headers and subprotocol offer as `proxy.upstream.connect`,
plus the client's extension offer (permessage-deflate is negotiated end to end), and
reports failures with the same exceptions and reasons, so refusals are mirrored and
counted exactly as on the per-frame path. Downstream, `accept_key` and
`check_client` answer the client's upgrade the way aiohttp's WebSocketResponse would.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from strangler.proxy.relay.upstream import (
    MAX_REFUSAL_BODY,
    REFUSAL_HEADERS,
    UpstreamRefused,
    UpstreamUnavailable,
)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
_MAX_HEAD = 64 * 1024  # an answer's status line and headers


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def check_client(request: web.Request) -> str:
    """The client's Sec-WebSocket-Key, or the 400 aiohttp's handshake would have sent."""
    version = request.headers.get(hdrs.SEC_WEBSOCKET_VERSION, "")
    if version not in ("13", "8", "7"):
        raise web.HTTPBadRequest(text=f"Unsupported version: {version}")
    key = request.headers.get(hdrs.SEC_WEBSOCKET_KEY)
    try:
        if not key or len(base64.b64decode(key)) != 16:
            raise web.HTTPBadRequest(text=f"Handshake error: {key!r}")
    except binascii.Error:
        raise web.HTTPBadRequest(text=f"Handshake error: {key!r}") from None
    return key


class UpstreamProtocol(asyncio.Protocol):
    """The upstream socket: buffers the handshake answer, then hands bytes to a sink."""

    __slots__ = (
        "_wakeup",
        "buffer",
        "eof",
        "lost",
        "on_data",
        "on_lost",
        "on_pause",
        "on_resume",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost = False
        self._wakeup: asyncio.Future[None] | None = None
        # Set by the tunnel once attached: where bytes, the end and flow control go.
        self.on_data: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(data)
            return
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too: a WebSocket peer that half-closes is gone

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = self.eof = True
        self._wake()
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes or the end of the stream."""
        if self.eof:
            raise ConnectionResetError("upstream closed the connection")
        self._wakeup = asyncio.get_running_loop().create_future()
        await self._wakeup
        self._wakeup = None


@dataclass(slots=True)
class RawUpstream:
    """An upstream WebSocket after its 101: the raw socket and what was agreed."""

    protocol: UpstreamProtocol
    transport: asyncio.Transport
    subprotocol: str | None
    extensions: str | None  # the upstream's Sec-WebSocket-Extensions answer, verbatim

    @property
    def closed(self) -> bool:
        return self.protocol.lost


async def open_upstream(
    url: str,
    *,
    protocols: Sequence[str],
    headers: CIMultiDict[str],
    timeout: float,
) -> RawUpstream:
    """Complete the upstream handshake or raise UpstreamRefused / UpstreamUnavailable."""
    target = URL(url, encoded=True)
    secure = target.scheme == "wss"
    host = target.raw_host or ""
    port = target.port or (443 if secure else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await loop.create_connection(
                UpstreamProtocol,
                host,
                port,
                ssl=ssl.create_default_context() if secure else None,
            )
    except TimeoutError:
        raise UpstreamUnavailable("connect_timeout", f"not reached within {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise UpstreamUnavailable("tls", str(exc)) from None
    except OSError as exc:
        raise UpstreamUnavailable("refused", f"{host}:{port}: {exc}") from None
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(_request(target, key, protocols, headers))
        status, answer, rest, body = 0, CIMultiDict[str](), b"", b""
        try:
            async with asyncio.timeout(timeout):
                status, answer, rest = await _read_head(protocol)
                if status != 101:
                    body = await _read_body(protocol, answer, rest)
        except TimeoutError:
            if not status:
                raise UpstreamUnavailable(
                    "handshake_timeout", f"no answer within {timeout:g}s"
                ) from None
            # The status came but its body dawdled: the status alone is still the answer.
        if status != 101:
            raise UpstreamRefused(status, _kept(answer), body)
        _check_upgrade(answer, key)
    except BaseException:
        transport.abort()
        raise
    chosen = answer.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").strip()
    # Like aiohttp's client, an answer the client never offered counts as none.
    subprotocol = chosen if chosen in protocols else None
    extensions = answer.get(hdrs.SEC_WEBSOCKET_EXTENSIONS)
    # Frames that came with the 101 wait in the buffer until the tunnel attaches; stop
    # reading until then so a chatty upstream cannot grow it.
    transport.pause_reading()
    protocol.buffer = bytearray(rest)
    return RawUpstream(protocol, transport, subprotocol, extensions)


def _request(target: URL, key: str, protocols: Sequence[str], headers: CIMultiDict[str]) -> bytes:
    host = target.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if not target.is_default_port():
        host = f"{host}:{target.port}"
    lines = [
        f"GET {target.raw_path_qs or '/'} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {','.join(protocols)}")
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            continue  # never let a header value end the request early
        lines.append(f"{name}: {value}")
    # aiohttp decoded the client's header bytes as UTF-8 with surrogateescape (and
    # encodes its own requests as UTF-8): this gives the backend the same bytes.
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


async def _read_head(protocol: UpstreamProtocol) -> tuple[int, CIMultiDict[str], bytes]:
    """The answer's status and headers, and the bytes that followed them."""
    while True:
        buffer = protocol.buffer
        if len(buffer) >= 5 and not buffer.startswith(b"HTTP/"):
            # Not HTTP at all (another protocol's banner): no need to wait for more.
            raise UpstreamUnavailable("error", "not an HTTP answer")
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(buffer) > _MAX_HEAD:
            raise UpstreamUnavailable("bad_handshake", "answer headers too large")
        try:
            await protocol.more()
        except ConnectionResetError:
            raise UpstreamUnavailable("error", "upstream closed before answering") from None
    head = bytes(protocol.buffer[:end]).decode("latin-1")
    rest = bytes(protocol.buffer[end + 4 :])
    protocol.buffer = bytearray()
    status_line, *header_lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise UpstreamUnavailable("error", "not an HTTP answer")
    answer: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            answer.add(name.strip(), value.strip())
    return int(parts[1]), answer, rest


async def _read_body(protocol: UpstreamProtocol, answer: CIMultiDict[str], rest: bytes) -> bytes:
    """A refusal's body (up to MAX_REFUSAL_BODY), by Content-Length, chunks or to the end."""
    data = bytearray(rest)

    async def more() -> bool:
        data.extend(protocol.buffer)
        protocol.buffer = bytearray()
        if protocol.eof:
            return False
        try:
            await protocol.more()
        except ConnectionResetError:
            return False
        data.extend(protocol.buffer)
        protocol.buffer = bytearray()
        return True

    if "chunked" in answer.get(hdrs.TRANSFER_ENCODING, "").lower():
        body = bytearray()
        while len(body) < MAX_REFUSAL_BODY:
            line_end = data.find(b"\r\n")
            if line_end < 0:
                if not await more():
                    break
                continue
            try:
                size = int(bytes(data[:line_end]).split(b";")[0], 16)
            except ValueError:
                break
            if size == 0:
                break
            if len(data) < line_end + 2 + size + 2 and await more():
                continue
            body += data[line_end + 2 : line_end + 2 + size]
            del data[: line_end + 2 + size + 2]
        return bytes(body[:MAX_REFUSAL_BODY])
    length = answer.get(hdrs.CONTENT_LENGTH)
    want = MAX_REFUSAL_BODY
    if length is not None and length.isdigit():
        want = min(int(length), MAX_REFUSAL_BODY)
    while len(data) < want and await more():
        pass
    return bytes(data[:want])


def _check_upgrade(answer: CIMultiDict[str], key: str) -> None:
    """A 101 must be a WebSocket answer to our key, as aiohttp's client insists too."""
    if answer.get(hdrs.UPGRADE, "").lower() != "websocket":
        raise UpstreamUnavailable("bad_handshake", "101 without Upgrade: websocket")
    if "upgrade" not in answer.get(hdrs.CONNECTION, "").lower():
        raise UpstreamUnavailable("bad_handshake", "101 without Connection: upgrade")
    if answer.get(hdrs.SEC_WEBSOCKET_ACCEPT, "") != accept_key(key):
        raise UpstreamUnavailable("bad_handshake", "101 with a wrong Sec-WebSocket-Accept")


def _kept(answer: CIMultiDict[str]) -> dict[str, str]:
    return {name: answer[name] for name in REFUSAL_HEADERS if name in answer}
