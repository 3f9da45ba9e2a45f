"""The unified router emulator: one WebSocket path speaking the canonical protocol."""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

from strangler.reference.app_state import init_backend_state
from strangler.reference.dialects import AuthStyle, Dialect
from strangler.reference.handshake import json_answer, serve_websocket
from strangler.reference.settings import BackendSettings

log = logging.getLogger(__name__)

ROUTE_HEADER: Final = "X-Strangler-Route"
SHADOW_HEADER: Final = "X-Strangler-Shadow"
# Set by the proxy for routes whose legacy code never authenticated (/websocket, /ws/test).
AUTH_HEADER: Final = "X-Strangler-Auth"
# Routes whose name the greeting may report as data.mode; anything else reads "main".
GREETING_MODES: Final = frozenset({"main", "factory", "isolated"})


def build_unified_app(settings: BackendSettings) -> web.Application:
    """The unified router: canonical frames only, JWT verified here too."""
    app = web.Application()
    init_backend_state(app, settings, settings.server_id_or("unified"))
    app.router.add_get(settings.unified_path, _unified_route)
    app.router.add_get("/health", _health)
    return app


async def _unified_route(request: web.Request) -> web.StreamResponse:
    route = request.headers.get(ROUTE_HEADER, "")
    log.debug("unified handshake route=%r shadow=%r", route, request.headers.get(SHADOW_HEADER))
    mode = route if route in GREETING_MODES else "main"
    auth = AuthStyle.NONE if request.headers.get(AUTH_HEADER) == "none" else None
    return await serve_websocket(request, Dialect.MAIN, mode=mode, auth=auth)


async def _health(request: web.Request) -> web.Response:
    return json_answer(request, {"status": "healthy"})
