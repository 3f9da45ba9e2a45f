"""One direction of the byte tunnel: what one peer sends, scanned and written to the other.

A frame-header scanner per direction (`proxy/relay/wsframes.py`, pure) walks the headers
only, to

- count messages and payload bytes for the metrics, as the relay does;
- end a message over `relay.max_message_bytes` with 1009 on both sides;
- see each side's close frame, to know when the close handshake is complete;
- know where frames end, so a close frame of the proxy's own is only ever put between
  two frames;
- with turn observation on, tell the tunnel what each text message was (a turn
  message, a golden-path event), read from its first bytes.

`Direction.feed` runs once per chunk read: it is the hot path. What the scan saw goes to
the tunnel (proxy/relay/tunnel.py), which owns how the connection ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from strangler.proxy.relay.frame_relay import Meters, Side
from strangler.proxy.relay.messages import TextMessages
from strangler.proxy.relay.wsframes import FrameScanner

if TYPE_CHECKING:
    from strangler.proxy.relay.tunnel import Tunnel


def other_side(side: Side) -> Side:
    """The peer across the tunnel from `side`."""
    return Side.BACKEND if side is Side.CLIENT else Side.CLIENT


@dataclass(slots=True)
class Hop:
    """One peer: its socket, and its part in the close handshake as the proxy sees it."""

    transport: asyncio.Transport
    closing: bool = False  # a close frame toward this peer is decided
    close_written: bool = False  # ... and on the wire
    sent_code: int | None = None  # its code
    ours: bool = False  # the proxy's own close, not one passed on from the other peer
    got_close: bool = False  # this peer sent a close frame (or can no longer be read)
    lost: bool = False  # its socket is gone
    shut_down: bool = False  # the proxy closed its socket


class Direction:
    """One direction: what `source` sends, scanned and written to the other peer."""

    # Slots on every per-connection object: an idle connection should cost little.
    __slots__ = (
        "_count",
        "_size",
        "_written",
        "destination",
        "failed",
        "held",
        "out",
        "pending_close",
        "scanner",
        "shut",
        "source",
        "tunnel",
    )

    def __init__(
        self,
        tunnel: Tunnel,
        source: Side,
        scanner: FrameScanner,
        meters: Meters,
        destination: Hop,
    ) -> None:
        self.tunnel = tunnel
        self.source = source
        self.scanner = scanner
        self.destination = destination
        self.out = destination.transport
        self._count = meters.messages.add
        self._size = meters.bytes.add
        # Only bytes toward the client can fill a socket the proxy must watch.
        self._written = tunnel.client_backpressure if source is Side.BACKEND else None
        self.held = b""  # the start of a frame header, sent once the header is whole
        self.pending_close: bytes | None = None  # a close for the next frame boundary
        self.shut = False  # a close went out this way: nothing more may follow
        self.failed = False

    def feed(self, data: bytes) -> None:
        """Bytes from the source: forward what may go, act on what the scan saw."""
        if self.pending_close is not None:
            data = self._finish_frame(data)
        scanner = self.scanner
        if self.shut or self.destination.lost:
            # Only the source's close matters now (its answer to the proxy's close).
            scan = scanner.feed(data)
            if scan.close_seen:
                self.tunnel.close_from(self.source, scan.close_code, forwarded=False)
            return
        held = self.held
        buf = held + data if held else data
        scan = scanner.feed(data)
        if scan.error:
            cut = len(held) + scan.error_offset  # the offending frame starts here
            if cut > 0:
                self._write(buf[:cut])
            self.held = b""
            self._counted(scan.messages, scan.payload_bytes)
            if scan.events:
                self.tunnel.turn_events(self.source, scan.events)
            if not self.failed:
                self.failed = True
                self.tunnel.failed(self.source, scan.error)
            if scan.close_seen:
                self.tunnel.close_from(self.source, scan.close_code, forwarded=False)
            return
        pending = scan.pending
        if pending:
            cut = len(buf) - pending
            if cut:
                self._write(buf[:cut])
            self.held = buf[cut:]
        else:
            self._write(buf)
            self.held = b""
        # _counted, inline: this is the path every chunk takes.
        if scan.messages:
            self._count(scan.messages)
        if scan.payload_bytes:
            self._size(scan.payload_bytes)
        if scan.events:
            self.tunnel.turn_events(self.source, scan.events)
        if scan.close_seen:
            self.tunnel.close_from(self.source, scan.close_code, forwarded=True)

    def inject(self, frame: bytes) -> bool:
        """Put a close frame toward the destination now if between frames, else next."""
        # After an error, what went out ends where the offending frame began: a boundary,
        # whatever the scanner, which walks on past it, says.
        if self.scanner.remaining and not self.failed:
            self.pending_close = frame
            # The rest of that one frame (at most max_message_bytes) goes even to a
            # peer that does not read; its sender must not stay paused behind it.
            self.tunnel.read_freely(self.source)
            return False
        self.held = b""  # a header that never completed: its frame never goes
        self._write(frame)
        self.shut = True
        self.tunnel.read_freely(self.source)
        return True

    def _finish_frame(self, data: bytes) -> bytes:
        """Forward the rest of the frame in flight, then the waiting close; the remainder."""
        need = self.scanner.remaining
        head, rest = data[:need], data[need:]
        scan = self.scanner.feed(head)
        self._write(head)
        self._counted(scan.messages, scan.payload_bytes)
        if scan.events:
            self.tunnel.turn_events(self.source, scan.events)
        if self.scanner.remaining:
            return b""
        frame, self.pending_close = self.pending_close, None
        assert frame is not None
        self.shut = True
        self.tunnel.read_freely(self.source)
        if scan.close_seen:
            # The frame in flight was the source's own close: it went, and stands for ours.
            self.tunnel.close_from(self.source, scan.close_code, forwarded=True)
            return rest
        self._write(frame)
        self.tunnel.written(other_side(self.source))
        return rest

    def _write(self, data: bytes) -> None:
        out = self.out
        if out.is_closing():
            return  # uvloop raises on writes to a closed socket; asyncio drops them
        out.write(data)
        written = self._written
        if written is not None:
            written()

    def _counted(self, messages: int, nbytes: int) -> None:
        if messages:
            self._count(messages)
        if nbytes:
            self._size(nbytes)


class Tap(Protocol):
    """What a compared connection's tunnel copies its text messages to (the shadow tee):
    the client's, and the primary's; `detached` once nothing more is wanted."""

    detached: bool

    def client_text(self, data: bytes) -> None: ...

    def primary_text(self, data: bytes) -> None: ...


class TappedDirection(Direction):
    """A direction whose forwarded bytes are also read as text messages for a tap. Only
    compared connections have one: every other tunnel keeps the plain Direction."""

    __slots__ = ("messages", "tap")

    def __init__(
        self,
        tunnel: Tunnel,
        source: Side,
        scanner: FrameScanner,
        meters: Meters,
        destination: Hop,
        *,
        tap: Tap,
    ) -> None:
        super().__init__(tunnel, source, scanner, meters, destination)
        self.tap = tap
        deliver = tap.client_text if source is Side.CLIENT else tap.primary_text
        self.messages = TextMessages(deliver)

    def _write(self, data: bytes) -> None:
        Direction._write(self, data)
        # The copy is read after the bytes went on: the primary never waits for it.
        if not self.tap.detached:
            self.messages.feed(data)


class ClientSink:
    """Stands where aiohttp's WebSocketReader would: receives the client's raw bytes."""

    __slots__ = ("_feed", "_tunnel")

    def __init__(self, tunnel: Tunnel, feed: Callable[[bytes], None]) -> None:
        self._tunnel = tunnel
        self._feed = feed  # the client's direction, called straight: once per chunk

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._feed(data)
        return False, b""  # never "end of message": the request handler keeps feeding

    def feed_eof(self) -> None:
        self._tunnel.lost(Side.CLIENT)
