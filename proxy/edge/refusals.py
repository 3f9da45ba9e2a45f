"""Saying no the way each legacy route did, so existing clients see what they always saw.

An auth failure is refused in the route's style (DESIGN.md): ``accept_then_frame``
(accept, an ``error_message`` frame, close 1008), ``refuse_handshake`` (HTTP 403 with
the factory route's JSON body), ``accept_then_close`` (close 1008, no frame). A client
over a connection limit gets 1008 after accept, or a 503 where configured.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from strangler.proxy.config import AuthStyle, Route
from strangler.proxy.edge.identity import AuthError, choose_subprotocol
from strangler.proxy.telemetry.metrics import Metrics

log = logging.getLogger("strangler.proxy")


# What the legacy code said for each failure (free text, read by people, not parsed).
AUTH_MESSAGES: dict[str, str] = {
    "missing": "No authentication token provided",
    "expired": "Token has expired",
    "not_yet_valid": "Token is not yet valid",
    "bad_signature": "Invalid token signature",
    "bad_issuer": "Invalid token issuer",
    "bad_audience": "Invalid token audience",
    "bad_algorithm": "Invalid token algorithm",
    "missing_claim": "Token is missing a required claim",
    "too_large": "Token is too large",
    "malformed": "Malformed token",
    "invalid": "Invalid token",
    # Not a legacy message: legacy read whichever credential its parser found first.
    "ambiguous": "Conflicting authentication credentials",
}


async def refuse_over_limit(
    request: web.Request,
    route: Route,
    offered: list[str],
    reason: str,
    policy: str,
    metrics: Metrics,
) -> web.StreamResponse:
    """Say no the way the legacy routes did (accept, close 1008) or with a 503."""
    metrics.handshake_refusals.labels(route.name, reason).inc()
    chosen = choose_subprotocol(offered)
    if policy == "refuse_503" or (offered and chosen is None):
        raise web.HTTPServiceUnavailable(
            text="too many concurrent connections\n", headers={"Retry-After": "5"}
        )
    ws: web.WebSocketResponse[Any] = web.WebSocketResponse(
        protocols=(chosen,) if chosen else (), autoclose=False, compress=False
    )
    await ws.prepare(request)
    with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionResetError):
        await ws.close(code=1008, message=b"Too many concurrent connections")
    return ws


async def refuse_auth(
    request: web.Request,
    route: Route,
    style: AuthStyle,
    offered: list[str],
    error: AuthError,
    metrics: Metrics,
) -> web.StreamResponse:
    """Refuse in the route's legacy style, so existing clients see what they always saw."""
    metrics.handshake_refusals.labels(route.name, "auth_failed").inc()
    log.info("refused route=%s reason=%s", route.name, error.reason)
    if style is AuthStyle.REFUSE_HANDSHAKE:
        # The factory route's own refusal body, so scripts that read it still can.
        raise web.HTTPForbidden(
            text=json.dumps(
                {"error": "authentication_failed", "message": AUTH_MESSAGES[error.reason]}
            ),
            content_type="application/json",
        )
    chosen = choose_subprotocol(offered)
    if offered and chosen is None:
        raise web.HTTPBadRequest(text="unsupported subprotocol\n")
    ws: web.WebSocketResponse[Any] = web.WebSocketResponse(
        protocols=(chosen,) if chosen else (), autoclose=False, compress=False
    )
    await ws.prepare(request)
    try:
        if style is AuthStyle.ACCEPT_THEN_FRAME:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "error_message",
                        "error_code": "AUTH_FAILED",
                        "error_message": AUTH_MESSAGES[error.reason],
                        "details": {},
                        "timestamp": time.time(),
                    }
                )
            )
        await ws.close(code=1008, message=b"Authentication failed")
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        pass
    metrics.connections.labels(route.name, "legacy", "auth_failed").inc()
    return ws
