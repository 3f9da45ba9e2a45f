"""`strangler flags`: the release manager's tools for the flag file.

- `check FILE`: every problem with its line (flags.lint); exit 1 on any error.
- `explain --user U --path P [--live]`: which mode a connection would get, and why.
- `plan FILE`: ask the running proxy what applying FILE would move (nothing is applied).
- `status`: the flags the running proxy has in force, reload errors, guards, drift.

Exit status: 0 fine, 1 the file has errors (check) or the proxy rejected it (plan),
2 the command could not do its job (unreadable file or config, unknown path,
unreachable admin port).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from strangler.flags.evaluate import evaluate
from strangler.flags.lint import lint
from strangler.flags.load import (
    FlagFileError,
    format_instant,
    load_flags,
    parse_flags,
    parse_instant,
)
from strangler.flags.model import FlagSet, Mode, Reason
from strangler.proxy.commands.admin_client import (
    DEFAULT_ADMIN,
    Unable,
    ask,
    expect_ok,
    read_file,
    tool_config,
)
from strangler.proxy.commands.flags_text import bucket_text, count, plan_text, status_text
from strangler.proxy.edge.routes import RouteTable

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_UNABLE = 2


def add_flags_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `strangler flags ...` on the top-level subcommands."""
    flags = sub.add_parser("flags", help="check, explain, plan and watch flag changes")
    flags.set_defaults(func=run)
    verbs = flags.add_subparsers(dest="flags_command", required=True)

    check = verbs.add_parser("check", help="lint a flag file; exit 1 on any error")
    check.add_argument("file")
    check.add_argument("--config", "-c", help="strangler.yaml: routes must be configured ones")
    check.set_defaults(flags_func=_check)

    explain = verbs.add_parser("explain", help="which mode a connection would get, and why")
    explain.add_argument("--user", help="user id (omit for an anonymous connection)")
    explain.add_argument("--path", required=True, help="request path, e.g. /ws/factory")
    explain.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="K=V",
        help="a token claim; repeat a key to make a list claim",
    )
    explain.add_argument("--config", "-c", default="strangler.yaml")
    explain.add_argument("--flags", help="flag file (default: the one the config names)")
    explain.add_argument("--at", help="evaluate at this ISO 8601 instant (default: now)")
    explain.add_argument(
        "--live",
        action="store_true",
        help="also ask the running proxy whether a tripped guard holds the flag on legacy",
    )
    explain.add_argument("--admin", help="admin URL for --live (default: from --config)")
    explain.set_defaults(flags_func=_explain)

    plan = verbs.add_parser("plan", help="what applying FILE would move, asked of the proxy")
    plan.add_argument("file")
    _admin_arguments(plan)
    plan.set_defaults(flags_func=_plan)

    status = verbs.add_parser("status", help="the running proxy's flags, guards and drift")
    _admin_arguments(status)
    status.set_defaults(flags_func=_status)


def _admin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin", help=f"admin URL (default: from --config, else {DEFAULT_ADMIN})")
    parser.add_argument("--config", "-c", help="strangler.yaml, for the admin address and token")
    parser.add_argument("--json", action="store_true", help="print the raw answer")


def run(args: argparse.Namespace) -> int:
    """Run one `strangler flags` command; problems are one line on stderr, no traceback."""
    try:
        code: int = args.flags_func(args)
    except Unable as exc:
        print(f"strangler flags {args.flags_command}: {exc}", file=sys.stderr)
        return EXIT_UNABLE
    return code


