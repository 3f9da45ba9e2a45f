"""The greeting is per route and configurable: a route set up with either shape greets
the same on legacy and on the unified router, heartbeats included.

The reference legacy backend is configured with the same shape per path (as a legacy
deployment that greeted that way), the proxy with `greeting:` on each route; a flag
sends alice to the unified router and bob to legacy, through one proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from strangler.legacy_adapters.canonical import strip_volatile
from strangler.proxy.config import load_config
from strangler.proxy.runtime.server import Running, start
from strangler.reference.dialects import Greeting
from strangler.reference.settings import BackendSettings
from tests.functional.conftest import SECRET, Stack, free_port, token, wait_for

# route name -> (proxy path pattern, a client's path, dialect, auth, connection_established mode)
ROUTES = {
    "main": ("/ws", "/ws", "main", "accept_then_frame", "main"),
    "main_user": ("/ws/{user_id}", "/ws/u1", "main_payload", "accept_then_frame", "main"),
    "factory": ("/ws/factory", "/ws/factory", "factory", "refuse_handshake", "factory"),
    "isolated": ("/ws/isolated", "/ws/isolated", "isolated", "accept_then_close", "isolated"),
    "legacy": ("/websocket", "/websocket", "legacy", "none", "legacy"),
}
SHAPES = ("connection_established", "system_message")
FLAGS = f"""
flags:
  unified_router:
    routes: [{", ".join(ROUTES)}]
    default: legacy
    anonymous: legacy
    targets: {{unified: [alice]}}
"""
HEARTBEAT_IDLE = 0.3  # seconds of client silence before a backend sends a heartbeat


async def start_proxy(stack: Stack, shape: str) -> Running:
    """A proxy before the stack's backends with every route set up to greet in `shape`."""
    routes = "\n".join(
        f"  - {{name: {name}, path: '{path}', dialect: {dialect}, auth: {auth}, greeting: {shape}}}"
        for name, (path, _, dialect, auth, _) in ROUTES.items()
    )
    d = stack.tmp / f"proxy-{shape}"
    d.mkdir()
    (d / "flags.yaml").write_text(FLAGS)
    (d / "strangler.yaml").write_text(
        f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {{url: "ws://127.0.0.1:{stack.legacy_port}", connect_timeout: 2}}
  unified: {{url: "ws://127.0.0.1:{stack.unified_port}/v1/ws", connect_timeout: 2}}
routes:
{routes}
flags: {{file: flags.yaml, poll_interval: 0.05}}
jwt: {{secret_env: STRANGLER_TEST_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
"""
    )
    running = await start(load_config(d / "strangler.yaml"))
    stack.proxies.append(running)
    return running


async def greeting_and_heartbeat(url: str, user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first frame a client gets, and the heartbeat that follows its silence."""
    headers = {"Authorization": f"Bearer {token(user)}"}
    async with aiohttp.ClientSession() as s, s.ws_connect(url, headers=headers) as ws:
        async with asyncio.timeout(10):
            greeting = json.loads((await ws.receive()).data)
            heartbeat = json.loads((await ws.receive()).data)
        await ws.close()
    return greeting, heartbeat


@pytest.fixture(params=SHAPES)
async def configured(request: pytest.FixtureRequest, stack: Stack) -> tuple[str, Running]:
    """The shape, and a proxy whose routes and legacy backend both greet in it."""
    shape: str = request.param
    legacy = BackendSettings(
        jwt_secret=SECRET,
        heartbeat_idle=HEARTBEAT_IDLE,
        greetings={path: Greeting(shape) for path, *_ in ROUTES.values()},
    )
    unified = BackendSettings(jwt_secret=SECRET, heartbeat_idle=HEARTBEAT_IDLE)
    await stack.backends(legacy, unified)
    return shape, await start_proxy(stack, shape)


@pytest.mark.parametrize("route", sorted(ROUTES))
async def test_a_configured_greeting_is_the_same_on_legacy_and_on_unified(
    configured: tuple[str, Running], route: str
) -> None:
    shape, proxy = configured
    _, client_path, _, _, mode = ROUTES[route]
    url = f"ws://127.0.0.1:{proxy.port}{client_path}"
    on_legacy, legacy_heartbeat = await greeting_and_heartbeat(url, "bob")
    on_unified, unified_heartbeat = await greeting_and_heartbeat(url, "alice")

    assert on_legacy.get("server_id") != "unified"  # the flag did send them apart
    assert on_unified["type"] == on_legacy["type"] == shape
    assert strip_volatile(on_unified) == strip_volatile(on_legacy)
    legacy_id = on_legacy["data"]["connection_id"]
    unified_id = on_unified["data"]["connection_id"]
    if shape == "connection_established":
        assert on_unified["data"]["mode"] == mode
        assert legacy_id.startswith(f"{mode}_") and unified_id.startswith(f"{mode}_")
    else:
        assert on_unified["data"]["event"] == "connection_established"
        assert legacy_id.startswith("ws_") and unified_id.startswith("ws_")
    # Heartbeats repeat the id the greeting gave, whichever backend answers.
    assert legacy_heartbeat["data"]["connection_id"] == legacy_id
    assert unified_heartbeat["data"]["connection_id"] == unified_id
    assert strip_volatile(unified_heartbeat) == strip_volatile(legacy_heartbeat)


async def test_an_unknown_greeting_is_refused_at_its_line(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(
        "routes:\n  - {name: legacy, path: /websocket, dialect: legacy, auth: none, "
        "greeting: hello}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "check-config",
        "-c",
        str(config),
        env={**os.environ, "STRANGLER_JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert (
        f"{config}:2:67: routes[0].greeting: must be connection_established or "
        "system_message, got 'hello'"
    ) in (out + err).decode()


async def _backend(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "backend",
        *args,
        env={**os.environ, "GREETING_TEST_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_the_legacy_backend_command_takes_a_greeting_per_path() -> None:
    port = free_port()
    proc = await _backend(
        "legacy",
        "--port",
        str(port),
        "--secret-env",
        "GREETING_TEST_SECRET",
        "--greeting",
        "/websocket=connection_established",
        "--greeting",
        "/ws=system_message",
    )

    async def healthy() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{port}/ws/health") as r,
            ):
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_for(healthy, timeout=20)
        first: dict[str, dict[str, Any]] = {}
        async with aiohttp.ClientSession() as s:
            for path in ("/websocket", "/ws/test", "/ws"):
                headers = {"Authorization": f"Bearer {token('u1')}"}
                async with s.ws_connect(f"ws://127.0.0.1:{port}{path}", headers=headers) as ws:
                    first[path] = json.loads((await ws.receive()).data)
    finally:
        proc.terminate()
        await proc.wait()
    assert first["/websocket"]["type"] == "connection_established"
    assert first["/websocket"]["data"]["mode"] == "legacy"
    assert first["/websocket"]["data"]["connection_id"].startswith("legacy_")
    assert first["/ws/test"]["type"] == "system_message"  # not named: its dialect's own
    assert first["/ws"]["type"] == "system_message"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["legacy", "--greeting", "/nowhere=system_message"], "no WebSocket path '/nowhere'"),
        (["legacy", "--greeting", "/websocket=hello"], "unknown greeting 'hello'"),
        (["unified", "--greeting", "/ws=system_message"], "applies to the legacy backend"),
    ],
)
async def test_the_backend_command_refuses_a_greeting_it_cannot_apply(
    args: list[str], problem: str
) -> None:
    proc = await _backend(*args, "--port", "1", "--secret-env", "GREETING_TEST_SECRET")
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert problem in (out + err).decode()
