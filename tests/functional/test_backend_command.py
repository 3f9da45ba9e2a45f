"""`strangler backend legacy|unified`: each reference backend alone, as a process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from strangler.proxy.edge.identity import mint_token
from tests.functional.conftest import free_port, wait_for

SECRET = "backend-command-secret-of-thirty-two-bytes"
GOLDEN_PATH = ["agent_started", "agent_thinking", "tool_executing", "tool_completed"]


async def _healthy(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def _start(kind: str, port: int, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "backend",
        kind,
        "--port",
        str(port),
        "--secret-env",
        "BACKEND_TEST_SECRET",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[int]:
    kind, health = request.param
    port = free_port()
    proc = await _start(kind, port, {"BACKEND_TEST_SECRET": SECRET})
    try:
        await wait_for(lambda: _healthy(f"http://127.0.0.1:{port}{health}"), timeout=20)
        yield port
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
        assert proc.stderr is not None
        assert "Traceback" not in (await proc.stderr.read()).decode()


async def _one_turn(url: str) -> list[str]:
    token = mint_token(SECRET, "ada")
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        types = [json.loads((await ws.receive()).data)["type"]]
        await ws.send_str(json.dumps({"type": "start_agent", "payload": {"user_request": "Hi"}}))
        async with asyncio.timeout(10):
            while types[-1] not in ("agent_completed", "agent_error"):
                types.append(json.loads((await ws.receive()).data)["type"])
    return types


@pytest.mark.parametrize("backend", [("unified", "/health")], indirect=True)
async def test_unified_router_runs_alone_and_answers_a_golden_turn(backend: int) -> None:
    types = await _one_turn(f"ws://127.0.0.1:{backend}/v1/ws")
    assert types[0] == "connection_established"
    assert all(t in types for t in GOLDEN_PATH) and types[-1] == "agent_completed"


@pytest.mark.parametrize("backend", [("legacy", "/ws/health")], indirect=True)
async def test_legacy_backend_runs_alone_and_serves_the_legacy_routes(backend: int) -> None:
    types = await _one_turn(f"ws://127.0.0.1:{backend}/ws/factory")
    assert types[0] == "connection_established"
    assert all(t in types for t in GOLDEN_PATH) and types[-1] == "agent_completed"


async def test_backend_without_its_secret_exits_2_saying_which_variable() -> None:
    proc = await _start("legacy", free_port(), {"BACKEND_TEST_SECRET": ""})
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    assert "BACKEND_TEST_SECRET" in out.decode()
    assert "Traceback" not in err.decode()
