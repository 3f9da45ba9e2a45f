"""The promise to existing clients: nothing they can observe changes when a release
manager moves them from legacy to the unified router.

For every route and dialect the same scripted session runs through two proxies in
front of the same reference backends, one sending everyone to legacy, one sending
everyone to the unified router. Frames (volatile fields removed), the subprotocol and
the close code must be identical, and every turn passes the legacy golden-path checks.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from strangler.proxy.runtime.server import Running
from strangler.reference.app_state import RECEIVED_HANDSHAKES
from tests.functional.conftest import ALL_ROUTES, Stack, metric, token

# LEGACY_SURFACE.md: never meaningful in a comparison. server_id names the instance.
VOLATILE = frozenset(
    {
        "timestamp",
        "connection_id",
        "run_id",
        "thread_id",
        "request_id",
        "message_id",
        "user_id",
        "execution_time_ms",
        "duration",
        "stats",
        "attempt",
        "server_time",
        "server_id",
    }
)
GOLDEN = ("agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed")


def strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Client:
    """How a route's usual clients connect."""

    path: str
    protocols: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    query_token: str | None = None  # name of the query parameter carrying the token


def usual_clients(user: str) -> dict[str, Client]:
    jwt = token(user)
    bearer = (("Authorization", f"Bearer {jwt}"),)
    return {
        "main/browser": Client("/ws", ("jwt-auth", f"jwt.{b64(jwt)}")),
        "api/bearer": Client("/api/v1/websocket", headers=bearer),
        "main_user/query": Client("/ws/u-42", query_token="token"),
        "main_v1/subprotocol": Client("/ws/v1/u-42", (f"bearer.{jwt}",)),
        "factory/bearer": Client("/ws/factory", headers=bearer),
        "isolated/jwt-auth": Client("/ws/isolated", (f"jwt-auth.{jwt}",)),
        "legacy/none": Client("/websocket"),
        "legacy_test/none": Client("/ws/test"),
        "main?mode=factory": Client("/ws?mode=factory", headers=bearer),
        "main?mode=isolated": Client("/ws?mode=isolated", headers=bearer),
        "main?mode=legacy": Client("/ws?mode=legacy"),
        "main/ua-isolated": Client("/ws", headers=(*bearer, ("User-Agent", "isolated-runner/1.0"))),
        "api?mode=factory": Client("/api/v1/websocket?mode=factory", query_token="access_token"),
    }


