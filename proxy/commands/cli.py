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
from strangler.flags.schema import VERSION as FLAGS_SCHEMA_VERSION
from strangler.proxy import __version__
from strangler.proxy.commands.backend import add_backend_parser
from strangler.proxy.commands.completion import add_completion_parser, script, subcommands
from strangler.proxy.commands.conformance import add_conformance_parser
from strangler.proxy.commands.flags import add_flags_parser
from strangler.proxy.commands.help import finish_help, missing_command
from strangler.proxy.config import ConfigError, json_schema, load_config
from strangler.proxy.telemetry.logs import setup_logging

EXIT_CONFIG = 2
EXIT_USAGE = 2  # what argparse exits with on a usage error
SECRET_ENV = "STRANGLER_JWT_SECRET"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


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

    secret, source = _client_secret(args.secret)
    return asyncio.run(
        run_client(
            url=args.url,
            user=args.user,
            text=args.text,
            secret=secret,
            timeout=args.timeout,
            hold=args.hold,
            secret_source=source,
        )
    )


def _client_secret(given: str | None) -> tuple[str, str]:
    """The secret `strangler client` signs with, and where it came from (for messages)."""
    from strangler.proxy.commands.demo import DEMO_SECRET

    if given:
        return given, "--secret"
    from_env = os.environ.get(SECRET_ENV)
    if from_env:
        return from_env, f"the environment variable {SECRET_ENV}"
    return DEMO_SECRET, f"the demo's built-in secret ({SECRET_ENV} is not set)"


def _cmd_completion(args: argparse.Namespace) -> int:
    print(script(args.shell, build_parser(), __version__), end="")
    return 0


def _worker_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strangler",
        description="A feature-flagged strangler proxy for WebSocket traffic: run the proxy, "
        "check its configuration, watch and plan flag changes, try it all in the demo, "
        "connect as a user, or run one reference backend alone.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"strangler {__version__} (flag file schema version {FLAGS_SCHEMA_VERSION})",
        help="show the version of strangler and of the flag file schema it reads, and exit",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=os.environ.get("STRANGLER_LOG_LEVEL"),
        help="log level (default: $STRANGLER_LOG_LEVEL, else the config's logging.level, "
        "else info)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    run = sub.add_parser("run", help="run the proxy")
    _config_argument(run)
    run.add_argument(
        "--workers",
        type=_worker_count,
        default=None,
        metavar="N",
        help="run N proxy processes on the listen port, one admin port for all "
        "(default: one process)",
    )
    # Set by the supervisor when it starts a worker (proxy/runtime/supervisor.py).
    run.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=_cmd_run)

    check = sub.add_parser("check-config", help="validate strangler.yaml and its flag file")
    _config_argument(check)
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
        metavar="PORT",
        help="proxy port; admin is +10, legacy backend +11, unified router +12",
    )
    demo.set_defaults(func=_cmd_demo)

    _add_client_parser(sub)
    add_backend_parser(sub)  # strangler backend legacy|unified (proxy/commands/backend.py)
    add_conformance_parser(sub)  # strangler conformance URL (proxy/commands/conformance.py)
    add_flags_parser(sub)  # strangler flags check|explain|plan|status (proxy/commands/flags.py)
    from strangler.proxy.commands.shadow import add_shadow_parser

    add_shadow_parser(sub)  # strangler shadow explain|noise (proxy/commands/shadow.py)
    from strangler.proxy.commands.slo import add_slo_parser

    add_slo_parser(sub)  # strangler slo rules (proxy/commands/slo.py)
    add_completion_parser(sub).set_defaults(func=_cmd_completion)
    finish_help(parser)
    return parser


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        default="strangler.yaml",
        metavar="FILE",
        help="the proxy's configuration file",
    )


def _add_client_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    client = sub.add_parser(
        "client",
        help="connect as a user like the browser does and print the events",
        description="Connect to the proxy (or a backend) as USER, with a freshly signed "
        "token offered the way the browser front end offers it, and print each event with "
        "the backend that sent it.\n\n"
        "The token is signed (HS256) with the first of: --secret; the environment variable "
        f"{SECRET_ENV}; the demo's built-in secret. The server must verify with the same "
        "secret.\n\n"
        "Exit status: 0 a complete turn (--hold: this client closed the connection); 1 no "
        "complete turn, or the server closed the connection, or it was not reached; 2 a "
        "usage error; 3 authentication failed (the error code and message, the close code "
        "and reason, or the HTTP status and body are printed).",
    )
    client.add_argument(
        "text",
        nargs="?",
        default=None,
        help="the request sent as start_agent once connected (default: 'Optimize my costs'; "
        "with --hold, nothing is sent until a line is typed)",
    )
    client.add_argument("--user", required=True, help="user id, the token's sub claim")
    client.add_argument(
        "--url",
        default="ws://127.0.0.1:8080/ws",
        help="WebSocket URL: the proxy's listen address and any route's path",
    )
    client.add_argument(
        "--secret",
        default=None,
        help=f"HS256 secret to sign the token with (default: ${SECRET_ENV}, else the demo's "
        "built-in secret); a value here shows in the process list, the variable does not",
    )
    client.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the connection, for a complete turn, and with --hold "
        "for the answers still owed at end of input",
    )
    client.add_argument(
        "--hold",
        action="store_true",
        help="stay connected: print events as they come and send each line typed on stdin "
        "(a line starting with { as JSON as it is, any other as a chat message); end of "
        "input (Ctrl-D) or Ctrl-C closes normally, and a close by the server is printed "
        "with its code and reason",
    )
    client.set_defaults(func=_cmd_client)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unfinished = missing_command(parser, args)
    if unfinished is not None:
        # `strangler` or `strangler flags` alone: the help and the commands to choose
        # from, rather than argparse's "arguments are required: flags_command".
        unfinished.print_help(sys.stderr)
        names = ", ".join(subcommands(unfinished))
        print(f"\n{unfinished.prog}: a command is needed, one of: {names}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.log_level or "info")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
