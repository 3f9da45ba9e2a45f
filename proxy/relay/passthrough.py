"""Plain HTTP beside the sockets: forwarded to the legacy backend, bodies streamed.

Method, path, query, end-to-end headers, body and status pass unchanged; hop-by-hop
headers (RFC 9110 7.6.1) stay on their hop, and X-Forwarded-* says who asked. A
client's own `X-Strangler-*` headers never pass: the backends trust those to come from
the proxy (docs/PROTOCOL.md), so a client must not be able to speak for it.
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import Counter

from strangler.proxy.edge.target import origin_form

log = logging.getLogger("strangler.http")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
    )
)

_CHUNK = 64 * 1024

# The prefix of the headers only the proxy may set (docs/SECURITY.md).
PROXY_HEADER_PREFIX = "x-strangler-"


def new_session() -> aiohttp.ClientSession:
    """Session for forwarded HTTP: no connection cap, bodies passed as the backend sent them.
    No cookie jar: one session serves every client, so a cookie the backend set for one
    would otherwise go out with every later client's request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30),
    )


def forwarded_for(request: web.Request) -> dict[str, str]:
    """X-Forwarded-For/-Proto/-Host for the next hop, extending what earlier proxies said."""
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    return {
        "X-Forwarded-For": f"{prior}, {peer}" if prior else peer,
        "X-Forwarded-Proto": request.headers.get("X-Forwarded-Proto", request.scheme),
        "X-Forwarded-Host": request.headers.get("X-Forwarded-Host", request.host),
    }


def _end_to_end(source: CIMultiDictProxy[str], *, from_client: bool) -> CIMultiDict[str]:
    connection_named = {
        token.strip().lower()
        for value in source.getall(hdrs.CONNECTION, ())
        for token in value.split(",")
    }
    kept: CIMultiDict[str] = CIMultiDict()
    for name, value in source.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in connection_named:
            continue
        if from_client and lowered.startswith(PROXY_HEADER_PREFIX):
            continue
        kept.add(name, value)
    return kept


async def forward(
    session: aiohttp.ClientSession, legacy_url: str, answered: Counter, request: web.Request
) -> web.StreamResponse:
    """Forward one plain HTTP request to the legacy backend and stream its answer back.

    ``answered`` counts the outcomes by class (``2xx`` .. ``5xx``, ``error``)."""
    base = legacy_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    # Proxy.handle refused a request without an origin-form target.
    target = origin_form(request) or "/"
    headers = _end_to_end(request.headers, from_client=True)
    headers.update(forwarded_for(request))
    body = request.content if request.body_exists else None
    response: web.StreamResponse | None = None
    try:
        async with session.request(
            request.method,
            base + target,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as answer:
            response = web.StreamResponse(status=answer.status, reason=answer.reason)
            response.headers.extend(_end_to_end(answer.headers, from_client=False))
            if answer.headers.get(hdrs.CONTENT_LENGTH) is None:
                response.enable_chunked_encoding()
            await response.prepare(request)
            if request.method != hdrs.METH_HEAD:
                async for chunk in answer.content.iter_chunked(_CHUNK):
                    await response.write(chunk)
            await response.write_eof()
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        answered.labels("error").inc()
        log.warning("plain HTTP to the legacy backend failed: %s", type(exc).__name__)
        if response is not None and response.prepared:
            return response  # the status is out; the cut body tells the client
        return web.Response(status=502, text="legacy backend unavailable\n")
    answered.labels(f"{answer.status // 100}xx").inc()
    return response
