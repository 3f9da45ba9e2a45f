"""End to end: every query of every dashboard and rule returns data from a real
Prometheus scraping real proxies that carried traffic in every mode.

Three proxies share the reference legacy backend (slightly slow, so the secondary is
still mid-turn when it misbehaves):

- `a` in front of a unified router that answers turns mentioning "differ" with other
  tool arguments (a shadow mismatch); its flag file is once replaced by an invalid one;
- `b` whose unified router is unreachable (handshake failures, fallbacks to legacy,
  failed secondaries);
- `c` in front of a unified router that drops the connection on turns mentioning
  "crash" (a secondary error in shadow mode, a backend lost in unified mode);
- `w`, a `strangler run --workers 2` process (its supervisor aggregates the workers'
  metrics and adds per-worker ones), serving legacy and unified turns.

Traffic runs in two rounds with a scrape between them, so counters created by the
first round have grown by the second and every rate is above zero. Grafana's variables
are replaced by concrete values (`$__rate_interval` = 1m, `$route` = `.*`, ...; see
tests/dashboards/promql.py, which also says how alert rules are judged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
from aiohttp import web

from strangler.proxy.runtime.server import Running
from strangler.reference.settings import BackendSettings
from strangler.reference.unified_backend import build_unified_app
from tests.dashboards.conftest import PrometheusUnderTest
from tests.dashboards.promql import (
    PrometheusAPI,
    Query,
    dashboard_queries,
    load_dashboards,
    problems,
    rule_queries,
)
from tests.functional.conftest import (
    DEMO_ROUTES,
    SECRET,
    Stack,
    free_port,
    scrape,
    token,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)

FLAGS = """
flags:
  unified_router:
    routes: [main, api, main_user, main_v1, factory, isolated, legacy, legacy_test]
    targets: {unified: [uma], shadow: [sam], live: [liv]}
    guard: {max_mismatch_ratio: 0.9, min_samples: 100000}
"""
# Shedding off: three proxies and the test share one process, whose CPU share alone
# would refuse the secondaries whose verdicts the shadow panels need.
SHADOW_FAST = """
shadow:
  compare: {timeout_factor: 2, timeout_floor: 0.5}
  shed: {enabled: false}
"""


class Listening(Protocol):
    """A proxy's client port and admin port (an in-process Running or a subprocess)."""

    @property
    def port(self) -> int: ...
    @property
    def admin_port(self) -> int: ...


@dataclass(frozen=True)
class Served:
    port: int
    admin_port: int


@contextlib.asynccontextmanager
async def workers_proxy(stack: Stack) -> AsyncIterator[Served]:
    """`strangler run --workers 2` in front of the stack's backends, until exit."""
    d = stack.tmp / "w"
    d.mkdir()
    (d / "flags.yaml").write_text(FLAGS)
    served = Served(free_port(), free_port())
    (d / "strangler.yaml").write_text(
        f"""
listen: 127.0.0.1:{served.port}
admin_listen: 127.0.0.1:{served.admin_port}
backends:
  legacy: {{url: "ws://127.0.0.1:{stack.legacy_port}"}}
  unified: {{url: "ws://127.0.0.1:{stack.unified_port}/v1/ws"}}
{DEMO_ROUTES}
flags: {{file: flags.yaml, poll_interval: 60}}
jwt: {{secret_env: STRANGLER_TEST_SECRET, issuer: netra-auth-service, audience: [netra-platform]}}
relay: {{grace_period: 1}}
"""
    )
    (d / "metrics").mkdir()
    log = (d / "stderr.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "strangler.proxy", "run", "--workers", "2", "--config", str(d / "strangler.yaml")),
        env={
            **os.environ,
            "STRANGLER_TEST_SECRET": SECRET,
            "PROMETHEUS_MULTIPROC_DIR": str(d / "metrics"),
        },
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )

    async def ready() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{served.admin_port}/readyz") as r,
            ):
                return r.status == 200
        except aiohttp.ClientError:
            return False

    try:
        await wait_for(ready, timeout=20)
        yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


async def turn(proxy: Listening, user: str | None, text: str = "Optimize my costs") -> None:
    """One turn on /ws as `user`, until the turn ends or the connection does."""
    headers = {"Authorization": f"Bearer {token(user)}"} if user else {}
    request = json.dumps({"type": "start_agent", "payload": {"user_request": text}})
    async with (
        aiohttp.ClientSession() as s,
        s.ws_connect(f"ws://127.0.0.1:{proxy.port}/ws", headers=headers) as ws,
    ):
        await ws.receive()
        await ws.send_str(request)
        async with asyncio.timeout(10):
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                if json.loads(msg.data).get("type") in ("agent_completed", "agent_error"):
                    break


