"""The supervisor of `strangler run --workers N` (overview: the ``runtime`` package): starts
the workers, restarts one that dies, forwards signals to them and stops them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from strangler.proxy.config import Config
from strangler.proxy.runtime.server import ListenError
from strangler.proxy.runtime.supervisor_admin import SupervisorAdmin
from strangler.proxy.runtime.worker import READY_PREFIX
from strangler.proxy.runtime.worker_slot import Worker, describe_exit

log = logging.getLogger("strangler.workers")

EXIT_CONFIG = 2
# A worker that dies sooner than this after its start counts as failing to start,
# and its restarts back off (0.5 s doubling up to MAX_BACKOFF) instead of spinning.
QUICK_EXIT = 5.0
MAX_BACKOFF = 10.0

RunLoop = Callable[[Coroutine[Any, Any, None]], None]


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


class Supervisor:
    """Starts, watches and stops the workers; its admin port is ``SupervisorAdmin``."""

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
        self._admin = SupervisorAdmin(config, self.workers, metrics_dir, self._stopping.is_set)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or a worker that cannot start); sets exit_code.
        Raises ListenError when the admin port cannot be bound."""
        try:
            await self._admin.start()
        except OSError as exc:
            raise ListenError("admin port", self.config.admin_listen, exc, "admin_listen") from exc
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
            await self._admin.close()
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
    except ListenError as exc:
        # The workers' public port is theirs to bind; each says so itself if it cannot.
        print(f"strangler: cannot listen: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return supervisor.exit_code
