"""The WebSocket handshake both backends share: test hooks, subprotocol, auth, accept.

A route handler names its dialect; everything up to the greeting frame happens here,
then :class:`demo.session.Session` takes over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, web

from strangler.reference import envelopes
from strangler.reference.app_state import (
    OPEN_SOCKETS,
    SERVER_ID,
    SETTINGS,
    TICKETS,
    record_handshake,
)
from strangler.reference.credentials import find_credential
from strangler.reference.dialects import (
    AUTH_STYLE,
    GREETING,
    NESTING,
    AuthStyle,
    Dialect,
    Greeting,
)
from strangler.reference.jwt_auth import AuthError, verify_jwt
from strangler.reference.session import Session, truncate_reason
from strangler.reference.settings import BackendSettings
from strangler.reference.subprotocols import (
    UnsupportedSubprotocolError,
    choose_subprotocol,
    parse_offer,
)

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
AUTH_FAILED_REASON = b"Authentication failed"


def is_upgrade(request: web.Request) -> bool:
    """Whether the request asks for a WebSocket (as opposed to a plain HTTP GET)."""
    return request.headers.get("Upgrade", "").lower() == "websocket"


def json_answer(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    """A JSON response carrying the answering backend's ``server_id``."""
    return web.json_response({**body, "server_id": request.app[SERVER_ID]}, status=status)


def refusal(request: web.Request) -> web.Response | None:
    """The ``?refuse=<status>`` test hook: fail the handshake with that HTTP status."""
    raw = request.query.get("refuse")
    if raw is None:
        return None
    try:
        status = int(raw)
    except ValueError:
        status = 0
    if not 200 <= status <= 599:
        return json_answer(request, {"error": "invalid refuse status"}, status=400)
    return web.json_response({"error": "refused", "status": status}, status=status)


async def authenticate(request: web.Request, protocols: list[str]) -> str:
    """The verified user id of the handshake's credential; raise AuthError otherwise."""
    credential = find_credential(protocols, request.headers, request.query)
    if credential is None:
        raise AuthError("No authentication token provided")
    if credential.kind == "ticket":
        tickets = request.app.get(TICKETS)
        if tickets is not None:
            user_id = tickets.redeem(credential.value)
        else:
            user_id = await _introspect(request.app[SETTINGS], credential.value)
        if user_id is None:
            raise AuthError("Invalid or expired ticket")
        return user_id
    return verify_jwt(credential.value, request.app[SETTINGS])


async def _introspect(settings: BackendSettings, ticket: str) -> str | None:
    """Ask the ticket issuer who `ticket` stands for (a backend that cannot redeem it)."""
    if settings.ticket_introspection_url is None:
        return None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(settings.ticket_introspection_url, params={"ticket": ticket}) as answer,
        ):
            if answer.status != 200:
                return None
            body = await answer.json()
    except (aiohttp.ClientError, ValueError):
        return None
    user_id = body.get("user_id") if isinstance(body, dict) else None
    return str(user_id) if user_id else None


async def serve_websocket(
    request: web.Request,
    dialect: Dialect,
    *,
    mode: str | None = None,
    auth: AuthStyle | None = None,
    greeting: Greeting | None = None,
) -> web.StreamResponse:
    """Run a WebSocket route of ``dialect`` (``mode`` overrides the greeting's mode,
    ``auth`` the dialect's auth style, ``greeting`` the dialect's greeting shape)."""
    record_handshake(request)
    delay = request.app[SETTINGS].handshake_delay
    if delay > 0:
        await asyncio.sleep(delay)
    settings = request.app[SETTINGS]
    if settings.divergence == "refuse" and not settings.divergence_keyword:
        return web.json_response({"error": "unavailable"}, status=503)
    refused = refusal(request)
    if refused is not None:
        return refused
    if not is_upgrade(request):
        return json_answer(request, {"error": "websocket upgrade required"}, status=426)
    offered = parse_offer(request.headers.getall("Sec-WebSocket-Protocol", []))
    try:
        chosen = choose_subprotocol(offered)
    except UnsupportedSubprotocolError:
        return json_answer(request, {"error": "unsupported subprotocol"}, status=400)
    if request.query.get("protocol_none") == "1":
        chosen = None

    # Credentials are checked before accepting on every route: the client cannot tell,
    # and only the failure reporting below differs between the legacy routes.
    style = AUTH_STYLE[dialect] if auth is None else auth
    user_id = ANONYMOUS
    failure: AuthError | None = None
    if style is not AuthStyle.NONE:
        try:
            user_id = await authenticate(request, offered)
        except AuthError as err:
            failure = err
    if failure is not None and style is AuthStyle.REFUSE_HANDSHAKE:
        log.info("refused %s handshake: %s", dialect, failure)
        return json_answer(
            request, {"error": "authentication_failed", "message": str(failure)}, 403
        )

    ws = web.WebSocketResponse(protocols=[chosen] if chosen else ())
    await ws.prepare(request)
    sockets = request.app[OPEN_SOCKETS]
    sockets.add(ws)
    try:
        if failure is not None:
            await _reject_after_accept(ws, style, failure)
            return ws
        shape = GREETING[dialect] if greeting is None else greeting
        await _serve_accepted(request, ws, dialect, shape, mode=mode, user_id=user_id)
    finally:
        sockets.discard(ws)
    return ws


async def _reject_after_accept(
    ws: web.WebSocketResponse, style: AuthStyle, failure: AuthError
) -> None:
    log.info("closing unauthenticated connection (%s): %s", style, failure)
    if style is AuthStyle.FRAME_THEN_CLOSE:
        try:
            await ws.send_json(envelopes.auth_failed(str(failure)))
        except ConnectionError:  # the peer left first; nothing to tell it
            return
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=AUTH_FAILED_REASON)
    else:
        reason = truncate_reason(f"Authentication failed: {failure}")
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason)


async def _serve_accepted(
    request: web.Request,
    ws: web.WebSocketResponse,
    dialect: Dialect,
    shape: Greeting,
    *,
    mode: str | None,
    user_id: str,
) -> None:
    connection_id = envelopes.new_connection_id(dialect, shape)
    session = Session(
        ws,
        nesting=NESTING[dialect],
        user_id=user_id,
        connection_id=connection_id,
        settings=request.app[SETTINGS],
        transport=request.transport,
    )
    first = envelopes.greeting(
        shape,
        dialect=dialect,
        user_id=user_id,
        connection_id=connection_id,
        server_id=request.app[SERVER_ID],
        mode=mode,
    )
    log.info("opened %s connection %s", dialect, connection_id)
    if await session.send_json(first):
        await session.run()
    await ws.close()  # no-op unless the session ended on a failed send
    log.info("closed %s connection %s (code %s)", dialect, connection_id, ws.close_code)
