"""`strangler demo`: the proxy and both reference backends in one process, plus a tour.

The tour connects two demo users to the same `/ws` path: the example flags send
alice to the unified router and bob to legacy, and the metrics show both. The servers'
log goes to `demo.log` in the work directory, so the terminal shows the tour alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from strangler.flags.load import FlagFileError
from strangler.legacy_adapters.canonical import strip_volatile
from strangler.proxy.commands.client import run_client
from strangler.proxy.config import Address, Config, json_schema, load_config
from strangler.proxy.runtime.server import ListenError, start
from strangler.proxy.telemetry.logs import TextFormatter
from strangler.reference.legacy_backend import build_legacy_app
from strangler.reference.settings import BackendSettings
from strangler.reference.unified_backend import build_unified_app

DEMO_SECRET = "demo-secret-change-me-before-production-use"
CONFIG_DIR = Path(__file__).with_name("demo_config")
DEFAULT_BASE_PORT = 8080  # proxy; admin +10, legacy backend +11, unified router +12
LOG_FILE = "demo.log"  # in the work directory: the servers' log, off the tour's terminal

# The metric families the tour prints, to show both backends at work.
TOUR_METRICS = (
    "strangler_connections_total",
    "strangler_comparisons_total",
    "strangler_mismatches_total",
    "strangler_messages_total",
    "strangler_flag_evaluations_total",
)


# The first line of the shipped file points editors at the schema in the repository.
_MODELINE = "# yaml-language-server: $schema="


def prepare_workdir(workdir: Path) -> Path:
    """Copy the demo configuration into `workdir`; an edited flags file is kept.

    The schema goes beside the copy and its modeline points there, so an editor opened
    on the demo's strangler.yaml completes and checks it wherever the demo runs.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    schema = workdir / "strangler.schema.json"
    schema.write_text(json.dumps(json_schema(), indent=2) + "\n")
    lines = (CONFIG_DIR / "strangler.yaml").read_text().splitlines(keepends=True)
    if lines and lines[0].startswith(_MODELINE):
        lines[0] = f"{_MODELINE}./{schema.name}\n"
    (workdir / "strangler.yaml").write_text("".join(lines))
    flags = workdir / "flags.yaml"
    if not flags.exists():
        shutil.copyfile(CONFIG_DIR / "flags.yaml", flags)
    return workdir / "strangler.yaml"


