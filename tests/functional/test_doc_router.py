"""Unified mode cannot be told from legacy, whoever wrote the router.

The same sessions as `test_contract.py`, but with every client message shape of
LEGACY_SURFACE.md, and twice on the unified side: against the reference router, and
against `doc_router.py`, a router written from docs/PROTOCOL.md and docs/asyncapi.yaml
alone. Against the reference router frames must be equal but for volatile fields;
against the document's router, which makes up its own prose, what a client can rely on
must be equal: which answer each message gets, the golden path of every turn, the keys
of every envelope in its dialect's nesting, the control answers, the greeting, the
subprotocol and the close code.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt as pyjwt
import pytest
from aiohttp import web

from strangler.proxy.runtime.server import Running
from tests.functional.conftest import ALL_ROUTES, SECRET, Stack, free_port, token
from tests.functional.doc_router import STATE, DocRouterSettings, build_doc_router
from tests.functional.test_contract import GOLDEN, Client, b64, strip, usual_clients

TURN_EVENTS = frozenset({*GOLDEN, "agent_error"})
TURN_ENDS = frozenset({"agent_completed", "agent_error"})
GOLDEN_ORDER = re.compile(
    r"agent_started( agent_thinking)+( tool_executing tool_completed)* agent_completed"
)
PING_TOP = 1726000000000
PING_NESTED = 1726000000001
PING_SENT = {"ping top-level": PING_TOP, "ping payload": PING_NESTED, "ping both": PING_NESTED}
MISSING_CREDENTIAL = "No authentication token provided"
BINARY = "<binary frame>"  # how a binary message is recorded among the JSON frames
PROBE = 9000000000000  # + the shape's index: the probes' own pongs, told from the shapes'


# (name, the message as sent, what it should get)
ShapeSpec = tuple[str, str | bytes, str]


def _frame(value: Any) -> str:
    return json.dumps(value)


def _aliases() -> list[ShapeSpec]:
    shapes: list[ShapeSpec] = []
    for alias in ("user", "user_input", "chat_message", "message"):
        nested = {"type": alias, "payload": {"text": f"{alias} nested", "thread_id": "t1"}}
        flat = {"type": alias, "content": f"{alias} flat", "thread_id": "t1"}
        shapes.append((f"{alias} nested", _frame(nested), "turn"))
        shapes.append((f"{alias} flat", _frame(flat), "turn"))
    return shapes


# Every client message shape of LEGACY_SURFACE.md, with what it should get:
# "turn" (a golden path), "one" (one answer frame) or "none" (silence).
SHAPES: list[ShapeSpec] = [
    (
        "start_agent",
        _frame(
            {
                "type": "start_agent",
                "payload": {
                    "user_request": "Optimize my costs",
                    "thread_id": None,
                    "context": {},
                    "settings": {},
                },
            }
        ),
        "turn",
    ),
    (
        "user_message text",
        _frame(
            {"type": "user_message", "payload": {"text": "Hi", "references": [], "thread_id": "t1"}}
        ),
        "turn",
    ),
    (
        "user_message content",
        _frame({"type": "user_message", "payload": {"content": "Hi there", "thread_id": "t1"}}),
        "turn",
    ),
    *_aliases(),
    (
        "chat_message flat legacy",
        _frame(
            {
                "type": "chat_message",
                "content": "Why did my costs grow?",
                "user_id": "u",
                "thread_id": "t",
                "run_id": "r-client",
                "timestamp": 1726000000.0,
            }
        ),
        "turn",
    ),
    (
        "execute_agent",
        _frame({"type": "execute_agent", "payload": {"user_request": "again", "thread_id": None}}),
        "turn",
    ),
    (
        "agent_request flat",
        _frame(
            {
                "type": "agent_request",
                "thread_id": "t",
                "query": "GPU spend",
                "agent_type": "supervisor",
                "parameters": {},
            }
        ),
        "turn",
    ),
    (
        "agent_request nested",
        _frame(
            {
                "type": "agent_request",
                "payload": {
                    "query": "Why?",
                    "agent_type": "supervisor",
                    "thread_id": "t1",
                    "parameters": {},
                },
            }
        ),
        "turn",
    ),
    ("ping top-level", _frame({"type": "ping", "timestamp": PING_TOP}), "one"),
    ("ping payload", _frame({"type": "ping", "payload": {"timestamp": PING_NESTED}}), "one"),
    (
        "ping both",  # PROTOCOL.md §2: the payload's own keys win
        _frame({"type": "ping", "timestamp": PING_TOP, "payload": {"timestamp": PING_NESTED}}),
        "one",
    ),
    ("pong", _frame({"type": "pong", "payload": {}}), "none"),
    ("heartbeat_ack", _frame({"type": "heartbeat_ack", "payload": {}}), "none"),
    ("stop_agent", _frame({"type": "stop_agent", "payload": {"run_id": "r1"}}), "one"),
    ("switch_thread", _frame({"type": "switch_thread", "payload": {"thread_id": "t2"}}), "one"),
    ("unknown type", _frame({"type": "frobnicate", "payload": {"x": 1}}), "one"),
    ("not json", "this is not json", "one"),
    ("not an object", _frame([1, 2]), "one"),
    ("no string type", _frame({"type": 7, "payload": {}}), "one"),
    ("binary frame", b'{"type": "ping", "timestamp": 5}', "one"),
]


@dataclass
class Session:
    protocol: str | None
    close_code: int | None
    greeting: dict[str, Any]
    answers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


async def _next(ws: aiohttp.ClientWebSocketResponse, shape: str) -> dict[str, Any]:
    """The next frame that is not a heartbeat (their timing is the server's)."""
    while True:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            return {"type": BINARY, "bytes": msg.data.hex()}
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"after {shape!r}: {msg.type.name} {msg.data!r} {msg.extra!r}")
        frame: dict[str, Any] = json.loads(msg.data)
        if frame.get("type") != "heartbeat":
            return frame


