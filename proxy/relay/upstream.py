"""Opening the upstream WebSocket, before the client is answered.

The client must see what the serving backend said (DESIGN.md), so a refused upstream
handshake is reported with its status, headers and body for the proxy to mirror, and
an unreachable upstream with a bounded reason for the metrics.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

import aiohttp
from aiohttp.connector import Connection
from multidict import CIMultiDict, MultiMapping

from strangler.proxy.relay.backend_socket import BackendSocket, guarded

# A refusal body worth showing a client is short; anything longer is cut here.
MAX_REFUSAL_BODY = 64 * 1024

# Headers of a refusal that describe the body or the retry, and so travel with it.
REFUSAL_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate", "Cache-Control")


class UpstreamRefused(Exception):
    """The upstream answered the handshake with an HTTP status instead of 101."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(f"upstream refused the handshake with HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body


class UpstreamUnavailable(Exception):
    """The upstream could not be reached or did not complete a valid handshake."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # one of proxy.metrics.CONNECT_FAILURES


@dataclass
class _RefusalBody:
    body: bytes = b""


# ws_connect() drops the body of a non-101 answer; the response reads it first, in the
# connecting task, into this slot.
_refusal_slot: ContextVar[_RefusalBody | None] = ContextVar("strangler_refusal", default=None)


class _KeepsRefusalBody(aiohttp.ClientResponse):
    """A response that reads a refused handshake's body before ws_connect() drops it.

    Read as the answer's head arrives, not from a request-end trace hook: a trace costs
    every handshake about a tenth of its upstream connect in signals nobody else hears.
    After a redirect the last answer's body is the one kept, as with the hook."""

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        response = await super().start(connection)
        slot = _refusal_slot.get()
        if slot is not None and self.status != 101:
            try:
                slot.body = await self.content.read(MAX_REFUSAL_BODY)
            except (TimeoutError, aiohttp.ClientError):
                slot.body = b""
        return response


def new_session(connect_timeout: float) -> aiohttp.ClientSession:
    """A client session for one backend's handshakes, with no cap on concurrent connections.

    `sock_connect` bounds reaching the backend (a failure there is a 502) and
    `sock_read` bounds waiting for its handshake answer (a 504); aiohttp lifts the
    read timeout once the socket is upgraded. Its WebSockets hold the backend to the
    tunnel's frame rules (proxy/relay/backend_socket.py).
    """
    # aiohttp's default connector stops at 100 connections and queues the 101st
    # handshake silently; a proxy must not have such a hidden cap.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=False)
    return aiohttp.ClientSession(
        connector=connector,
        # One session serves every client: a jar would keep a cookie the backend set on one
        # user's handshake and send it with every later user's (as the tunnel never does).
        cookie_jar=aiohttp.DummyCookieJar(),
        response_class=_KeepsRefusalBody,
        ws_response_class=BackendSocket,
        skip_auto_headers=("User-Agent",),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout, sock_read=connect_timeout
        ),
    )


async def connect(
    session: aiohttp.ClientSession,
    url: str,
    *,
    protocols: Sequence[str],
    headers: CIMultiDict[str],
    timeout: float,
    max_message_bytes: int,
) -> aiohttp.ClientWebSocketResponse[bool]:
    """Complete the upstream handshake or raise UpstreamRefused / UpstreamUnavailable."""
    slot = _RefusalBody()
    token = _refusal_slot.set(slot)
    try:
        # The session's socket timeouts say which step failed; this outer bound only
        # guards a backend that trickles bytes slowly enough to dodge them.
        async with asyncio.timeout(2 * timeout):
            ws = await session.ws_connect(
                url,
                protocols=tuple(protocols),
                headers=headers,
                autoclose=False,
                autoping=True,
                max_msg_size=max_message_bytes,
                decode_text=False,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
            )
        guarded(ws)
        return ws
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 101:
            raise UpstreamUnavailable("bad_handshake", exc.message) from None
        kept = _kept_headers(exc.headers)
        raise UpstreamRefused(exc.status, kept, slot.body) from None
    except aiohttp.ConnectionTimeoutError:
        raise UpstreamUnavailable("connect_timeout", f"not reached within {timeout:g}s") from None
    except (aiohttp.SocketTimeoutError, TimeoutError):
        raise UpstreamUnavailable("handshake_timeout", f"no answer within {timeout:g}s") from None
    except aiohttp.ClientSSLError as exc:
        raise UpstreamUnavailable("tls", str(exc)) from None
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable("refused", str(exc)) from None
    except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as exc:
        # The type only: some of these (a redirect loop) carry the URL, and with it the
        # client's path and query, into their text.
        raise UpstreamUnavailable("error", type(exc).__name__) from None
    finally:
        _refusal_slot.reset(token)


def _kept_headers(headers: MultiMapping[str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    return {name: headers[name] for name in REFUSAL_HEADERS if name in headers}