def log_to_file(path: Path) -> list[logging.Handler]:
    """Send every log record to `path` (emptied first) instead of the terminal; returns
    the handlers it replaced."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    replaced = root.handlers[:]
    for old in replaced:
        root.removeHandler(old)
    root.addHandler(handler)
    return replaced


def _restore_log(replaced: list[logging.Handler]) -> None:
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()
    for handler in replaced:
        root.addHandler(handler)


async def _start_backend(app: web.Application, name: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(name, Address("127.0.0.1", port), exc) from exc
    return runner


async def _print_metrics(admin_port: int) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin_port}/metrics") as response,
    ):
        text = await response.text()
    print(f"\n== metrics at http://127.0.0.1:{admin_port}/metrics (excerpt)")
    for line in text.splitlines():
        if line.startswith(TOUR_METRICS):
            print("  " + line)


def with_ports(config: Config, base: int) -> Config:
    """The demo configuration moved to another block of loopback ports."""
    return replace(
        config,
        listen=Address("127.0.0.1", base),
        admin_listen=Address("127.0.0.1", base + 10),
        legacy=replace(config.legacy, url=f"ws://127.0.0.1:{base + 11}"),
        unified=replace(config.unified, url=f"ws://127.0.0.1:{base + 12}/v1/ws"),
    )


async def _tour(url: str, admin_port: int, secret: str) -> None:
    for user in ("alice", "bob"):
        print(f"\n== {user} connects to /ws")
        await run_client(url=url, user=user, text="Optimize my costs", secret=secret, timeout=10.0)

    factory = url.replace("/ws", "/ws/factory")
    seen: dict[str, list[dict[str, Any]]] = {}
    for user, backend in (("dana", "unified"), ("erin", "legacy")):
        print(f"\n== {user} connects to /ws/factory (flags say: {backend})")
        seen[user] = []
        await run_client(
            url=factory,
            user=user,
            text="Optimize my costs",
            secret=secret,
            timeout=10.0,
            seen=seen[user],
        )
    same = strip_volatile(seen["dana"]) == strip_volatile(seen["erin"])
    print(f"factory frames from unified and legacy identical apart from volatile fields: {same}")

    print("\n== carol is in shadow: legacy answers, the unified router is compared")
    for question in ("Optimize my costs", "Why did my GPU costs grow?"):
        await run_client(url=url, user="carol", text=question, secret=secret, timeout=10.0)
    await asyncio.sleep(1.0)  # the comparison runs beside the client, on its own time
    await _print_metrics(admin_port)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin_port}/shadow") as response,
    ):
        state = await response.json()
    for sample in state["recent_mismatches"][:3]:
        found = ", ".join(f"{c} {d}" for c, d in sample["differences"])
        print(f"  mismatch on route {sample['route']} turn {sample['turn']}: {found}")
        print(
            f"    side by side: http://127.0.0.1:{admin_port}/shadow/turns/{sample['id']}"
            f" or strangler shadow show {sample['id']} --admin 127.0.0.1:{admin_port}"
        )


async def run_demo(
    *, workdir: str, tour: bool, exit_after_tour: bool, base_port: int = DEFAULT_BASE_PORT
) -> None:
    """Start everything, run the tour, then serve until interrupted."""
    os.environ.setdefault("STRANGLER_JWT_SECRET", DEMO_SECRET)
    config = with_ports(load_config(prepare_workdir(Path(workdir))), base_port)
    replaced = log_to_file(Path(workdir) / LOG_FILE)
    try:
        await _serve(config, base_port, Path(workdir), tour=tour, exit_after_tour=exit_after_tour)
    except ListenError as exc:
        # A port of the demo's block taken (another demo?): say which, not a traceback.
        print(f"strangler demo: cannot listen: {exc}; try --base-port", file=sys.stderr)
        raise SystemExit(2) from None
    except FlagFileError as exc:  # the kept flags.yaml, edited into a broken one
        print(f"strangler demo: flag file error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        _restore_log(replaced)


async def _serve(
    config: Config, base_port: int, workdir: Path, *, tour: bool, exit_after_tour: bool
) -> None:
    secret = os.environ["STRANGLER_JWT_SECRET"]
    settings = BackendSettings(jwt_secret=secret, event_delay=0.05)
    # The demo's unified router has one deliberate regression: asked about GPUs it calls
    # another tool, so the shadow comparison has something to find.
    unified = replace(settings, divergence="other_tool", divergence_keyword="GPU")
    backends: list[web.AppRunner] = []
    try:
        legacy_app, unified_app = build_legacy_app(settings), build_unified_app(unified)
        backends.append(await _start_backend(legacy_app, "legacy backend", base_port + 11))
        backends.append(await _start_backend(unified_app, "unified router", base_port + 12))
        running = await start(config)
    except BaseException:
        for runner in backends:
            await runner.cleanup()
        raise
    url = f"ws://{config.listen.host}:{running.port}/ws"
    print(
        f"strangler demo: proxy on {url}, admin on :{running.admin_port}, "
        f"legacy backend :{base_port + 11}, unified router :{base_port + 12}\n"
        f"The servers' log goes to {workdir / LOG_FILE}."
    )
    try:
        if tour:
            await _tour(url, running.admin_port, secret)
        print(
            "\nNext:\n"
            f"  strangler client --url {url} --user carol 'Optimize my costs'\n"
            f"  edit {workdir / 'flags.yaml'} (e.g. add bob under targets.unified); "
            "the next connection follows it\n"
            f"  curl -s http://127.0.0.1:{running.admin_port}/metrics | grep ^strangler_\n"
            f"  tail -f {workdir / LOG_FILE}   (connections, flag reloads)\n"
            "  Ctrl-C stops the demo."
        )
        sys.stdout.flush()
        if not exit_after_tour:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
    finally:
        await running.stop()
        for runner in backends:
            with contextlib.suppress(Exception):
                await runner.cleanup()
