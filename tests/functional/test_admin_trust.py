"""The admin port against a browser's cross-site requests and DNS rebinding, over real
loopback sockets: the single proxy's admin listener (IPv4 and IPv6) and the shared one
of `strangler run --workers 2`. The rules one by one: tests/unit/proxy/admin/test_trust.py."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from strangler.proxy.config import load_config
from strangler.proxy.runtime.server import Running, start
from tests.functional.conftest import (
    ROUTES,
    SECRET,
    Upstream,
    admin_ready,
    scrape,
    wait_for,
    write_process_config,
)

pytestmark = pytest.mark.timeout(30)

FLAGS = "flags:\n  unified_router:\n    routes: [main]\n"
SWITCH_OFF = "/shadow?enabled=false"


@dataclass
class Admin:
    """One admin listener and requests to it with chosen headers."""

    base: str  # http://host:port, as a browser on this machine would name it
    running: Running | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as s,
            s.request(method, self.base + path, headers=headers or {}, allow_redirects=False) as r,
        ):
            return r.status, await r.text()

    async def shadow_enabled(self) -> Any:
        async with aiohttp.ClientSession() as s, s.get(self.base + "/shadow") as r:
            body = await r.json()
        if "workers" in body:  # the supervisor's merged answer: one value per worker
            return [w["body"]["enabled"] for w in body["workers"]]
        return body["enabled"]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


StartAdmin = Callable[..., Awaitable[Admin]]


@pytest.fixture
async def start_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StartAdmin]:
    """A proxy whose admin listener is on `admin_host` (a free port), with `extra` YAML."""
    monkeypatch.setenv("STRANGLER_TEST_SECRET", SECRET)
    started: list[Running] = []

    async def factory(admin_host: str = "127.0.0.1", extra: str = "") -> Admin:
        (tmp_path / "flags.yaml").write_text(FLAGS)
        (tmp_path / "strangler.yaml").write_text(
            f"""
