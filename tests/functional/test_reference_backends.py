"""Functional tests of the reference backends (reference/): real servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from strangler.reference.app_state import OPEN_SOCKETS, RECEIVED_HANDSHAKES
from strangler.reference.legacy_backend import build_legacy_app
from strangler.reference.script import (
    CANONICAL_ALIASES,
    GOLDEN_PATH_EVENTS,
    canonical_type,
    golden_turn,
    request_text,
)
from strangler.reference.settings import BackendSettings
from strangler.reference.unified_backend import build_unified_app

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]
Client = TestClient[web.Request, web.Application]

SETTINGS = BackendSettings(jwt_secret="reference-backend-test-secret-0123456789")
RECEIVE_TIMEOUT = 5.0
START = {"type": "start_agent", "payload": {"user_request": "Optimize my costs", "thread_id": "t1"}}
VOLATILE = {"timestamp", "run_id", "user_id", "connection_id", "execution_time_ms"}


def mint(sub: str = "alice", **overrides: Any) -> str:
    """A token as the auth service minted them."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "iss": "netra-auth-service",
        "aud": "netra-platform",
        "jti": uuid.uuid4().hex,
        "token_type": "access",
        **overrides,
    }
    return jwt.encode(claims, SETTINGS.jwt_secret, algorithm="HS256")


