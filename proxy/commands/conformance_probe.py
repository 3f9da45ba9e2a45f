"""One connection to a router under test, opened the way the proxy opens one.

The proxy's headers (`X-Strangler-Route`, `-Auth`, `-Shadow`), the client's subprotocol
offer and credential, and every frame the router sends checked against the contract
(`contract.py`) as it arrives. Anything the router does wrong is raised as `Failed`
with a reason a router team can act on; tokens never appear in a reason.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from yarl import URL

from strangler.proxy.commands.contract import TURN_END, Contract, turn_order_problem

ROUTE_HEADER: Final = "X-Strangler-Route"
AUTH_HEADER: Final = "X-Strangler-Auth"
SHADOW_HEADER: Final = "X-Strangler-Shadow"
TURN_EVENTS: Final = frozenset(
    {"agent_started", "agent_thinking", "tool_executing", "tool_completed", *TURN_END}
)
_TOKEN_PREFIXES: Final = ("jwt.", "jwt-auth.", "bearer.")


class Failed(Exception):
    """The router broke the contract; ``str(err)`` says how."""


class Refused(Failed):
    """The router refused the handshake with an HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"handshake refused with HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class Router:
    """The router under test and what the checks connect with."""

    url: str
    contract: Contract
    token: str  # a valid credential for `user`
    user: str  # the token's subject: the user_id the router must report
    timeout: float = 5.0


@dataclass(frozen=True)
class Handshake:
    """What the proxy sends when it opens a connection to the router."""

    route: str = "main"
    protocols: tuple[str, ...] = ()
    authorization: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    auth_none: bool = False
    shadow: bool = False

    def headers(self) -> dict[str, str]:
        headers = {ROUTE_HEADER: self.route}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        if self.auth_none:
            headers[AUTH_HEADER] = "none"
        if self.shadow:
            headers[SHADOW_HEADER] = "1"
        return headers


@dataclass(frozen=True)
class Closed:
    """How the router closed a connection."""

    code: int | None
    reason: str


def redact(protocol: str | None) -> str:
    """A subprotocol as a reason may show it: a token entry keeps only its prefix."""
    if protocol is None:
        return "none"
    for prefix in _TOKEN_PREFIXES:
        if protocol.startswith(prefix):
            return f"'{prefix}<token>'"
    return repr(protocol)


