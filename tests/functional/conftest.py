"""Fixtures for functional tests: real servers on loopback, real WebSocket handshakes.

`Upstream` is a tiny scriptable WebSocket server standing in for a backend, so relay
tests control exactly what the backend says. `start_proxy` runs the real proxy
(`proxy.server.start`) against it with a config and flag file written to tmp_path.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from strangler.proxy.config import load_config
from strangler.proxy.edge.identity import mint_token
from strangler.proxy.runtime.server import Running, start
from strangler.reference.settings import BackendSettings

SECRET = "test-secret-for-the-functional-suite-0123456789"


def in_process(config_text: str) -> str:
    """A test proxy's strangler.yaml with shadow shedding off unless the test sets it.

    These proxies share one process with their backends and clients, so the process's
    CPU share and loop lag measure the test, not the proxy: shedding would refuse
    secondaries at random under a loaded machine. tests/functional/test_shadow_shed.py
    tests shedding on its own terms."""
    doc = yaml.safe_load(config_text)
    shadow = doc.setdefault("shadow", {}) or {}
    doc["shadow"] = shadow
    shadow.setdefault("shed", {"enabled": False})
    return yaml.safe_dump(doc, sort_keys=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Upstream:
    """A scriptable backend. Text commands: `close <code> <reason>`, `flood <n> <size>`,
    `who`; anything else is echoed with its opcode. `?refuse=<status>` refuses the
    handshake; `?choose=<protocol>` / `?choose=` picks the subprotocol answer."""

    name: str
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.handshakes.append(
            {"path": request.path_qs, "headers": dict(request.headers), "method": request.method}
        )
        if not request.headers.get("Upgrade"):
            body = await request.read()
            return web.json_response(
                {
                    "server": self.name,
                    "method": request.method,
                    "path": request.path_qs,
                    "body": body.decode(),
                    "forwarded_for": request.headers.get("X-Forwarded-For"),
                },
                status=int(request.query.get("status", "200")),
                headers={"X-Backend": self.name},
            )
        refuse = request.query.get("refuse")
        if refuse:
            return web.json_response(
                {"error": "refused", "by": self.name},
                status=int(refuse),
                headers={"Retry-After": "7"},
            )
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        choose = request.query.get("choose")
        protocols = [choose] if choose else ([] if choose == "" else offered[:1])
        ws = web.WebSocketResponse(protocols=[p for p in protocols if p], max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                words = msg.data.split(" ", 2)
                if words[0] == "close":
                    await ws.close(code=int(words[1]), message=words[2].encode())
                    break
                if words[0] == "flood":
                    payload = "x" * int(words[2])
                    for _ in range(int(words[1])):
                        await ws.send_str(payload)
                        self.sent += 1
                    continue
                if words[0] == "who":
                    await ws.send_str(json.dumps({"backend": self.name}))
                    continue
                if words[0] == "vanish":
                    assert request.transport is not None
                    request.transport.abort()
                    break
                await ws.send_str(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        self.closes.append((ws.close_code, ""))
        return ws

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


ROUTES = """
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
  - {name: main_user, path: "/ws/{user_id}", dialect: main_payload, auth: accept_then_frame}
  - {name: factory, path: /ws/factory, dialect: factory, auth: refuse_handshake}
  - {name: isolated, path: /ws/isolated, dialect: isolated, auth: accept_then_close}
  - {name: legacy, path: /websocket, dialect: legacy, auth: none}
"""

DEFAULT_FLAGS = """
flags:
  unified_router:
    routes: [main, main_user, factory, isolated]
    targets: {unified: [alice]}
"""


@dataclass
class ProxyUnderTest:
    running: Running
    flags_path: Path
    legacy: Upstream
    unified: Upstream

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.running.port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.running.port}{path}"

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Samples from the admin port's /metrics, keyed by name and sorted labels."""
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{self.running.admin_port}/metrics") as r,
        ):
            text = await r.text()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    async def metric(self, name: str, **labels: str) -> float:
        return (await self.metrics()).get((name, tuple(sorted(labels.items()))), 0.0)


StartProxy = Callable[..., Awaitable[ProxyUnderTest]]


