"""`strangler run --workers 2` as a process: one port served by two workers, one
aggregated /metrics, a killed worker restarted, SIGTERM drains every worker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from tests.functional.conftest import (
    SECRET,
    Upstream,
    admin_ready,
    token,
    wait_for,
    write_process_config,
)

pytestmark = pytest.mark.timeout(30)

FLAGS = "flags:\n  unified_router:\n    routes: [main]\n    targets: {unified: [alice]}\n"
BOB = {"Authorization": f"Bearer {token('bob')}"}
# Enough connections that both workers get some (the kernel hashes each one's
# addresses to a worker), without making the test slow.
MAX_CONNECTIONS = 64


class Workers:
    """A running `strangler run --workers 2` and views of its admin port."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, admin: int) -> None:
        self.proc = proc
        self.port = port
        self.admin = admin
        # Read all along, so a chatty log never fills the pipe and blocks a process.
        assert proc.stderr is not None
        self.stderr = asyncio.create_task(proc.stderr.read())

    async def get(self, path: str, method: str = "GET", data: bytes = b"") -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, f"http://127.0.0.1:{self.admin}{path}", data=data) as r,
        ):
            text = await r.text()
            return r.status, (json.loads(text) if r.content_type == "application/json" else text)

    async def per_worker(self) -> dict[int, tuple[int, int]]:
        """Worker index -> (pid, open connections), from each worker's own /readyz."""
        _, body = await self.get("/readyz")
        return {
            w["worker"]: (w["pid"], w["body"]["open_connections"])
            for w in body["workers"]
            if "body" in w
        }

    async def total(self, name: str, **labels: str) -> float:
        """The sum of `name` over every series matching `labels`, from /metrics."""
        _, text = await self.get("/metrics")
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )


