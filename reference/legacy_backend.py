"""The legacy chat backend emulator: every route and dialect of LEGACY_SURFACE.md.

Each path greets in its dialect's generation unless BackendSettings.greetings names the
other one for it (LEGACY_SURFACE.md: both existed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from strangler.reference.app_state import TICKETS, init_backend_state
from strangler.reference.dialects import Dialect, Greeting, select_dialect
from strangler.reference.handshake import is_upgrade, serve_websocket
from strangler.reference.legacy_http import add_legacy_http_routes, api_get
from strangler.reference.settings import BackendSettings
from strangler.reference.tickets import TicketStore

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes whose dialect ``?mode=`` or the User-Agent picks (legacy /ws rule).
MAIN_ROUTES: tuple[str, ...] = ("/ws", "/api/v1/websocket")
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
# Every WebSocket path, as BackendSettings.greetings names them.
WEBSOCKET_PATHS: tuple[str, ...] = (*MAIN_ROUTES, *FIXED_ROUTES, *ALIAS_ROUTES)


def build_legacy_app(settings: BackendSettings) -> web.Application:
    """The legacy backend: WebSocket routes of every dialect plus the HTTP endpoints.

    ValueError when ``settings.greetings`` names a path it does not serve or a shape
    that is not a greeting.
    """
    unknown = sorted(set(settings.greetings) - set(WEBSOCKET_PATHS))
    if unknown:
        raise ValueError(
            f"no WebSocket route {', '.join(unknown)} (one of {', '.join(WEBSOCKET_PATHS)})"
        )
    greetings = {path: Greeting(shape) for path, shape in settings.greetings.items()}
    app = web.Application()
    init_backend_state(app, settings, settings.server_id_or("legacy"))
    app[TICKETS] = TicketStore()
    add_legacy_http_routes(app)
    app.router.add_get("/ws", _main_route(greetings.get("/ws")))
    app.router.add_get("/api/v1/websocket", _api_route(greetings.get("/api/v1/websocket")))
    for path, dialect in FIXED_ROUTES.items():
        app.router.add_get(path, _fixed_route(dialect, greetings.get(path)))
    for path in ALIAS_ROUTES:
        app.router.add_get(path, _fixed_route(Dialect.MAIN_PAYLOAD, greetings.get(path)))
    return app


def _main_route_dialect(request: web.Request) -> Dialect:
    return select_dialect(request.query.get("mode"), request.headers.get("User-Agent"))


def _main_route(greeting: Greeting | None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve_websocket(request, _main_route_dialect(request), greeting=greeting)

    return handler


def _api_route(greeting: Greeting | None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        # The same path answers plain GETs with a description of the endpoint.
        if not is_upgrade(request) and "refuse" not in request.query:
            return await api_get(request)
        return await serve_websocket(request, _main_route_dialect(request), greeting=greeting)

    return handler


def _fixed_route(dialect: Dialect, greeting: Greeting | None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await serve_websocket(request, dialect, greeting=greeting)

    return handler
