"""A fleet of replicas: three `strangler run` processes, one real Prometheus scraping
them every second, shared reference backends, and each replica's flags mounted as a
Kubernetes ConfigMap volume (`flags.yaml -> ..data/flags.yaml`, `..data` swapped).

In order, one fleet's life:
1. every replica gives each user the same mode (10,000 users on the files they serve;
   a sample through real handshakes, judged by which backend saw each user's token);
2. a divergent unified router seen through one replica's traffic trips the fleet guard,
   and every replica holds the flag on legacy (reason `guard`);
3. a new file reaches two replicas, not the third: `flags status --fleet` says skew
   (exit 1) and the skew alert fires on those very series under `promtool test rules`;
   the file's fleet-wide drain rate is shared by the three replicas Prometheus sees;
4. with Prometheus stopped, replicas keep serving, say the fleet guard is down (gauge,
   one WARNING line) and fall back to their local guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from strangler.flags.evaluate import evaluate
from strangler.flags.load import parse_flags
from strangler.reference.app_state import RECEIVED_HANDSHAKES
from strangler.reference.settings import BackendSettings
from tests.dashboards.conftest import require
from tests.dashboards.promql import RULE_FILES
from tests.functional.conftest import (
    SECRET,
    Stack,
    admin_ready,
    free_port,
    scrape,
    token,
    wait_for,
    write_process_config,
)

pytestmark = pytest.mark.timeout(120)

POLL = 1.0  # fleet.poll_interval, and Prometheus's scrape and rule intervals
USERS = 10_000
SAMPLE = 60  # users sent through real handshakes on every replica

FILE_A = """
flags:
  unified_router:
    routes: [main]
    rollout: {unified: 50}
    targets: {shadow: [sam]}
    guard: {max_mismatch_ratio: 0.2, min_samples: 8, window: 120, source: fleet}
"""
# Everyone unified (the guard starts afresh: a new file), drained at 3/s fleet-wide.
FILE_B = FILE_A.replace("{unified: 50}", "{unified: 100}").replace(
    "    guard:", "    on_change: {drain: {fleet_rate: 3}}\n    guard:"
)


# A user whose bucket is in FILE_A's unified 50%.
UNIFIED_USER = next(
    user
    for user in (f"u{i}" for i in range(100))
    if evaluate(parse_flags(FILE_A.encode(), "a"), "main", user, {}).mode.value == "unified"
)


@dataclass
class Replica:
    index: int
    port: int
    admin: int
    flags_dir: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def status(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{self.admin}/flags/status") as r,
        ):
            body: dict[str, Any] = await r.json()
            return body

    async def trip(self) -> dict[str, Any] | None:
        trip: dict[str, Any] | None = (await self.status())["guards"]["unified_router"]["trip"]
        return trip

    async def guard_decisions(self) -> float:
        samples = await scrape(self.admin)
        return sum(
            v
            for (name, labels), v in samples.items()
            if name == "strangler_flag_evaluations_total" and ("reason", "guard") in labels
        )

    async def fleet_up(self) -> float:
        return (await scrape(self.admin))[("strangler_fleet_guard_up", ())]

    def log_lines(self, needle: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if needle in line]


def publish(flags_dir: Path, text: str, version: str) -> None:
    """What the kubelet does for a ConfigMap volume: write the new version beside the
    old one, then swap `..data` in one rename, so the proxy never sees half of it."""
    versioned = flags_dir / f"..{version}"
    versioned.mkdir()
    (versioned / "flags.yaml").write_text(text)
    tmp = flags_dir / "..data_tmp"
    tmp.symlink_to(versioned.name)
    os.replace(tmp, flags_dir / "..data")
    link = flags_dir / "flags.yaml"
    if not link.is_symlink():
        link.symlink_to("..data/flags.yaml")


@contextlib.contextmanager
def prometheus(tmp: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A real Prometheus scraping, every second, the targets `scrape` names."""
    binary = require("prometheus")
    d = tmp / "prometheus"
    d.mkdir()
    (d / "targets.json").write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "strangler",
                "file_sd_configs": [{"files": [str(d / "targets.json")], "refresh_interval": "1s"}],
            }
        ],
    }
    (d / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (d / "prometheus.log").open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


async def query(url: str, expr: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/api/v1/query", data={"query": expr}) as r,
    ):
        body = await r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@contextlib.asynccontextmanager
async def replicas(stack: Stack, prometheus_url: str) -> AsyncIterator[list[Replica]]:
    fleet = f"fleet: {{prometheus_url: '{prometheus_url}', poll_interval: {POLL}, timeout: 1}}"
    started: list[Replica] = []
    try:
        for i in range(3):
            d = stack.tmp / f"replica{i}"
            flags_dir = d / "flags"
            flags_dir.mkdir(parents=True)
            publish(flags_dir, FILE_A, "2026_01_01_a")
            port, admin = write_process_config(
                d,
                legacy_url=f"ws://127.0.0.1:{stack.legacy_port}",
                unified_url=f"ws://127.0.0.1:{stack.unified_port}/v1/ws",
                flags=FILE_A,  # overwritten below: the mounted directory is the one read
                poll_interval=0.2,
                extra=fleet,
            )
            config = d / "strangler.yaml"
            config.write_text(
                config.read_text().replace("file: flags.yaml", "file: flags/flags.yaml")
            )
            replica = Replica(i, port, admin, flags_dir, d / "stderr.log")
            with replica.log.open("wb") as log:
                replica.proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    *("-m", "strangler.proxy", "run", "--config", str(config)),
                    env={**os.environ, "STRANGLER_TEST_SECRET": SECRET},
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                )
            started.append(replica)
        for replica in started:
            await wait_for(partial(admin_ready, replica.admin), timeout=30)
        yield started
    finally:
        for replica in started:
            if replica.proc is not None and replica.proc.returncode is None:
                replica.proc.terminate()
                try:
                    await asyncio.wait_for(replica.proc.wait(), timeout=10)
                except TimeoutError:
                    replica.proc.kill()
                    await replica.proc.wait()