@pytest.fixture
async def start_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StartProxy]:
    monkeypatch.setenv("STRANGLER_TEST_SECRET", SECRET)
    started: list[ProxyUnderTest] = []
    upstreams: list[Upstream] = []

    async def factory(
        flags: str = DEFAULT_FLAGS,
        *,
        legacy_url: str | None = None,
        relay: str = "{max_message_bytes: 2097152, grace_period: 1}",
        connect_timeout: float = 2.0,
        unified_extra: str = "",
        extra: str = "",
    ) -> ProxyUnderTest:
        legacy, unified = Upstream("legacy"), Upstream("unified")
        for u in (legacy, unified):
            await u.start()
            upstreams.append(u)
        flags_path = tmp_path / "flags.yaml"
        flags_path.write_text(flags)
        (tmp_path / "strangler.yaml").write_text(
            in_process(f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {{url: "{legacy_url or legacy.url}", connect_timeout: {connect_timeout}}}
  unified: {{url: "{unified.url}/v1/ws", connect_timeout: {connect_timeout}, {unified_extra}}}
{ROUTES}
flags: {{file: flags.yaml, poll_interval: 0.05}}
jwt: {{secret_env: STRANGLER_TEST_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
relay: {relay}
{extra}
""")
        )
        running = await start(load_config(tmp_path / "strangler.yaml"))
        put = ProxyUnderTest(running, flags_path, legacy, unified)
        started.append(put)
        return put

    yield factory
    for put in started:
        await put.running.stop()
    for u in upstreams:
        await u.stop()


# -- the proxy as its own process --------------------------------------------------------


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    """A legacy and a unified `Upstream`, for a proxy run as a subprocess to relay to."""
    legacy, unified = Upstream("legacy"), Upstream("unified")
    await legacy.start()
    await unified.start()
    yield legacy, unified
    await legacy.stop()
    await unified.stop()


def write_process_config(
    directory: Path,
    *,
    legacy_url: str,
    unified_url: str,
    flags: str,
    routes: str = ROUTES,
    poll_interval: float | None = 60,
    extra: str = "",
) -> tuple[int, int]:
    """Write strangler.yaml and flags.yaml into `directory` for `strangler run`, on two
    fresh loopback ports; return (port, admin_port). `poll_interval=None` leaves the
    flag file's poll interval to the default; `extra` is appended as further YAML."""
    port, admin = free_port(), free_port()
    (directory / "flags.yaml").write_text(flags)
    poll = "" if poll_interval is None else f", poll_interval: {poll_interval}"
    (directory / "strangler.yaml").write_text(
        f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
backends:
  legacy: {{url: "{legacy_url}"}}
  unified: {{url: "{unified_url}"}}
{routes}
flags: {{file: flags.yaml{poll}}}
jwt: {{secret_env: STRANGLER_TEST_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
{extra}
"""
    )
    return port, admin


async def admin_ready(admin_port: int) -> bool:
    """Whether the admin port answers /readyz with 200; False while it cannot be reached."""
    try:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{admin_port}/readyz") as r,
        ):
            return r.status == 200
    except aiohttp.ClientError:
        return False


def token(user: str, **kwargs: Any) -> str:
    return mint_token(SECRET, user, **kwargs)


def browser_offer(user: str) -> list[str]:
    encoded = base64.urlsafe_b64encode(token(user).encode()).decode().rstrip("=")
    return ["jwt-auth", f"jwt.{encoded}"]


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not await predicate():  # noqa: ASYNC110 - polling a remote view
            await asyncio.sleep(0.02)


# -- stacks of the real reference backends -------------------------------------------

DEMO_ROUTES = """
routes:
  - {name: main, path: /ws, dialect: main, auth: accept_then_frame}
  - {name: api, path: /api/v1/websocket, dialect: main, auth: accept_then_frame}
  - {name: main_user, path: "/ws/{user_id}", dialect: main_payload, auth: accept_then_frame}
  - {name: main_v1, path: "/ws/v1/{user_id}", dialect: main_payload, auth: accept_then_frame}
  - {name: factory, path: /ws/factory, dialect: factory, auth: refuse_handshake}
  - {name: isolated, path: /ws/isolated, dialect: isolated, auth: accept_then_close}
  - {name: legacy, path: /websocket, dialect: legacy, auth: none}
  - {name: legacy_test, path: /ws/test, dialect: legacy, auth: none}
"""
ALL_ROUTES = "[main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]"


@dataclass
class Stack:
    """Reference backends on loopback and proxies in front of them."""

    tmp: Path
    legacy_port: int = 0
    unified_port: int = 0
    legacy_app: web.Application | None = None
    unified_app: web.Application | None = None
    runners: list[web.AppRunner] = field(default_factory=list)
    proxies: list[Running] = field(default_factory=list)

    async def backends(
        self,
        legacy: BackendSettings | None = None,
        unified: BackendSettings | None = None,
    ) -> None:
        from strangler.reference.legacy_backend import build_legacy_app
        from strangler.reference.unified_backend import build_unified_app

        self.legacy_port, self.unified_port = free_port(), free_port()
        ticket_url = f"http://127.0.0.1:{self.legacy_port}/api/websocket/ticket/introspect"
        self.legacy_app = build_legacy_app(legacy or BackendSettings(jwt_secret=SECRET))
        self.unified_app = build_unified_app(
            unified or BackendSettings(jwt_secret=SECRET, ticket_introspection_url=ticket_url)
        )
        for app, port in (
            (self.legacy_app, self.legacy_port),
            (self.unified_app, self.unified_port),
        ):
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self.runners.append(runner)

    async def proxy(
        self,
        flags: str,
        *,
        extra: str = "",
        unified_url: str | None = None,
        name: str = "p",
        unified_redeems_tickets: bool = False,
    ) -> Running:
        d = self.tmp / name
        d.mkdir()
        (d / "flags.yaml").write_text(flags)
        ticket_url = f"http://127.0.0.1:{self.legacy_port}/api/websocket/ticket/introspect"
        unified_url = unified_url or f"ws://127.0.0.1:{self.unified_port}/v1/ws"
        redeems = "true" if unified_redeems_tickets else "false"
        (d / "strangler.yaml").write_text(
            in_process(f"""
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
backends:
  legacy: {{url: "ws://127.0.0.1:{self.legacy_port}", connect_timeout: 2}}
  unified: {{url: "{unified_url}", connect_timeout: 1, redeems_tickets: {redeems}}}
{DEMO_ROUTES}
flags: {{file: flags.yaml, poll_interval: 0.05}}
jwt: {{secret_env: STRANGLER_TEST_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
tickets: {{introspection_url: "{ticket_url}"}}
{extra}
""")
        )
        running = await start(load_config(d / "strangler.yaml"))
        self.proxies.append(running)
        return running

    async def close(self) -> None:
        for p in self.proxies:
            await p.stop()
        for r in self.runners:
            await r.cleanup()


@pytest.fixture
async def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    monkeypatch.setenv("STRANGLER_TEST_SECRET", SECRET)
    s = Stack(tmp_path)
    yield s
    await s.close()


async def scrape(admin_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples from a proxy's /metrics, keyed by name and sorted labels."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{admin_port}/metrics") as r:
        text = await r.text()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def metric(admin_port: int, name: str, **labels: str) -> float:
    return (await scrape(admin_port)).get((name, tuple(sorted(labels.items()))), 0.0)