listen: 127.0.0.1:0
admin_listen: "{admin_host}:0"
backends:
  legacy: {{url: "ws://127.0.0.1:9"}}
  unified: {{url: "ws://127.0.0.1:9/v1/ws"}}
{ROUTES}
flags: {{file: flags.yaml, poll_interval: 60}}
jwt: {{secret_env: STRANGLER_TEST_SECRET}}
{extra}
"""
        )
        running = await start(load_config(tmp_path / "strangler.yaml"))
        started.append(running)
        return Admin(f"http://{admin_host}:{running.admin_port}", running)

    yield factory
    for running in started:
        await running.stop()


async def refusals(admin: Admin, reason: str) -> float:
    samples = await scrape(admin.port)
    return samples.get(("strangler_admin_refusals_total", (("reason", reason),)), 0.0)


# -- Origin: cross-site state changes -------------------------------------------------


async def test_a_foreign_origin_cannot_switch_shadowing_off(start_admin: StartAdmin) -> None:
    admin = await start_admin()
    status, text = await admin.request("POST", SWITCH_OFF, {"Origin": "http://evil.example"})
    assert status == 403
    assert "cross-site request refused" in text
    assert await admin.shadow_enabled() is True
    assert await refusals(admin, "origin") == 1
    # The other state-changing endpoint too, and with any method.
    status, _ = await admin.request("POST", "/flags/plan", {"Origin": "http://evil.example"})
    assert status == 403
    status, _ = await admin.request("PUT", SWITCH_OFF, {"Origin": "http://evil.example"})
    assert status == 403


async def test_the_listeners_own_origin_may_switch_shadowing_off(start_admin: StartAdmin) -> None:
    admin = await start_admin()
    status, _ = await admin.request("POST", SWITCH_OFF, {"Origin": admin.base})
    assert status == 200
    assert await admin.shadow_enabled() is False
    assert await refusals(admin, "origin") == 0


async def test_a_tool_without_origin_may_switch_shadowing_off(start_admin: StartAdmin) -> None:
    admin = await start_admin()
    status, _ = await admin.request("POST", SWITCH_OFF)
    assert status == 200
    assert await admin.shadow_enabled() is False


async def test_without_origin_a_foreign_referer_or_cross_site_fetch_is_refused(
    start_admin: StartAdmin,
) -> None:
    admin = await start_admin()
    status, _ = await admin.request("POST", SWITCH_OFF, {"Referer": "http://evil.example/a"})
    assert status == 403
    status, _ = await admin.request("POST", SWITCH_OFF, {"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert await admin.shadow_enabled() is True
    status, _ = await admin.request("POST", SWITCH_OFF, {"Referer": admin.base + "/status"})
    assert status == 200
    assert await refusals(admin, "origin") == 2


async def test_a_foreign_origin_may_still_read(start_admin: StartAdmin) -> None:
    # Reading is harmless cross-site: without CORS headers the page cannot see the answer.
    admin = await start_admin()
    status, _ = await admin.request("GET", "/shadow", {"Origin": "http://evil.example"})
    assert status == 200


# -- Host: DNS rebinding ----------------------------------------------------------------


async def test_a_foreign_host_is_refused_on_reads_and_changes(
    start_admin: StartAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await start_admin()
    rebinding = {"Host": f"evil.example:{admin.port}"}
    caplog.set_level(logging.INFO, logger="strangler.admin")
    for path in ("/shadow", "/metrics", "/status", "/flags/status", "/"):
        status, text = await admin.request("GET", path, rebinding)
        assert status == 421, path
        assert "does not answer to the Host name" in text
        assert "evil.example" not in text  # the Host is never echoed back
    # Even with the page's own (rebound) origin, the state change is refused by Host.
    status, _ = await admin.request(
        "POST", SWITCH_OFF, {**rebinding, "Origin": f"http://evil.example:{admin.port}"}
    )
    assert status == 421
    assert await admin.shadow_enabled() is True
    assert await refusals(admin, "host") == 6
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "strangler.admin" and r.getMessage().startswith("admin request refused")
    ]
    assert len(lines) == 6
    assert all("reason=host" in line for line in lines)


async def test_loopback_names_are_answered_on_any_port(start_admin: StartAdmin) -> None:
    admin = await start_admin()
    for host in (f"localhost:{admin.port}", "localhost", "127.0.0.1:8000", f"[::1]:{admin.port}"):
        status, _ = await admin.request("GET", "/shadow", {"Host": host})
        assert status == 200, host
    # Through `kubectl port-forward 8000:...` the browser's origin is localhost:8000.
    forwarded = {"Host": "localhost:8000", "Origin": "http://localhost:8000"}
    status, _ = await admin.request("POST", SWITCH_OFF, forwarded)
    assert status == 200


async def test_the_probes_answer_any_host(start_admin: StartAdmin) -> None:
    admin = await start_admin()
    for path in ("/healthz", "/readyz"):
        status, _ = await admin.request("GET", path, {"Host": "proxy-svc.cluster.local"})
        assert status == 200, path


async def test_configured_host_names_are_answered(start_admin: StartAdmin) -> None:
    admin = await start_admin(extra="admin_trust: {allowed_hosts: [admin.internal]}")
    named = {"Host": f"admin.internal:{admin.port}"}
    status, _ = await admin.request("GET", "/shadow", named)
    assert status == 200
    status, _ = await admin.request("GET", "/shadow", {"Host": "other.internal"})
    assert status == 421
    status, _ = await admin.request(
        "POST", SWITCH_OFF, {**named, "Origin": f"http://admin.internal:{admin.port}"}
    )
    assert status == 200
    assert await admin.shadow_enabled() is False


async def test_a_star_answers_every_host_but_still_checks_the_origin(
    start_admin: StartAdmin,
) -> None:
    admin = await start_admin(extra='admin_trust: {allowed_hosts: ["*"]}')
    status, _ = await admin.request("GET", "/shadow", {"Host": "anything.example"})
    assert status == 200
    status, _ = await admin.request(
        "POST", SWITCH_OFF, {"Host": "anything.example", "Origin": "http://evil.example"}
    )
    assert status == 403


async def test_ipv6_loopback_listener(start_admin: StartAdmin) -> None:
    admin = await start_admin(admin_host="[::1]")
    status, _ = await admin.request("GET", "/shadow")  # Host: [::1]:port, as a browser sends
    assert status == 200
    status, _ = await admin.request("GET", "/shadow", {"Host": f"evil.example:{admin.port}"})
    assert status == 421
    status, _ = await admin.request("POST", SWITCH_OFF, {"Origin": "http://evil.example"})
    assert status == 403
    assert await admin.shadow_enabled() is True
    status, _ = await admin.request("POST", SWITCH_OFF, {"Origin": admin.base})
    assert status == 200
    assert await admin.shadow_enabled() is False


async def test_the_token_still_applies_after_host_and_origin(
    start_admin: StartAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRANGLER_TEST_ADMIN_TOKEN", "admin-token-for-the-trust-test")
    admin = await start_admin(extra="admin_auth: {token_env: STRANGLER_TEST_ADMIN_TOKEN}")
    bearer = {"Authorization": "Bearer admin-token-for-the-trust-test"}
    status, _ = await admin.request("POST", SWITCH_OFF, {"Origin": admin.base})
    assert status == 401
    # A good token does not make a foreign Host or origin trusted.
    status, _ = await admin.request("GET", "/shadow", {**bearer, "Host": "evil.example"})
    assert status == 421
    status, _ = await admin.request("POST", SWITCH_OFF, {**bearer, "Origin": "http://evil.example"})
    assert status == 403
    status, _ = await admin.request("POST", SWITCH_OFF, {**bearer, "Origin": admin.base})
    assert status == 200


# -- the supervisor's shared admin port -------------------------------------------------


@pytest.fixture
async def supervised(tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> AsyncIterator[Admin]:
    legacy, unified = upstreams
    _, admin_port = write_process_config(
        tmp_path,
        legacy_url=legacy.url,
        unified_url=f"{unified.url}/v1/ws",
        flags=FLAGS,
        extra="relay: {grace_period: 1}",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "strangler.proxy",
        "run",
        "--workers",
        "2",
        "--config",
        str(tmp_path / "strangler.yaml"),
        env={**os.environ, "STRANGLER_TEST_SECRET": SECRET},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: admin_ready(admin_port), timeout=20)
        yield Admin(f"http://127.0.0.1:{admin_port}")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=10)


async def test_the_supervisors_admin_port_refuses_foreign_hosts_and_origins(
    supervised: Admin,
) -> None:
    admin = supervised
    status, _ = await admin.request("POST", SWITCH_OFF, {"Origin": "http://evil.example"})
    assert status == 403
    status, _ = await admin.request("GET", "/shadow", {"Host": "evil.example"})
    assert status == 421
    status, _ = await admin.request(
        "POST", SWITCH_OFF, {"Host": "evil.example", "Origin": "http://evil.example"}
    )
    assert status == 421
    assert await admin.shadow_enabled() == [True, True]
    status, _ = await admin.request("POST", SWITCH_OFF, {"Origin": admin.base})
    assert status == 200
    assert await admin.shadow_enabled() == [False, False]
    # Its own refusals are counted in the one family the workers' files also feed.
    async with aiohttp.ClientSession() as s, s.get(admin.base + "/metrics") as r:
        text = await r.text()
    assert text.count("# TYPE strangler_admin_refusals_total counter") == 1
    assert 'strangler_admin_refusals_total{reason="origin"} 1.0' in text
    assert 'strangler_admin_refusals_total{reason="host"} 2.0' in text