def b64url(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def bearer(token: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token or mint()}"}


async def receive_json(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is WSMsgType.TEXT, msg
    frame: dict[str, Any] = json.loads(msg.data)
    return frame


async def collect_turn(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Frames up to agent_completed, leaving out heartbeats and pongs."""
    events: list[dict[str, Any]] = []
    while True:
        frame = await receive_json(ws)
        if frame["type"] in ("heartbeat", "pong"):
            continue
        events.append(frame)
        if frame["type"] in ("agent_completed", "agent_error"):
            return events


def assert_golden_path(events: list[dict[str, Any]]) -> None:
    """The legacy golden-path tests' client-side contract."""
    assert all("type" in event for event in events)
    types = [event["type"] for event in events]
    assert set(GOLDEN_PATH_EVENTS) <= set(types)
    assert types[0] == "agent_started"
    assert types[-1] == "agent_completed"
    assert types.count("tool_executing") == types.count("tool_completed")


def strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


@pytest.fixture
async def legacy(aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(build_legacy_app(SETTINGS))


@pytest.fixture
async def unified(aiohttp_client: ClientFactory) -> Client:
    return await aiohttp_client(build_unified_app(SETTINGS))


# --- first frames -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "mode"),
    [
        ("/ws", {}, "main"),
        ("/api/v1/websocket", {}, "main"),
        ("/ws/factory", {}, "factory"),
        ("/ws/isolated", {}, "isolated"),
        ("/ws?mode=factory", {}, "factory"),
        ("/ws?mode=isolated", {}, "isolated"),
        ("/api/v1/websocket?mode=isolated", {}, "isolated"),
        ("/ws", {"User-Agent": "netra-factory-client/1.0"}, "factory"),
        ("/ws", {"User-Agent": "isolated-harness"}, "isolated"),
        ("/ws?mode=main", {"User-Agent": "factory-bot"}, "main"),
    ],
)
async def test_newer_routes_greet_with_connection_established(
    legacy: Client, path: str, headers: dict[str, str], mode: str
) -> None:
    async with legacy.ws_connect(path, headers={**bearer(), **headers}) as ws:
        frame = await receive_json(ws)
    assert frame["type"] == "connection_established"
    assert frame["data"]["mode"] == mode
    assert frame["data"]["user_id"] == "alice"
    assert frame["data"]["connection_id"].startswith(f"{mode}_")
    assert frame["data"]["golden_path_events"] == list(GOLDEN_PATH_EVENTS)
    assert isinstance(frame["timestamp"], float)
    assert frame["server_id"] == "legacy"
    assert frame["correlation_id"] is None


@pytest.mark.parametrize(
    ("path", "user_id"),
    [
        ("/ws/bob", "alice"),  # the path id is informational, the token decides
        ("/ws/v1/bob", "alice"),
        ("/websocket", "anonymous"),
        ("/ws/test", "anonymous"),
        ("/ws?mode=legacy", "anonymous"),
    ],
)
async def test_older_routes_greet_with_system_message(
    legacy: Client, path: str, user_id: str
) -> None:
    async with legacy.ws_connect(path, headers=bearer()) as ws:
        frame = await receive_json(ws)
    assert frame["type"] == "system_message"
    data = frame["data"]
    assert data["event"] == "connection_established"
    assert data["user_id"] == user_id
    assert data["connection_id"].startswith("ws_")
    assert data["connection_ready"] is True
    assert data["config"] == {"heartbeat_interval": 25, "max_message_size": 8192}
    assert "T" in data["server_time"]


# --- golden path ------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/ws", "/api/v1/websocket", "/ws/factory", "/ws/isolated", "/ws/u1", "/websocket"],
)
async def test_turn_passes_golden_path_checks_on_every_route(legacy: Client, path: str) -> None:
    async with legacy.ws_connect(path, headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json(START)
        assert_golden_path(await collect_turn(ws))


async def test_main_dialect_nests_events_under_data(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({**START, "run_id": "r-42"})
        events = await collect_turn(ws)
    for event in events:
        assert event["user_id"] == "alice"
        assert event["run_id"] == "r-42"
        assert event["agent_name"] == "supervisor"
        assert "T" in event["timestamp"]
        assert isinstance(event["data"], dict)
    completed = next(e for e in events if e["type"] == "tool_completed")
    assert completed["tool_name"] == "cost_query"
    assert completed["results"] == completed["data"]["result"]
    executing = next(e for e in events if e["type"] == "tool_executing")
    assert executing["data"]["parameters"] == {"query": "Optimize my costs"}


async def test_older_alias_nests_events_under_payload(legacy: Client) -> None:
    async with legacy.ws_connect("/ws/v1/alice", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json(START)
        events = await collect_turn(ws)
    for event in events:
        assert "user_id" not in event
        assert "data" not in event
        assert isinstance(event["payload"], dict)
    executing = next(e for e in events if e["type"] == "tool_executing")
    assert "tool_name" not in executing
    assert executing["payload"]["tool_name"] == "cost_query"


async def test_legacy_dialect_sends_flat_critical_events(legacy: Client) -> None:
    async with legacy.ws_connect("/ws/test") as ws:
        await receive_json(ws)
        await ws.send_json(START)
        events = await collect_turn(ws)
    assert all(event["critical"] is True for event in events)
    assert all("data" not in event and "payload" not in event for event in events)
    started = events[0]
    assert started["status"] == "started" and started["context"] == {}
    executing = next(e for e in events if e["type"] == "tool_executing")
    assert executing["tool_name"] == "cost_query"
    assert executing["parameters"] == {"query": "Optimize my costs"}


async def test_event_delay_spaces_events_and_pings_interleave(
    aiohttp_client: ClientFactory,
) -> None:
    client = await aiohttp_client(build_legacy_app(replace(SETTINGS, event_delay=0.05)))
    async with client.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json(START)
        first = await receive_json(ws)
        await ws.send_json({"type": "ping", "timestamp": 7})
        frames = [await receive_json(ws) for _ in range(6)]  # 5 turn events + pong
    assert first["type"] == "agent_started"
    types = [f["type"] for f in frames]
    assert "pong" in types and types.index("pong") < types.index("agent_completed")


# --- client messages ---------------------------------------------------------------


@pytest.mark.parametrize("alias", sorted(CANONICAL_ALIASES))
async def test_aliases_start_a_turn(legacy: Client, alias: str) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": alias, "payload": {"text": "Hi", "thread_id": "t1"}})
        assert_golden_path(await collect_turn(ws))


@pytest.mark.parametrize(
    "message",
    [
        {"type": "chat_message", "content": "Hi", "user_id": "u", "thread_id": "t", "run_id": "r"},
        {"type": "agent_request", "thread_id": "t", "query": "Hi", "run_id": "r"},
        {"type": "user_message", "payload": {"content": "Hi", "run_id": "r"}},
    ],
)
async def test_other_message_shapes_start_a_turn(legacy: Client, message: dict[str, Any]) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json(message)
        events = await collect_turn(ws)
    assert_golden_path(events)
    assert {event["run_id"] for event in events} == {"r"}
    executing = next(e for e in events if e["type"] == "tool_executing")
    assert executing["data"]["parameters"] == {"query": "Hi"}


@pytest.mark.parametrize("msg_type", ["stop_agent", "switch_thread", "something_new"])
async def test_control_and_unknown_types_get_an_ack(legacy: Client, msg_type: str) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": msg_type, "payload": {}})
        frame = await receive_json(ws)
    assert frame["type"] == "ack"
    assert frame["data"]["received_type"] == msg_type


async def test_ping_gets_pong_echoing_the_client_timestamp(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": "ping", "timestamp": 1726000000000})
        echoed = await receive_json(ws)
        await ws.send_json({"type": "ping"})
        fresh = await receive_json(ws)
    assert echoed == {"type": "pong", "data": {"timestamp": 1726000000000}}
    assert fresh["type"] == "pong" and isinstance(fresh["data"]["timestamp"], float)


async def test_pong_and_heartbeat_ack_get_no_answer(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": "pong"})
        await ws.send_json({"type": "heartbeat_ack"})
        await ws.send_json({"type": "ping", "timestamp": 1})
        assert (await receive_json(ws))["type"] == "pong"


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"', '{"no_type": 1}'])
async def test_invalid_message_gets_error_and_socket_stays_open(legacy: Client, raw: str) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_str(raw)
        error = await receive_json(ws)
        await ws.send_json({"type": "ping", "timestamp": 1})
        assert (await receive_json(ws))["type"] == "pong"
    assert error["type"] == "error"
    assert error["data"]["error_code"] == "INVALID_MESSAGE"
    assert isinstance(error["timestamp"], float)


async def test_legacy_dialect_reports_invalid_json_flat(legacy: Client) -> None:
    async with legacy.ws_connect("/websocket") as ws:
        await receive_json(ws)
        await ws.send_str("{not json")
        error = await receive_json(ws)
    assert error["type"] == "error"
    assert error["error"] == "invalid_json"
    assert isinstance(error["message"], str)


async def test_idle_connection_gets_heartbeat(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_legacy_app(replace(SETTINGS, heartbeat_idle=0.1)))
    async with client.ws_connect("/ws", headers=bearer()) as ws:
        greeting = await receive_json(ws)
        frame = await receive_json(ws)
    assert frame["type"] == "heartbeat"
    assert frame["data"]["connection_id"] == greeting["data"]["connection_id"]
    assert isinstance(frame["data"]["timestamp"], float)


# --- auth ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ws", "/ws/alice", "/api/v1/websocket"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        bearer(mint(exp=int(time.time()) - 3600)),
        bearer(
            jwt.encode(
                {"sub": "x", "exp": 2**33},
                "a-wrong-secret-of-sufficient-length-0123",
                algorithm="HS256",
            )
        ),
        bearer(mint(aud="someone-else")),
        bearer(mint(iss="somebody")),
        bearer(mint(token_type="refresh")),
    ],
    ids=["missing", "garbage", "expired", "bad-signature", "audience", "issuer", "refresh"],
)
async def test_main_routes_fail_auth_with_frame_then_1008(
    legacy: Client, path: str, headers: dict[str, str]
) -> None:
    async with legacy.ws_connect(path, headers=headers) as ws:
        frame = await receive_json(ws)
        closing = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert frame["type"] == "error_message"
    assert frame["error_code"] == "AUTH_FAILED"
    assert frame["details"] == {}
    assert isinstance(frame["error_message"], str) and isinstance(frame["timestamp"], float)
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == 1008
    assert closing.extra == "Authentication failed"


async def test_alg_none_token_is_refused(legacy: Client) -> None:
    claims = {"sub": "mallory", "exp": int(time.time()) + 300}
    unsigned = jwt.encode(claims, key="", algorithm="none")
    async with legacy.ws_connect("/ws", headers=bearer(unsigned)) as ws:
        assert (await receive_json(ws))["error_code"] == "AUTH_FAILED"


async def test_factory_refuses_handshake_with_403_on_bad_token(legacy: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await legacy.ws_connect("/ws/factory", headers={"Authorization": "Bearer nope"})
    assert caught.value.status == 403
    answer = await legacy.get("/ws/factory", headers=_upgrade_headers())
    assert answer.status == 403
    assert (await answer.json())["error"] == "authentication_failed"


async def test_mode_factory_on_main_route_refuses_with_403(legacy: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await legacy.ws_connect("/ws?mode=factory")
    assert caught.value.status == 403


async def test_isolated_closes_1008_without_a_frame(legacy: Client) -> None:
    async with legacy.ws_connect("/ws/isolated") as ws:
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1008
    assert msg.extra is not None and msg.extra.startswith("Authentication failed")


@pytest.mark.parametrize("path", ["/websocket", "/ws/test"])
async def test_legacy_routes_need_no_auth(legacy: Client, path: str) -> None:
    async with legacy.ws_connect(path) as ws:
        frame = await receive_json(ws)
        await ws.send_json(START)
        assert_golden_path(await collect_turn(ws))
    assert frame["data"]["user_id"] == "anonymous"


@pytest.mark.parametrize("key", ["token", "jwt", "auth_token", "access_token"])
async def test_query_token_authenticates(legacy: Client, key: str) -> None:
    async with legacy.ws_connect(f"/ws?{key}={mint('carol')}") as ws:
        assert (await receive_json(ws))["data"]["user_id"] == "carol"


@pytest.mark.parametrize(
    "entry",
    [
        lambda t: f"jwt.{b64url(t)}",
        lambda t: f"jwt.{t}",  # not base64url of a JWT: used raw
        lambda t: f"jwt-auth.{t}",
        lambda t: f"bearer.{t}",
    ],
    ids=["jwt-b64url", "jwt-raw", "jwt-auth", "bearer"],
)
async def test_subprotocol_token_authenticates_and_is_echoed(
    legacy: Client, entry: Callable[[str], str]
) -> None:
    offered = entry(mint("dave"))
    async with legacy.ws_connect("/ws", protocols=[offered]) as ws:
        assert (await receive_json(ws))["data"]["user_id"] == "dave"
        assert ws.protocol == offered


async def test_subprotocol_wins_over_header_and_query(legacy: Client) -> None:
    path = f"/ws?token={mint('query-user')}"
    offered = ["jwt-auth", f"jwt.{b64url(mint('proto-user'))}"]
    async with legacy.ws_connect(path, protocols=offered, headers=bearer(mint("hdr"))) as ws:
        assert (await receive_json(ws))["data"]["user_id"] == "proto-user"


# --- subprotocol answer ---------------------------------------------------------------


@pytest.mark.parametrize("app_name", ["legacy", "unified"])
async def test_browser_offer_gets_its_jwt_entry_echoed(
    legacy: Client, unified: Client, app_name: str
) -> None:
    client, path = (legacy, "/ws") if app_name == "legacy" else (unified, "/v1/ws")
    offered = ["jwt-auth", f"jwt.{b64url(mint())}"]
    async with client.ws_connect(path, protocols=offered) as ws:
        frame = await receive_json(ws)
    assert ws.protocol == offered[1]
    assert frame["data"]["user_id"] == "alice"


async def test_bare_offer_gets_first_known_entry(legacy: Client) -> None:
    async with legacy.ws_connect(
        "/ws", protocols=["chat", "jwt", "jwt-auth"], headers=bearer()
    ) as ws:
        await receive_json(ws)
        assert ws.protocol == "jwt"


async def test_offer_without_known_entry_fails_handshake(legacy: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await legacy.ws_connect("/ws", protocols=["chat"], headers=bearer())
    assert caught.value.status == 400


async def test_no_offer_gets_no_subprotocol(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        assert ws.protocol is None


async def test_protocol_none_hook_answers_no_subprotocol(legacy: Client) -> None:
    offered = ["jwt-auth", f"jwt.{b64url(mint())}"]
    async with legacy.ws_connect("/ws?protocol_none=1", protocols=offered) as ws:
        await receive_json(ws)
        assert ws.protocol is None


# --- tickets ---------------------------------------------------------------------------


async def test_ticket_authenticates_once(legacy: Client) -> None:
    response = await legacy.post("/api/websocket/ticket", headers=bearer(mint("erin")))
    assert response.status == 200
    body = await response.json()
    assert body["expires_in"] == 60 and body["server_id"] == "legacy"
    async with legacy.ws_connect(f"/ws?ticket={body['ticket']}") as ws:
        assert (await receive_json(ws))["data"]["user_id"] == "erin"
    async with legacy.ws_connect(f"/ws?ticket={body['ticket']}") as ws:
        assert (await receive_json(ws))["error_code"] == "AUTH_FAILED"


@pytest.mark.parametrize("key", ["auth_ticket", "ticket_id"])
async def test_ticket_aliases(legacy: Client, key: str) -> None:
    response = await legacy.post("/api/websocket/ticket", headers=bearer(mint("erin")))
    ticket = (await response.json())["ticket"]
    async with legacy.ws_connect(f"/ws/isolated?{key}={ticket}") as ws:
        assert (await receive_json(ws))["data"]["user_id"] == "erin"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer junk"}])
async def test_ticket_needs_a_valid_bearer_token(legacy: Client, headers: dict[str, str]) -> None:
    response = await legacy.post("/api/websocket/ticket", headers=headers)
    assert response.status == 401


# --- test hooks --------------------------------------------------------------------------


async def test_echo_returns_the_exact_text(legacy: Client) -> None:
    raw = '{"type":"echo",   "payload": {"x": [1, 2.50, "\\u00e9"]}}'
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_str(raw)
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is WSMsgType.TEXT and msg.data == raw


async def test_binary_frames_are_echoed(legacy: Client) -> None:
    async with legacy.ws_connect("/websocket") as ws:
        await receive_json(ws)
        await ws.send_bytes(b"\x00\xffbinary")
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is WSMsgType.BINARY and msg.data == b"\x00\xffbinary"


async def test_close_me_closes_with_requested_code_and_reason(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": "close_me", "payload": {"code": 4001, "reason": "bye"}})
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert msg.type is WSMsgType.CLOSE
    assert (msg.data, msg.extra) == (4001, "bye")


async def test_close_me_with_invalid_code_is_an_error(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": "close_me", "payload": {"code": 1005}})
        assert (await receive_json(ws))["type"] == "error"


@pytest.mark.parametrize("size", [1, 40, 5000])
async def test_flood_sends_count_frames_of_size_bytes(legacy: Client, size: int) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": "flood", "payload": {"count": 25, "size": size}})
        frames = [await ws.receive(timeout=RECEIVE_TIMEOUT) for _ in range(25)]
    assert all(f.type is WSMsgType.TEXT and len(f.data.encode()) == size for f in frames)


@pytest.mark.parametrize("leave", ["close", "vanish"])
@pytest.mark.parametrize(
    "request_",
    [
        {"type": "flood", "payload": {"count": 5000, "size": 20000}},
        {"type": "start_agent", "payload": {"user_request": "slow"}},
    ],
    ids=["flood", "turn"],
)
async def test_peer_leaving_mid_send_logs_no_traceback(
    aiohttp_client: ClientFactory,
    caplog: pytest.LogCaptureFixture,
    leave: str,
    request_: dict[str, Any],
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(build_legacy_app(replace(SETTINGS, event_delay=0.02)))
    if leave == "vanish":
        await _send_then_vanish(client, "/ws", bearer(), json.dumps(request_))
    else:
        ws = await client.ws_connect("/ws", headers=bearer())
        await receive_json(ws)
        await ws.send_json(request_)
        await ws.receive(timeout=RECEIVE_TIMEOUT)
        await ws.close()
    for _ in range(250):
        if not client.app[OPEN_SOCKETS]:
            break
        await asyncio.sleep(0.02)
    assert not client.app[OPEN_SOCKETS]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def _send_then_vanish(client: Client, path: str, headers: dict[str, str], text: str) -> None:
    """Handshake by hand, send one text frame, read a little, then drop the TCP connection."""
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{client.port}"]
    lines += [f"{k}: {v}" for k, v in {**_upgrade_headers(), **headers}.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    payload, mask = text.encode(), b"\x01\x02\x03\x04"
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await asyncio.wait_for(reader.read(4096), RECEIVE_TIMEOUT)
    await asyncio.sleep(0.05)  # let the server get well into sending
    writer.transport.abort()


@pytest.mark.parametrize(
    "path", ["/ws", "/ws/factory", "/websocket", "/ws/u1", "/api/v1/websocket"]
)
async def test_refuse_hook_fails_handshake_with_status(legacy: Client, path: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await legacy.ws_connect(f"{path}?refuse=503", headers=bearer())
    assert caught.value.status == 503
    answer = await legacy.get(f"{path}?refuse=418", headers=_upgrade_headers())
    assert answer.status == 418
    assert await answer.json() == {"error": "refused", "status": 418}


async def test_shutdown_closes_open_sockets_with_1001(legacy: Client) -> None:
    async with legacy.ws_connect("/ws", headers=bearer()) as ws:
        await receive_json(ws)
        _, msg = await asyncio.gather(legacy.app.shutdown(), ws.receive(timeout=RECEIVE_TIMEOUT))
    assert msg.type is WSMsgType.CLOSE and msg.data == 1001


async def test_backend_records_handshake_headers(legacy: Client) -> None:
    headers = {**bearer(), "X-Strangler-Route": "main", "x-strangler-shadow": "1"}
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await legacy.ws_connect("/ws/u1?refuse=500&x=1", headers=headers)
    record = legacy.app[RECEIVED_HANDSHAKES][-1]
    assert record["path_qs"] == "/ws/u1?refuse=500&x=1"
    assert record["headers"]["X-Strangler-Shadow"] == "1"
    assert record["headers"]["x-strangler-route"] == "main"


# --- plain HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/ws/health",
        "/ws/beacon",
        "/ws/config",
        "/ws/stats",
        "/ws/factory/status",
        "/ws/factory/health",
        "/ws/isolated/health",
        "/ws/isolated/stats",
        "/ws/isolated/config",
        "/api/v1/websocket",
    ],
)
async def test_http_endpoints_answer_json_with_server_id(legacy: Client, path: str) -> None:
    response = await legacy.get(path)
    assert response.status == 200
    assert (await response.json())["server_id"] == "legacy"


@pytest.mark.parametrize("path", ["/ws/health", "/ws/beacon"])
async def test_health_and_beacon_answer_head_and_options(legacy: Client, path: str) -> None:
    assert (await legacy.head(path)).status == 200
    assert (await legacy.options(path)).status == 200


async def test_api_post_echoes_its_json_body(legacy: Client) -> None:
    response = await legacy.post("/api/v1/websocket", json={"hello": ["world", 1]})
    assert response.status == 200
    assert (await response.json())["received"] == {"hello": ["world", 1]}


async def test_echo_hook_mirrors_status_method_headers_and_body(legacy: Client) -> None:
    response = await legacy.post("/__echo?status=418", data=b"payload", headers={"X-Test": "yes"})
    assert response.status == 418
    body = await response.json()
    assert body["method"] == "POST"
    assert body["headers"]["X-Test"] == "yes"
    assert body["body"] == "payload"
    assert body["server_id"] == "legacy"


async def test_server_id_setting_names_the_instance(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_legacy_app(replace(SETTINGS, server_id="legacy-2")))
    assert (await (await client.get("/ws/health")).json())["server_id"] == "legacy-2"


# --- unified router ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "mode"),
    [(None, "main"), ("factory", "factory"), ("isolated", "isolated"), ("x", "main")],
)
async def test_unified_greets_canonically_with_route_as_mode(
    unified: Client, route: str | None, mode: str
) -> None:
    headers = bearer() if route is None else {**bearer(), "X-Strangler-Route": route}
    async with unified.ws_connect("/v1/ws", headers=headers) as ws:
        frame = await receive_json(ws)
    assert frame["type"] == "connection_established"
    assert frame["data"]["mode"] == mode
    assert frame["data"]["connection_id"].startswith("main_")
    assert frame["server_id"] == "unified"
    assert frame["correlation_id"] is None


async def test_unified_turn_matches_legacy_main_turn(legacy: Client, unified: Client) -> None:
    turns = []
    for client, path in ((legacy, "/ws"), (unified, "/v1/ws")):
        async with client.ws_connect(path, headers=bearer()) as ws:
            await receive_json(ws)
            await ws.send_json(START)
            turns.append(await collect_turn(ws))
    assert_golden_path(turns[1])
    assert strip_volatile(turns[0]) == strip_volatile(turns[1])


async def test_unified_fails_auth_main_style(unified: Client) -> None:
    async with unified.ws_connect("/v1/ws?ticket=abc") as ws:
        frame = await receive_json(ws)
        closing = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert frame["error_code"] == "AUTH_FAILED"
    assert (closing.data, closing.extra) == (1008, "Authentication failed")


async def test_unified_handles_control_messages_and_hooks(unified: Client) -> None:
    async with unified.ws_connect("/v1/ws", headers=bearer()) as ws:
        await receive_json(ws)
        await ws.send_json({"type": "ping", "timestamp": 5})
        assert await receive_json(ws) == {"type": "pong", "data": {"timestamp": 5}}
        await ws.send_json({"type": "mystery"})
        assert (await receive_json(ws))["type"] == "ack"
        await ws.send_str("nope")
        assert (await receive_json(ws))["data"]["error_code"] == "INVALID_MESSAGE"
        await ws.send_str('{"type":"echo","payload":{}}')
        assert (await ws.receive(timeout=RECEIVE_TIMEOUT)).data == '{"type":"echo","payload":{}}'
        await ws.send_json({"type": "close_me", "payload": {"code": 4002, "reason": "done"}})
        msg = await ws.receive(timeout=RECEIVE_TIMEOUT)
    assert (msg.data, msg.extra) == (4002, "done")


async def test_unified_refuse_hook_and_handshake_records(unified: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await unified.ws_connect("/v1/ws?refuse=502", headers={"X-Strangler-Shadow": "1"})
    assert caught.value.status == 502
    record = unified.app[RECEIVED_HANDSHAKES][-1]
    assert record["path_qs"] == "/v1/ws?refuse=502"
    assert record["headers"]["X-Strangler-Shadow"] == "1"


async def test_unified_path_is_configurable(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(build_unified_app(replace(SETTINGS, unified_path="/router")))
    async with client.ws_connect("/router", headers=bearer()) as ws:
        assert (await receive_json(ws))["server_id"] == "unified"


# --- the script ----------------------------------------------------------------------------


def test_canonical_type_maps_aliases_only() -> None:
    assert canonical_type("user_input") == "user_message"
    assert canonical_type("execute_agent") == "start_agent"
    assert canonical_type("ping") == "ping"


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ({"payload": {"user_request": "a"}}, "a"),
        ({"payload": {"text": "b"}}, "b"),
        ({"payload": {"content": "c"}}, "c"),
        ({"content": "d"}, "d"),
        ({"query": "e"}, "e"),
        ({"payload": {"references": []}}, ""),
    ],
)
def test_request_text_finds_text_of_every_generation(message: dict[str, Any], text: str) -> None:
    assert request_text(message) == text


def test_golden_turn_is_deterministic_unless_varied() -> None:
    first = golden_turn("hi", run_id="r", thread_id="t")
    assert first == golden_turn("hi", run_id="r", thread_id="t")
    assert first != golden_turn("other", run_id="r", thread_id="t")
    varied = golden_turn("hi", run_id="r", thread_id="t", vary=True, rng=random.Random(1))
    assert_golden_path(varied)
    reasoning = [e["data"]["reasoning"] for e in varied if e["type"] == "agent_thinking"]
    assert reasoning != [e["data"]["reasoning"] for e in first if e["type"] == "agent_thinking"]

    def thinking_chunks(seed: int) -> int:
        turn = golden_turn("x", run_id="r", thread_id=None, vary=True, rng=random.Random(seed))
        return sum(event["type"] == "agent_thinking" for event in turn)

    assert {thinking_chunks(seed) for seed in range(50)} == {1, 2, 3}


def _upgrade_headers() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
    }


async def test_short_secret_verifies_without_warning_errors(
    aiohttp_client: ClientFactory,
) -> None:
    # Real legacy deployments may still sign with a short secret; the emulator copes.
    short = BackendSettings(jwt_secret="short-legacy-secret")
    client = await aiohttp_client(build_legacy_app(short))
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        token = jwt.encode(
            {
                "sub": "zoe",
                "exp": int(time.time()) + 60,
                "iss": "netra-auth-service",
                "aud": "netra-platform",
            },
            short.jwt_secret,
            algorithm="HS256",
        )
    async with client.ws_connect("/ws", headers=bearer(token)) as ws:
        assert (await receive_json(ws))["data"]["user_id"] == "zoe"
