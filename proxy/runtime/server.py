"""Running the proxy: listeners, the flag watcher, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from strangler.flags.model import Mode
from strangler.flags.watch import FlagWatcher, ReloadResult
from strangler.proxy.admin.endpoints import build_admin_app
from strangler.proxy.app import Proxy, build_app
from strangler.proxy.config import Address, Config
from strangler.proxy.relay.wsframes import NATIVE
from strangler.proxy.release.plan import audit_changes
from strangler.proxy.telemetry.metrics import Metrics
from strangler.proxy.telemetry.request_log import RequestLog

log = logging.getLogger("strangler.server")


@dataclass
class Running:
    """A started proxy: its bound ports and the means to stop it."""

    proxy: Proxy
    port: int
    admin_port: int
    stop: Callable[[], Awaitable[None]]


class ListenError(OSError):
    """A listener that cannot bind, told as `proxy port 127.0.0.1:8080 (listen): Address
    already in use`: which listener, its address, its config key and the OS's reason."""

    def __init__(self, what: str, address: Address, cause: OSError, key: str = "") -> None:
        host = f"[{address.host}]" if ":" in address.host else address.host
        where = f"{what} {host}:{address.port}" + (f" ({key})" if key else "")
        # aiohttp wraps a failed bind in a sentence of its own: the errno's words suffice.
        reason = os.strerror(cause.errno) if cause.errno and cause.errno > 0 else None
        # The whole sentence is the strerror: `strangler run` prints an OSError's strerror.
        super().__init__(cause.errno, f"{where}: {reason or cause.strerror or cause}")

    def __str__(self) -> str:
        return str(self.strerror)


def _listening_socket(key: str, address: Address, reuse_port: bool = False) -> socket.socket:
    """A bound socket for the listener configured at `key` (`listen`, `admin_listen`);
    ListenError when it cannot be."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Several worker processes bind the same port; the kernel spreads new
            # connections over them (proxy/runtime/worker.py).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        what = "admin port" if key == "admin_listen" else "proxy port"
        raise ListenError(what, address, exc, key) from exc
    sock.setblocking(False)
    return sock


def make_flag_watcher(
    config: Config, metrics: Metrics, listeners: list[Callable[[ReloadResult], None]]
) -> FlagWatcher:
    """The flag watcher, reporting every reload to the metrics, the log and `listeners`."""

    watcher: FlagWatcher

    def on_result(result: ReloadResult) -> None:
        for listener in listeners:
            listener(result)
        metrics.flag_reloads.labels(result.outcome).inc()
        if result.outcome == "applied":
            metrics.set_active_flags(result.flagset.digest, watcher.loaded_at or 0.0)
            log.info("flags applied hash=%s", result.flagset.digest[:12])
        elif result.outcome == "rejected":
            log.warning(
                "flags rejected, keeping hash=%s: %s", watcher.current.digest[:12], result.error
            )

    watcher = FlagWatcher(
        config.flags.file,
        known_routes=config.route_names,
        interval=config.flags.poll_interval,
        on_result=on_result,
        compare=audit_changes,  # the audit record's diff, off the event loop
    )
    return watcher


async def _tick(metrics: Metrics, every: float = 1.0) -> None:
    """Once a second: flush the message and byte tallies, and sample the loop's lag.

    The lag is how late a one-second timer fires: the loop's backlog, as the gauge shows it.
    """
    loop = asyncio.get_running_loop()
    while True:
        planned = loop.time() + every
        await asyncio.sleep(every)
        metrics.loop_lag.set(max(0.0, loop.time() - planned))
        metrics.flush()


async def start(
    config: Config, metrics: Metrics | None = None, *, reuse_port: bool = False
) -> Running:
    """Load the flags, bind both listeners and start serving. Raises FlagFileError, and
    ListenError for a listener that cannot bind."""
    metrics = metrics or Metrics()
    for warning in config.warnings:
        log.warning("%s", warning)
    listeners: list[Callable[[ReloadResult], None]] = []
    watcher = make_flag_watcher(config, metrics, listeners)
    flagset = watcher.load_initial()
    metrics.set_active_flags(flagset.digest, watcher.loaded_at or 0.0)
    metrics.flag_reloads.labels("applied").inc()
    metrics.prime(sorted(config.route_names), [mode.value for mode in Mode])
    proxy = Proxy(config, watcher, metrics)
    listeners.append(proxy.on_reload)
    proxy.on_reload(ReloadResult("applied", flagset, None))  # audit and publish the start

    # Open connections are drained by Proxy.drain before cleanup, so aiohttp's own
    # shutdown wait only has to cover plain HTTP requests still in flight.
    runner = web.AppRunner(
        build_app(proxy),
        handle_signals=False,
        access_log=None,
        shutdown_timeout=1.0,
        # Also bounds a fresh connection that never completes its request head.
        keepalive_timeout=config.limits.header_timeout,
        logger=RequestLog(metrics.bad_input.labels("none", "bad_request")),
    )
    await runner.setup()
    admin_runner = web.AppRunner(
        build_admin_app(proxy), handle_signals=False, access_log=None, shutdown_timeout=1.0
    )
    await admin_runner.setup()
    try:
        sock = _listening_socket("listen", config.listen, reuse_port)
        await web.SockSite(runner, sock).start()
        admin_sock = _listening_socket("admin_listen", config.admin_listen)
        await web.SockSite(admin_runner, admin_sock).start()
    except OSError:
        # A port taken is one clear error for the caller (ListenError names which); the
        # upstream sessions the proxy opened at setup are closed here, not reported as leaked.
        await runner.cleanup()
        await admin_runner.cleanup()
        raise
    poller = asyncio.create_task(watcher.run(), name="strangler-flags-poller")
    ticker = asyncio.create_task(_tick(metrics), name="strangler-metrics-tick")

    stopped = False

    async def stop() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        log.info(
            "draining: %d open connections, grace %.1fs",
            len(proxy.connections),
            config.relay.grace_period,
        )
        await proxy.drain(config.relay.grace_period)
        for task in (poller, ticker):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        metrics.flush()
        await runner.cleanup()
        await admin_runner.cleanup()
        log.info("stopped")

    return Running(proxy, sock.getsockname()[1], admin_sock.getsockname()[1], stop)


async def serve_forever(
    config: Config,
    *,
    reuse_port: bool = False,
    on_started: Callable[[Running], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP re-reads the flag file at once."""
    running = await start(config, reuse_port=reuse_port)
    if on_started is not None:
        on_started(running)
    log.info(
        "listening on %s:%d, admin on %s:%d, frame scanner %s",
        config.listen.host,
        running.port,
        config.admin_listen.host,
        running.admin_port,
        "native" if NATIVE else "in Python",
    )
    if NATIVE is None:
        log.warning(
            "the frame scanner's native core was not built (no C compiler at install?): "
            "the byte tunnel runs in Python alone, at about three times the CPU per message"
        )
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop_requested.set)
    loop.add_signal_handler(signal.SIGINT, stop_requested.set)
    reloads: set[asyncio.Task[ReloadResult]] = set()

    def on_hup() -> None:
        task = asyncio.create_task(running.proxy.flags.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await stop_requested.wait()
    await running.stop()