@pytest.fixture
async def workers(tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> AsyncIterator[Workers]:
    legacy, unified = upstreams
    port, admin = write_process_config(
        tmp_path,
        legacy_url=legacy.url,
        unified_url=f"{unified.url}/v1/ws",
        flags=FLAGS,
        extra="relay: {grace_period: 1}",
    )
    metrics_dir = tmp_path / "metrics"
    _leave_stale_counter(metrics_dir)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "run",
        "--workers",
        "2",
        "--config",
        str(tmp_path / "strangler.yaml"),
        env={
            **os.environ,
            "STRANGLER_TEST_SECRET": SECRET,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    w = Workers(proc, port, admin)
    try:
        await wait_for(lambda: admin_ready(admin), timeout=20)
        yield w
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=10)


def _leave_stale_counter(metrics_dir: Path) -> None:
    """A file as an earlier run would leave it: 1000 connections that must not count."""
    metrics_dir.mkdir()
    stale = MmapedDict(str(metrics_dir / "counter_999999.db"))  # type: ignore[no-untyped-call]
    key = mmap_key(
        "strangler_connections",
        "strangler_connections_total",
        ["route", "mode", "outcome"],
        ["main", "legacy", "client_closed"],
        "stale",
    )
    stale.write_value(key, 1000.0, 0.0)  # type: ignore[no-untyped-call]
    stale.close()  # type: ignore[no-untyped-call]


async def _connect(s: aiohttp.ClientSession, port: int) -> aiohttp.ClientWebSocketResponse:
    """A legacy-mode connection that has had an answer, so a worker holds it."""
    ws = await s.ws_connect(f"ws://127.0.0.1:{port}/ws", headers=BOB)
    await ws.send_str("who")
    assert json.loads((await ws.receive()).data) == {"backend": "legacy"}
    return ws


async def _answers(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Whether the connection still gets answers (its worker alive)."""
    try:
        await ws.send_str("who")
        msg = await asyncio.wait_for(ws.receive(), timeout=5)
    except aiohttp.ClientError:
        return False
    return msg.type is aiohttp.WSMsgType.TEXT


async def _connect_until_both_workers_serve(
    s: aiohttp.ClientSession, w: Workers
) -> list[aiohttp.ClientWebSocketResponse]:
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    while len(sockets) < MAX_CONNECTIONS:
        sockets.append(await _connect(s, w.port))
        if len(sockets) >= 4 and all(n > 0 for _, n in (await w.per_worker()).values()):
            return sockets
    raise AssertionError("every connection went to the same worker")


async def test_connections_spread_over_both_workers_and_metrics_count_each_once(
    workers: Workers,
) -> None:
    async with AsyncExitStack() as stack:
        s = await stack.enter_async_context(aiohttp.ClientSession())
        sockets = await _connect_until_both_workers_serve(s, workers)
        k = len(sockets)
        per_worker = await workers.per_worker()
        assert len(per_worker) == 2
        assert sum(n for _, n in per_worker.values()) == k
        assert await workers.total("strangler_connections_open", route="main") == k
        for ws in sockets:
            await ws.close()

    async def all_ended() -> bool:
        return await workers.total("strangler_connections_total", route="main") == k

    await wait_for(all_ended)
    assert await workers.total("strangler_connections_open") == 0

    # Messages and decisions are tallied inside each worker and flushed by its own
    # once-a-second tick: the supervisor's scrape cannot flush them. One "who" each way.
    async def all_tallied() -> bool:
        sent = await workers.total(
            "strangler_messages_total", route="main", direction="client_to_backend"
        )
        answered = await workers.total(
            "strangler_messages_total", route="main", direction="backend_to_client"
        )
        decided = await workers.total("strangler_flag_evaluations_total", mode="legacy")
        return sent == answered == decided == k

    await wait_for(all_tallied)
    assert await workers.total("strangler_worker_up") == 2
    assert await workers.total("strangler_worker_resident_memory_bytes") > 0


async def test_admin_requests_reach_every_worker_and_come_back_as_one_answer(
    workers: Workers,
) -> None:
    status, body = await workers.get("/flags/status")
    assert status == 200
    assert [w["worker"] for w in body["workers"]] == [0, 1]
    assert len({w["body"]["hash"] for w in body["workers"]}) == 1
    # The global shadow switch is per process: the supervisor flips it in every worker.
    status, body = await workers.get("/shadow?enabled=false", method="POST")
    assert status == 200
    _, body = await workers.get("/shadow")
    assert [w["body"]["enabled"] for w in body["workers"]] == [False, False]
    # A candidate flag file every worker rejects is rejected once, with each reason.
    status, body = await workers.get("/flags/plan", method="POST", data=b"flags: [")
    assert status == 400
    assert all("not valid YAML" in w["body"]["error"] for w in body["workers"])
    # A page cannot be merged: it is worker 0's.
    status, page = await workers.get("/status")
    assert status == 200
    assert page.lstrip().lower().startswith("<!doctype html")


async def test_a_killed_worker_is_restarted_and_its_connections_leave_the_gauge(
    workers: Workers,
) -> None:
    async with aiohttp.ClientSession() as s:
        sockets = await _connect_until_both_workers_serve(s, workers)
        before = await workers.per_worker()
        dead_pid, lost = before[1]
        os.kill(dead_pid, signal.SIGKILL)

        async def replaced() -> bool:
            now = await workers.per_worker()
            return 1 in now and now[1][0] != dead_pid and await admin_ready(workers.admin)

        await wait_for(replaced, timeout=10)
        # Worker 0's connections live on; worker 1's died with it and are not counted.
        assert await workers.total("strangler_connections_open") == len(sockets) - lost
        assert await workers.total("strangler_worker_restarts_total", worker="1") == 1
        survivors = [ws for ws in sockets if await _answers(ws)]
        assert len(survivors) == len(sockets) - lost
        # The port keeps serving, the new worker included.
        fresh = await _connect_until_both_workers_serve(s, workers)
        assert (await workers.per_worker())[1][1] > 0
        for ws in [*survivors, *fresh]:
            await ws.close()


async def test_sigterm_drains_every_worker_then_the_supervisor_exits_zero(
    workers: Workers,
) -> None:
    async with aiohttp.ClientSession() as s:
        sockets = await _connect_until_both_workers_serve(s, workers)
        workers.proc.send_signal(signal.SIGTERM)

        async def all_draining() -> bool:
            _, body = await workers.get("/readyz")
            draining = [w["body"]["draining"] for w in body["workers"] if "body" in w]
            return draining == [True, True]

        await wait_for(all_draining)
        # Inside the grace period: open connections work, new handshakes get 503.
        for ws in sockets:
            await ws.send_str("who")
            assert json.loads((await ws.receive()).data) == {"backend": "legacy"}
        for _ in range(8):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await s.ws_connect(f"ws://127.0.0.1:{workers.port}/ws", headers=BOB)
            assert refused.value.status == 503
        for ws in sockets:
            msg = await asyncio.wait_for(ws.receive(), timeout=10)
            # The code the worker sent (read one by one, a client's reply may come late).
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
    assert await asyncio.wait_for(workers.proc.wait(), timeout=10) == 0
    stderr = (await workers.stderr).decode()
    assert "Traceback" not in stderr
    assert stderr.count("stopped") >= 3  # both workers and the supervisor
