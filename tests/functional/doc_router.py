"""A unified router written from docs/PROTOCOL.md, docs/asyncapi.yaml and
LEGACY_SURFACE.md alone, as a check that the documents are enough to build one.

It shares no code with `strangler.reference` or `strangler.legacy_adapters` on purpose:
whatever it gets right, it got from the documents. Each rule cites the section it comes
from; where the documents left a choice open, the comment says `guess:` and why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
from aiohttp import web

# PROTOCOL.md §1, subprotocol: credential-bearing entries first, then the bare names.
TOKEN_PREFIXES = ("jwt.", "jwt-auth.", "bearer.")
BARE_PROTOCOLS = ("jwt-auth", "jwt", "bearer")
QUERY_TOKENS = ("token", "jwt", "auth_token", "access_token")
QUERY_TICKETS = ("ticket", "auth_ticket", "ticket_id")

# PROTOCOL.md §2, normalisation.
ALIASES = {
    "user": "user_message",
    "user_input": "user_message",
    "chat_message": "user_message",
    "message": "user_message",
    "execute_agent": "start_agent",
}
TURN_TYPES = frozenset({"start_agent", "user_message", "agent_request"})
CONTROL_TYPES = frozenset({"ping", "pong", "heartbeat_ack", "stop_agent", "switch_thread"})
SILENT_TYPES = frozenset({"pong", "heartbeat_ack"})
# PROTOCOL.md §2, flat chat_message row: dropped on the way to canonical.
FLAT_USER_MESSAGE_DROPPED = ("user_id", "timestamp")

# PROTOCOL.md §3, the greeting.
GOLDEN_PATH_EVENTS = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
]
GREETING_MODES = frozenset({"main", "factory", "isolated"})
ANONYMOUS = "anonymous"

_ENDED = (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


@dataclass(frozen=True)
class DocRouterSettings:
    """What the router must share with the proxy's `jwt` section to accept its tokens."""

    secret: str
    issuer: str = "netra-auth-service"
    audience: tuple[str, ...] = ("netra-platform",)
    leeway: float = 30.0
    path: str = "/v1/ws"
    heartbeat_seconds: float = 30.0
    server_id: str = "doc-router"


@dataclass
class DocRouterState:
    """What the tests may inspect: every handshake's headers, the open sockets."""

    handshakes: list[dict[str, str]] = field(default_factory=list)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


STATE = web.AppKey("doc_router_state", DocRouterState)
SETTINGS = web.AppKey("doc_router_settings", DocRouterSettings)


# -- handshake (PROTOCOL.md §1) ----------------------------------------------------------


def offered_protocols(header: str | None) -> list[str]:
    return [p.strip() for p in (header or "").split(",") if p.strip()]


def choose_subprotocol(offered: list[str]) -> str | None:
    """The legacy echo rule: first entry with a token prefix, exactly as offered; else
    the first offered bare name; else None."""
    for entry in offered:
        if entry.startswith(TOKEN_PREFIXES):
            return entry
    for entry in offered:
        if entry in BARE_PROTOCOLS:
            return entry
    return None


def _jwt_from_protocol(entry: str) -> str | None:
    if entry.startswith("jwt."):
        raw = entry[len("jwt.") :]
        # LEGACY_SURFACE.md / asyncapi x-credential-order: base64url without padding;
        # decoded, if it is a three-part JWT use it, otherwise the value raw.
        try:
            decoded = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return raw
        return decoded if decoded.count(".") == 2 else raw
    for prefix in ("jwt-auth.", "bearer."):
        if entry.startswith(prefix):
            return entry[len(prefix) :]
    return None


def find_credential(request: web.Request, offered: list[str]) -> str | None:
    """The client's JWT from any place (the proxy guarantees all places agree)."""
    for entry in offered:
        found = _jwt_from_protocol(entry)
        if found:
            return found
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization[len("Bearer ") :]
    for name in QUERY_TOKENS:
        if request.query.get(name):
            return request.query[name]
    return None


def verify(token: str, settings: DocRouterSettings) -> str:
    """The user id (`sub`) of a valid token; raises `jwt.PyJWTError` otherwise."""
    # guess: PROTOCOL.md names no algorithm, claims or leeway; LEGACY_SURFACE.md gives
    # HS256, iss, aud and token_type, README's `jwt` section gives the leeway and `sub`.
    claims = jwt.decode(
        token,
        settings.secret,
        algorithms=["HS256"],
        audience=list(settings.audience),
        issuer=settings.issuer,
        leeway=settings.leeway,
        options={"require": ["exp", "sub"]},
    )
    if claims.get("token_type", "access") != "access":
        raise jwt.InvalidTokenError("Not an access token")
    return str(claims["sub"])


def auth_failure_message(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.ExpiredSignatureError):
        return "Token has expired"
    return "Invalid token"


# -- client messages (PROTOCOL.md §2) ----------------------------------------------------