async def connect(
    session: aiohttp.ClientSession, replica: Replica, bearer: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(
        f"ws://127.0.0.1:{replica.port}/ws", headers={"Authorization": f"Bearer {bearer}"}
    )
    await ws.receive()  # the greeting
    return ws


async def turns(replica: Replica, user: str, text: str, n: int) -> None:
    """`n` turns, one after another, on one connection."""
    request = json.dumps({"type": "start_agent", "payload": {"user_request": text}})
    async with aiohttp.ClientSession() as s:
        ws = await connect(s, replica, token(user))
        for _ in range(n):
            await ws.send_str(request)
            async with asyncio.timeout(10):
                async for msg in ws:
                    assert msg.type is aiohttp.WSMsgType.TEXT, msg
                    if json.loads(msg.data).get("type") in ("agent_completed", "agent_error"):
                        break
        await ws.close()


async def new_connection_held(replica: Replica) -> bool:
    """A new connection of a user the rollout sends to unified is decided `guard`."""
    before = await replica.guard_decisions()
    async with aiohttp.ClientSession() as s:
        ws = await connect(s, replica, token(UNIFIED_USER))
        await ws.close()
    await asyncio.sleep(0)
    return await replica.guard_decisions() == before + 1


async def same_mode_everywhere(stack: Stack, fleet: list[Replica]) -> None:
    # 10,000 users, on the file each replica says it serves (read from its own mount).
    modes: list[list[str]] = []
    for replica in fleet:
        served = parse_flags((replica.flags_dir / "flags.yaml").read_bytes(), "mounted")
        assert served.digest[:12] == (await replica.status())["hash"]
        modes.append([evaluate(served, "main", f"u{i}", {}).mode.value for i in range(USERS)])
    assert modes[0] == modes[1] == modes[2]
    assert 0.45 < modes[0].count("unified") / USERS < 0.55
    # A sample through real handshakes: which backend saw each user's token.
    tokens = {f"u{i}": token(f"u{i}") for i in range(SAMPLE)}
    async with aiohttp.ClientSession() as s:
        for replica in fleet:
            sockets = await asyncio.gather(*(connect(s, replica, t) for t in tokens.values()))
            await asyncio.gather(*(ws.close() for ws in sockets))
    assert stack.unified_app is not None and stack.legacy_app is not None
    for user, bearer in tokens.items():
        seen = [
            sum(
                any(bearer in value for value in record["headers"].values())
                for record in app[RECEIVED_HANDSHAKES]
            )
            for app in (stack.unified_app, stack.legacy_app)
        ]
        expected = modes[0][int(user[1:])]
        assert seen == ([3, 0] if expected == "unified" else [0, 3]), (user, expected, seen)


async def fleet_trip_holds_every_replica(fleet: list[Replica], url: str) -> None:
    # Mismatching turns through replica 0 only; the guard judges the fleet's evidence.
    await turns(fleet[0], "sam", "Please differ on the tool arguments", 10)
    observed = (
        "sum(increase(strangler_guard_observations_total"
        '{flag="unified_router", guard="mismatch_ratio", result="bad"}[120s]))'
    )

    async def in_prometheus() -> bool:
        result = await query(url, observed)
        return bool(result) and float(result[0]["value"][1]) >= 8

    await wait_for(in_prometheus, timeout=15)

    # Two poll intervals, plus a second for the in-flight poll and the status calls.
    async def all_tripped() -> bool:
        return all([await r.trip() is not None for r in fleet])

    await wait_for(all_tripped, timeout=2 * POLL + 1)
    for replica in fleet:
        trip = await replica.trip()
        assert trip is not None and trip["source"] == "fleet" and trip["samples"] >= 8
        assert await new_connection_held(replica), replica.index
        assert len(replica.log_lines("guard tripped: flag unified_router mismatch_ratio")) == 1
    # Replicas 1 and 2 saw none of those turns: their own windows are empty.
    for replica in fleet[1:]:
        watching = (await replica.status())["guards"]["unified_router"]["watching"]
        assert watching["mismatch_ratio"]["samples"] == 0


async def skew_shows_and_alerts(stack: Stack, fleet: list[Replica], url: str) -> None:
    # Two open connections on replica 0, held on legacy: the new file moves them.
    async with aiohttp.ClientSession() as s:
        moved = [await connect(s, fleet[0], token(user)) for user in ("u1", "u2")]
        for replica in fleet[:2]:
            publish(replica.flags_dir, FILE_B, "2026_01_02_b")
        new_hash = parse_flags(FILE_B.encode(), "b").digest[:12]

        async def prometheus_sees_two_files() -> bool:
            # Both replicas given the new file serve it: two hashes alone can be one of
            # them moved while the other still serves the old file.
            files = await query(url, "count(count by (hash) (strangler_flags_info == 1))")
            moved = await query(url, f'count(strangler_flags_info{{hash="{new_hash}"}} == 1)')
            return (
                bool(files)
                and float(files[0]["value"][1]) == 2
                and bool(moved)
                and float(moved[0]["value"][1]) == 2
            )

        await wait_for(prometheus_sees_two_files, timeout=15)
        done = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "strangler.proxy", "flags", "status", "--fleet", "--prometheus", url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await done.communicate()
        text = out.decode()
        assert done.returncode == 1, text + err.decode()
        assert "SKEW: 2 flag files" in text.splitlines()[0]
        for replica in fleet:
            (line,) = [x for x in text.splitlines() if f"127.0.0.1:{replica.admin}" in x]
            assert (new_hash in line) is (replica.index < 2), line

        # The fleet drain rate, shared by the three replicas Prometheus sees.
        drained = "draining 2 connections at 1/s (fleet rate 3/s over 3 replicas"
        await wait_for(partial(_has, fleet[0], drained), timeout=10)
        for ws in moved:
            async with asyncio.timeout(10):
                msg = await ws.receive()
                while msg.type is aiohttp.WSMsgType.TEXT:  # heartbeats, if any
                    msg = await ws.receive()
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1012)

    # The skew alert fires on the series Prometheus holds now, after its `for`.
    series = await query(url, "strangler_flags_info == 1")
    promtool_fires_skew(stack.tmp, [s["metric"] for s in series])