def _probe_pong(frame: dict[str, Any], probe: int) -> bool:
    data = frame.get("data")
    return frame.get("type") == "pong" and isinstance(data, dict) and data.get("timestamp") == probe


async def _answer(
    ws: aiohttp.ClientWebSocketResponse,
    index: int,
    shapes: list[ShapeSpec] = SHAPES,
) -> list[Any]:
    """What one message got: its expected answer, then anything else that arrives before
    a probe ping's pong (so silence and extra frames show too)."""
    shape, message, expect = shapes[index]
    frames: list[dict[str, Any]] = []
    if isinstance(message, bytes):
        await ws.send_bytes(message)
    else:
        await ws.send_str(message)
    if expect == "turn":
        while True:
            frame = await _next(ws, shape)
            frames.append(frame)
            # Not a turn event first: the message got another answer, stop waiting.
            if frame.get("type") in TURN_ENDS or frame.get("type") not in TURN_EVENTS:
                break
    elif expect == "one":
        frames.append(await _next(ws, shape))
    probe = PROBE + index
    await ws.send_str(json.dumps({"type": "ping", "payload": {"timestamp": probe}}))
    while not _probe_pong(frame := await _next(ws, shape), probe):
        frames.append(frame)
    return frames


async def run_session(port: int, client: Client, shapes: list[ShapeSpec] = SHAPES) -> Session:
    """One connection through the proxy at `port`: every shape in order, then close 1000."""
    params = {client.query_token: token("contract-user")} if client.query_token else {}
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"ws://127.0.0.1:{port}{client.path}",
            protocols=client.protocols,
            headers=dict(client.headers),
            params=params,
        )
        async with asyncio.timeout(30):
            session = Session(ws.protocol, None, await _next(ws, "greeting"))
            for index, (name, _, _) in enumerate(shapes):
                session.answers[name] = await _answer(ws, index, shapes)
            await ws.close(code=1000, message=b"done")
    session.close_code = ws.close_code
    return session


# -- what a client can rely on -------------------------------------------------------


def outline(frames: list[dict[str, Any]]) -> list[str]:
    """The answer's frame types, a whole turn counted once as `turn`."""
    out: list[str] = []
    for frame in frames:
        kind = str(frame.get("type"))
        if kind in TURN_EVENTS:
            if out and out[-1] == "turn":
                continue
            kind = "turn"
        out.append(kind)
    return out


Shape = tuple[frozenset[str], frozenset[str] | None, frozenset[str] | None]


def envelope(frame: dict[str, Any]) -> Shape:
    """The keys at each level of the frame's nesting: top, `data`, `payload`. Deeper
    objects (a result, a context) are the application's, not the envelope's."""

    def keys(value: Any) -> frozenset[str] | None:
        return frozenset(value) if isinstance(value, dict) else None

    return frozenset(frame), keys(frame.get("data")), keys(frame.get("payload"))


