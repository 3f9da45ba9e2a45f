"""The relay: the only code that pumps frames between a client and its backend.

Two pumps run per connection, one per direction; each is the only reader of its
source socket (aiohttp allows one reader per WebSocket). The first pump to see its
source end decides how the connection ends, and the relay carries that end to the
other side:

- a close frame travels on with its code and reason (4000-4999 untouched); the other
  side's answer is echoed back, so the close handshake is end to end;
- a peer that breaks the protocol (proxy/relay/frame_guard.py holds both sockets to the
  tunnel's rules, close codes included: proxy/relay/closecodes.py) is closed with 1002,
  or 1007 for a close reason that is not UTF-8; the other side gets 1001 (client at
  fault) or the backend-lost code, 1011 by default (backend at fault: from the client's
  side, the server failed), never the offender's close;
- a side that vanishes without a close frame (aiohttp reports 1006, a code that must
  never be sent) makes the other side get 1001 (client gone) or 1011 (backend gone);
- a message over the size limit ends both sides with 1009.

Frames are never parsed here: text arrives as bytes (decode_text=False) and leaves
with the same opcode, so an identity-dialect connection costs one copy per frame. With
turn observation on, each text message's type is read from its first bytes, as the
tunnel reads it (proxy/relay/turnscan.py), and the connection's turns are kept by a
`TurnWatch` (proxy/relay/turns.py), so both relays count turns alike.
Backpressure comes from awaiting each send: aiohttp drains the transport once its
buffer passes the writer limit, so a peer that stops reading stops the pump that
feeds it, which stops reading the other socket, which lets TCP push back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import WSMsgType, web

from strangler.proxy.relay.closecodes import on_the_wire
from strangler.proxy.relay.turns import TurnWatch
from strangler.proxy.relay.turnscan import (
    CLIENT_CODES,
    CLIENT_PREFIXES,
    SERVER_CODES,
    SERVER_PREFIXES,
    message_code,
)

if TYPE_CHECKING:
    from strangler.legacy_adapters.translate import Translated
    from strangler.proxy.telemetry.metrics import Tally

log = logging.getLogger("strangler.relay")

Socket = web.WebSocketResponse[Any] | aiohttp.ClientWebSocketResponse[Any]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_TEXT = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

_MAX_REASON_BYTES = 123


class Side(StrEnum):
    CLIENT = "client"
    BACKEND = "backend"


class EndKind(StrEnum):
    CLOSED = "closed"  # a close frame arrived
    GONE = "gone"  # the socket ended without a close frame
    TOO_BIG = "too_big"  # a message over the limit
    PROTOCOL_ERROR = "protocol_error"  # the peer broke the protocol
    STOPPED = "stopped"  # the pump was stopped from outside (the other side ended)


@dataclass(frozen=True, slots=True)
class End:
    """How one pump finished."""

    side: Side  # whose socket it was reading
    kind: EndKind
    code: int | None = None
    reason: bytes = b""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the relayed connection ended, for metrics and logs."""

    label: str  # one of proxy.metrics.OUTCOMES
    client_code: int | None  # what the client was sent (None if it closed first or vanished)
    backend_code: int | None
    bad_input: str | None = None  # the client's bad input that ended it (metrics.BAD_INPUT)


@dataclass(frozen=True, slots=True)
class Meters:
    """One direction's tallies (labels are looked up once per connection, not per frame)."""

    messages: Tally
    bytes: Tally


def sendable(code: int | None, fallback: int) -> int:
    """A close code that may go on the wire: the code itself, or `fallback`."""
    if code is not None and on_the_wire(code):
        return code
    if code == 1005:  # a close frame without a code: the peer meant a normal close
        return CLOSE_NORMAL
    return fallback


def clip_reason(reason: bytes | str) -> bytes:
    """A close reason within the protocol's 123 bytes, never cut inside a UTF-8 character."""
    data = reason.encode() if isinstance(reason, str) else reason
    if len(data) <= _MAX_REASON_BYTES:
        return data
    return data[:_MAX_REASON_BYTES].decode("utf-8", "ignore").encode()


# A frame filter: one text frame in, frames for the peer and for the sender out.
Translate = Callable[[bytes], "Translated"]
# A non-blocking observer of every data frame a pump moves (the shadow tee).
Tap = Callable[[bytes, WSMsgType], None]

_SEND_FAILURES = (ConnectionError, aiohttp.ClientConnectionResetError, RuntimeError)


