"""One reference backend (legacy emulator or unified router) as its own process.

The soak run and the fault tests kill and restart backends, so each must live in a
process of its own: `python bench/soak/backend.py legacy --port 8091`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from strangler.reference.legacy_backend import build_legacy_app
from strangler.reference.settings import BackendSettings
from strangler.reference.unified_backend import build_unified_app


async def serve(kind: str, port: int, settings: BackendSettings) -> None:
    """Serve until SIGTERM or SIGINT; prints `ready` once the port is bound."""
    app = build_legacy_app(settings) if kind == "legacy" else build_unified_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("legacy", "unified"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True, help="HS256 secret the tokens are signed with")
    parser.add_argument("--event-delay", type=float, default=0.0, help="seconds between events")
    args = parser.parse_args()
    settings = BackendSettings(jwt_secret=args.secret, event_delay=args.event_delay)
    asyncio.run(serve(args.kind, args.port, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