async def _has(replica: Replica, needle: str) -> bool:
    return bool(replica.log_lines(needle))


def promtool_fires_skew(tmp: Path, series: list[dict[str, str]]) -> None:
    promtool = require("promtool")
    rules = yaml.safe_load(RULE_FILES[1].read_text())
    (rule,) = [
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "StranglerFlagSkew"
    ]
    annotations = {
        key: text.replace("{{ $labels.job }}", "strangler").replace("{{ $value }}", "2")
        for key, text in rule["annotations"].items()
    }
    labels = sorted({(m["instance"], m["hash"]) for m in series})
    assert len(labels) == 3 and len({h for _, h in labels}) == 2
    test = {
        "rule_files": [str(p) for p in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": "strangler_flags_info"
                        f'{{job="strangler", instance="{i}", hash="{h}"}}',
                        "values": "1x15",
                    }
                    for i, h in labels
                ],
                "alert_rule_test": [
                    {"alertname": "StranglerFlagSkew", "eval_time": "2m", "exp_alerts": []},
                    {
                        "alertname": "StranglerFlagSkew",
                        "eval_time": "10m",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "job": "strangler"},
                                "exp_annotations": annotations,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp / "skew_test.yml"
    path.write_text(yaml.safe_dump(test, width=1000))
    done = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def local_fallback_without_prometheus(
    fleet: list[Replica], server: subprocess.Popen[bytes]
) -> None:
    server.terminate()
    server.wait(timeout=10)

    async def all_down() -> bool:
        return all([await r.fleet_up() == 0 for r in fleet])

    await wait_for(all_down, timeout=2 * POLL + 3)
    for replica in fleet:
        (line,) = replica.log_lines("fleet guard down: Prometheus at 127.0.0.1")
        assert "WARNING" in line
    # Still serving; replica 0 (file B: its guard started afresh) now judges its own turns.
    assert await fleet[0].trip() is None
    await turns(fleet[0], "sam", "Please differ on the tool arguments", 10)
    await wait_for(partial(_tripped_locally, fleet[0]), timeout=10)
    assert await new_connection_held(fleet[0])
    assert await fleet[1].trip() is None  # its own traffic was fine: no fleet to tell it
    for replica in fleet:  # one line per transition, however many polls failed since
        assert len(replica.log_lines("fleet guard down")) == 1


async def _tripped_locally(replica: Replica) -> bool:
    trip = await replica.trip()
    return trip is not None and trip["source"] == "local"


async def test_a_fleet_shares_modes_guards_and_flag_files_through_prometheus(
    stack: Stack,
) -> None:
    await stack.backends(
        unified=BackendSettings(
            jwt_secret=SECRET, divergence="tool_args", divergence_keyword="differ"
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Prometheus first: a replica that started without it would log the fleet guard
    # down before it ever was up.
    with prometheus(stack.tmp, port) as server:
        await wait_for(partial(_ready, url), timeout=30)
        async with replicas(stack, url) as fleet:
            scrape_targets(stack.tmp, [r.admin for r in fleet])

            async def scraped_and_polled() -> bool:
                up = await query(url, 'count(up{job="strangler"} == 1)')
                return (
                    bool(up)
                    and float(up[0]["value"][1]) == 3
                    and all([await r.fleet_up() == 1 for r in fleet])
                )

            await wait_for(scraped_and_polled, timeout=20)
            await same_mode_everywhere(stack, fleet)
            await fleet_trip_holds_every_replica(fleet, url)
            await skew_shows_and_alerts(stack, fleet, url)
            await local_fallback_without_prometheus(fleet, server)
            for replica in fleet:
                assert "Traceback" not in replica.log.read_text()


async def _ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as s, s.get(f"{url}/-/ready") as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def scrape_targets(tmp: Path, admin_ports: list[int]) -> None:
    """Point Prometheus's file service discovery at these admin ports (atomically)."""
    targets = tmp / "prometheus" / "targets.json"
    staged = targets.with_suffix(".tmp")
    staged.write_text(json.dumps([{"targets": [f"127.0.0.1:{p}" for p in admin_ports]}]))
    os.replace(staged, targets)