def normalise(frame: Mapping[str, Any]) -> dict[str, Any]:
    """A client frame (a JSON object with a string `type`) in its canonical form."""
    sent = str(frame["type"])
    kind = ALIASES.get(sent, sent)
    if kind not in TURN_TYPES and kind not in CONTROL_TYPES:
        return dict(frame)  # "any other type: unchanged"
    nested = frame.get("payload")
    # §2: a payload that is not an object counts as {}.
    payload = dict(nested) if isinstance(nested, Mapping) else {}
    top = {k: v for k, v in frame.items() if k not in ("type", "payload")}
    if kind == "user_message":
        for dropped in FLAT_USER_MESSAGE_DROPPED:
            top.pop(dropped, None)
    merged = {**top, **payload}  # "the payload's own keys win"
    # §2: except the run id, which legacy read from the top level first.
    if _run_id(top.get("run_id")):
        merged["run_id"] = top["run_id"]
    if kind == "user_message":
        # §2: content stands in for a text that is absent or null.
        if merged.get("text") is None and "content" in merged:
            merged["text"] = merged.pop("content")
        merged.setdefault("references", [])
    return {"type": kind, "payload": merged}


def _run_id(value: Any) -> str | None:
    """A client's run id: a non-empty string, else none."""
    return value if isinstance(value, str) and value else None


