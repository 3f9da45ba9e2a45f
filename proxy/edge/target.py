"""The request target as the proxy forwards it: the path and query only, as sent.

HTTP/1.1 has four forms of request target (RFC 9112 3.2). A client talking to an origin
server sends origin-form (`/ws?token=...`); a server must also accept absolute-form
(`http://host/ws`), whose authority replaces Host. The upstream URL is the backend's
configured base plus the origin-form target: never the client's scheme or authority,
or a client could choose the host that receives its Authorization and Cookie.
Authority-form (CONNECT) and asterisk-form (OPTIONS *) never match a route.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

_SCHEMES = frozenset({"http", "https", "ws", "wss"})


def origin_form(request: web.Request) -> str | None:
    """The target's path and query exactly as the client encoded them, or None when the
    target is neither origin-form nor a well-formed absolute-form."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    try:
        url = URL(raw, encoded=True)
    except ValueError:
        return None
    if url.scheme.lower() not in _SCHEMES or not url.host:
        return None
    path = url.raw_path or "/"
    if not path.startswith("/"):
        return None
    query = url.raw_query_string
    return f"{path}?{query}" if query else path


def raw_query(target: str) -> str:
    """The query of an origin-form target, still percent-encoded ('' when there is none).

    Forwarded encoded: a decoded `%26` would become a separator and split one
    parameter into two on the way to the backend."""
    return target.partition("?")[2]
