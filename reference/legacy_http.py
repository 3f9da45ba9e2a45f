"""The plain HTTP endpoints beside the legacy WebSocket routes, plus test hooks."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from strangler.reference.app_state import OPEN_SOCKETS, SETTINGS, STARTED_AT, TICKETS
from strangler.reference.credentials import bearer_token
from strangler.reference.envelopes import HEARTBEAT_INTERVAL_S, MAX_MESSAGE_SIZE
from strangler.reference.handshake import json_answer
from strangler.reference.jwt_auth import AuthError, verify_jwt
from strangler.reference.script import GOLDEN_PATH_EVENTS
from strangler.reference.subprotocols import BARE_PROTOCOLS, TOKEN_PREFIXES

# Statuses whose responses must not carry a body.
_BODYLESS = frozenset({204, 304})


def add_legacy_http_routes(app: web.Application) -> None:
    """Register every plain HTTP endpoint of the legacy surface on ``app``."""
    for path, handler in (("/ws/health", health), ("/ws/beacon", beacon)):
        app.router.add_get(path, handler)  # also answers HEAD
        app.router.add_route("OPTIONS", path, options)
    app.router.add_get("/ws/config", config)
    app.router.add_get("/ws/stats", stats)
    app.router.add_get("/ws/factory/status", factory_status)
    app.router.add_get("/ws/factory/health", health)
    app.router.add_get("/ws/isolated/health", health)
    app.router.add_get("/ws/isolated/stats", stats)
    app.router.add_get("/ws/isolated/config", config)
    app.router.add_post("/api/v1/websocket", api_post)
    app.router.add_post("/api/websocket/ticket", issue_ticket)
    app.router.add_get("/api/websocket/ticket/introspect", introspect_ticket)
    app.router.add_route("*", "/__echo", echo)


async def health(request: web.Request) -> web.Response:
    """Liveness of the WebSocket service."""
    return json_answer(request, {"status": "healthy", "service": "websocket"})


async def beacon(request: web.Request) -> web.Response:
    """The front end's reachability probe."""
    return json_answer(request, {"status": "ok", "timestamp": time.time()})


async def options(request: web.Request) -> web.Response:
    """CORS-style preflight answer listing the methods the endpoint takes."""
    return web.Response(status=200, headers={"Allow": "GET, HEAD, OPTIONS"})


async def config(request: web.Request) -> web.Response:
    """What a client needs to know before connecting."""
    return json_answer(
        request,
        {
            "heartbeat_interval": HEARTBEAT_INTERVAL_S,
            "max_message_size": MAX_MESSAGE_SIZE,
            "subprotocols": [*BARE_PROTOCOLS, *(f"{p}<token>" for p in TOKEN_PREFIXES)],
            "auth_methods": ["subprotocol", "bearer", "query", "ticket"],
            "golden_path_events": list(GOLDEN_PATH_EVENTS),
        },
    )


async def stats(request: web.Request) -> web.Response:
    """Connection counters; every value here is volatile."""
    return json_answer(
        request,
        {
            "active_connections": len(request.app[OPEN_SOCKETS]),
            "uptime_seconds": round(time.monotonic() - request.app[STARTED_AT], 3),
        },
    )


async def factory_status(request: web.Request) -> web.Response:
    """The factory route's status page."""
    return json_answer(request, {"status": "operational", "mode": "factory"})


async def api_get(request: web.Request) -> web.Response:
    """``GET /api/v1/websocket`` without an upgrade: describe the endpoint."""
    return json_answer(
        request,
        {"endpoint": "/api/v1/websocket", "protocol": "websocket", "status": "available"},
    )


async def api_post(request: web.Request) -> web.Response:
    """``POST /api/v1/websocket``: echo the JSON body it received."""
    try:
        body = await request.json()
    except ValueError:
        return json_answer(request, {"error": "invalid_json"}, status=400)
    return json_answer(request, {"status": "received", "received": body})


async def introspect_ticket(request: web.Request) -> web.Response:
    """Who a ticket stands for, without redeeming it (for proxies that route by user)."""
    user_id = request.app[TICKETS].peek(request.query.get("ticket", ""))
    if user_id is None:
        return web.json_response({"active": False}, status=404)
    return web.json_response({"active": True, "user_id": user_id})


async def issue_ticket(request: web.Request) -> web.Response:
    """Trade a valid Bearer token for a single-use WebSocket ticket."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        return json_answer(request, {"error": "missing bearer token"}, status=401)
    try:
        user_id = verify_jwt(token, request.app[SETTINGS])
    except AuthError as err:
        return json_answer(request, {"error": str(err)}, status=401)
    tickets = request.app[TICKETS]
    return json_answer(request, {"ticket": tickets.issue(user_id), "expires_in": int(tickets.ttl)})


async def echo(request: web.Request) -> web.Response:
    """Test hook: answer ``?status=`` and echo method, headers and body (passthrough tests)."""
    try:
        status = int(request.query.get("status", "200"))
    except ValueError:
        status = 0
    if not 200 <= status <= 599:
        return json_answer(request, {"error": "invalid status"}, status=400)
    if status in _BODYLESS:
        return web.Response(status=status)
    raw = await request.read()
    answer: dict[str, Any] = {
        "method": request.method,
        "path_qs": request.path_qs,
        "headers": dict(request.headers),
        "body": raw.decode("utf-8", "replace"),
        "json": _json_or_none(raw),
    }
    return json_answer(request, answer, status=status)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