# (message, what ends its answer): a turn ends with agent_completed; others with one frame.
SCRIPT: list[tuple[str, str]] = [
    (
        json.dumps(
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
        json.dumps(
            {"type": "user_message", "payload": {"text": "Hi", "references": [], "thread_id": "t1"}}
        ),
        "turn",
    ),
    (json.dumps({"type": "user", "payload": {"content": "and storage?"}}), "turn"),
    (
        json.dumps(
            {
                "type": "chat_message",
                "content": "flat one",
                "user_id": "u",
                "thread_id": "t",
                "run_id": "r",
                "timestamp": 1726000000.0,
            }
        ),
        "turn",
    ),
    (
        json.dumps(
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
    (json.dumps({"type": "execute_agent", "payload": {"user_request": "again"}}), "turn"),
    (json.dumps({"type": "ping", "timestamp": 1726000000000}), "one"),
    (json.dumps({"type": "frobnicate", "payload": {"x": 1}}), "one"),
    (json.dumps({"type": "stop_agent", "payload": {}}), "one"),
    ("this is not json", "one"),
]


@dataclass
class Observed:
    protocol: str | None
    frames: list[Any]
    close_code: int | None
    turns: list[list[str]]


async def run_script(url: str, client: Client) -> Observed:
    frames: list[Any] = []
    turns: list[list[str]] = []
    params = {}
    if client.query_token:
        params[client.query_token] = token("contract-user")
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(
            url + client.path,
            protocols=client.protocols,
            headers=dict(client.headers),
            params=params,
        )
        async with asyncio.timeout(20):
            frames.append(json.loads((await ws.receive()).data))  # the greeting
            for message, ends in SCRIPT:
                await ws.send_str(message)
                types: list[str] = []
                while True:
                    frame = json.loads((await ws.receive()).data)
                    frames.append(frame)
                    types.append(frame.get("type"))
                    if ends == "one" or frame.get("type") in ("agent_completed", "agent_error"):
                        break
                if ends == "turn":
                    turns.append(types)
            await ws.close(code=1000, message=b"done")
        return Observed(ws.protocol, [strip(f) for f in frames], ws.close_code, turns)


@pytest.fixture
async def proxies(stack: Stack) -> tuple[Running, Running]:
    """Two proxies before the same backends: everyone on legacy, everyone on unified."""
    await stack.backends()
    return tuple(  # type: ignore[return-value]
        [
            await stack.proxy(
                f"flags:\n  everyone:\n    routes: {ALL_ROUTES}\n"
                f"    default: {mode}\n    anonymous: {mode}\n",
                name=mode,
            )
            for mode in ("legacy", "unified")
        ]
    )


@pytest.mark.parametrize("name", sorted(usual_clients("x")))
async def test_client_observes_the_same_session_on_legacy_and_on_unified(
    proxies: tuple[Running, Running], name: str
) -> None:
    client = usual_clients("contract-user")[name]
    on_legacy = await run_script(f"ws://127.0.0.1:{proxies[0].port}", client)
    on_unified = await run_script(f"ws://127.0.0.1:{proxies[1].port}", client)

    assert on_unified.protocol == on_legacy.protocol
    assert on_unified.close_code == on_legacy.close_code == 1000
    for observed in (on_legacy, on_unified):
        for types in observed.turns:
            # The golden-path checks of the legacy test suite.
            assert set(GOLDEN) <= set(types)
            assert types[0] == "agent_started" and types[-1] == "agent_completed"
            assert types.count("tool_executing") == types.count("tool_completed")
    assert len(on_legacy.frames) == len(on_unified.frames)
    for i, (legacy_frame, unified_frame) in enumerate(
        zip(on_legacy.frames, on_unified.frames, strict=True)
    ):
        assert unified_frame == legacy_frame, f"frame {i} differs"


async def ticket_session(port: int, user: str) -> tuple[str, str]:
    """A ticket from the legacy backend (through the proxy), then a connection with it:
    (which server greeted, for whom)."""
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"http://127.0.0.1:{port}/api/websocket/ticket",
            headers={"Authorization": f"Bearer {token(user)}"},
        ) as r:
            ticket = (await r.json())["ticket"]
        async with s.ws_connect(f"ws://127.0.0.1:{port}/ws", params={"ticket": ticket}) as ws:
            greeting = json.loads((await ws.receive()).data)
    data = greeting["data"]
    return greeting.get("server_id") or "legacy", data["user_id"]


async def test_a_ticket_connection_goes_to_legacy_whatever_the_flags_say(
    proxies: tuple[Running, Running],
) -> None:
    """Only the legacy backend redeems tickets (backends.unified.redeems_tickets: false, the
    default): the flags put everyone on unified, the ticket's user is served by legacy."""
    server, user = await ticket_session(proxies[1].port, "ticket-user")
    assert server != "unified" and user == "ticket-user"
    evaluations = await metric(
        proxies[1].admin_port,
        "strangler_flag_evaluations_total",
        flag="everyone",
        mode="legacy",
        reason="ticket",
    )
    assert evaluations == 1


@pytest.mark.parametrize(("mode", "served_by"), [("unified", "unified"), ("live", "unified")])
async def test_a_router_that_redeems_tickets_gets_its_ticket_users_alone(
    stack: Stack, mode: str, served_by: str
) -> None:
    """With redeems_tickets the flags decide again, but never two backends for one
    single-use ticket: live mode serves from the router without a legacy secondary."""
    await stack.backends()
    proxy = await stack.proxy(
        f"flags:\n  everyone:\n    routes: {ALL_ROUTES}\n    default: {mode}\n",
        extra="",
        unified_redeems_tickets=True,
    )
    server, user = await ticket_session(proxy.port, "ticket-user")
    assert server == served_by and user == "ticket-user"
    reason = "ticket" if mode == "live" else "default"
    evaluations = await metric(
        proxy.admin_port,
        "strangler_flag_evaluations_total",
        flag="everyone",
        mode="unified",
        reason=reason,
    )
    assert evaluations == 1


async def test_a_ticket_connection_in_shadow_mode_has_no_secondary(stack: Stack) -> None:
    await stack.backends()
    proxy = await stack.proxy(
        f"flags:\n  everyone:\n    routes: {ALL_ROUTES}\n    default: shadow\n",
        unified_redeems_tickets=True,
    )
    server, _ = await ticket_session(proxy.port, "ticket-user")
    assert server != "unified"
    assert stack.unified_app is not None
    assert stack.unified_app[RECEIVED_HANDSHAKES] == []  # no secondary redeemed it twice
    evaluations = await metric(
        proxy.admin_port,
        "strangler_flag_evaluations_total",
        flag="everyone",
        mode="legacy",
        reason="ticket",
    )
    assert evaluations == 1