def parse(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """(frame, None) for a JSON object with a string type, else (None, error message)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None, "Invalid JSON"
    if not isinstance(value, dict):
        return None, "Message must be a JSON object"
    if not isinstance(value.get("type"), str):
        return None, "Message must have a string 'type'"
    return value, None


# -- server events (PROTOCOL.md §3) ------------------------------------------------------


def _iso_now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class TurnRequest:
    kind: str
    text: str
    run_id: str
    thread_id: Any
    agent_name: str


def turn_request(canonical: Mapping[str, Any]) -> TurnRequest:
    payload = canonical["payload"]
    kind = canonical["type"]
    text_key = {"start_agent": "user_request", "user_message": "text", "agent_request": "query"}
    text = payload.get(text_key[kind])
    run_id = _run_id(payload.get("run_id"))
    # guess: §3 does not say which agent answers; an agent_request names one.
    agent = payload.get("agent_type") if kind == "agent_request" else None
    return TurnRequest(
        kind=kind,
        text=text if isinstance(text, str) else "",
        run_id=run_id or f"run_{uuid.uuid4().hex}",
        thread_id=payload.get("thread_id"),
        agent_name=agent if isinstance(agent, str) and agent else "supervisor",
    )


def turn_events(request: TurnRequest, user_id: str) -> list[dict[str, Any]]:
    """One golden-path turn: started, two thoughts, one tool pair, completed (§3: every
    thought comes before the first tool pair)."""
    tool = "cost_query"
    result = {"monthly_cost_usd": 4321.5, "query": request.text}
    steps: list[tuple[str, dict[str, Any]]] = [
        (
            "agent_started",
            {"status": "started", "message": f"{request.agent_name} started", "context": {}},
        ),
        (
            "agent_thinking",
            {"reasoning": "Reading the request.", "step_number": 1, "progress_percentage": 33},
        ),
        (
            "agent_thinking",
            {"reasoning": "Choosing a tool.", "step_number": 2, "progress_percentage": 66},
        ),
        ("tool_executing", {"tool_name": tool, "parameters": {"query": request.text}}),
        (
            "tool_completed",
            {
                "tool_name": tool,
                "result": result,
                "execution_time_ms": 1.0,
                "status": "completed",
                "message": f"{tool} completed",
            },
        ),
        (
            "agent_completed",
            {
                "status": "completed",
                "result": {"summary": f"Answered: {request.text}", "thread_id": request.thread_id},
                "final_response": f"Answered: {request.text}",
                "execution_time_ms": 2.0,
            },
        ),
    ]
    events = []
    for kind, data in steps:
        event: dict[str, Any] = {
            "type": kind,
            "run_id": request.run_id,
            "user_id": user_id,
            "agent_name": request.agent_name,
            "timestamp": _iso_now(),
            "data": data,
        }
        # §3: the two top-level mirrors.
        if "tool_name" in data:
            event["tool_name"] = data["tool_name"]
        if kind == "tool_completed":
            event["results"] = data["result"]
        events.append(event)
    return events


def greeting(route: str, user_id: str, connection_id: str, server_id: str) -> dict[str, Any]:
    return {
        "type": "connection_established",
        "data": {
            "mode": route if route in GREETING_MODES else "main",
            "user_id": user_id,
            "connection_id": connection_id,
            "golden_path_events": list(GOLDEN_PATH_EVENTS),
        },
        "timestamp": time.time(),
        "server_id": server_id,
        "correlation_id": None,
    }


def _clock(stamp: Any) -> Any:
    """`stamp` unless it is null, then the server's clock in seconds."""
    return time.time() if stamp is None else stamp


def invalid_message(message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "data": {"error_code": "INVALID_MESSAGE", "message": message},
        "timestamp": time.time(),
    }


# -- one connection ----------------------------------------------------------------------


class Connection:
    """One accepted socket: answers control frames at once, plays turns one by one."""

    def __init__(
        self, ws: web.WebSocketResponse, user_id: str, settings: DocRouterSettings
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.settings = settings
        self.connection_id = f"main_{secrets.token_hex(8)}"
        self.turns: asyncio.Queue[TurnRequest] = asyncio.Queue()
        self.send_lock = asyncio.Lock()
        self.last_client_frame = time.monotonic()

    async def send(self, frame: Mapping[str, Any]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(frame))

    async def play_turns(self) -> None:
        # §2: "Turns run one after another".
        while True:
            request = await self.turns.get()
            for event in turn_events(request, self.user_id):
                await self.send(event)

    async def heartbeats(self) -> None:
        # §3: "heartbeat follows about 30 s without a client frame".
        interval = self.settings.heartbeat_seconds
        while True:
            idle = time.monotonic() - self.last_client_frame
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            await self.send(
                {
                    "type": "heartbeat",
                    "data": {"connection_id": self.connection_id, "timestamp": time.time()},
                }
            )
            self.last_client_frame = time.monotonic()

    async def answer(self, text: str) -> None:
        frame, problem = parse(text)
        if frame is None:
            await self.send(invalid_message(problem or "Invalid JSON"))
            return
        canonical = normalise(frame)
        kind = canonical["type"]
        if kind in TURN_TYPES:
            self.turns.put_nowait(turn_request(canonical))
        elif kind == "ping":
            # §2: the ping's timestamp, the server's clock when it has none (or null).
            stamp = canonical["payload"].get("timestamp")
            await self.send({"type": "pong", "data": {"timestamp": _clock(stamp)}})
        elif kind in SILENT_TYPES:
            return
        else:
            # §2: "an ack naming the type as the client sent it".
            await self.send(
                {"type": "ack", "data": {"received_type": frame["type"], "timestamp": time.time()}}
            )

    async def run(self, route: str) -> None:
        await self.send(greeting(route, self.user_id, self.connection_id, self.settings.server_id))
        tasks = [
            asyncio.create_task(self.play_turns()),
            asyncio.create_task(self.heartbeats()),
        ]
        try:
            while True:
                # Not `async for`: it ends on CLOSE before we can answer the client's code.
                msg = await self.ws.receive()
                self.last_client_frame = time.monotonic()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    await self.answer(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    # §2: binary frames are not the protocol's; legacy echoed them.
                    async with self.send_lock:
                        await self.ws.send_bytes(msg.data)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    # PROTOCOL.md §5: a client's close is answered with 1000, whatever
                    # its code (asyncapi's x-close-codes also allowed echoing the code;
                    # legacy never did, and the client sees the answer).
                    await self.ws.close(code=1000, message=b"")
                    break
                elif msg.type in _ENDED:
                    break
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def handle(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    state = request.app[STATE]
    state.handshakes.append(dict(request.headers))
    offered = offered_protocols(request.headers.get("Sec-WebSocket-Protocol"))
    chosen = choose_subprotocol(offered)
    if offered and chosen is None:
        raise web.HTTPBadRequest(text="No acceptable subprotocol")
    # guess: a handshake without X-Strangler-Route (not through the proxy) is `main`.
    route = request.headers.get("X-Strangler-Route", "main")
    anonymous = request.headers.get("X-Strangler-Auth") == "none"

    ws = web.WebSocketResponse(protocols=[chosen] if chosen else [], autoclose=False)
    await ws.prepare(request)
    state.sockets.add(ws)
    try:
        if anonymous:
            user_id = ANONYMOUS
        else:
            credential = find_credential(request, offered)
            failure: str | None = None
            user_id = ""
            if credential is None:
                # guess: a ticket is not redeemed here (redeems_tickets is off), so a
                # ticket alone is as good as no credential.
                failure = "No authentication token provided"
            else:
                try:
                    user_id = verify(credential, settings)
                except jwt.PyJWTError as error:
                    failure = auth_failure_message(error)
            if failure is not None:
                await ws.send_str(
                    json.dumps(
                        {
                            "type": "error_message",
                            "error_code": "AUTH_FAILED",
                            "error_message": failure,
                            "details": {},
                            "timestamp": time.time(),
                        }
                    )
                )
                await ws.close(code=1008, message=b"Authentication failed")
                return ws
        await Connection(ws, user_id, settings).run(route)
    finally:
        state.sockets.discard(ws)
    return ws


async def _going_away(app: web.Application) -> None:
    # PROTOCOL.md §5: 1001 when the server shuts down.
    for ws in list(app[STATE].sockets):
        await ws.close(code=1001, message=b"Server shutting down")


def build_doc_router(settings: DocRouterSettings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[STATE] = DocRouterState()
    app.router.add_get(settings.path, handle)
    app.on_shutdown.append(_going_away)
    return app


async def serve_doc_router(settings: DocRouterSettings, port: int) -> web.AppRunner:
    """Start the router on 127.0.0.1:`port`; the caller cleans the runner up."""
    runner = web.AppRunner(build_doc_router(settings), handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