def event_envelopes(frames: list[dict[str, Any]]) -> dict[str, set[Shape]]:
    out: dict[str, set[Shape]] = {}
    for frame in frames:
        if frame.get("type") in TURN_EVENTS:
            out.setdefault(str(frame["type"]), set()).add(envelope(frame))
    return out


def assert_golden_path(frames: list[dict[str, Any]], where: str) -> None:
    """LEGACY_SURFACE.md: what the legacy golden-path tests check of a turn."""
    types = [str(f.get("type")) for f in frames if f.get("type") in TURN_EVENTS]
    assert set(GOLDEN) <= set(types), f"{where}: {types}"
    assert types[0] == "agent_started" and types[-1] == "agent_completed", f"{where}: {types}"
    assert types.count("tool_executing") == types.count("tool_completed"), f"{where}: {types}"
    assert all("type" in f for f in frames), where
    # PROTOCOL.md §3 and LEGACY_SURFACE.md: the order, as a grammar.
    assert GOLDEN_ORDER.fullmatch(" ".join(types)), f"{where}: {types}"


def assert_same_answer(
    shape: str, legacy: list[dict[str, Any]], unified: list[dict[str, Any]], side: str
) -> None:
    where = f"{shape!r} on {side}"
    assert outline(unified) == outline(legacy), f"{where}: {outline(legacy)} vs {outline(unified)}"
    if "turn" in outline(legacy):
        assert_golden_path(legacy, f"{shape!r} on legacy")
        assert_golden_path(unified, where)
        assert event_envelopes(unified) == event_envelopes(legacy), where
    controls = [f for f in legacy if f.get("type") not in TURN_EVENTS]
    unified_controls = [f for f in unified if f.get("type") not in TURN_EVENTS]
    for mine, theirs in zip(controls, unified_controls, strict=True):
        assert envelope(theirs) == envelope(mine), f"{where}: {mine} vs {theirs}"
        # Control and error frames carry no prose: equal but for volatile fields.
        assert strip(theirs) == strip(mine), f"{where}: {mine} vs {theirs}"
        if mine.get("type") == "pong":
            # The one timestamp that is not volatile: the client's own, echoed.
            assert mine["data"]["timestamp"] == theirs["data"]["timestamp"], where
            if shape in PING_SENT:
                assert theirs["data"]["timestamp"] == PING_SENT[shape], where
        if mine.get("type") == "ack":
            assert theirs["data"]["received_type"] == mine["data"]["received_type"], where


def assert_indistinguishable(legacy: Session, unified: Session, side: str) -> None:
    assert unified.protocol == legacy.protocol, side
    assert unified.close_code == legacy.close_code == 1000, side
    assert envelope(unified.greeting) == envelope(legacy.greeting), side
    assert strip(unified.greeting) == strip(legacy.greeting), side
    assert list(unified.answers) == list(legacy.answers)
    for shape in legacy.answers:
        assert_same_answer(shape, legacy.answers[shape], unified.answers[shape], side)


# -- the stack: reference legacy backend, three proxies ------------------------------


@dataclass
class Trio:
    legacy: Running
    doc_unified: Running
    reference_unified: Running
    doc_router: web.Application


def _everyone(mode: str) -> str:
    return (
        f"flags:\n  everyone:\n    routes: {ALL_ROUTES}\n"
        f"    default: {mode}\n    anonymous: {mode}\n"
    )


async def start_doc_router(stack: Stack) -> tuple[web.Application, str]:
    """The document's router on its own loopback port, cleaned up with the stack."""
    app = build_doc_router(DocRouterSettings(secret=SECRET))
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack.runners.append(runner)
    return app, f"ws://127.0.0.1:{port}/v1/ws"


@pytest.fixture
async def trio(stack: Stack) -> AsyncIterator[Trio]:
    await stack.backends()
    doc_app, doc_url = await start_doc_router(stack)
    yield Trio(
        legacy=await stack.proxy(_everyone("legacy"), name="legacy"),
        doc_unified=await stack.proxy(_everyone("unified"), name="doc", unified_url=doc_url),
        reference_unified=await stack.proxy(_everyone("unified"), name="reference"),
        doc_router=doc_app,
    )


