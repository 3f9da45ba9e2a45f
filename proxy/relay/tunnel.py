"""The byte tunnel: after the handshake, bytes move between client and backend unframed.

For a connection whose frames the proxy never changes (identity dialect, no shadow
copy), the per-frame relay's work is waste: nginx, after an upgrade, just moves bytes.
Here each chunk read from one socket is written to the other as it came, batched as it
arrived; close frames, pings and permessage-deflate pass end to end. Each direction
(proxy/relay/direction.py) scans frame headers only: to count messages, end one over
`relay.max_message_bytes` with 1009, see each side's close frame, and put a close frame
of the proxy's own (1001 on shutdown, 1012 on drain, 1001/1011 for a vanished peer)
only ever between two frames. With turn observation on, the scanners also read each
text message's type from its first bytes (proxy/relay/turnscan.py), and the tunnel
keeps the connection's turn state (proxy/relay/turns.py) in one slot: the shared idle
state while no turn is open, the open turn otherwise.

Frames the proxy sends toward the backend are masked: to the backend it is a client.
Backpressure: when one side's socket cannot take more, the other socket stops being
read (pause_reading), so TCP pushes back on the sender; the stall watchdog in
proxy/app.py still sees the client's transport paused.

The ending mirrors proxy/relay/frame_relay.py: a close frame travels on and its answer travels
back; a side that vanishes makes the other get 1001 (client gone) or the route's
backend-lost code; a peer that breaks the protocol gets 1002 (1007 for a close reason
that is not UTF-8) and the other side the gone code. A close frame is judged whole
before it goes on (proxy/relay/closecodes.py): a code no peer may send (1005, 1006,
1015, 5000, ...) is such a violation, so it never reaches the other side. A close the
proxy could only put mid-frame waits for the frame to end, at most
`relay.close_timeout`; after that, or when the sender of an unfinished frame is
gone, the socket is cut without a close frame (the one case where a peer sees 1006).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from typing import cast

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from strangler.proxy.relay.direction import (
    ClientSink,
    Direction,
    Hop,
    Tap,
    TappedDirection,
    other_side,
)
from strangler.proxy.relay.frame_relay import (
    CLOSE_GOING_AWAY,
    CLOSE_INVALID_TEXT,
    CLOSE_TOO_BIG,
    End,
    EndKind,
    Meters,
    Outcome,
    Side,
    clip_reason,
    gone_reason,
)
from strangler.proxy.relay.handshake import RawUpstream, accept_key, check_client
from strangler.proxy.relay.turns import (
    State,
    Turn,
    TurnMeters,
    each_code,
    left_by_client,
)
from strangler.proxy.relay.turnscan import CODE_BITS, code_count
from strangler.proxy.relay.wsframes import FrameScanner, close_frame

# A backend's close code that judges what the client sent (bad input, by reason).
_BACKEND_VERDICTS = {1007: "invalid_utf8", 1002: "protocol_error"}


class Tunnel:
    """One tunnelled connection, from the client's 101 to both sockets' end."""

    __slots__ = (
        "_backend_hop",
        "_backend_lost_code",
        "_client_hop",
        "_close_timeout",
        "_deadline",
        "_draining",
        "_end",
        "_finished",
        "_from_backend",
        "_from_client",
        "_request_protocol",
        "_turns",
        "_upstream",
        "_writer",
    )

    def __init__(
        self,
        request: web.Request,
        writer: AbstractStreamWriter,
        upstream: RawUpstream,
        *,
        max_message_bytes: int,
        close_timeout: float,
        inbound: Meters,
        outbound: Meters,
        backend_lost_code: int,
        turns: TurnMeters | None = None,
        tap: Tap | None = None,
    ) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        client = cast(asyncio.Transport, request.transport)
        self._request_protocol = request.protocol
        self._writer = writer
        self._upstream = upstream
        self._close_timeout = close_timeout
        self._backend_lost_code = backend_lost_code
        # Per side as attributes, not dicts keyed by side: two dicts were a tenth of what
        # an idle connection costs beyond nginx.
        self._client_hop = Hop(client)
        self._backend_hop = Hop(upstream.transport)
        observe = turns is not None
        # A compared connection's directions also copy its text messages to the tap.
        direction = Direction if tap is None else functools.partial(TappedDirection, tap=tap)
        self._from_client = direction(
            self,
            Side.CLIENT,
            FrameScanner(max_message_bytes, masked=True, observe=observe),
            inbound,
            self._backend_hop,
        )
        self._from_backend = direction(
            self,
            Side.BACKEND,
            FrameScanner(max_message_bytes, masked=False, observe=observe),
            outbound,
            self._client_hop,
        )
        self._end: End | None = None
        # The loop is asked for where needed, not kept: its slot holds the turn state.
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns: State | None = turns.idle if turns is not None else None
        self._deadline: asyncio.TimerHandle | None = None
        self._draining: asyncio.Task[None] | None = None

    def hop(self, side: Side) -> Hop:
        return self._client_hop if side is Side.CLIENT else self._backend_hop

    def _dir(self, source: Side) -> Direction:
        """The direction whose bytes come from ``source``."""
        return self._from_client if source is Side.CLIENT else self._from_backend

    def _sides(self) -> tuple[tuple[Side, Hop], tuple[Side, Hop]]:
        return (Side.CLIENT, self._client_hop), (Side.BACKEND, self._backend_hop)

    # -- starting ---------------------------------------------------------------------

    def attach(self) -> None:
        """Take both sockets over; bytes that came early are delivered first."""
        up = self._upstream.protocol
        up.on_data = self._from_backend.feed
        up.on_lost = lambda: self.lost(Side.BACKEND)
        up.on_pause = self._pause_client
        up.on_resume = self._resume_client
        early, up.buffer = bytes(up.buffer), bytearray()
        if early:
            self._from_backend.feed(early)
        # aiohttp's request handler feeds its parser what the client sent after the
        # upgrade request; it takes whatever has `feed_data`/`feed_eof`.
        sink = ClientSink(self, self._from_client.feed)
        self._request_protocol.set_parser(sink)  # type: ignore[arg-type]
        if up.lost:
            self.lost(Side.BACKEND)
        elif not self._upstream.transport.is_closing():
            self._upstream.transport.resume_reading()

    async def run(self) -> Outcome:
        """Wait until both sockets are gone; how the connection ended."""
        try:
            await asyncio.shield(self._finished)
        finally:
            self._stop()  # ends the turns too: this frame is kept for the connection's life
        return self.outcome()

    def outcome(self) -> Outcome:
        end = self._end or End(Side.CLIENT, EndKind.GONE)
        if end.kind is EndKind.CLOSED:
            label = f"{end.side.value}_closed"
        elif end.kind is EndKind.TOO_BIG:
            label = "too_big"
        elif end.kind is EndKind.PROTOCOL_ERROR:
            label = "protocol_error"
        elif end.kind is EndKind.STOPPED:
            label = "shutdown"
        else:
            label = f"{end.side.value}_gone"
        # A client that broke the rules is bad input. UTF-8 and reserved bits are the
        # backend's to judge here (the tunnel never reads payloads); its close code is
        # that verdict, so 1007 and 1002 from the backend are counted as the client's.
        bad_input = None
        if end.side is Side.CLIENT and label in ("too_big", "protocol_error"):
            bad_input = "invalid_utf8" if end.code == CLOSE_INVALID_TEXT else label
        elif end.side is Side.BACKEND and end.kind is EndKind.CLOSED:
            bad_input = _BACKEND_VERDICTS.get(end.code or 0)
        return Outcome(
            label,
            self._client_hop.sent_code,
            self._backend_hop.sent_code,
            bad_input,
        )

    @property
    def client_close_code(self) -> int | None:
        """What the client was sent, or else sent itself (None: it vanished first)."""
        sent = self._client_hop.sent_code
        return sent if sent is not None else self._from_client.scanner.close_code

    async def close(self, code: int, reason: str) -> None:
        """Close both sides with one code (shutdown, drain, stall), between frames."""
        self._begin(End(Side.BACKEND, EndKind.STOPPED))
        data = clip_reason(reason)
        self._close_both({Side.CLIENT: (code, data), Side.BACKEND: (code, data)})
        await asyncio.shield(self._finished)

    # -- turns ------------------------------------------------------------------------

    def turn_events(self, source: Side, events: int) -> None:
        """What the text messages `source` sent were (the scanner's packed codes)."""
        state = self._turns
        if state is None:
            return
        if source is Side.CLIENT:
            # Every code a client's scanner reports is a turn message (TURN).
            state = state.request(self, code_count(events))
        else:
            state = self._with_queued(state)
            if events >> CODE_BITS:
                for code in each_code(events):
                    state = state.event(self, code)
            else:
                state = state.event(self, events)
        self._set_turns(state)

    def _set_turns(self, state: State) -> None:
        self._turns = state
        # While a turn is open, the client's next turn messages only wait behind it: its
        # scanner counts them itself (no call per message) until the turn ends.
        self._from_client.scanner.queueing = state.__class__ is Turn

    def _with_queued(self, state: State) -> State:
        """`state` with the turn messages the client's direction counted since it opened."""
        scanner = self._from_client.scanner
        waiting = scanner.queued
        if waiting:
            scanner.queued = 0
            state = state.request(self, waiting)
        return state

    def turn_expired(self, turn: Turn) -> None:
        """The open turn's timer ran out (proxy/relay/turns.py)."""
        if self._turns is turn:
            self._with_queued(turn)  # an open turn takes them and stays itself
            self._set_turns(turn.expired(self))

    def _turns_end(self) -> None:
        """The connection ended: its open turns end as abandoned or interrupted."""
        state = self._turns
        if state is not None:
            self._turns = None
            self._from_client.scanner.queueing = False
            outcome = self.outcome()
            self._with_queued(state).ended(left_by_client(outcome.label, outcome.bad_input))

    # -- events -----------------------------------------------------------------------

    def close_from(self, side: Side, code: int | None, *, forwarded: bool) -> None:
        """`side` sent a close frame; `forwarded`: it went on to the other side."""
        hop = self.hop(side)
        if hop.got_close:
            return
        hop.got_close = True
        other = other_side(side)
        if forwarded:
            peer = self.hop(other)
            peer.closing = peer.close_written = True
            peer.sent_code = code
            peer.ours = False
            self._dir(side).shut = True
            self._begin(End(side, EndKind.CLOSED, code))
        self._check(side)
        self._check(other)

    def lost(self, side: Side) -> None:
        """`side`'s socket is gone; the other side learns how, with a close frame."""
        hop = self.hop(side)
        if hop.lost:
            return
        hop.lost = True
        other = other_side(side)
        if not hop.shut_down and not hop.got_close:
            self._begin(End(side, EndKind.GONE))
        if not self.hop(other).closing:
            if hop.closing and hop.sent_code is not None:
                # It was asked to close and vanished instead: echo the request.
                self._inject(other, hop.sent_code, b"")
            elif side is Side.CLIENT:
                self._inject(other, CLOSE_GOING_AWAY, b"client went away")
            else:
                self._inject(other, self._backend_lost_code, b"backend went away")
        if self._dir(side).pending_close is not None:
            # The frame the close waits behind will never end: cut the socket instead.
            self._shut(other)
        self.read_freely(other)  # what it sends can go nowhere now
        self._check(other)
        if all(h.lost for h in (self._client_hop, self._backend_hop)) and not self._finished.done():
            self._finished.set_result(None)

    def failed(self, side: Side, error: int) -> None:
        """`side` broke the protocol (1002, 1007) or sent a message over the limit (1009)."""
        other = other_side(side)
        if error == CLOSE_TOO_BIG:
            self._begin(End(side, EndKind.TOO_BIG, CLOSE_TOO_BIG))
            self._close_both(
                {
                    side: (CLOSE_TOO_BIG, b"message too big"),
                    other: (CLOSE_TOO_BIG, b"peer sent a message too big"),
                }
            )
        else:
            self._begin(End(side, EndKind.PROTOCOL_ERROR, error))
            # Its framing may be lost, so its answer could never be read: do not wait for it.
            self.hop(side).got_close = True
            code = CLOSE_GOING_AWAY if side is Side.CLIENT else self._backend_lost_code
            gone = (code, gone_reason(side, EndKind.PROTOCOL_ERROR))
            self._close_both({side: (error, b""), other: gone})
        self._check(side)
        self._check(other)

    def _close_both(self, closes: dict[Side, tuple[int, bytes]]) -> None:
        # The backend's first: a client frame it waits behind keeps the client open.
        for side in (Side.BACKEND, Side.CLIENT):
            self._inject(side, *closes[side])

    def read_freely(self, source: Side) -> None:
        """Read `source` despite backpressure: the proxy is closing that direction.

        What it sends from now on is the end of one frame or is discarded, so memory
        stays bounded, and its answer to the proxy's close must get through even when
        the peer it was sending to does not read.
        """
        transport = self.hop(source).transport
        if not transport.is_closing():
            transport.resume_reading()

    def written(self, side: Side) -> None:
        """A close that waited for a frame boundary is now on its way to `side`."""
        self.hop(side).close_written = True
        self._check(side)
        self._check(other_side(side))

    # -- flow control -----------------------------------------------------------------

    def client_backpressure(self) -> None:
        """The client's socket is full: stop reading the backend until it drains."""
        if self._draining is not None or not self._request_protocol.writing_paused:
            return
        if self._from_backend.pending_close is not None:
            return  # finishing the last frame before the proxy's close
        if not self._upstream.transport.is_closing():
            self._upstream.transport.pause_reading()
        self._draining = asyncio.get_running_loop().create_task(self._client_drained())

    async def _client_drained(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._writer.drain()
        self._draining = None
        if not self._upstream.transport.is_closing():
            self._upstream.transport.resume_reading()

    def _pause_client(self) -> None:
        client = self._client_hop.transport
        if not client.is_closing():
            client.pause_reading()

    def _resume_client(self) -> None:
        client = self._client_hop.transport
        if not client.is_closing():
            client.resume_reading()

    # -- ending -----------------------------------------------------------------------

    def _begin(self, end: End) -> None:
        if self._end is None:
            self._end = end
        if self._deadline is None:
            # However the ending goes, it is over within the close timeout.
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._close_timeout, self._abort)

    def _inject(self, toward: Side, code: int, reason: bytes) -> None:
        hop = self.hop(toward)
        if hop.closing or hop.lost:
            return
        hop.closing = hop.ours = True
        hop.sent_code = code
        self._begin(End(toward, EndKind.STOPPED))
        mask = os.urandom(4) if toward is Side.BACKEND else None
        if self._dir(other_side(toward)).inject(close_frame(code, reason, mask=mask)):
            hop.close_written = True
        elif self.hop(other_side(toward)).lost:
            self._shut(toward)  # the unfinished frame's sender is gone: it never ends
        self._check(toward)

    def _check(self, side: Side) -> None:
        """Close `side`'s socket once its close handshake is complete.

        A client is not waited for after a close of the proxy's own (shutdown, stall,
        a vanished backend), as aiohttp's server side does not wait either: the close
        frame is the last thing it gets, then the socket ends once the frame is out.
        """
        hop = self.hop(side)
        if hop.close_written and (
            hop.got_close
            or hop.lost
            # ... unless a frame of its is still on its way to the backend.
            or (hop.ours and side is Side.CLIENT and not self._dir(side).pending_close)
        ):
            self._shut(side)

    def _shut(self, side: Side) -> None:
        hop = self.hop(side)
        if hop.shut_down or hop.lost:
            return
        hop.shut_down = True
        self.hop(side).transport.close()  # after what is buffered has gone out

    def _abort(self) -> None:
        for side, hop in self._sides():
            if not hop.lost:
                hop.shut_down = True
                self.hop(side).transport.abort()

    def _stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._draining is not None:
            self._draining.cancel()
        for side, hop in self._sides():
            if not hop.lost:
                self.hop(side).transport.abort()
        self._turns_end()


async def accept(
    request: web.Request,
    upstream: RawUpstream,
    turns: TurnMeters | None = None,
    *,
    tap: Tap | None = None,
    max_message_bytes: int,
    close_timeout: float,
    inbound: Meters,
    outbound: Meters,
    backend_lost_code: int,
) -> tuple[web.StreamResponse, Tunnel | None]:
    """Answer the client's upgrade with what the backend agreed; the tunnel, or None if
    the client left during the handshake. A malformed client handshake raises the 400
    aiohttp would have sent (the backend socket is closed first). `turns`: where its
    turns are counted (None: not observed); `tap`: where a compared connection's text
    messages are copied."""
    try:
        key = check_client(request)
    except web.HTTPException:
        upstream.transport.write(close_frame(CLOSE_GOING_AWAY, b"", mask=os.urandom(4)))
        upstream.transport.close()
        raise
    response = web.StreamResponse(status=101)
    response.headers[hdrs.UPGRADE] = "websocket"
    response.headers[hdrs.CONNECTION] = "upgrade"
    response.headers[hdrs.SEC_WEBSOCKET_ACCEPT] = accept_key(key)
    if upstream.subprotocol:
        response.headers[hdrs.SEC_WEBSOCKET_PROTOCOL] = upstream.subprotocol
    if upstream.extensions:
        response.headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = upstream.extensions
    response.force_close()
    try:
        writer = await response.prepare(request)
    except ConnectionError:
        writer = None
    if writer is None or request.transport is None or request.transport.is_closing():
        upstream.transport.write(
            close_frame(CLOSE_GOING_AWAY, b"client went away", mask=os.urandom(4))
        )
        upstream.transport.close()
        return response, None
    request.protocol.keep_alive(False)
    tunnel = Tunnel(
        request,
        writer,
        upstream,
        max_message_bytes=max_message_bytes,
        close_timeout=close_timeout,
        inbound=inbound,
        outbound=outbound,
        backend_lost_code=backend_lost_code,
        turns=turns,
        tap=tap,
    )
    tunnel.attach()
    return response, tunnel