class Connection:
    """An accepted connection: send frames, read the router's frames as the contract allows."""

    def __init__(
        self, ws: aiohttp.ClientWebSocketResponse, answered: str | None, router: Router
    ) -> None:
        self.ws = ws
        self.answered = answered  # the Sec-WebSocket-Protocol the router answered
        self._router = router
        self.closed: Closed | None = None

    async def send(self, frame: Mapping[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        try:
            await self.ws.send_str(text)
        except ConnectionError as exc:
            raise Failed(f"the connection was gone when sending: {exc}") from exc

    async def frame(self, waiting_for: str) -> dict[str, Any]:
        """The router's next frame, a server event the contract allows."""
        try:
            msg = await self.ws.receive(timeout=self._router.timeout)
        except TimeoutError:
            raise Failed(
                f"no frame within {self._router.timeout:g}s while waiting for {waiting_for}"
            ) from None
        if msg.type is aiohttp.WSMsgType.TEXT:
            try:
                frame = json.loads(msg.data)
            except ValueError:
                raise Failed(f"sent a text frame that is not JSON ({waiting_for})") from None
            problem = self._router.contract.server_problem(frame)
            if problem is not None:
                raise Failed(problem)
            result: dict[str, Any] = frame
            return result
        if msg.type is aiohttp.WSMsgType.BINARY:
            raise Failed(f"sent a binary frame while waiting for {waiting_for}")
        self.closed = Closed(self.ws.close_code, str(msg.extra or ""))
        raise Failed(
            f"the router closed the connection (code {self.ws.close_code}) "
            f"while waiting for {waiting_for}"
        )

    async def expect(self, kind: str, waiting_for: str | None = None) -> dict[str, Any]:
        """The next frame, which must be of type `kind`."""
        frame = await self.frame(waiting_for or kind)
        if frame["type"] != kind:
            raise Failed(f"expected {kind}, got {describe(frame)}")
        return frame

    async def greeting(self) -> dict[str, Any]:
        """The first frame: connection_established."""
        return await self.expect("connection_established", "the greeting")

    async def turn(self, *, pong_for: Any = None) -> tuple[list[dict[str, Any]], bool]:
        """One turn's events in order; and whether a pong echoing `pong_for` came too.

        Heartbeats may interleave; a pong only when one was asked for.
        """
        events: list[dict[str, Any]] = []
        ponged = False
        while not events or events[-1]["type"] not in TURN_END:
            frame = await self.frame("the turn's events")
            kind = frame["type"]
            if kind == "heartbeat":
                continue
            if kind == "pong" and pong_for is not None and not ponged:
                echo_problem(frame, pong_for)
                ponged = True
                continue
            if kind not in TURN_EVENTS:
                if not events:
                    raise Failed(f"answered with {describe(frame)} instead of a turn")
                raise Failed(f"{describe(frame)} in the middle of a turn")
            events.append(frame)
        problem = turn_order_problem(events)
        if problem is not None:
            raise Failed(problem)
        return events, ponged

    async def close(self, code: int) -> Closed:
        """Close from this side and report the router's answering close frame."""
        await self.ws.close(code=code)
        return Closed(self.ws.close_code, "")

    async def closing(self, waiting_for: str) -> Closed:
        """Wait for the router to close the connection."""
        try:
            frame = await self.frame(waiting_for)
        except Failed:
            if self.closed is not None:
                return self.closed
            raise
        raise Failed(f"expected the router to close, got {describe(frame)}")


def describe(frame: Mapping[str, Any]) -> str:
    """A frame in a reason: its type and, for the control frames, what they said."""
    kind = frame.get("type")
    data = frame.get("data") if isinstance(frame.get("data"), dict) else {}
    assert isinstance(data, dict)
    if kind == "error_message":
        return f"error_message ({frame.get('error_code')}: {frame.get('error_message')})"
    if kind == "ack":
        return f"ack (received_type {data.get('received_type')!r})"
    if kind == "error":
        return f"error ({data.get('error_code')}: {data.get('message')})"
    return str(kind)


def echo_problem(pong: Mapping[str, Any], stamp: Any) -> None:
    """Raise unless `pong` echoes `stamp` as its data.timestamp."""
    echoed = pong["data"]["timestamp"]
    if echoed != stamp or type(echoed) is not type(stamp):
        raise Failed(f"pong data.timestamp is {echoed!r}, expected the ping's {stamp!r}")


@contextlib.asynccontextmanager
async def connect(router: Router, handshake: Handshake) -> AsyncIterator[Connection]:
    """An accepted connection; Failed when the handshake is refused or nobody answers."""
    answered: list[str | None] = []

    async def on_request_end(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
    ) -> None:
        answered.append(params.response.headers.get("Sec-WebSocket-Protocol"))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    url = URL(router.url).extend_query(dict(handshake.query)) if handshake.query else router.url
    timeout = aiohttp.ClientTimeout(total=router.timeout)
    async with aiohttp.ClientSession(timeout=timeout, trace_configs=[trace]) as session:
        try:
            ws = await session.ws_connect(
                url,
                protocols=handshake.protocols,
                headers=handshake.headers(),
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=router.timeout),
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise Refused(exc.status) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Failed(f"cannot reach the router: {type(exc).__name__} {exc}".strip()) from None
        connection = Connection(ws, answered[-1] if answered else None, router)
        try:
            yield connection
        finally:
            await ws.close()


async def handshake_status(router: Router, handshake: Handshake) -> int:
    """The HTTP status the router answers a handshake with (101 when it accepts)."""
    try:
        async with connect(router, handshake):
            return 101
    except Refused as refused:
        return refused.status
