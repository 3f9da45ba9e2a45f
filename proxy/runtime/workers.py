"""`strangler run --workers N`: N proxy processes on one port under one supervisor.

The supervisor carries no client traffic. It starts each worker as a fresh
interpreter (`strangler run --worker-index I`), so PROMETHEUS_MULTIPROC_DIR is in the
environment before the worker imports prometheus_client; restarts a worker that dies;
forwards SIGTERM, SIGINT and SIGHUP; and owns the admin port:

- `/metrics`: every worker's metrics combined from the shared directory, plus
  per-worker CPU, memory and restarts read from /proc;
- `/healthz`, `/readyz`: the supervisor's and each worker's readiness;
- any other path (`/flags/status`, `/shadow`, ...) is sent to every worker's private
  admin listener (loopback, a free port); JSON answers come back as one list with an
  entry per worker, anything else is worker 0's answer.

Each worker binds the public port with SO_REUSEPORT (the kernel spreads new
connections over them), watches the flag file itself and drains on SIGTERM exactly
as a single proxy does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from strangler.proxy.admin.endpoints import token_middleware
from strangler.proxy.config import Address, Config
from strangler.proxy.runtime.server import Running, serve_forever

log = logging.getLogger("strangler.workers")

EXIT_CONFIG = 2
# A worker announces itself on stdout with this line once both listeners are bound.
READY_PREFIX = "strangler-worker-ready "
# A worker that dies sooner than this after its start counts as failing to start,
# and its restarts back off (0.5 s doubling up to MAX_BACKOFF) instead of spinning.
QUICK_EXIT = 5.0
MAX_BACKOFF = 10.0
# How long the supervisor waits for a worker's admin listener to answer.
ASK_TIMEOUT = 5.0

RunLoop = Callable[[Coroutine[Any, Any, None]], None]


# -- the worker side -----------------------------------------------------------------


def worker_config(config: Config) -> Config:
    """A worker's config: its own admin listener on a free loopback port."""
    return dataclasses.replace(config, admin_listen=Address("127.0.0.1", 0))


async def run_worker(config: Config, index: int) -> None:
    """Serve as worker `index`: shared public port, private admin port, announced."""
    # Removing or clearing a labelled series cannot reach the shared files, so its
    # last value stays in the aggregate (README, "Multiple workers"); said once there,
    # not on every flag change.
    warnings.filterwarnings(
        "ignore", r"(Removal of|Clearing) labels has not been implemented", UserWarning
    )
    parent = os.getppid()
    watchers: set[asyncio.Task[None]] = set()

    def started(running: Running) -> None:
        announce = {"worker": index, "pid": os.getpid(), "admin_port": running.admin_port}
        print(READY_PREFIX + json.dumps(announce), flush=True)
        watchers.add(asyncio.create_task(_stop_when_orphaned(parent)))

    await serve_forever(worker_config(config), reuse_port=True, on_started=started)
    for task in watchers:
        task.cancel()


async def _stop_when_orphaned(parent: int) -> None:
    # A worker whose supervisor was killed would hold the port with nobody to restart
    # or stop it: drain and exit as on SIGTERM.
    while os.getppid() == parent:  # noqa: ASYNC110 - no event tells of the parent's death
        await asyncio.sleep(1.0)
    log.warning("supervisor gone, draining")
    os.kill(os.getpid(), signal.SIGTERM)


