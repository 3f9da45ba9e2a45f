"""`strangler backend legacy|unified`: one reference backend alone, on its own port.

For a router team that wants the reference legacy routes or the reference unified
router to test against without the proxy in front; the demo, the bench and the tests
run the same backends (strangler.reference).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from aiohttp import web

from strangler.reference.dialects import Greeting
from strangler.reference.legacy_backend import WEBSOCKET_PATHS, build_legacy_app
from strangler.reference.settings import BackendSettings
from strangler.reference.unified_backend import build_unified_app

log = logging.getLogger("strangler.backend")

BUILDERS = {"legacy": build_legacy_app, "unified": build_unified_app}
EXIT_CONFIG = 2


def add_backend_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`strangler backend KIND --port N [--host H] [--secret-env VAR] ...`."""
    backend = sub.add_parser(
        "backend",
        help="run one reference backend alone (legacy routes or the unified router)",
        description="Run the reference legacy backend (every legacy path in its own "
        "dialect) or the reference unified router alone. Example: STRANGLER_JWT_SECRET=... "
        "strangler backend unified --port 8092",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    backend.add_argument("kind", choices=sorted(BUILDERS), help="which backend")
    backend.add_argument("--host", default="127.0.0.1", help="address to listen on")
    backend.add_argument("--port", type=int, required=True, help="port to listen on")
    backend.add_argument(
        "--secret-env",
        default="STRANGLER_JWT_SECRET",
        help="environment variable holding the HS256 secret tokens are checked with",
    )
    backend.add_argument("--issuer", default="netra-auth-service", help="required `iss`")
    backend.add_argument("--audience", default="netra-platform", help="required `aud`")
    backend.add_argument(
        "--unified-path", default="/v1/ws", help="the unified router's WebSocket path"
    )
    backend.add_argument("--server-id", default="", help="name sent as server_id in frames")
    backend.add_argument(
        "--greeting",
        action="append",
        default=[],
        metavar="PATH=SHAPE",
        help="legacy only, repeatable: the first frame PATH sends, connection_established "
        "or system_message (e.g. /websocket=connection_established); default: its dialect's",
    )
    backend.set_defaults(func=run)


def settings_from(args: argparse.Namespace) -> BackendSettings | str:
    """The backend's settings, or why they cannot be made (the secret is missing)."""
    secret = os.environ.get(args.secret_env)
    if not secret:
        return f"the environment variable {args.secret_env} (--secret-env) is not set"
    greetings = greetings_from(args.greeting)
    if isinstance(greetings, str):
        return greetings
    if greetings and args.kind != "legacy":
        return "--greeting applies to the legacy backend; the unified router's is canonical"
    return BackendSettings(
        jwt_secret=secret,
        issuer=args.issuer or None,
        audience=args.audience or None,
        unified_path=args.unified_path,
        server_id=args.server_id,
        greetings=greetings,
    )


def greetings_from(values: list[str]) -> dict[str, Greeting] | str:
    """`--greeting PATH=SHAPE` values as a path-to-greeting map, or what is wrong."""
    greetings: dict[str, Greeting] = {}
    shapes = [shape.value for shape in Greeting]
    for value in values:
        path, _, shape = value.partition("=")
        if path not in WEBSOCKET_PATHS:
            paths = ", ".join(WEBSOCKET_PATHS)
            return f"--greeting {value!r}: no WebSocket path {path!r} (one of {paths})"
        if shape not in shapes:
            return f"--greeting {value!r}: unknown greeting {shape!r} (one of {', '.join(shapes)})"
        greetings[path] = Greeting(shape)
    return greetings


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if isinstance(settings, str):
        print(f"strangler backend: {settings}", flush=True)
        return EXIT_CONFIG
    asyncio.run(_serve(BUILDERS[args.kind](settings), args.kind, args.host, args.port))
    return 0


async def _serve(app: web.Application, kind: str, host: str, port: int) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("reference %s backend listening on %s:%d", kind, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
