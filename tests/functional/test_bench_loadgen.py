"""The benchmark's load generator (bench/loadgen) builds and speaks real WebSocket.

Not a benchmark: it proves the C echo upstream passes aiohttp's handshake checks and
echoes every opcode, and that each load mode completes round trips, handshakes and
idle connections against it without errors, so bench/run.sh measures what it claims.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.functional.conftest import free_port

LOADGEN = Path(__file__).resolve().parents[2] / "bench" / "loadgen"

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (bench/loadgen is C)")
    binary = tmp_path_factory.mktemp("loadgen") / "loadgen"
    subprocess.run(
        [
            gcc,
            "-O2",
            "-Wall",
            "-std=c11",
            "-o",
            str(binary),
            str(LOADGEN / "loadgen.c"),
            str(LOADGEN / "sha1.c"),
        ],
        check=True,
        timeout=60,
    )
    return binary


@pytest.fixture
async def echo(loadgen: Path) -> AsyncIterator[int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(loadgen), "echo", "--port", str(port), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 10)) == {"listening": port}
    yield port
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 10)


async def run(loadgen: Path, *args: str, stdin: bytes | None = None) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        str(loadgen),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin or b""), 20)
    assert proc.returncode == 0
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_echo_upstream_passes_aiohttp_handshake_checks_and_echoes_every_opcode(
    echo: int,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{echo}/ws", autoping=False) as ws,
    ):
        await ws.send_str('{"type": "user_message"}')
        assert (await ws.receive_str(timeout=5)) == '{"type": "user_message"}'
        big = bytes(range(256)) * 300  # a 64-bit length header, masked by the client
        await ws.send_bytes(big)
        assert (await ws.receive_bytes(timeout=5)) == big
        await ws.ping(b"p")
        pong = await ws.receive(timeout=5)
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"p")
        await ws.close(code=4001, message=b"bye")
        assert ws.close_code == 4001


async def test_round_trips_are_counted_with_latency_and_no_errors(loadgen: Path, echo: int) -> None:
    lines = await run(
        loadgen,
        "rtt",
        "--port",
        str(echo),
        "--path",
        "/ws",
        "--conns",
        "4",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
        "--header",
        "Authorization: Bearer x",
    )
    assert [line.get("mark") for line in lines[:2]] == ["start", "end"]
    report = lines[-1]
    assert report["errors"] == 0, report["first_error"]
    assert report["open"] == 4
    assert report["messages"] > 0
    assert 0 < report["p50_us"] <= report["p99_us"]


async def test_handshake_cycles_close_cleanly(loadgen: Path, echo: int) -> None:
    lines = await run(
        loadgen,
        "handshakes",
        "--port",
        str(echo),
        "--path",
        "/ws",
        "--conns",
        "4",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
    )
    report = lines[-1]
    assert report["errors"] == 0, report["first_error"]
    assert report["cycles"] > 0


async def test_idle_connections_are_held_until_stdin_closes(loadgen: Path, echo: int) -> None:
    lines = await run(loadgen, "idle", "--port", str(echo), "--path", "/ws", "--conns", "50")
    opened, closed = lines
    assert (opened["open"], opened["errors"]) == (50, 0)
    assert closed == {"mode": "idle_closed", "held": 50, "still_open": 0}


async def test_a_refused_connection_is_reported_as_an_error(loadgen: Path) -> None:
    # Nothing listens on this port: the load generator says so instead of hanging.
    lines = await run(
        loadgen,
        "rtt",
        "--port",
        str(free_port()),
        "--conns",
        "1",
        "--duration",
        "0.2",
        "--warmup",
        "0",
    )
    report = lines[-1]
    assert report["errors"] == 1
    assert report["messages"] == 0