# -- the supervisor side -------------------------------------------------------------


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def proc_stats(pid: int) -> tuple[float | None, int | None]:
    """CPU seconds (user + system) and resident bytes of `pid`, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None, None
    # The command name may contain spaces and parentheses: fields follow the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)
    return cpu, int(statm.split()[1]) * _PAGE_SIZE


def fresh_metrics_dir() -> tuple[Path, bool]:
    """The shared metrics directory, emptied; and whether it is ours to delete.

    Files left by an earlier run would be added to this run's totals, so they go.
    """
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not given:
        return Path(tempfile.mkdtemp(prefix="strangler-metrics-")), True
    path = Path(given)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path, False


def describe_exit(code: int) -> str:
    """How a worker ended, for the log."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Worker:
    """One worker slot; its process is replaced when it dies."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    admin_port: int | None = None
    restarts: int = 0
    quick_exits: int = 0
    announced: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


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


class Supervisor:
    """Starts, watches and stops the workers, and serves the shared admin port."""

    def __init__(
        self, config_path: str, config: Config, workers: int, log_level: str, metrics_dir: Path
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.log_level = log_level
        self.metrics_dir = metrics_dir
        self.workers = [Worker(i) for i in range(workers)]
        self.exit_code = 0
        self._stopping = asyncio.Event()
        self._serving = False
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or a worker that cannot start); sets exit_code."""
        admin = await self._start_admin()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        keepers = [
            asyncio.create_task(self._keep(w), name=f"worker-{w.index}") for w in self.workers
        ]
        try:
            await self._stopping.wait()
            self._forward(signal.SIGTERM)
            # Each worker drains within its grace period and closes within the close
            # timeout; past that it is stuck, and is killed.
            budget = self.config.relay.grace_period + self.config.relay.close_timeout + 5.0
            _, stuck = await asyncio.wait(keepers, timeout=budget)
            if stuck:
                log.error("%d workers still running after %.0fs, killing", len(stuck), budget)
                self._forward(signal.SIGKILL)
                self.exit_code = self.exit_code or 1
                await asyncio.wait(stuck)
        finally:
            for task in keepers:
                task.cancel()
            await admin.cleanup()
            if self._session is not None:
                await self._session.close()
        log.info("stopped")

    def stop(self) -> None:
        """Begin the shutdown: every worker drains, then the supervisor exits."""
        if not self._stopping.is_set():
            log.info("stopping %d workers", sum(w.running for w in self.workers))
            self._stopping.set()

    def _forward(self, sig: signal.Signals) -> None:
        for w in self.workers:
            if w.running and w.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    async def _keep(self, w: Worker) -> None:
        """Run worker slot `w` until shutdown, restarting its process when it dies."""
        while not self._stopping.is_set():
            proc = await self._spawn(w)
            if self._stopping.is_set():  # the stop was forwarded before this process existed
                proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None
            reader = asyncio.create_task(self._read_announcements(w, proc.stdout))
            code = await proc.wait()
            await reader
            self._forget(w, proc.pid)
            if self._stopping.is_set():
                level = logging.INFO if code == 0 else logging.WARNING
                log.log(level, "worker %d (pid %d) %s", w.index, proc.pid, describe_exit(code))
                if code != 0:
                    self.exit_code = self.exit_code or 1
                return
            if not self._serving:
                # The set never came up (the port taken, the flag file broken, ...):
                # the worker has said why; restarting would only repeat it.
                log.error(
                    "worker %d (pid %d) %s before serving; stopping",
                    w.index,
                    proc.pid,
                    describe_exit(code),
                )
                self.exit_code = EXIT_CONFIG if code == EXIT_CONFIG else 1
                self.stop()
                return
            delay = self._backoff(w)
            log.warning(
                "worker %d (pid %d) %s; restarting in %.1fs",
                w.index,
                proc.pid,
                describe_exit(code),
                delay,
            )
            w.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _spawn(self, w: Worker) -> asyncio.subprocess.Process:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "strangler.proxy",
            "--log-level",
            self.log_level,
            "run",
            "--config",
            self.config_path,
            "--worker-index",
            str(w.index),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        w.proc, w.started_at, w.admin_port = proc, time.monotonic(), None
        log.info("worker %d started, pid %d", w.index, proc.pid)
        return proc

    async def _read_announcements(self, w: Worker, stream: asyncio.StreamReader) -> None:
        # The worker's stdout carries its announcement; anything else is passed on.
        while line := await stream.readline():
            text = line.decode(errors="replace")
            if not text.startswith(READY_PREFIX):
                sys.stdout.write(text)
                sys.stdout.flush()
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                w.admin_port = int(json.loads(text[len(READY_PREFIX) :])["admin_port"])
                w.announced = True
            if not self._serving and all(x.announced for x in self.workers):
                self._serving = True
                log.info(
                    "%d workers listening on %s:%d, admin on %s:%d",
                    len(self.workers),
                    self.config.listen.host,
                    self.config.listen.port,
                    self.config.admin_listen.host,
                    self.config.admin_listen.port,
                )

    def _forget(self, w: Worker, pid: int) -> None:
        from prometheus_client import multiprocess

        w.admin_port = None
        # Drops the dead process's files of live* gauges (its open connections);
        # its counters stay, as the totals they are part of.
        multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _backoff(self, w: Worker) -> float:
        if time.monotonic() - w.started_at >= QUICK_EXIT:
            w.quick_exits = 0
            return 0.0
        w.quick_exits += 1
        return float(min(MAX_BACKOFF, 0.25 * 2**w.quick_exits))

    # -- the admin port ----------------------------------------------------------

    def samples(self) -> Iterator[Any]:
        """Per-worker process figures for WorkerStatsCollector."""
        from strangler.proxy.telemetry.metrics import WorkerSample

        for w in self.workers:
            cpu, rss = proc_stats(w.pid) if w.running and w.pid is not None else (None, None)
            yield WorkerSample(w.index, w.running, w.restarts, cpu, rss)

    async def _start_admin(self) -> web.AppRunner:
        runner = web.AppRunner(
            self._admin_app(), handle_signals=False, access_log=None, shutdown_timeout=1.0
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
        return runner

    def _admin_app(self) -> web.Application:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        from strangler.proxy.telemetry.metrics import WorkerStatsCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.metrics_dir))  # type: ignore[no-untyped-call]
        registry.register(WorkerStatsCollector(self.samples))
        token = self.config.admin_token

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
            ready = not self._stopping.is_set() and all(a.status == 200 for a in answers)
            body = {"ready": ready, "draining": self._stopping.is_set(), "workers": workers}
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

        # As on a single proxy's admin port: probes open, the rest behind the token.
        app = web.Application(
            client_max_size=64 * 1024 * 1024, middlewares=[token_middleware(token)]
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


def run_supervisor(
    config_path: str, config: Config, workers: int, log_level: str, run_loop: RunLoop
) -> int:
    """`strangler run --workers N`: returns the process exit code."""
    from strangler.flags.load import FlagFileError, load_flags

    if config.listen.port == 0:
        print("strangler: --workers needs a fixed listen port, not 0", file=sys.stderr)
        return EXIT_CONFIG
    try:
        # Checked once here so a broken file is one clear error, not N.
        load_flags(config.flags.file, known_routes=config.route_names)
    except FlagFileError as exc:
        print(f"strangler: flag file error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    metrics_dir, owned = fresh_metrics_dir()
    supervisor = Supervisor(config_path, config, workers, log_level, metrics_dir)
    try:
        run_loop(supervisor.run())
    except OSError as exc:
        print(f"strangler: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return supervisor.exit_code