def _ending(side: Side, msg: aiohttp.WSMessage) -> End:
    """How a non-data message ends a pump."""
    kind = msg.type
    if kind is WSMsgType.CLOSE:
        return End(side, EndKind.CLOSED, msg.data, clip_reason(msg.extra or b""))
    if kind is WSMsgType.CLOSING:
        # Our own close() on this socket, from the other pump: it owns the ending.
        return End(side, EndKind.STOPPED)
    if kind is WSMsgType.ERROR:
        code = getattr(msg.data, "code", None)
        if code == CLOSE_TOO_BIG:
            return End(side, EndKind.TOO_BIG, CLOSE_TOO_BIG)
        if code is not None and code != 1006:
            return End(side, EndKind.PROTOCOL_ERROR, code)
    return End(side, EndKind.GONE)  # CLOSED, or an error without a code: no close frame


async def pump(
    src: Socket,
    dst: Socket,
    side: Side,
    meters: Meters,
    *,
    translate: Translate | None = None,
    tap: Tap | None = None,
    turns: TurnWatch | None = None,
) -> End:
    """Copy messages from `src` to `dst` until `src` ends; report how it ended.

    Without a filter or a tap this is the identity path: each frame is forwarded with
    its opcode and never looked into but for its type when `turns` watches.
    """
    if translate is None and tap is None:
        return await _pump_identity(src, dst, side, meters, turns)
    count = meters.messages.add
    size = meters.bytes.add
    while True:
        msg = await src.receive()
        kind = msg.type
        if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
            return _ending(side, msg)
        data: bytes = msg.data
        if kind is WSMsgType.TEXT and side is Side.CLIENT and not _valid_text(data):
            return _INVALID_TEXT
        count()
        size(len(data))
        if turns is not None and kind is WSMsgType.TEXT:
            _observe(turns, side, data)
        if tap is not None:
            tap(data, kind)
        try:
            if translate is None or kind is WSMsgType.BINARY:
                await dst.send_frame(data, kind)
                continue
            result = translate(data)
            for frame in result.to_peer:
                await dst.send_frame(frame.encode(), WSMsgType.TEXT)
            for frame in result.to_sender:
                await src.send_frame(frame.encode(), WSMsgType.TEXT)
        except _SEND_FAILURES:
            return End(side, EndKind.STOPPED)  # a peer vanished mid-send; its pump says how


async def _pump_identity(
    src: Socket, dst: Socket, side: Side, meters: Meters, turns: TurnWatch | None
) -> End:
    count = meters.messages.add
    size = meters.bytes.add
    check_text = side is Side.CLIENT
    while True:
        msg = await src.receive()
        kind = msg.type
        if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
            return _ending(side, msg)
        data = msg.data
        if check_text and kind is WSMsgType.TEXT and not _valid_text(data):
            return _INVALID_TEXT
        if turns is not None and kind is WSMsgType.TEXT:
            _observe(turns, side, data)
        try:
            await dst.send_frame(data, kind)
        except _SEND_FAILURES:
            return End(side, EndKind.STOPPED)  # the destination vanished mid-send
        count()
        size(len(data))


def _observe(turns: TurnWatch, side: Side, data: bytes) -> None:
    """One text message, for the connection's turns: a turn message, or an event."""
    if side is Side.CLIENT:
        if message_code(data, CLIENT_PREFIXES, CLIENT_CODES):
            turns.request()
        return
    code = message_code(data, SERVER_PREFIXES, SERVER_CODES)
    if code:
        turns.event(code)


# A client text frame that is not UTF-8 (RFC 6455 8.1): the client is failed with 1007.
_INVALID_TEXT = End(Side.CLIENT, EndKind.PROTOCOL_ERROR, CLOSE_INVALID_TEXT, b"Invalid UTF-8")


def _valid_text(data: bytes) -> bool:
    """Whether a text frame's payload is UTF-8 (text arrives undecoded: decode_text=False).

    The ASCII test costs no allocation, so most JSON frames are never decoded.
    """
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _close(ws: Socket, code: int, reason: bytes) -> None:
    """Close `ws`, tolerating a peer that is already gone."""
    with contextlib.suppress(ConnectionError, aiohttp.ClientError, RuntimeError, TimeoutError):
        await ws.close(code=code, message=reason)


def _other(side: Side) -> Side:
    return Side.BACKEND if side is Side.CLIENT else Side.CLIENT


@dataclass(frozen=True, slots=True)
class Filters:
    """What a connection does to its frames besides moving them (nothing, by default)."""

    inbound: Translate | None = None  # client frame -> backend frames
    outbound: Translate | None = None  # backend frame -> client frames
    inbound_tap: Tap | None = None
    outbound_tap: Tap | None = None


IDENTITY = Filters()


