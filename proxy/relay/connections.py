"""The connections the proxy relays now, and how each one is reached, counted and closed.

A connection is kept in `OpenConnections` while it relays, so shutdown, drain, plan,
drift and the stall watchdog can find it; closing it closes both sides with one code,
whichever relay (byte tunnel or per-frame) carries it. Everything that changes the set
lives in this file, so the open-connection gauge and the set never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol

from strangler.flags.evaluate import Decision
from strangler.flags.model import Mode
from strangler.proxy.config import LimitSettings, Route
from strangler.proxy.relay.frame_relay import CLOSE_GOING_AWAY, close_both
from strangler.proxy.relay.tunnel import Tunnel
from strangler.proxy.telemetry.connection_log import ConnectionLog
from strangler.proxy.telemetry.metrics import Metrics

log = logging.getLogger("strangler.proxy")


@dataclass(eq=False, slots=True)
class Connection:
    """One open client connection, kept so shutdown, drain and plan can reach it."""

    route: Route
    mode: Mode
    client: web.WebSocketResponse[Any] | None  # None when tunnelled
    backend: aiohttp.ClientWebSocketResponse[Any] | None = None
    user_id: str | None = None  # kept in memory for re-evaluation; never logged
    ticket: bool = False  # came with a ticket: re-evaluated under the ticket rule
    claims: Mapping[str, Any] = field(default_factory=dict)
    ending: str | None = None  # "shutdown", "drained" or "stalled" when the proxy ends it
    drifted: bool = False  # its mode differs from what the flags now say
    client_protocol: BaseProtocol | None = None  # to see whether the client reads
    stalled_since: float | None = None
    tunnel: Tunnel | None = None  # the byte tunnel carrying it, if any

    async def close(self, code: int, reason: str) -> None:
        """Close both sides with one code (shutdown, drain, stall)."""
        if self.tunnel is not None:
            await self.tunnel.close(code, reason)
        elif self.client is not None:
            await close_both(self.client, self.backend, code, reason)


class OpenConnections:
    """The set of relaying connections: counted open, logged, watched for stalls, drained."""

    def __init__(
        self,
        metrics: Metrics,
        limits: LimitSettings,
        close_timeout: float,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        """`spawn` runs background work (closing a stalled client) on a task stopped at
        shutdown."""
        self._metrics = metrics
        self._limits = limits
        self._close_timeout = close_timeout
        self._spawn = spawn
        self._open: set[Connection] = set()
        self.idle = asyncio.Event()  # set while no connection is open
        self.idle.set()
        self._watchdog: asyncio.Task[None] | None = None

    def __iter__(self) -> Iterator[Connection]:
        return iter(self._open)

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, conn: object) -> bool:
        return conn in self._open

    def opened(
        self, conn: Connection, decision: Decision, backend_name: str, dialect: str
    ) -> ConnectionLog:
        """Keep a connection that starts relaying, count it open and log that it opened."""
        self._open.add(conn)
        self.idle.clear()
        route = conn.route.name
        self._metrics.connections_open.labels(route, decision.mode.value).inc()
        logged = ConnectionLog(
            route, decision.mode.value, decision.reason.value, decision.flag, backend_name, dialect
        )
        logged.opened()
        return logged

    def forget(self, conn: Connection, label: str) -> str:
        """Drop an ended connection and count how it ended; returns the outcome counted."""
        m = self._metrics
        route, mode = conn.route.name, conn.mode.value
        self._open.discard(conn)
        if conn.drifted:
            m.drift.labels(route).dec()
        if not self._open:
            self.idle.set()
        m.connections_open.labels(route, mode).dec()
        # The proxy's own reason wins: the relay may have ended by being cut off.
        label = conn.ending or label
        m.connections.labels(route, mode, label).inc()
        return label

    def start(self) -> None:
        self._watchdog = asyncio.create_task(self._watch_stalls(), name="strangler-stalls")

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None

    async def close_all(self, grace: float) -> None:
        """Wait up to `grace` s for the open connections to end, then close the rest 1001."""
        if self._open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), grace)
        remaining = list(self._open)
        for conn in remaining:
            conn.ending = "shutdown"
        await asyncio.gather(
            *(c.close(CLOSE_GOING_AWAY, "server shutting down") for c in remaining)
        )
        # Let the relays count how their connections ended before the loop stops.
        if self._open:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), 1.0)

    async def _watch_stalls(self) -> None:
        """Close connections whose client stopped reading for longer than allowed.

        Backpressure already keeps such a client from costing memory; this frees the
        backend connection it holds. A paused transport is the sign: aiohttp pauses
        writing when the client's socket buffer is full.
        """
        limits = self._limits
        period = min(1.0, limits.stalled_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self._open):
                protocol = conn.client_protocol
                if protocol is None or not protocol.writing_paused:
                    conn.stalled_since = None
                    continue
                if conn.stalled_since is None:
                    conn.stalled_since = now
                elif now - conn.stalled_since >= limits.stalled_timeout and not conn.ending:
                    conn.ending = "stalled"
                    log.info("closing a stalled connection on route %s", conn.route.name)
                    self._spawn(self._force_close(conn, limits.stalled_close_code))

    async def _force_close(self, conn: Connection, code: int) -> None:
        """Close both sides; a client that cannot take even a close frame is cut off."""
        try:
            await asyncio.wait_for(conn.close(code, "client not reading"), self._close_timeout)
        except TimeoutError:
            protocol = conn.client_protocol
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abort()