def _route(client_name: str) -> str:
    return client_name.split("/")[0].split("?")[0]


CLIENTS = sorted(usual_clients("x"))


@pytest.mark.parametrize("name", CLIENTS)
async def test_every_legacy_message_shape_gets_the_same_answer_from_the_documents_router(
    trio: Trio, name: str
) -> None:
    client = usual_clients("contract-user")[name]
    on_legacy = await run_session(trio.legacy.port, client)
    on_unified = await run_session(trio.doc_unified.port, client)

    handshakes = trio.doc_router[STATE].handshakes
    assert [h.get("X-Strangler-Route") for h in handshakes] == [_route(name)]
    assert_indistinguishable(on_legacy, on_unified, "the document's router")


@pytest.mark.parametrize("name", CLIENTS)
async def test_every_legacy_message_shape_gets_the_same_frames_from_the_reference_router(
    trio: Trio, name: str
) -> None:
    client = usual_clients("contract-user")[name]
    on_legacy = await run_session(trio.legacy.port, client)
    on_unified = await run_session(trio.reference_unified.port, client)

    assert_indistinguishable(on_legacy, on_unified, "the reference router")
    for shape, frames in on_legacy.answers.items():
        assert [strip(f) for f in on_unified.answers[shape]] == [strip(f) for f in frames], shape


# The client's own run id is the one volatile value a client relies on: it matches the
# turn's events to its message. With a run id at the top level and another in the
# payload, legacy carries the top-level one (PROTOCOL.md §2). Through the byte tunnel
# the router sees the frame as sent; the dialect adapters hand it a canonical message
# whose payload run id has already won, so no router can carry the client's.
TWO_RUN_IDS: list[ShapeSpec] = [
    (
        "two run ids",
        _frame(
            {"type": "user_message", "run_id": "r-top", "payload": {"text": "x", "run_id": "r-in"}}
        ),
        "turn",
    ),
]


@pytest.mark.parametrize("name", list(CLIENTS))
async def test_a_turn_carries_the_clients_top_level_run_id_as_on_legacy(
    trio: Trio, name: str
) -> None:
    client = usual_clients("contract-user")[name]
    on_legacy = await run_session(trio.legacy.port, client, TWO_RUN_IDS)
    assert {f["run_id"] for f in on_legacy.answers["two run ids"]} == {"r-top"}
    for side, proxy in (("document", trio.doc_unified), ("reference", trio.reference_unified)):
        on_unified = await run_session(proxy.port, client, TWO_RUN_IDS)
        assert_indistinguishable(on_legacy, on_unified, f"the {side} router")
        run_ids = {f["run_id"] for f in on_unified.answers["two run ids"]}
        assert run_ids == {"r-top"}, f"the {side} router: {run_ids}"


# -- the handshake table, read by both routers alike ---------------------------------


@dataclass(frozen=True)
class Handshake:
    protocols: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = (("X-Strangler-Route", "main"),)
    query: str = ""


def _handshakes() -> dict[str, Handshake]:
    jwt = token("hs-user")
    expired = _expired_token("hs-user")
    main = ("X-Strangler-Route", "main")
    return {
        "browser offer": Handshake(("jwt-auth", f"jwt.{b64(jwt)}")),
        "bare jwt-auth, Authorization header": Handshake(
            ("jwt-auth",), (main, ("Authorization", f"Bearer {jwt}"))
        ),
        "bearer entry": Handshake((f"bearer.{jwt}",)),
        "jwt-auth entry, factory route": Handshake(
            (f"jwt-auth.{jwt}",), (("X-Strangler-Route", "factory"),)
        ),
        "query token, isolated route": Handshake(
            (), (("X-Strangler-Route", "isolated"),), f"?token={jwt}"
        ),
        "query access_token, main_user route": Handshake(
            (), (("X-Strangler-Route", "main_user"),), f"?access_token={jwt}"
        ),
        "no credential": Handshake(),
        "bad credential": Handshake(("jwt-auth", f"jwt.{b64(expired)}")),
        "anonymous route ignores a bad credential": Handshake(
            (f"bearer.{expired}",), (("X-Strangler-Route", "legacy"), ("X-Strangler-Auth", "none"))
        ),
        "anonymous route without credential": Handshake(
            (), (("X-Strangler-Route", "legacy_test"), ("X-Strangler-Auth", "none"))
        ),
        "shadow secondary": Handshake((f"bearer.{jwt}",), (main, ("X-Strangler-Shadow", "1"))),
    }


