"""A tiny raw WebSocket client for tests that must send what aiohttp's client refuses to.

Handshake bytes are written by hand (so a test can send a bad key, a huge header or a
bare CR), and frames are built bit by bit (unmasked, reserved opcodes, oversized
control frames, fragments). Reading parses the server's frames, which are never masked.
`HostileBackend` is the other end: a raw backend that answers with any frames a test
scripts (masked, impossible lengths, close codes no peer may send).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from dataclasses import dataclass, field

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# Every read is bounded, so a proxy that never answers fails the test instead of hanging it.
READ_TIMEOUT = 5.0


def new_key() -> str:
    """A valid Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
) -> bytes:
    """One frame as a client sends it: masked unless `mask=False`, any opcode and RSV bits."""
    first = (0x80 if fin else 0) | ((rsv & 0x7) << 4) | (opcode & 0xF)
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    # XOR as one big integer: a per-byte loop would be slow on large payloads.
    stream = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return header + key + masked


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason)


@dataclass
class Response:
    """The handshake answer: status, lower-cased headers and (for a refusal) the body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class RawWebSocket:
    """One raw connection: `handshake` first, then frames both ways."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        return cls(reader, writer)

    async def handshake(
        self,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        *,
        key: str | None = None,
        raw_extra: bytes = b"",
        trailing: bytes = b"",
    ) -> Response:
        """Send an upgrade request; `raw_extra` is spliced in verbatim before the blank line,
        `trailing` (frames) follows the request in the same write, before any answer."""
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.writer.get_extra_info('peername')[1]}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key if key is not None else new_key()}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{name}: {value}" for name, value in headers or ()]
        self.writer.write(
            "\r\n".join(lines).encode("latin-1") + b"\r\n" + raw_extra + b"\r\n" + trailing
        )
        await self.writer.drain()
        return await self._read_response()

    async def _read_response(self) -> Response:
        async with asyncio.timeout(READ_TIMEOUT):
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            headers: dict[str, str] = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = b""
            if status != 101:
                length = int(headers.get("content-length", "0"))
                body = await self.reader.readexactly(length) if length else b""
        return Response(status, headers, body)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> tuple[bool, int, bytes]:
        """The next frame from the server: (fin, opcode, payload)."""
        async with asyncio.timeout(READ_TIMEOUT):
            b1, b2 = await self.reader.readexactly(2)
            n = b2 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(n)
        return bool(b1 & 0x80), b1 & 0x0F, payload

    async def recv_text(self) -> str:
        """The next data frame's text (pings and pongs skipped)."""
        while True:
            _, opcode, payload = await self.recv()
            if opcode in (OP_TEXT, OP_BINARY):
                return payload.decode()
            if opcode == OP_CLOSE:
                raise AssertionError(f"closed instead: {payload!r}")

    async def recv_close(self) -> tuple[int | None, bytes]:
        """Read until the server's close frame: (code, reason); None for a close without one."""
        while True:
            _, opcode, payload = await self.recv()
            if opcode == OP_CLOSE:
                if len(payload) < 2:
                    return None, b""
                return struct.unpack("!H", payload[:2])[0], payload[2:]

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    """The next frame on `reader`, masked or not: (fin, opcode, unmasked payload)."""
    async with asyncio.timeout(READ_TIMEOUT):
        b1, b2 = await reader.readexactly(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        key = await reader.readexactly(4) if b2 & 0x80 else b""
        payload = await reader.readexactly(n)
    if key:
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(
            n, "big"
        )
    return bool(b1 & 0x80), b1 & 0x0F, payload


@dataclass
class HostileBackend:
    """A backend that completes the handshake, then writes `script` (raw frames of any
    kind, however broken) once the first data frame from its client arrives, and keeps
    what comes back: `closes` are the codes of the close frames it was sent (None for a
    close without a code), one entry per connection, in order."""

    script: bytes = b""
    closes: list[int | None] = field(default_factory=list)
    port: int = 0
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from strangler.proxy.relay.handshake import accept_key

        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key).encode()
                + b"\r\n\r\n"
            )
            while True:
                _, opcode, payload = await read_frame(reader)
                if opcode in (OP_TEXT, OP_BINARY):
                    writer.write(self.script)
                elif opcode == OP_CLOSE:
                    self.closes.append(struct.unpack("!H", payload[:2])[0] if payload else None)
                    break
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, StopIteration):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
