"""`strangler flags`: the release manager's tools for the flag file.

- `check FILE`: every problem with its line (flags.lint); exit 1 on any error.
- `explain --user U --path P [--live]`: which mode a connection would get, and why.
- `plan FILE`: ask the running proxy what applying FILE would move (nothing is applied).
- `status`: the flags the running proxy has in force, reload errors, guards, drift.
- `export --flagd FILE`: the flags as flagd definitions that bucket users the same way.

Every verb exits with one of the codes in `EXIT_CODES` (shown in `--help`): a script or
CI step reads the outcome from the code, never from the text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from strangler.flags.evaluate import evaluate
from strangler.flags.flagd import RULE_GENERATION, flagd_document, problems
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
    Unable,
    add_admin_arguments,
    ask,
    expect_ok,
    read_file,
    tool_config,
)
from strangler.proxy.commands.flags_fleet import CannotAsk, fleet_status
from strangler.proxy.commands.flags_text import bucket_text, count, plan_text, status_text
from strangler.proxy.edge.routes import RouteTable

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_UNABLE = 2
EXIT_UNREACHABLE = 3

EXIT_CODES = """\
exit status:
  0  done, and what was examined is fine
  1  what was examined has a problem: the file has errors (check), the proxy
     rejects it (plan), the last reload failed and the previous file stays in
     force (status), a flag has no exact flagd equivalent (export)
  2  usage or input error: bad arguments, an unreadable or invalid file or
     config, an unknown path or flag key
  3  the running proxy could not be asked: its admin port is unreachable,
     wants a token, or answered with an error (plan, status, explain --live)
