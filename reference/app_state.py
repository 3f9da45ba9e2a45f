"""Application state both reference backends keep, under typed AppKeys."""

from __future__ import annotations

import asyncio
import time
from typing import Final, TypedDict

from aiohttp import WSCloseCode, web
from multidict import CIMultiDict

from strangler.reference.jwt_auth import warn_if_weak_secret
from strangler.reference.settings import BackendSettings
from strangler.reference.tickets import TicketStore


class HandshakeRecord(TypedDict):
    """What a backend saw of one WebSocket handshake (for tests of the proxy)."""

    path_qs: str
    headers: CIMultiDict[str]  # case-insensitive, as the proxy may re-case names


# Bounded so a long benchmark run against a backend does not grow memory forever.
MAX_RECORDED_HANDSHAKES: Final = 1000

SETTINGS = web.AppKey("settings", BackendSettings)
SERVER_ID = web.AppKey("server_id", str)
STARTED_AT = web.AppKey("started_at", float)
RECEIVED_HANDSHAKES = web.AppKey[list[HandshakeRecord]]("received_handshakes")
OPEN_SOCKETS = web.AppKey[set[web.WebSocketResponse]]("open_sockets")
TICKETS = web.AppKey("tickets", TicketStore)


def init_backend_state(app: web.Application, settings: BackendSettings, server_id: str) -> None:
    """Install the state every backend keeps and close its sockets on shutdown."""
    warn_if_weak_secret(settings)
    app[SETTINGS] = settings
    app[SERVER_ID] = server_id
    app[STARTED_AT] = time.monotonic()
    app[RECEIVED_HANDSHAKES] = []
    app[OPEN_SOCKETS] = set()
    app.on_shutdown.append(_close_open_sockets)


def record_handshake(request: web.Request) -> None:
    """Remember the path and headers of a handshake, refused ones included."""
    record = HandshakeRecord(path_qs=request.path_qs, headers=CIMultiDict(request.headers))
    records = request.app[RECEIVED_HANDSHAKES]
    records.append(record)
    if len(records) > MAX_RECORDED_HANDSHAKES:
        del records[:-MAX_RECORDED_HANDSHAKES]


async def _close_open_sockets(app: web.Application) -> None:
    # 1001 tells clients to reconnect elsewhere rather than treat it as an error.
    open_sockets: set[web.WebSocketResponse] = app[OPEN_SOCKETS]
    sockets = list(open_sockets)
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutdown") for ws in sockets),
        return_exceptions=True,
    )
