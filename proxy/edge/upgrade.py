"""The client's opening handshake as the edge reads it: is it an upgrade, is it well
formed, which subprotocols does it offer."""

from __future__ import annotations

import base64

from aiohttp import hdrs, web


def is_upgrade(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_GET
        and request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        and "upgrade" in request.headers.get(hdrs.CONNECTION, "").lower()
    )


def offered_subprotocols(request: web.Request) -> list[str]:
    offered: list[str] = []
    for value in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, ()):
        offered.extend(p.strip() for p in value.split(",") if p.strip())
    return offered


# The one version of RFC 6455. aiohttp also accepts the drafts' 7 and 8; a proxy that
# did would relay a handshake its backend may speak differently.
VERSION = "13"


def speaks_version(request: web.Request) -> bool:
    """Whether the upgrade asks for version 13 (else 426 names it, RFC 6455 4.4)."""
    return request.headers.get(hdrs.SEC_WEBSOCKET_VERSION, "").strip() == VERSION


def well_formed(request: web.Request) -> bool:
    """Whether the upgrade names a version and carries a key of 16 base64 bytes."""
    if not request.headers.get(hdrs.SEC_WEBSOCKET_VERSION, "").strip():
        return False
    try:
        key = base64.b64decode(request.headers.get(hdrs.SEC_WEBSOCKET_KEY, ""), validate=True)
    except ValueError:  # binascii.Error, or a key that is not ASCII
        return False
    return len(key) == 16
