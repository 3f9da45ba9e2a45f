"""The proxy as a process: signals, graceful shutdown, and a log free of tracebacks."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.functional.conftest import (
    SECRET,
    StartProxy,
    Upstream,
    admin_ready,
    token,
    wait_for,
    write_process_config,
)

FLAGS = "flags:\n  unified_router:\n    routes: [main]\n    targets: {unified: [alice]}\n"


class ProxyProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, admin: int) -> None:
        self.proc = proc
        self.port = port
        self.admin = admin

    async def metric_lines(self) -> list[str]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{self.admin}/metrics") as r,
        ):
            return (await r.text()).splitlines()


async def spawn(
    tmp_path: Path, legacy: Upstream, unified: Upstream, tunnel: str = "auto"
) -> ProxyProcess:
    port, admin = write_process_config(
        tmp_path,
        legacy_url=legacy.url,
        unified_url=f"{unified.url}/v1/ws",
        flags=FLAGS,
        extra=f"relay: {{grace_period: 1.5, tunnel: {tunnel}}}",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "run",
        "--config",
        str(tmp_path / "strangler.yaml"),
        env={**os.environ, "STRANGLER_TEST_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    p = ProxyProcess(proc, port, admin)
    await wait_for(lambda: admin_ready(admin), timeout=20)
    return p


@pytest.mark.parametrize("tunnel", ["auto", "off"], ids=["tunnel", "per_frame"])
async def test_sigterm_refuses_new_handshakes_then_closes_open_ones_with_1001(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream], tunnel: str
) -> None:
    p = await spawn(tmp_path, *upstreams, tunnel=tunnel)
    bob = {"Authorization": f"Bearer {token('bob')}"}
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bob)
        p.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        # Still inside the grace period: the open connection works, new ones get 503.
        await ws.send_str("who")
        assert json.loads((await ws.receive()).data) == {"backend": "legacy"}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(f"ws://127.0.0.1:{p.port}/ws", headers=bob)
        assert refused.value.status == 503
        msg = await asyncio.wait_for(ws.receive(), timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1001
    assert await asyncio.wait_for(p.proc.wait(), timeout=10) == 0
    stderr = (await p.proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert "Traceback" not in stderr


async def test_sighup_applies_an_edited_flags_file_at_once(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream]
) -> None:
    p = await spawn(tmp_path, *upstreams)  # polling every 60 s: only SIGHUP can do it
    try:
        (tmp_path / "flags.yaml").write_text(FLAGS.replace("[alice]", "[alice, bob]"))
        p.proc.send_signal(signal.SIGHUP)

        async def applied() -> bool:
            return 'strangler_flag_reloads_total{result="applied"} 2.0' in await p.metric_lines()

        await wait_for(applied)
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                f"ws://127.0.0.1:{p.port}/ws", headers={"Authorization": f"Bearer {token('bob')}"}
            ) as ws,
        ):
            await ws.send_str("who")
            assert json.loads((await ws.receive()).data) == {"backend": "unified"}
    finally:
        p.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(p.proc.wait(), timeout=10)


async def test_client_vanishing_mid_flood_leaves_no_traceback_in_the_log(
    start_proxy: StartProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    p = await start_proxy()
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", p.running.port)
        writer.write(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token('bob')}\r\n\r\n"
            ).encode()
        )
        await reader.readuntil(b"\r\n\r\n")
        # A masked text frame "flood 2000 4096", then vanish while the backend floods.
        payload = b"flood 2000 4096"
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        await reader.readexactly(4096)
        writer.transport.abort()
    await wait_for(lambda: _connections_ended(p, 5))
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == []


async def _connections_ended(p: object, n: int) -> bool:
    from tests.functional.conftest import ProxyUnderTest

    assert isinstance(p, ProxyUnderTest)
    total = sum(
        v
        for (name, labels), v in (await p.metrics()).items()
        if name == "strangler_connections_total"
    )
    return total >= n


async def test_metrics_carry_no_created_series(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream]
) -> None:
    # A counter and a histogram have been touched: each would bring a `_created` gauge.
    p = await spawn(tmp_path, *upstreams)
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                f"ws://127.0.0.1:{p.port}/ws", headers={"Authorization": f"Bearer {token('bob')}"}
            ) as ws,
        ):
            await ws.send_str("who")
            await ws.receive()
        lines = await p.metric_lines()
        assert any(line.startswith("strangler_upstream_connect_seconds_count") for line in lines)
        assert any(line.startswith("strangler_flag_reloads_total") for line in lines)
        assert [line for line in lines if "_created" in line] == []
    finally:
        p.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(p.proc.wait(), timeout=10)


def _held_port() -> socket.socket:
    """A loopback port another program listens on (no SO_REUSEPORT: nobody can share it)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


@pytest.mark.parametrize(
    ("key", "listener", "workers"),
    [
        ("listen", "proxy port", []),
        ("admin_listen", "admin port", []),
        ("listen", "proxy port", ["--workers", "2"]),
        ("admin_listen", "admin port", ["--workers", "2"]),
    ],
    ids=["proxy", "admin", "workers_proxy", "workers_admin"],
)
async def test_a_taken_port_is_named_with_its_listener_and_exits_2(
    tmp_path: Path, key: str, listener: str, workers: list[str]
) -> None:
    write_process_config(
        tmp_path, legacy_url="ws://127.0.0.1:9", unified_url="ws://127.0.0.1:9/v1/ws", flags=FLAGS
    )
    config = tmp_path / "strangler.yaml"
    with _held_port() as holder:
        held = holder.getsockname()[1]
        text = re.sub(rf"^{key}: .*$", f"{key}: 127.0.0.1:{held}", config.read_text(), flags=re.M)
        config.write_text(text)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "strangler.proxy",
            "run",
            "--config",
            str(config),
            *workers,
            env={**os.environ, "STRANGLER_TEST_SECRET": SECRET},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    stderr = err.decode()
    expected = (
        f"strangler: cannot listen: {listener} 127.0.0.1:{held} ({key}): Address already in use"
    )
    assert proc.returncode == 2, stderr
    assert expected in stderr.splitlines(), stderr
    assert "Traceback" not in stderr