def _expired_token(user: str) -> str:
    now = int(time.time())
    claims = {
        "sub": user,
        "iat": now - 7200,
        "exp": now - 3600,
        "iss": "netra-auth-service",
        "aud": "netra-platform",
        "token_type": "access",
    }
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


async def _handshake_outcome(url: str, case: Handshake) -> tuple[Any, ...]:
    """(subprotocol, greeting or auth failure frame without volatile fields, close code)
    of a direct handshake, or ("refused", status) when there is no WebSocket."""
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(
                url + case.query, protocols=case.protocols, headers=dict(case.headers)
            )
        except aiohttp.WSServerHandshakeError as refused:
            return ("refused", refused.status)
        async with asyncio.timeout(10):
            first = json.loads((await ws.receive()).data)
            if first.get("type") == "error_message":
                closing = await ws.receive()
                failure = strip(first)
                # Only the missing credential's text is written down; the rest is prose.
                if failure.get("error_message") != MISSING_CREDENTIAL:
                    failure["error_message"] = "<prose>"
                return (ws.protocol, failure, closing.type.name, closing.data, closing.extra)
            await ws.close(code=1000)
        return (ws.protocol, strip(first), ws.close_code, first["data"].get("user_id"))


@pytest.mark.parametrize("case", sorted(_handshakes()))
async def test_the_handshake_table_reads_the_same_to_the_document_and_the_reference(
    stack: Stack, case: str
) -> None:
    await stack.backends()
    _, doc_url = await start_doc_router(stack)
    reference_url = f"ws://127.0.0.1:{stack.unified_port}/v1/ws"
    handshake = _handshakes()[case]
    assert await _handshake_outcome(doc_url, handshake) == await _handshake_outcome(
        reference_url, handshake
    )


@pytest.mark.parametrize("offer", [("chat",), ("graphql-ws", "wamp")])
async def test_an_offer_without_an_acceptable_subprotocol_is_refused_alike(
    stack: Stack, offer: tuple[str, ...]
) -> None:
    await stack.backends()
    _, doc_url = await start_doc_router(stack)
    reference_url = f"ws://127.0.0.1:{stack.unified_port}/v1/ws"
    headers = (("X-Strangler-Route", "main"), ("Authorization", f"Bearer {token('u')}"))
    case = Handshake(offer, headers)
    assert await _handshake_outcome(doc_url, case) == ("refused", 400)
    assert await _handshake_outcome(reference_url, case) == ("refused", 400)


# -- close codes, both ways ------------------------------------------------------------


async def _closed_by_client(port: int, client: Client, code: int) -> tuple[int | None, str]:
    params = {client.query_token: token("contract-user")} if client.query_token else {}
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            f"ws://127.0.0.1:{port}{client.path}",
            protocols=client.protocols,
            headers=dict(client.headers),
            params=params,
        )
        async with asyncio.timeout(10):
            await _next(ws, "greeting")
            await ws.close(code=code, message=b"client leaves")
    return ws.close_code, ws.protocol or ""


@pytest.mark.parametrize("name", ["main/browser", "factory/bearer", "legacy/none"])
@pytest.mark.parametrize("code", [1000, 1001, 4001])
async def test_a_client_close_code_gets_the_same_answer_from_every_router(
    trio: Trio, name: str, code: int
) -> None:
    client = usual_clients("contract-user")[name]
    on_legacy = await _closed_by_client(trio.legacy.port, client, code)
    assert await _closed_by_client(trio.doc_unified.port, client, code) == on_legacy
    assert await _closed_by_client(trio.reference_unified.port, client, code) == on_legacy


# -- strangler conformance, a third reading of the same documents ---------------------


async def test_strangler_conformance_passes_the_router_built_from_the_documents(
    stack: Stack,
) -> None:
    """The command a router team runs and the router written from the documents agree:
    every check passes, so neither reads the documents differently from the other."""
    _, doc_url = await start_doc_router(stack)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "conformance",
        doc_url,
        env={**os.environ, "STRANGLER_JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    lines = output.decode().splitlines()
    assert [line for line in lines if line.startswith("FAIL")] == []
    assert lines[-1].endswith(" passed, 0 failed") and process.returncode == 0, lines[-3:]
