"""The `strangler` command: run the proxy, the embedded demo, or the demo client."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence

from strangler.flags.load import FlagFileError
from strangler.proxy import __version__
from strangler.proxy.commands.backend import add_backend_parser
from strangler.proxy.commands.flags import add_flags_parser
from strangler.proxy.config import ConfigError, json_schema, load_config
from strangler.proxy.telemetry.logs import setup_logging

EXIT_CONFIG = 2


def _not_a_declined_offer(record: logging.LogRecord) -> bool:
    # A client offer the serving backend declined is mirrored on purpose (the client
    # sees what the backend said); aiohttp would warn about it on every handshake.
    return "overlap server-known" not in record.getMessage()


def _setup_logging(level: str, fmt: str = "text") -> None:
    setup_logging(level, fmt)
    # The same function object each time, so a second setup adds no second filter.
    logging.getLogger("aiohttp.websocket").addFilter(_not_a_declined_offer)


def _run_loop(main: asyncio.Future[None] | object) -> None:
    if sys.platform == "linux":
        try:
            import uvloop

            uvloop.run(main)  # type: ignore[arg-type]
            return
        except ImportError:
            pass
    asyncio.run(main)  # type: ignore[arg-type]


def _config_problems(exc: ConfigError) -> int:
    """Every problem on its own line (`file:line:col: key: what`), then how many."""
    print(exc, file=sys.stderr)
    if len(exc.problems) > 1:
        print(f"strangler: {exc.source}: {len(exc.problems)} problems", file=sys.stderr)
    return EXIT_CONFIG


def _cmd_run(args: argparse.Namespace) -> int:
    from strangler.proxy.runtime.server import serve_forever

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _config_problems(exc)
    # The config's logging section; --log-level (or STRANGLER_LOG_LEVEL) overrides its level.
    args.log_level = args.log_level or config.logging.level  # workers inherit it
    _setup_logging(args.log_level, config.logging.format)
    if args.workers is not None:
        from strangler.proxy.runtime.supervisor import run_supervisor

        return run_supervisor(args.config, config, args.workers, args.log_level, _run_loop)
    try:
        if args.worker_index is not None:
            from strangler.proxy.runtime.worker import run_worker

            _run_loop(run_worker(config, args.worker_index))
        else:
            _run_loop(serve_forever(config))
    except FlagFileError as exc:
        print(f"strangler: flag file error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"strangler: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    from strangler.flags.load import load_flags

    try:
        config = load_config(args.config)
        flagset = load_flags(config.flags.file, known_routes=config.route_names)
    except ConfigError as exc:
        return _config_problems(exc)
    except FlagFileError as exc:
        print(f"strangler: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings:
        print(f"strangler: warning: {warning}", file=sys.stderr)
    print(
        f"ok: {len(config.routes)} routes, {len(flagset.flags)} flags "
        f"(flags hash {flagset.digest[:12]})"
    )
    return 0


def _cmd_config_schema(args: argparse.Namespace) -> int:
    # The committed copy, docs/strangler.schema.json, is this output (a test compares).
    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from strangler.proxy.commands.demo import run_demo

    _run_loop(
        run_demo(
            workdir=args.workdir,
            tour=not args.no_tour,
            exit_after_tour=args.exit,
            base_port=args.base_port,
        )
    )
    return 0


def _cmd_client(args: argparse.Namespace) -> int:
    from strangler.proxy.commands.client import run_client

    secret = args.secret or os.environ.get(
        "STRANGLER_JWT_SECRET", "demo-secret-change-me-before-production-use"
    )
    return asyncio.run(
        run_client(
            url=args.url,
            user=args.user,
            text=args.text,
            secret=secret,
            timeout=args.timeout,
        )
    )


def _worker_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strangler", description=__doc__)
    parser.add_argument("--version", action="version", version=f"strangler {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("STRANGLER_LOG_LEVEL"),
        help="debug, info, warning, error (default: the config's logging.level, else info)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the proxy")
    run.add_argument("--config", "-c", default="strangler.yaml")
    run.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        help="run N proxy processes on the listen port, one admin port for all",
    )
    # Set by the supervisor when it starts a worker (proxy/runtime/supervisor.py).
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate strangler.yaml and its flag file")
    check.add_argument("--config", "-c", default="strangler.yaml")
    check.set_defaults(func=_cmd_check_config)

    schema = sub.add_parser(
        "config-schema", help="print the JSON Schema of strangler.yaml (for editors)"
    )
    schema.set_defaults(func=_cmd_config_schema)

    demo = sub.add_parser("demo", help="proxy + reference backends + a guided tour")
    demo.add_argument("--workdir", default=".demo", help="where the demo's editable files go")
    demo.add_argument("--no-tour", action="store_true", help="skip the scripted clients")
    demo.add_argument("--exit", action="store_true", help="stop after the tour")
    demo.add_argument(
        "--base-port",
        type=int,
        default=8080,
        help="proxy port; admin is +10, legacy backend +11, unified router +12",
    )
    demo.set_defaults(func=_cmd_demo)

    client = sub.add_parser("client", help="connect as a demo user and print the events")
    client.add_argument("text", nargs="?", default="Optimize my costs")
    client.add_argument("--user", required=True)
    client.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    client.add_argument("--secret", default=None, help="HS256 secret (default: the demo's)")
    client.add_argument("--timeout", type=float, default=10.0)
    client.set_defaults(func=_cmd_client)

    add_backend_parser(sub)  # strangler backend legacy|unified (proxy/commands/backend.py)
    add_flags_parser(sub)  # strangler flags check|explain|plan|status (proxy/commands/flags.py)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_level or "info")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
