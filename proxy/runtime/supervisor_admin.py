"""The supervisor's admin port: every worker's metrics combined, the probes, and any
other request asked of each worker's own admin listener, the answers merged into one."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from strangler.proxy.admin.endpoints import token_middleware
from strangler.proxy.admin.trust import AdminTrust, trust_middleware
from strangler.proxy.config import Config
from strangler.proxy.runtime.worker_slot import Worker, proc_stats

# How long the supervisor waits for a worker's admin listener to answer.
ASK_TIMEOUT = 5.0


@dataclass
class Answer:
    """One worker's answer to a request the supervisor forwarded."""

    worker: Worker
    status: int | None
    content_type: str = ""
    body: bytes = b""
    error: str | None = None
    location: str | None = None  # of a redirect, passed on as it is

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {"worker": self.worker.index, "pid": self.worker.pid}
        if self.status is None:
            out["error"] = self.error
            return out
        out["status"] = self.status
        try:
            out["body"] = json.loads(self.body)
        except ValueError:
            out["body"] = self.body.decode(errors="replace")
        return out


class SupervisorAdmin:
    """Serves the shared admin port for the worker slots it is given."""

    def __init__(
        self,
        config: Config,
        workers: list[Worker],
        metrics_dir: Path,
        draining: Callable[[], bool],
    ) -> None:
        self.config = config
        self.workers = workers
        self.metrics_dir = metrics_dir
        self._draining = draining
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.refusals: Counter[str] = Counter()  # this listener's, by reason

    async def start(self) -> None:
        """Listen on the configured admin address; OSError when it cannot."""
        runner = web.AppRunner(
            self._app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        address = self.config.admin_listen
        try:
            await web.TCPSite(runner, address.host, address.port, reuse_address=True).start()
        except OSError:
            await runner.cleanup()
            raise
        # No keep-alive: an idle connection would hold a draining worker's admin
        # listener open for its whole shutdown timeout.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=ASK_TIMEOUT),
        )
        self._runner = runner

    async def close(self) -> None:
        """Stop listening and close the connections to the workers."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def samples(self) -> Iterator[Any]:
        """Per-worker process figures for WorkerStatsCollector."""
        from strangler.proxy.telemetry.metrics import WorkerSample

        for w in self.workers:
            cpu, rss = proc_stats(w.pid) if w.running and w.pid is not None else (None, None)
            yield WorkerSample(w.index, w.running, w.restarts, cpu, rss)

    def _app(self) -> web.Application:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        from strangler.proxy.telemetry.metrics import WithOwnAdminRefusals, WorkerStatsCollector

        registry = CollectorRegistry()
        shared = MultiProcessCollector(None, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        # This listener's own refusals join the workers' in one family.
        registry.register(WithOwnAdminRefusals(shared, lambda: dict(self.refusals)))
        registry.register(WorkerStatsCollector(self.samples))
        token = self.config.admin_token
        trust = AdminTrust.configured(
            self.config.admin_listen.host, self.config.admin_allowed_hosts
        )

        async def metrics(_: web.Request) -> web.Response:
            # Reading the shared files is blocking I/O: off the loop.
            body = await asyncio.to_thread(generate_latest, registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_: web.Request) -> web.Response:
            return web.json_response(
                {"status": "ok", "workers": sum(w.running for w in self.workers)}
            )

        async def readyz(request: web.Request) -> web.Response:
            # Ready while every worker is: one missing worker halves the capacity.
            answers = await self._ask_all("GET", "/readyz", b"", {})
            workers = [a.entry() for a in answers]
            ready = not self._draining() and all(a.status == 200 for a in answers)
            body = {"ready": ready, "draining": self._draining(), "workers": workers}
            return web.json_response(body, status=200 if ready else 503)

        async def forward(request: web.Request) -> web.StreamResponse:
            headers = {
                k: request.headers[k]
                for k in ("Authorization", "Content-Type", "Accept")
                if k in request.headers
            }
            body = await request.read()
            answers = await self._ask_all(request.method, request.path_qs, body, headers)
            return merge_answers(answers)

        # As on a single proxy's admin port: Host and origin checked, probes open, the
        # rest behind the token.
        refused = self.refusals.update
        app = web.Application(
            client_max_size=64 * 1024 * 1024,
            middlewares=[
                trust_middleware(trust, lambda reason: refused((reason.value,))),
                token_middleware(token),
            ],
        )
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_route("*", "/{tail:.*}", forward)
        return app

    async def _ask_all(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> list[Answer]:
        return list(
            await asyncio.gather(*(self._ask(w, method, path, body, headers) for w in self.workers))
        )

    async def _ask(
        self, w: Worker, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> Answer:
        port = w.admin_port
        if not w.running or port is None or self._session is None:
            return Answer(w, None, error="not running")
        url = f"http://127.0.0.1:{port}{path}"
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as r:
                body = await r.read()
                ctype = r.headers.get("Content-Type", "")
                return Answer(w, r.status, ctype, body, location=r.headers.get("Location"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(w, None, error=type(exc).__name__)


def merge_answers(answers: list[Answer]) -> web.Response:
    """One response for the admin client from every worker's answer to it."""
    reached = [a for a in answers if a.status is not None]
    if not reached:
        return web.json_response(
            {"error": "no worker answered", "workers": [a.entry() for a in answers]}, status=503
        )
    if not all(a.content_type.startswith("application/json") for a in reached):
        # A page or plain text cannot be merged: worker 0's (or the first) answer.
        first = reached[0]
        assert first.status is not None
        headers = {"Content-Type": first.content_type}
        if first.location is not None:
            headers["Location"] = first.location
        return web.Response(body=first.body, status=first.status, headers=headers)
    statuses = {a.status for a in reached}
    status = statuses.pop() if len(statuses) == 1 else 502
    assert status is not None
    return web.json_response({"workers": [a.entry() for a in answers]}, status=status)