async def relay(
    client: web.WebSocketResponse[Any],
    backend: aiohttp.ClientWebSocketResponse[Any],
    *,
    inbound: Meters,
    outbound: Meters,
    filters: Filters = IDENTITY,
    backend_lost_code: int = CLOSE_INTERNAL_ERROR,
    turns: TurnWatch | None = None,
) -> Outcome:
    """Pump both directions until one side ends, then end the other side to match.

    `backend_lost_code` is what the client gets when the backend vanishes without a
    close frame (the route's legacy code may have used another code than 1011).
    `turns`: the connection's turns, watched on both pumps; the caller ends them, as it
    alone knows whether the proxy itself closed the connection (shutdown, drain, stall).
    """
    sockets: dict[Side, Socket] = {Side.CLIENT: client, Side.BACKEND: backend}
    pumps = {
        asyncio.create_task(
            pump(
                client,
                backend,
                Side.CLIENT,
                inbound,
                translate=filters.inbound,
                tap=filters.inbound_tap,
                turns=turns,
            )
        ),
        asyncio.create_task(
            pump(
                backend,
                client,
                Side.BACKEND,
                outbound,
                translate=filters.outbound,
                tap=filters.outbound_tap,
                turns=turns,
            )
        ),
    }
    try:
        done, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        first = _decisive(done)
        end_of = sockets[first.side]
        other = sockets[_other(first.side)]
        sent: dict[Side, int | None] = {Side.CLIENT: None, Side.BACKEND: None}

        if first.kind is EndKind.CLOSED:
            # End-to-end close handshake: pass the code on, echo the answer back.
            code = sendable(first.code, CLOSE_NORMAL)
            sent[_other(first.side)] = code
            await _close(other, code, first.reason)
            answer = sendable(other.close_code, code)
            sent[first.side] = answer
            await _close(end_of, answer, first.reason if answer == code else b"")
            label = f"{first.side.value}_closed"
        elif first.kind is EndKind.TOO_BIG:
            # aiohttp already closed the offender with 1009; the other side learns why.
            sent[first.side] = CLOSE_TOO_BIG
            sent[_other(first.side)] = CLOSE_TOO_BIG
            await _close(other, CLOSE_TOO_BIG, b"peer sent a message too big")
            label = "too_big"
        else:
            # Gone, a protocol error, or a pump stopped by a failed send: the other
            # side gets 1001 when the client went away, 1011 (or the route's code) when
            # the backend did.
            fallback = CLOSE_GOING_AWAY if first.side is Side.CLIENT else backend_lost_code
            why = gone_reason(first.side, first.kind)
            sent[_other(first.side)] = fallback
            await _close(other, fallback, why)
            await _close(end_of, sendable(first.code, fallback), first.reason)
            if first.kind is EndKind.PROTOCOL_ERROR:
                label = "protocol_error"
            else:
                label = f"{first.side.value}_gone"
        await asyncio.gather(*pending, return_exceptions=True)
        return Outcome(label, sent[Side.CLIENT], sent[Side.BACKEND], _bad_input(first))
    finally:
        for task in pumps:
            if not task.done():
                task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def gone_reason(side: Side, kind: EndKind) -> bytes:
    """The reason the other side is told when `side` ended without a close of its own."""
    if side is Side.CLIENT:
        return b"client went away"
    return b"backend broke the protocol" if kind is EndKind.PROTOCOL_ERROR else b"backend went away"


def _bad_input(end: End) -> str | None:
    """The bad-input reason when the client ended the connection by breaking the rules."""
    if end.side is not Side.CLIENT:
        return None
    if end.kind is EndKind.TOO_BIG:
        return "too_big"
    if end.kind is EndKind.PROTOCOL_ERROR:
        return "invalid_utf8" if end.code == CLOSE_INVALID_TEXT else "protocol_error"
    return None


def _decisive(done: set[asyncio.Task[End]]) -> End:
    """Of the pumps that finished together, the one whose ending explains the others.

    A pump stopped by a failed send saw its destination vanish, so when no pump has a
    better account, the ending is that the destination's side is gone.
    """
    ends = sorted((task.result() for task in done), key=lambda e: e.kind is EndKind.STOPPED)
    first = ends[0]
    if first.kind is EndKind.STOPPED:
        return End(_other(first.side), EndKind.GONE)
    return first


async def close_both(
    client: web.WebSocketResponse[Any],
    backend: aiohttp.ClientWebSocketResponse[Any] | None,
    code: int,
    reason: str,
) -> None:
    """Close both sides with one code (shutdown); the relay's pumps then wind down."""
    data = clip_reason(reason)
    await asyncio.gather(
        _close(client, code, data),
        *([] if backend is None else [_close(backend, code, data)]),
    )