async def refused_and_passthrough(proxy: Listening) -> None:
    """A factory handshake without a token (403, an auth failure) and a plain GET."""
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await s.ws_connect(f"ws://127.0.0.1:{proxy.port}/ws/factory")
        assert refused.value.status == 403
        async with s.get(f"http://127.0.0.1:{proxy.port}/ws/config") as r:
            assert r.status == 200


async def one_round(a: Running, b: Running, c: Running, w: Listening) -> None:
    await asyncio.gather(
        turn(a, None),  # anonymous: legacy
        turn(a, "leo"),  # legacy
        turn(a, "uma"),  # unified
        turn(a, "sam"),  # shadow, matching
        turn(a, "sam", "Please differ on the tool arguments"),  # shadow, mismatching
        turn(a, "liv"),  # live, matching
        turn(b, "uma"),  # unified unreachable: falls back to legacy
        turn(b, "sam"),  # shadow without a secondary
        turn(c, "sam", "crash the secondary"),  # shadow: the secondary dies
        turn(c, "uma", "crash the primary"),  # unified: the backend is lost
        turn(w, "leo"),  # legacy, by one of the workers
        turn(w, "uma"),  # unified, by one of the workers
        refused_and_passthrough(a),
    )


def replace_file(path: Path, text: str) -> str:
    """Write `text` to `path`; what it held before."""
    before = path.read_text()
    path.write_text(text)
    return before


async def reject_one_flag_edit(a: Running, flags_file: Path) -> None:
    """Write an invalid flag file, wait for its rejection, put the good one back."""
    good = replace_file(flags_file, "flags: [this is not a mapping\n")

    async def rejected() -> bool:
        samples = await scrape(a.admin_port)
        return samples.get(("strangler_flag_reloads_total", (("result", "rejected"),)), 0) >= 1

    await wait_for(rejected, timeout=10)
    replace_file(flags_file, good)


async def total(proxy: Listening, name: str) -> float:
    return sum(v for (n, _), v in (await scrape(proxy.admin_port)).items() if n == name)


async def scraped_up_to_now(api: PrometheusAPI, proxies: list[Listening]) -> None:
    """Wait until Prometheus holds each proxy's current connection and verdict counts."""
    for p in proxies:
        for name in ("strangler_connections_total", "strangler_comparisons_total"):
            selector = f'{name}{{instance="127.0.0.1:{p.admin_port}"}}'

            async def caught_up(
                p: Listening = p, name: str = name, selector: str = selector
            ) -> bool:
                _, result = await api.query(f"sum({selector}) or vector(0)")
                return bool(result) and float(result[0]["value"][1]) == await total(p, name)

            await wait_for(caught_up, timeout=20)


async def verdicts_settled(a: Running, c: Running) -> None:
    """Comparisons finish after the client's turn: wait for both rounds' verdicts."""

    async def count(p: Running, outcome: str) -> float:
        samples = await scrape(p.admin_port)
        return sum(
            v
            for (n, labels), v in samples.items()
            if n == "strangler_comparisons_total" and ("outcome", outcome) in labels
        )

    async def settled() -> bool:
        return (
            await count(a, "match") >= 4
            and await count(a, "mismatch") >= 2
            and await count(c, "shadow_error") >= 2
        )

    await wait_for(settled, timeout=15)


async def alert_states(api: PrometheusAPI) -> dict[tuple[str, str], str]:
    """(alert name, backend or instance label) -> state, of the alerts Prometheus holds."""
    async with api.session.get(f"{api.url}/api/v1/alerts") as r:
        body = await r.json()
    return {
        (a["labels"]["alertname"], a["labels"].get("backend") or a["labels"].get("instance", "")): (
            a["state"]
        )
        for a in body["data"]["alerts"]
    }


async def unhealthy_rules(api: PrometheusAPI) -> list[str]:
    async with api.session.get(f"{api.url}/api/v1/rules") as r:
        body = await r.json()
    return [
        f"{rule['name']}: {rule.get('lastError')}"
        for group in body["data"]["groups"]
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]