"""


class Unreachable(Unable):
    """The running proxy could not be asked (exit 3); the message says why."""


def add_flags_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `strangler flags ...` on the top-level subcommands."""
    flags = sub.add_parser(
        "flags",
        help="check, explain, plan and watch flag changes",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flags.set_defaults(func=run)
    verbs = flags.add_subparsers(dest="flags_command", required=True)

    check = verbs.add_parser("check", help="lint a flag file; exit 1 on any error")
    check.add_argument("file", help="the flag file to check (flags.yaml)")
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
    explain.add_argument(
        "--config", "-c", default="strangler.yaml", help="strangler.yaml, for routes and flags"
    )
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
    plan.add_argument("file", help="the flag file you would apply")
    _admin_arguments(plan)
    plan.set_defaults(flags_func=_plan)

    status = verbs.add_parser(
        "status",
        help="the running proxy's flags, guards and drift; exit 1 if the last reload failed",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _admin_arguments(status)
    status.add_argument(
        "--fleet",
        action="store_true",
        help="every replica's flag file and when it was applied, from Prometheus; "
        "exit 1 when they differ",
    )
    status.add_argument(
        "--prometheus", help="Prometheus URL for --fleet (default: fleet.prometheus_url)"
    )
    status.set_defaults(flags_func=_status)

    export = verbs.add_parser(
        "export",
        help="the flags as flagd flag definitions (JSON) that put users in the same modes",
        description=(
            "Print the flags of FILE as a flagd flag definition file. Rollouts use flagd's "
            f"fractional operator in its {RULE_GENERATION} rule (flagd 0.15.0 to 0.16.x), "
            "which buckets every user exactly as strangler does. A flag with no exact "
            "equivalent (rules on token claims, a sub-second effective_at) is refused: "
            "nothing is printed and the exit status is 1."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("file", help="the flag file (flags.yaml)")
    export.add_argument(
        "--flagd", action="store_true", required=True, help="flagd's JSON (the one format)"
    )
    export.add_argument("--flag", help="export only this flag (default: every flag)")
    export.set_defaults(flags_func=_export)


def _admin_arguments(parser: argparse.ArgumentParser) -> None:
    add_admin_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the raw answer")


def run(args: argparse.Namespace) -> int:
    """Run one `strangler flags` command; problems are one line on stderr, no traceback."""
    try:
        code: int = args.flags_func(args)
    except Unable as exc:
        print(f"strangler flags {args.flags_command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if isinstance(exc, Unreachable | CannotAsk) else EXIT_UNABLE
    return code


def _ask_proxy(args: argparse.Namespace, path: str, data: bytes | None) -> tuple[int, Any]:
    """Ask the running proxy; any failure to get an answer is `Unreachable` (exit 3)."""
    if args.config:
        tool_config(args.config)  # a config that cannot be read is an input error (exit 2)
    try:
        return ask(args, path, data)
    except Unable as exc:
        raise Unreachable(str(exc)) from None


def _expect_ok(status: int, answer: Any) -> None:
    try:
        expect_ok(status, answer)
    except Unable as exc:
        raise Unreachable(str(exc)) from None


class _Part(NamedTuple):
    """One process's answer: the proxy's, or one worker's under `run --workers`."""

    name: str | None
    """None for a single proxy; `worker N (pid P)` for a worker."""
    body: dict[str, Any] | None
    """Its JSON answer; None when it gave none."""
    status: int | None
    error: str | None


def _parts(answer: dict[str, Any]) -> list[_Part]:
    """A single proxy's answer, or the supervisor's merged answer split per worker."""
    workers = answer.get("workers")
    if not isinstance(workers, list):
        return [_Part(None, answer, 200, None)]
    parts = []
    for w in workers:
        name = f"worker {w.get('worker')} (pid {w.get('pid')})"
        body = w.get("body")
        error = w.get("error") if not isinstance(body, dict) else None
        parts.append(_Part(name, body if isinstance(body, dict) else None, w.get("status"), error))
    return parts


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
    status, answer = _ask_proxy(args, "/flags/status", None)
    _expect_ok(status, answer)
    parts = _parts(answer)
    silent = [p for p in parts if p.body is None]
    if silent:
        # Its guards are unknown, so "not tripped" could be wrong: no answer, not a guess.
        p = silent[0]
        raise Unreachable(f"{p.name} did not answer ({p.error or p.status}); guards unknown.")
    bodies = [p.body for p in parts if p.body is not None]
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
    status, answer = _ask_proxy(args, "/flags/plan", data)
    rejection = _rejection(status, answer)
    if rejection is not None:
        if rejection.startswith("candidate:"):  # the proxy does not know the file's name
            rejection = args.file + rejection[len("candidate") :]
        print(f"rejected by the proxy: {rejection}", file=sys.stderr)
        return EXIT_PROBLEMS
    _expect_ok(status, answer)
    parts = _parts(answer)
    silent = [p for p in parts if p.body is None]
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        try:
            candidate: FlagSet | None = parse_flags(data, args.file)
        except FlagFileError:
            candidate = None  # accepted by the proxy, so this cannot happen; show no policy
        _print_parts(parts, lambda body: plan_text(body, candidate))
    if silent:
        p = silent[0]
        print(
            f"strangler flags plan: {p.name} did not answer ({p.error or p.status}); "
            "its connections are not counted.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    return EXIT_OK


def _rejection(status: int, answer: Any) -> str | None:
    """The proxy's (or any worker's) reason for rejecting the file; None if it did not."""
    if status != 400 or not isinstance(answer, dict):
        return None
    if "error" in answer and "workers" not in answer:
        return str(answer["error"])
    for part in _parts(answer):  # every worker validates the same file the same way
        if part.status == 400 and part.body is not None and "error" in part.body:
            return str(part.body["error"])
    return None


def _print_parts(parts: list[_Part], text: Callable[[dict[str, Any]], str]) -> None:
    """Each process's answer as text; a worker's under its name, indented."""
    for part in parts:
        if part.name is None:
            assert part.body is not None
            print(text(part.body))
        elif part.body is None:
            print(f"{part.name}: no answer ({part.error or part.status})")
        else:
            print(f"{part.name}:")
            print("\n".join("  " + line for line in text(part.body).splitlines()))


# --- status --------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    """Exit 1 when a reload failed (the previous file stays in force), whatever the
    format: a rollout script reads the code. A worker that did not answer is exit 3,
    unless another one's failed reload already says the rollout did not apply.
    `--fleet` asks Prometheus instead: exit 1 when replicas serve different files."""
    if args.fleet:
        return fleet_status(args)[0]
    status, answer = _ask_proxy(args, "/flags/status", None)
    _expect_ok(status, answer)
    parts = _parts(answer)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        now = time.time()
        _print_parts(parts, lambda body: status_text(body, now))
    failed = [p for p in parts if p.body is not None and p.body.get("last_error")]
    silent = [p for p in parts if p.body is None]
    if failed:
        first = failed[0].body
        assert first is not None
        where = "" if failed[0].name is None else f" on {len(failed)} of {len(parts)} workers"
        print(
            f"strangler flags status: the last reload failed{where}; "
            f"the flags {first.get('hash')} stay in force.",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    if silent:
        p = silent[0]
        print(
            f"strangler flags status: {p.name} did not answer ({p.error or p.status}).",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    return EXIT_OK


# --- export --------------------------------------------------------------------------------


def _export(args: argparse.Namespace) -> int:
    data = read_file(args.file)
    try:
        flagset = parse_flags(data, args.file)
    except FlagFileError as exc:
        raise Unable(f"the flag file has errors (see strangler flags check): {exc}") from None
    flags = list(flagset.flags.values())
    if args.flag is not None:
        if args.flag not in flagset.flags:
            known = ", ".join(sorted(flagset.flags)) or "(none)"
            raise Unable(f"{args.file} has no flag {args.flag!r}; its flags are {known}.")
        flags = [flagset.flags[args.flag]]
    refused = [(flag.key, reason) for flag in flags for reason in problems(flag)]
    if refused:
        # All or nothing: a flagd file missing a flag would hand its users the caller's
        # code default without a word.
        for key, reason in refused:
            print(f"{args.file}: flags.{key}: no exact flagd equivalent: {reason}", file=sys.stderr)
        print(
            f"{args.file}: nothing exported; --flag KEY exports the flags that have one.",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    print(json.dumps(flagd_document(flags), indent=2, ensure_ascii=False))
    return EXIT_OK
