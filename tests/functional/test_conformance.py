"""`strangler conformance` and the contract against real routers on loopback.

The reference router passes every check and every frame it sends validates against
docs/asyncapi.yaml. `DocRouter` is a second router written from docs/PROTOCOL.md and
docs/asyncapi.yaml alone (no code of ours), so it checks that the documents are enough
to build a router that passes; each `Breakage` makes it get one thing wrong, and the
check that catches it is named with its exact FAIL line.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import StrEnum
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from strangler.proxy.commands.conformance import check_router
from strangler.proxy.commands.conformance_probe import Router
from strangler.proxy.commands.contract import contract
from strangler.proxy.edge.identity import mint_token
from strangler.reference.settings import BackendSettings
from strangler.reference.unified_backend import build_unified_app
from tests.functional.conftest import SECRET, free_port

USER = "conformance"
Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Run an app on loopback; its WebSocket URL (path /v1/ws)."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"ws://127.0.0.1:{port}/v1/ws"

    yield start
    for runner in runners:
        await runner.cleanup()


def router_at(url: str) -> Router:
    return Router(
        url=url, contract=contract(), token=mint_token(SECRET, USER), user=USER, timeout=3
    )


async def conformance(url: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = await check_router(router_at(url), out)
    return code, out.getvalue().splitlines()


# -- the reference router ----------------------------------------------------------------


async def test_the_reference_router_passes_every_check(serve: Serve) -> None:
    url = await serve(build_unified_app(BackendSettings(jwt_secret=SECRET)))
    code, lines = await conformance(url)
    assert [line for line in lines if not line.startswith("PASS ")] == [
        f"{len(lines) - 1} passed, 0 failed"
    ]
    assert code == 0


async def test_the_command_passes_the_reference_router_as_a_process(serve: Serve) -> None:
    url = await serve(build_unified_app(BackendSettings(jwt_secret=SECRET)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "conformance",
        url,
        env={**os.environ, "STRANGLER_JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await proc.communicate()
    lines = stdout.decode().splitlines()
    assert proc.returncode == 0, stdout.decode() + stderr.decode()
    assert lines[0] == "PASS subprotocol/browser-offer"
    assert lines[-1].endswith(" passed, 0 failed")
    assert SECRET not in stdout.decode() + stderr.decode()


async def test_every_frame_of_a_reference_session_is_a_contract_event(serve: Serve) -> None:
    settings = BackendSettings(
        jwt_secret=SECRET, heartbeat_idle=0.2, divergence="final_status", divergence_keyword="fail"
    )
    url = await serve(build_unified_app(settings))
    token = mint_token(SECRET, USER)
    received: list[dict[str, Any]] = []
    sends: list[str] = [
        json.dumps({"type": "start_agent", "payload": {"user_request": "Optimize my costs"}}),
        json.dumps({"type": "execute_agent", "payload": {"user_request": "Optimize"}}),
        json.dumps({"type": "user", "payload": {"content": "Hi"}}),
        json.dumps({"type": "chat_message", "content": "Hi", "user_id": "x", "run_id": "r9"}),
        json.dumps({"type": "agent_request", "query": "Why?", "agent_type": "supervisor"}),
        json.dumps({"type": "user_message", "payload": {"text": "please fail"}}),
        json.dumps({"type": "ping", "timestamp": 1}),
        json.dumps({"type": "ping"}),
        json.dumps({"type": "pong"}),
        json.dumps({"type": "heartbeat_ack"}),
        json.dumps({"type": "stop_agent"}),
        json.dumps({"type": "switch_thread", "payload": {"thread_id": "t2"}}),
        json.dumps({"type": "whatever"}),
        "{not json",
        "[]",
        '{"type": 1}',
    ]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
            for text in sends:
                await ws.send_str(text)
            # Six turns (one failing), two pongs, three acks, three errors, then (idle) a
            # heartbeat: read until each has come, in whatever order the router sent them.
            owed = {"turn_end": 6, "pong": 2, "ack": 3, "error": 3, "heartbeat": 1}
            while any(count > 0 for count in owed.values()):
                msg = await ws.receive(timeout=10)
                assert msg.type is aiohttp.WSMsgType.TEXT
                frame = json.loads(msg.data)
                received.append(frame)
                kind = (
                    "turn_end"
                    if frame["type"] in ("agent_completed", "agent_error")
                    else frame["type"]
                )
                if kind in owed:
                    owed[kind] -= 1
        async with session.ws_connect(url, headers={"X-Strangler-Route": "main"}) as ws:
            msg = await ws.receive(timeout=5)
            received.append(json.loads(msg.data))
    for frame in received:
        assert contract().server_problem(frame) is None, frame
    every_event = {spec.types for spec in contract().specs("server")}
    seen = {frozenset({frame["type"]}) for frame in received}
    assert every_event == seen


async def test_a_reference_router_that_reorders_its_turn_fails_the_turn_checks(
    serve: Serve,
) -> None:
    url = await serve(build_unified_app(BackendSettings(jwt_secret=SECRET, divergence="reorder")))
    code, lines = await conformance(url)
    assert code == 1
    assert (
        "FAIL turn/start_agent: tool_executing right after agent_started, expected agent_thinking"
        in lines
    )


async def test_a_reference_router_that_drops_tool_completed_fails_the_turn_checks(
    serve: Serve,
) -> None:
    settings = BackendSettings(jwt_secret=SECRET, omit_events=("tool_completed",))
    code, lines = await conformance(await serve(build_unified_app(settings)))
    assert code == 1
    assert (
        "FAIL turn/user: tool_executing followed by agent_completed, expected tool_completed"
        in lines
    )


# -- a router written from the documents alone ---------------------------------------------


class Breakage(StrEnum):
    NONE = "none"
    ALIAS_ACKED = "alias_acked"  # aliases left unresolved: acked like unknown types
    ECHO_FIRST_OFFER = "echo_first_offer"  # answers the first offered subprotocol
    ACCEPT_UNACCEPTABLE = "accept_unacceptable"  # accepts an offer it should refuse
    NO_GOLDEN_PATH_EVENTS = "no_golden_path_events"  # a greeting field missing
    MODE_ALWAYS_MAIN = "mode_always_main"  # ignores X-Strangler-Route
    AUTH_NONE_IGNORED = "auth_none_ignored"  # authenticates X-Strangler-Auth: none
    AUTH_CLOSE_1011 = "auth_close_1011"  # closes a failed authentication with 1011
    CLOSE_ON_NON_JSON = "close_on_non_json"  # closes instead of answering an error
    PONG_CLOCK = "pong_clock"  # pong carries its own clock, not the ping's timestamp
    ACK_PONG = "ack_pong"  # acks a client pong
    TOOL_BEFORE_EXECUTING = "tool_before_executing"  # turn events out of order
    NO_RESULTS_MIRROR = "no_results_mirror"  # tool_completed without top-level results
    RUN_ID_DROPPED = "run_id_dropped"  # ignores the flat chat_message's run_id
    BODY_USER_ID = "body_user_id"  # trusts the user_id in a flat message body
    SHADOW_REFUSED = "shadow_refused"  # refuses X-Strangler-Shadow connections
    NO_CLOSE_ANSWER = "no_close_answer"  # drops the TCP connection on an application close


BREAKAGE = web.AppKey("breakage", Breakage)

# docs/PROTOCOL.md section 1, section 2 and docs/asyncapi.yaml, as a router team reads them.
TOKEN_PREFIXES = ("jwt.", "jwt-auth.", "bearer.")
BARE = ("jwt-auth", "jwt", "bearer")
ALIASES = {
    "user": "user_message",
    "user_input": "user_message",
    "chat_message": "user_message",
    "message": "user_message",
    "execute_agent": "start_agent",
}
TURNS = {"start_agent", "user_message", "agent_request"}
CONTROL = {"ping", "pong", "heartbeat_ack", "stop_agent", "switch_thread"}
GOLDEN = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def choose_subprotocol(offered: list[str], breakage: Breakage) -> tuple[bool, str | None]:
    """(acceptable, answer) by the legacy echo rule."""
    if breakage is Breakage.ECHO_FIRST_OFFER and offered:
        return True, offered[0]
    for entry in offered:
        if entry.startswith(TOKEN_PREFIXES):
            return True, entry
    for entry in offered:
        if entry in BARE:
            return True, entry
    return (not offered or breakage is Breakage.ACCEPT_UNACCEPTABLE), None


def credential(offered: list[str], request: web.Request) -> str | None:
    for entry in offered:
        if entry.startswith("jwt.") and len(entry) > 4:
            value = entry[4:]
            try:
                decoded = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return value
            return decoded if decoded.count(".") == 2 else value
        for prefix in ("jwt-auth.", "bearer."):
            if entry.startswith(prefix) and len(entry) > len(prefix):
                return entry[len(prefix) :]
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and header[7:]:
        return header[7:]
    for key in ("token", "jwt", "auth_token", "access_token"):
        if request.query.get(key):
            return request.query[key]
    return None


def verify(token: str | None) -> tuple[str | None, str | None]:
    """(user, failure message)."""
    if token is None:
        return None, "No authentication token provided"
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            issuer="netra-auth-service",
            audience="netra-platform",
            options={"require": ["exp", "sub"]},
        )
    except jwt.InvalidTokenError:
        return None, "Invalid token"
    return str(claims["sub"]), None


def normalise(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = message["type"]
    canonical = ALIASES.get(kind, kind)
    payload = message.get("payload")
    top = {k: v for k, v in message.items() if k not in ("type", "payload")}
    if canonical == "user_message" and not isinstance(payload, dict):
        text = next((top[k] for k in ("content", "text", "message") if k in top), "")
        payload = {"text": text, "thread_id": top.get("thread_id"), "references": []}
        if "run_id" in top:
            payload["run_id"] = top["run_id"]
    elif canonical in TURNS or canonical in CONTROL:
        payload = {**top, **(payload if isinstance(payload, dict) else {})}
    if canonical == "user_message" and "content" in payload and "text" not in payload:
        payload["text"] = payload.pop("content")
    return canonical, payload


def turn_events(
    user: str, run_id: str, text: str, breakage: Breakage, body_user: Any
) -> list[dict[str, Any]]:
    def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": kind,
            "run_id": run_id,
            "user_id": body_user if breakage is Breakage.BODY_USER_ID and body_user else user,
            "agent_name": "supervisor",
            "timestamp": "2024-09-10T20:26:40.123456+00:00",
        }
        if "tool_name" in data:
            frame["tool_name"] = data["tool_name"]
        if kind == "tool_completed" and breakage is not Breakage.NO_RESULTS_MIRROR:
            frame["results"] = data["result"]
        frame["data"] = data
        return frame

    executing = event("tool_executing", {"tool_name": "cost_query", "parameters": {"query": text}})
    completed = event(
        "tool_completed",
        {
            "tool_name": "cost_query",
            "result": {"monthly_cost_usd": 1.5},
            "execution_time_ms": 1.0,
            "status": "completed",
            "message": "cost_query completed",
        },
    )
    tools = (
        [completed, executing]
        if breakage is Breakage.TOOL_BEFORE_EXECUTING
        else [executing, completed]
    )
    return [
        event(
            "agent_started", {"status": "started", "message": "supervisor started", "context": {}}
        ),
        event(
            "agent_thinking", {"reasoning": "Reading.", "step_number": 1, "progress_percentage": 50}
        ),
        *tools,
        event(
            "agent_completed",
            {
                "status": "completed",
                "result": {},
                "final_response": "Done.",
                "execution_time_ms": 2.0,
            },
        ),
    ]


async def doc_router(request: web.Request) -> web.StreamResponse:
    breakage = request.app[BREAKAGE]
    if breakage is Breakage.SHADOW_REFUSED and request.headers.get("X-Strangler-Shadow"):
        return web.Response(status=400)
    offered = [
        entry.strip()
        for value in request.headers.getall("Sec-WebSocket-Protocol", [])
        for entry in value.split(",")
        if entry.strip()
    ]
    acceptable, answer = choose_subprotocol(offered, breakage)
    if not acceptable:
        return web.Response(status=400)
    anonymous = (
        request.headers.get("X-Strangler-Auth") == "none"
        and breakage is not Breakage.AUTH_NONE_IGNORED
    )
    user, failure = ("anonymous", None) if anonymous else verify(credential(offered, request))
    ws = web.WebSocketResponse(
        protocols=[answer] if answer else (), autoclose=breakage is not Breakage.NO_CLOSE_ANSWER
    )
    await ws.prepare(request)
    if failure is not None or user is None:
        await ws.send_json(
            {
                "type": "error_message",
                "error_code": "AUTH_FAILED",
                "error_message": failure,
                "details": {},
                "timestamp": time.time(),
            }
        )
        code = 1011 if breakage is Breakage.AUTH_CLOSE_1011 else 1008
        await ws.close(code=code, message=b"Authentication failed")
        return ws
    route = request.headers.get("X-Strangler-Route", "")
    modes = ("main",) if breakage is Breakage.MODE_ALWAYS_MAIN else ("main", "factory", "isolated")
    data: dict[str, Any] = {"mode": route if route in modes else "main", "user_id": user}
    data["connection_id"] = "main_" + os.urandom(8).hex()
    if breakage is not Breakage.NO_GOLDEN_PATH_EVENTS:
        data["golden_path_events"] = GOLDEN
    await ws.send_json(
        {
            "type": "connection_established",
            "data": data,
            "timestamp": time.time(),
            "server_id": "doc-router",
            "correlation_id": None,
        }
    )
    turns = 0
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.CLOSE and breakage is Breakage.NO_CLOSE_ANSWER:
            if msg.data >= 4000:
                assert request.transport is not None
                request.transport.abort()
            else:
                await ws.close()
            break
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
        ):
            break
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        try:
            message = json.loads(msg.data)
        except ValueError:
            if breakage is Breakage.CLOSE_ON_NON_JSON:
                await ws.close(code=1003)
                break
            await ws.send_json(invalid("Invalid JSON"))
            continue
        if not isinstance(message, dict):
            await ws.send_json(invalid("Message must be a JSON object"))
            continue
        if not isinstance(message.get("type"), str):
            await ws.send_json(invalid("Message must have a string 'type'"))
            continue
        kind, payload = normalise(message)
        if breakage is Breakage.ALIAS_ACKED and message["type"] in ALIASES:
            kind = message["type"]
        if kind == "ping":
            stamp = 0 if breakage is Breakage.PONG_CLOCK else payload.get("timestamp", time.time())
            await ws.send_json({"type": "pong", "data": {"timestamp": stamp}})
        elif kind in ("pong", "heartbeat_ack") and breakage is not Breakage.ACK_PONG:
            pass
        elif kind in TURNS:
            turns += 1
            run_id = payload.get("run_id") if breakage is not Breakage.RUN_ID_DROPPED else None
            text = str(payload.get("user_request") or payload.get("text") or payload.get("query"))
            for event in turn_events(
                user, run_id or f"run_{turns}", text, breakage, message.get("user_id")
            ):
                await ws.send_json(event)
        else:
            ack = {"received_type": message["type"], "timestamp": time.time()}
            await ws.send_json({"type": "ack", "data": ack})
    return ws


def invalid(message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "data": {"error_code": "INVALID_MESSAGE", "message": message},
        "timestamp": time.time(),
    }


def doc_router_app(breakage: Breakage) -> web.Application:
    app = web.Application()
    app[BREAKAGE] = breakage
    app.router.add_get("/v1/ws", doc_router)
    return app


async def test_a_router_written_from_the_documents_alone_passes(serve: Serve) -> None:
    code, lines = await conformance(await serve(doc_router_app(Breakage.NONE)))
    assert [line for line in lines if not line.startswith("PASS ")] == [
        f"{len(lines) - 1} passed, 0 failed"
    ]
    assert code == 0


@pytest.mark.parametrize(
    ("breakage", "fail_line"),
    [
        (
            Breakage.ALIAS_ACKED,
            "FAIL turn/execute_agent: answered with ack (received_type 'execute_agent') "
            "instead of a turn",
        ),
        (
            Breakage.ECHO_FIRST_OFFER,
            "FAIL subprotocol/browser-offer: answered subprotocol 'jwt-auth' to the offer "
            "'jwt-auth', 'jwt.<token>'; expected 'jwt.<token>'",
        ),
        (
            Breakage.ACCEPT_UNACCEPTABLE,
            "FAIL subprotocol/unacceptable-refused: accepted the offer 'graphql-ws'; "
            "expected the handshake refused with 400",
        ),
        (
            Breakage.NO_GOLDEN_PATH_EVENTS,
            "FAIL greeting/route-main: connection_established does not match the schema at "
            "data: 'golden_path_events' is a required property",
        ),
        (
            Breakage.MODE_ALWAYS_MAIN,
            "FAIL greeting/route-factory: greeting data.mode is 'main', expected 'factory' "
            "(X-Strangler-Route: factory)",
        ),
        (
            Breakage.AUTH_NONE_IGNORED,
            "FAIL auth/none-without-token: expected connection_established, got error_message "
            "(AUTH_FAILED: No authentication token provided)",
        ),
        (
            Breakage.AUTH_CLOSE_1011,
            "FAIL auth/missing-token: closed with 1011 after AUTH_FAILED, expected 1008",
        ),
        (
            Breakage.CLOSE_ON_NON_JSON,
            "FAIL error/invalid-json: the router closed the connection (code 1003) while "
            "waiting for the error answering '{not json'",
        ),
        (
            Breakage.PONG_CLOCK,
            "FAIL ping/top-level-timestamp: pong data.timestamp is 0, "
            "expected the ping's 1726000000123",
        ),
        (Breakage.ACK_PONG, "FAIL silent/pong: answered pong with ack (expected nothing)"),
        (
            Breakage.TOOL_BEFORE_EXECUTING,
            "FAIL turn/agent_request: tool_completed without a tool_executing before it",
        ),
        (
            Breakage.NO_RESULTS_MIRROR,
            "FAIL turn/start_agent: tool_completed does not match the schema at the top "
            "level: 'results' is a required property",
        ),
        (
            Breakage.RUN_ID_DROPPED,
            "FAIL turn/chat_message-flat: the turn carries run_id 'run_1', expected the "
            "client's 'run-conformance-0001'",
        ),
        (
            Breakage.BODY_USER_ID,
            "FAIL turn/chat_message-flat: agent_started carries user_id 'someone-else', "
            "expected 'conformance'",
        ),
        (Breakage.SHADOW_REFUSED, "FAIL shadow/header-accepted: handshake refused with HTTP 400"),
        (
            Breakage.NO_CLOSE_ANSWER,
            "FAIL close/client-4001: no close frame answered the client's close 4001",
        ),
    ],
)
async def test_a_broken_router_fails_the_check_that_names_its_breakage(
    serve: Serve, breakage: Breakage, fail_line: str
) -> None:
    code, lines = await conformance(await serve(doc_router_app(breakage)))
    assert fail_line in lines, "\n".join(line for line in lines if not line.startswith("PASS"))
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert lines[-1] == f"{len(lines) - 1 - len(failed)} passed, {len(failed)} failed"
    assert code == 1