async def start_unified(stack: Stack, settings: BackendSettings) -> int:
    """Another reference unified router on loopback, stopped with the stack."""
    runner = web.AppRunner(build_unified_app(settings), handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack.runners.append(runner)
    return port


def all_queries() -> list[Query]:
    queries = [q for name, d in load_dashboards().items() for q in dashboard_queries(name, d)]
    return queries + rule_queries()


async def test_every_dashboard_and_rule_query_returns_data(
    stack: Stack, prometheus: PrometheusUnderTest
) -> None:
    await stack.backends(
        legacy=BackendSettings(jwt_secret=SECRET, event_delay=0.02),
        unified=BackendSettings(
            jwt_secret=SECRET, divergence="tool_args", divergence_keyword="differ"
        ),
    )
    crashing = await start_unified(
        stack, BackendSettings(jwt_secret=SECRET, divergence="crash", divergence_keyword="crash")
    )
    a = await stack.proxy(FLAGS, extra=SHADOW_FAST, name="a")
    b = await stack.proxy(
        FLAGS, extra=SHADOW_FAST, name="b", unified_url=f"ws://127.0.0.1:{free_port()}/v1/ws"
    )
    c = await stack.proxy(
        FLAGS, extra=SHADOW_FAST, name="c", unified_url=f"ws://127.0.0.1:{crashing}/v1/ws"
    )
    async with (
        workers_proxy(stack) as w,
        aiohttp.ClientSession() as session,
        contextlib.AsyncExitStack() as held,
    ):
        proxies: list[Listening] = [a, b, c, w]
        prometheus.scrape([p.admin_port for p in proxies])
        api = PrometheusAPI(session, prometheus.url)

        async def all_up() -> bool:
            _, up = await api.query('count(up{job="strangler"} == 1)')
            return bool(up) and float(up[0]["value"][1]) == len(proxies)

        await wait_for(all_up, timeout=15)

        await one_round(a, b, c, w)
        await reject_one_flag_edit(a, stack.tmp / "a" / "flags.yaml")
        await scraped_up_to_now(api, proxies)
        await one_round(a, b, c, w)
        # Connections open while the queries run: the open-connection panels need them.
        for user in ("leo", "uma"):
            ws = await held.enter_async_context(
                session.ws_connect(
                    f"ws://127.0.0.1:{a.port}/ws",
                    headers={"Authorization": f"Bearer {token(user)}"},
                )
            )
            await ws.receive()
        await verdicts_settled(a, c)
        await scraped_up_to_now(api, proxies)

        # Rules run every second; wait for an evaluation that saw the second round.
        queries = all_queries()
        assert len(queries) > 60
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while True:
            found = await problems(api, queries)
            found += await unhealthy_rules(api)
            states = await alert_states(api)
            if states.get(("StranglerBackendUnreachable", "unified")) not in (
                "pending",
                "firing",
            ):
                found.append("StranglerBackendUnreachable is not pending for unified")
            if states.get(("StranglerFlagReloadsFailing", f"127.0.0.1:{a.admin_port}")) != (
                "firing"
            ):
                found.append("StranglerFlagReloadsFailing is not firing for proxy a")
            # The unified turns c's router crashed mid-turn are interrupted: failures
            # of unified; every legacy turn completed.
            _, unified = await api.query('strangler:golden_path:error_ratio_5m{backend="unified"}')
            _, legacy = await api.query('strangler:golden_path:error_ratio_5m{backend="legacy"}')
            if not any(float(r["value"][1]) > 0 for r in unified):
                found.append("no unified golden-path failure recorded")
            if not legacy or any(float(r["value"][1]) != 0 for r in legacy):
                found.append(f"legacy golden-path error ratios are not all 0: {legacy}")
            if not found or loop.time() > deadline:
                break
            await asyncio.sleep(1)
        assert not found, "\n".join(found)


async def test_a_dashboard_naming_a_nonexistent_metric_fails_the_check(
    prometheus: PrometheusUnderTest,
) -> None:
    dashboard = {
        "panels": [
            {"title": "real", "targets": [{"refId": "A", "expr": 'up{job="prometheus"}'}]},
            {
                "title": "bogus",
                "targets": [
                    {
                        "refId": "A",
                        "expr": 'sum(rate(strangler_no_such_metric_total{route=~"$route"}'
                        "[$__rate_interval]))",
                    }
                ],
            },
        ]
    }
    async with aiohttp.ClientSession() as session:
        api = PrometheusAPI(session, prometheus.url)

        async def self_scraped() -> bool:
            return bool((await api.query('up{job="prometheus"}'))[1])

        await wait_for(self_scraped, timeout=15)
        found = await problems(api, dashboard_queries("bogus.json", dashboard))
    assert found == [
        "bogus.json: panel 'bogus' target A: no series named strangler_no_such_metric_total",
        "bogus.json: panel 'bogus' target A: empty result for "
        "'sum(rate(strangler_no_such_metric_total{route=~\".*\"}[1m]))'",
    ]