# --- check ---------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    routes = tool_config(args.config).route_names if args.config else None
    data = read_file(args.file)
    problems = lint(data, args.file, routes)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors:
        print(
            f"{args.file}: {count(errors, 'error')}, {count(warnings, 'warning')}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    try:
        flagset = parse_flags(data, args.file, routes)
    except FlagFileError as exc:  # lint and the loader walk the same rules; belt and braces
        print(exc)
        return EXIT_PROBLEMS
    rules = sum(len(flag.rules) for flag in flagset.flags.values())
    noted = f", {count(warnings, 'warning')}" if warnings else ""
    print(
        f"{args.file}: ok: {count(len(flagset.flags), 'flag')}, "
        f"{count(len(flagset.segments), 'segment')}, {count(rules, 'rule')}{noted}; "
        f"sha256 {flagset.digest[:12]}"
    )
    return EXIT_OK


# --- explain -------------------------------------------------------------------------------


def _explain(args: argparse.Namespace) -> int:
    config = tool_config(args.config)
    flags_path = Path(args.flags) if args.flags else config.flags.file
    try:
        flagset = load_flags(flags_path, known_routes=config.route_names)
    except FlagFileError as exc:
        raise Unable(f"the flag file cannot be used: {exc}") from None
    path = urlsplit(args.path).path or "/"
    route = RouteTable(config.routes).match(path)
    if route is None:
        known = ", ".join(f"{r.path} ({r.name})" for r in config.routes)
        raise Unable(f"no configured route serves the path {path}; routes are {known}.")
    now = time.time()
    if args.at:
        try:
            now = parse_instant(args.at)
        except ValueError as exc:
            raise Unable(f"--at {exc}") from None
    claims = _claims(args.claim)
    if args.user and config.jwt.user_claim not in claims:
        claims[config.jwt.user_claim] = args.user  # a real token carries it too
    decision = evaluate(flagset, route.name, args.user or None, claims, now=now)
    guard_line = _live_guard(args, flagset, decision.flag) if args.live else None
    if guard_line is not None and guard_line[1] and decision.mode is not Mode.LEGACY:
        decision = decision._replace(mode=Mode.LEGACY, reason=Reason.GUARD)
    lines = [
        ("route", f"{route.name} ({route.path})"),
        ("flag", decision.flag or "(none covers this route)"),
        ("mode", decision.mode.value),
        ("reason", decision.reason.value),
        ("rule", decision.rule or "-"),
        ("bucket", bucket_text(decision.bucket)),
    ]
    if args.at:
        lines.append(("at", format_instant(now)))
    if guard_line is not None:
        lines.append(("guard", guard_line[0]))
    lines.append(("flags", f"{flags_path} (sha256 {flagset.digest[:12]})"))
    for name, value in lines:
        print(f"{name + ':':8} {value}")
    return EXIT_OK


def _live_guard(args: argparse.Namespace, flagset: FlagSet, flag: str | None) -> tuple[str, bool]:
    """What the running proxy's guard does to ``flag``: a line to print, and whether it holds.

    A guard holds only in the file it was tripped under (a new file starts it afresh), so
    a proxy running another file says nothing about this one. Under ``--workers`` each
    worker has its own guards; the flag is held if any worker holds it.
    """
    status, answer = ask(args, "/flags/status", None)
    expect_ok(status, answer)
    bodies = [w.get("body") or {} for w in answer["workers"]] if "workers" in answer else [answer]
    running = {b.get("hash") for b in bodies}
    if running != {flagset.digest[:12]}:
        shown = ", ".join(sorted(str(h) for h in running))
        return f"not known: the running proxy serves flags {shown}, not this file", False
    if flag is None:
        return "none (no flag covers this route)", False
    states = [(b.get("guards") or {}).get(flag) for b in bodies]
    if not any(isinstance(state, dict) for state in states):
        return f"none on {flag}", False
    held = sum(isinstance(state, dict) and bool(state.get("tripped")) for state in states)
    if not held:
        return "not tripped on the running proxy", False
    where = "" if len(bodies) == 1 else f" in {held} of {len(bodies)} workers"
    return f"TRIPPED{where}: the running proxy holds {flag} on legacy", True


def _claims(pairs: Sequence[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise Unable(f"--claim takes KEY=VALUE (e.g. --claim org=acme), not {pair!r}.")
        if key not in claims:
            claims[key] = value
        elif isinstance(claims[key], list):
            claims[key].append(value)
        else:
            claims[key] = [claims[key], value]
    return claims


# --- plan ----------------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    data = read_file(args.file)
    status, answer = ask(args, "/flags/plan", data)
    if status == 400 and isinstance(answer, dict) and "error" in answer:
        error = str(answer["error"])
        if error.startswith("candidate:"):  # the proxy does not know the file's name
            error = args.file + error[len("candidate") :]
        print(f"rejected by the proxy: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    expect_ok(status, answer)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return EXIT_OK
    try:
        candidate: FlagSet | None = parse_flags(data, args.file)
    except FlagFileError:
        candidate = None  # accepted by the proxy, so this cannot happen; show no policy
    print(plan_text(answer, candidate))
    return EXIT_OK


# --- status --------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    status, answer = ask(args, "/flags/status", None)
    expect_ok(status, answer)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return EXIT_OK
    print(status_text(answer, time.time()))
    return EXIT_OK
