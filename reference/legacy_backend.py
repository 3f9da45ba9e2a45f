"""The legacy chat backend emulator: every route and dialect of LEGACY_SURFACE.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from strangler.reference.app_state import TICKETS, init_backend_state
from strangler.reference.dialects import Dialect, select_dialect
from strangler.reference.handshake import is_upgrade, serve_websocket
from strangler.reference.legacy_http import add_legacy_http_routes, api_get
from strangler.reference.settings import BackendSettings
from strangler.reference.tickets import TicketStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Fixed-dialect routes. Order matters: aiohttp matches in registration order, so
# these and the plain HTTP paths must come before the ``/ws/{user_id}`` alias.
FIXED_ROUTES: dict[str, Dialect] = {
    "/ws/factory": Dialect.FACTORY,
    "/ws/isolated": Dialect.ISOLATED,
    "/websocket": Dialect.LEGACY,
    "/ws/test": Dialect.LEGACY,
}
# The older aliases of /ws; the path user id is informational, never an identity.
ALIAS_ROUTES: tuple[str, ...] = ("/ws/v1/{user_id}", "/ws/{user_id}")


def build_legacy_app(settings: BackendSettings) -> web.Application:
    """The legacy backend: WebSocket routes of every dialect plus the HTTP endpoints."""
    app = web.Application()
    init_backend_state(app, settings, settings.server_id_or("legacy"))
    app[TICKETS] = TicketStore()
    add_legacy_http_routes(app)
    app.router.add_get("/ws", _main_route)
    app.router.add_get("/api/v1/websocket", _api_route)
    for path, dialect in FIXED_ROUTES.items():
        app.router.add_get(path, _fixed_route(dialect))
    for path in ALIAS_ROUTES:
        app.router.add_get(path, _fixed_route(Dialect.MAIN_PAYLOAD))
    return app


def _main_route_dialect(request: web.Request) -> Dialect:
    return select_dialect(request.query.get("mode"), request.headers.get("User-Agent"))


async def _main_route(request: web.Request) -> web.StreamResponse:
    return await serve_websocket(request, _main_route_dialect(request))


async def _api_route(request: web.Request) -> web.StreamResponse:
    # The same path answers plain GETs with a description of the endpoint.
    if not is_upgrade(request) and "refuse" not in request.query:
        return await api_get(request)
    return await serve_websocket(request, _main_route_dialect(request))


def _fixed_route(dialect: Dialect) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve_websocket(request, dialect)

    return handler
