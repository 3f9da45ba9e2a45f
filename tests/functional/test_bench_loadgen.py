"""The benchmark's load generator (bench/loadgen) builds and speaks real WebSocket.

Not a benchmark: it proves the C echo upstream passes aiohttp's handshake checks and
echoes every opcode, and that each load mode completes round trips, handshakes and
idle connections against it without errors, so bench/run.sh measures what it claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.functional.conftest import free_port

BENCH = Path(__file__).resolve().parents[2] / "bench"
LOADGEN = BENCH / "loadgen"

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


@contextlib.asynccontextmanager
async def echo_upstream(loadgen: Path, *args: str) -> AsyncIterator[int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(loadgen), "echo", "--port", str(port), *args, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    assert json.loads(await asyncio.wait_for(proc.stdout.readline(), 10)) == {"listening": port}
    try:
        yield port
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


@pytest.fixture
async def echo(loadgen: Path) -> AsyncIterator[int]:
    async with echo_upstream(loadgen) as port:
        yield port


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


async def test_a_turn_playing_echo_answers_a_request_with_the_golden_path(loadgen: Path) -> None:
    """The five events in order, stamped with a run id of their own turn and upstream
    (two backends differ in it, as real ones do: docs/PROTOCOL.md's volatile fields),
    and the same turn bench/compare_path.py feeds the comparison."""
    compare_path = _compare_path()
    turns: list[list[str]] = []
    async with (
        echo_upstream(loadgen, "--turns", "1") as port,
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{port}/ws") as ws,
    ):
        for _ in range(2):
            await ws.send_str('{"type": "user_message", "payload": {"text": "hi"}}')
            turns.append([await ws.receive_str(timeout=5) for _ in range(5)])
    run_ids = []
    for turn in turns:
        events = [json.loads(frame) for frame in turn]
        assert [e["type"] for e in events] == [
            "agent_started",
            "agent_thinking",
            "tool_executing",
            "tool_completed",
            "agent_completed",
        ]
        ids = {e["payload"]["run_id"] for e in events}
        assert len(ids) == 1
        run_ids.append(ids.pop())
        expected = [t.replace(b"%s", run_ids[-1].encode()).decode() for t in compare_path.EVENTS]
        assert turn == expected
    assert run_ids[0] != run_ids[1]


def test_the_comparison_bench_judges_each_of_its_turns_a_match() -> None:
    """bench/compare_path.py measures the path that judges a turn, not one that stops
    early: every turn it feeds comes out MATCH (with its run ids tolerated)."""
    assert _compare_path().run_turns(20, "main")["turns"] == 20


def _compare_path() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        import compare_path  # bench/ is not a package
    finally:
        sys.path.remove(str(BENCH))
    return compare_path


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
