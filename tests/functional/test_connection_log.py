"""`strangler run` with `logging: {format: json}`: one JSON line when a connection opens
and one when it closes, with route, mode and outcome, and never the user or the token."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.functional.conftest import (
    SECRET,
    Upstream,
    admin_ready,
    token,
    wait_for,
    write_process_config,
)

USER = "u-log-8d2f1c"  # distinctive, so finding it anywhere in the log means a leak
OTHER = "u-log-legacy-3b7e90"  # stays on legacy: its bytes take the byte tunnel
FLAGS = f"""
flags:
  unified_router:
    routes: [main, main_user]
    targets: {{unified: [{USER}]}}
"""


class LogReader:
    """Collects a subprocess's stderr lines as they arrive."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self.task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode().rstrip("\n"))

    def records(self, logger: str) -> list[dict[str, Any]]:
        out = []
        for line in self.lines:
            data = json.loads(line)  # every line is one JSON object
            if data.get("logger") == logger:
                out.append(data)
        return out


async def test_json_log_has_one_open_and_one_close_line_per_connection_without_user_or_token(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream]
) -> None:
    legacy, unified = upstreams
    port, admin = write_process_config(
        tmp_path,
        legacy_url=legacy.url,
        unified_url=f"{unified.url}/v1/ws",
        flags=FLAGS,
        extra="logging: {format: json, level: info}",
    )
    env = {k: v for k, v in os.environ.items() if k != "STRANGLER_LOG_LEVEL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "run",
        "--config",
        str(tmp_path / "strangler.yaml"),
        env={**env, "STRANGLER_TEST_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    log = LogReader(proc.stderr)
    secret_token, other_token = token(USER), token(OTHER)
    try:
        await wait_for(lambda: admin_ready(admin), timeout=15)
        # The path carries the user id, the header the token: neither may reach the log.
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                f"ws://127.0.0.1:{port}/ws/{USER}",
                headers={"Authorization": f"Bearer {secret_token}"},
            ) as ws,
        ):
            await ws.close(code=4000, message=b"bye")
        assert [h["headers"]["X-Strangler-Route"] for h in unified.handshakes] == ["main_user"]
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(
                f"ws://127.0.0.1:{port}/ws", headers={"Authorization": f"Bearer {other_token}"}
            ) as ws,
        ):
            await ws.send_str("who")
            assert json.loads((await ws.receive()).data) == {"backend": "legacy"}
            await ws.send_str("close 4001 backend done")  # this time the backend closes
            assert (await ws.receive()).data == 4001

        async def closed_logged() -> bool:
            return sum('"connection closed"' in line for line in log.lines) >= 2

        await wait_for(closed_logged, timeout=10)
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(15):
            await proc.wait()
            await log.task

    connections = log.records("strangler.connections")
    assert [r["message"] for r in connections] == ["connection opened", "connection closed"] * 2
    translated = {
        "level": "info",
        "route": "main_user",
        "mode": "unified",
        "reason": "target",
        "flag": "unified_router",
        "backend": "unified",
        "dialect": "main_payload",
    }
    tunnelled = {**translated, "route": "main", "mode": "legacy", "reason": "default"}
    tunnelled.update(backend="legacy", dialect="main")
    for rec, expected in zip(connections, [translated] * 2 + [tunnelled] * 2, strict=True):
        assert {k: rec.get(k) for k in expected} == expected
        assert rec["time"].endswith("Z")
    for closed, outcome, code in (
        (connections[1], "client_closed", 4000),
        (connections[3], "backend_closed", 4001),
    ):
        assert closed["outcome"] == outcome
        assert closed["close_code"] == code
        assert 0 <= closed["duration_s"] < 60
    assert proc.returncode == 0
    everything = "\n".join(log.lines)
    for secret in (USER, OTHER, secret_token, other_token):
        assert secret not in everything
        assert secret.split(".")[-1] not in everything  # not even a token's signature
    assert secret_token.split(".")[1] not in everything  # nor its claims
    assert "Traceback" not in everything
