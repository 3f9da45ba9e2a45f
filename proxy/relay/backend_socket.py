"""The backend-facing WebSocket of the per-frame relay: aiohttp's, with the frame rules.

aiohttp's client takes masked frames from a server, close codes such as 1006 and 5000,
and answers an impossible 64-bit length with 1009; the tunnel fails a backend for each
(1002). `BackendSocket` puts the same `FrameGuard` (proxy/relay/frame_guard.py) in
front of its frame parser, so a backend that breaks the protocol ends the same way on
both relays: it is closed with 1002 and its client gets the backend-lost code.

ClientSession._ws_connect builds this object, then assigns the reader it made to
`_parser`, then hands `_parser` to the connection, which feeds it everything the
server sent after its 101 (the frames that came with the handshake first). Guarding
the assignment puts the guard there before any byte is parsed.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from strangler.proxy.relay.frame_guard import FrameGuard, warn_unchecked


class BackendSocket(aiohttp.ClientWebSocketResponse):
    """A `ClientWebSocketResponse` that fails a backend breaking RFC 6455 (1002 or 1007)."""

    @property
    def _parser(self) -> Any:
        return self.__dict__.get("_guarded_parser")

    @_parser.setter
    def _parser(self, parser: Any) -> None:
        if parser is not None and not isinstance(parser, FrameGuard):
            parser = FrameGuard(parser, self._reader, masked=False)
        self.__dict__["_guarded_parser"] = parser


def guarded(ws: aiohttp.ClientWebSocketResponse[Any]) -> bool:
    """Whether the connection under `ws` parses through the guard (warns once if not)."""
    conn = ws._response.connection
    protocol: Any = conn.protocol if conn is not None else None
    ok = isinstance(getattr(protocol, "_payload_parser", None), FrameGuard)
    if not ok:
        warn_unchecked("backend")
    return ok
