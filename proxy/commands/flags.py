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
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from strangler.flags.evaluate import evaluate
from strangler.flags.lint import lint
from strangler.flags.load import (
    FlagFileError,
    format_instant,
    load_flags,
    parse_flags,
    parse_instant,
)
from strangler.flags.model import BASIS_POINTS, FlagSet, Mode, Reason
from strangler.proxy.config import Config, ConfigError, load_config, parse_config
from strangler.proxy.edge.routes import RouteTable

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_UNABLE = 2

DEFAULT_ADMIN = "http://127.0.0.1:8090"
TOKEN_ENV = "STRANGLER_ADMIN_TOKEN"
ADMIN_TIMEOUT = 10.0


class _Unable(Exception):
    """The command cannot do its job; the message says why (exit 2)."""


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
    except _Unable as exc:
        print(f"strangler flags {args.flags_command}: {exc}", file=sys.stderr)
        return EXIT_UNABLE
    return code


# --- check ---------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    routes = _config(args.config).route_names if args.config else None
    data = _read(args.file)
    problems = lint(data, args.file, routes)
    for problem in problems:
        print(problem)
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if errors:
        print(
            f"{args.file}: {_count(errors, 'error')}, {_count(warnings, 'warning')}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    try:
        flagset = parse_flags(data, args.file, routes)
    except FlagFileError as exc:  # lint and the loader walk the same rules; belt and braces
        print(exc)
        return EXIT_PROBLEMS
    rules = sum(len(flag.rules) for flag in flagset.flags.values())
    noted = f", {_count(warnings, 'warning')}" if warnings else ""
    print(
        f"{args.file}: ok: {_count(len(flagset.flags), 'flag')}, "
        f"{_count(len(flagset.segments), 'segment')}, {_count(rules, 'rule')}{noted}; "
        f"sha256 {flagset.digest[:12]}"
    )
    return EXIT_OK


# --- explain -------------------------------------------------------------------------------


def _explain(args: argparse.Namespace) -> int:
    config = _config(args.config)
    flags_path = Path(args.flags) if args.flags else config.flags.file
    try:
        flagset = load_flags(flags_path, known_routes=config.route_names)
    except FlagFileError as exc:
        raise _Unable(f"the flag file cannot be used: {exc}") from None
    path = urlsplit(args.path).path or "/"
    route = RouteTable(config.routes).match(path)
    if route is None:
        known = ", ".join(f"{r.path} ({r.name})" for r in config.routes)
        raise _Unable(f"no configured route serves the path {path}; routes are {known}.")
    now = time.time()
    if args.at:
        try:
            now = parse_instant(args.at)
        except ValueError as exc:
            raise _Unable(f"--at {exc}") from None
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
        ("bucket", _bucket(decision.bucket)),
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
    status, answer = _admin(args, "/flags/status", None)
    _expect_ok(status, answer)
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
            raise _Unable(f"--claim takes KEY=VALUE (e.g. --claim org=acme), not {pair!r}.")
        if key not in claims:
            claims[key] = value
        elif isinstance(claims[key], list):
            claims[key].append(value)
        else:
            claims[key] = [claims[key], value]
    return claims


def _bucket(value: int | None) -> str:
    if value is None:
        return "- (not read for this decision)"
    return f"{value} of {BASIS_POINTS} ({value / 100:.2f}%)"


# --- plan ----------------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    data = _read(args.file)
    status, answer = _admin(args, "/flags/plan", data)
    if status == 400 and isinstance(answer, dict) and "error" in answer:
        error = str(answer["error"])
        if error.startswith("candidate:"):  # the proxy does not know the file's name
            error = args.file + error[len("candidate") :]
        print(f"rejected by the proxy: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    _expect_ok(status, answer)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return EXIT_OK
    try:
        candidate: FlagSet | None = parse_flags(data, args.file)
    except FlagFileError:
        candidate = None  # accepted by the proxy, so this cannot happen; show no policy
    print(_render_plan(answer, candidate))
    return EXIT_OK


def _render_plan(plan: dict[str, Any], candidate: FlagSet | None) -> str:
    moves = plan.get("moves", [])
    moving = sum(int(m["connections"]) for m in moves)
    out = [
        f"flags {plan.get('current_hash')} -> {plan.get('candidate_hash')} "
        "(plan only: nothing is applied)",
        f"open connections now: {plan.get('open_connections')}; would change mode: {moving}",
    ]
    if moves:
        rows = [("route", "from", "to", "connections", "on change")]
        for m in moves:
            rows.append(
                (
                    str(m["route"]),
                    str(m["from_mode"]),
                    str(m["to_mode"]),
                    str(m["connections"]),
                    _policy(candidate, str(m["route"])),
                )
            )
        out.extend("  " + line for line in _table(rows))
    out.append("population (users not targeted), per flag, before -> after:")
    for entry in plan.get("population", []):
        out.append(
            f"  {entry['flag']}: {_shares(entry.get('before'))} -> {_shares(entry.get('after'))}"
        )
        targets_before, targets_after = entry.get("targets_before"), entry.get("targets_after")
        if targets_before != targets_after:
            out.append(f"    targets: {_counts(targets_before)} -> {_counts(targets_after)}")
    return "\n".join(out)


def _policy(candidate: FlagSet | None, route: str) -> str:
    """What the proxy does to open connections the new file moves (the new flag's policy)."""
    if candidate is None:
        return "?"
    flag = candidate.by_route.get(route)
    if flag is None or flag.drain_rate is None:
        return "keep (finish in their mode)"
    return f"drain (closed 1012, at most {flag.drain_rate:g}/s)"


def _shares(shares: dict[str, float] | None) -> str:
    if shares is None:
        return "(no flag)"
    order = ("unified", "live", "shadow", "legacy")
    ranked = sorted(shares.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    return ", ".join(f"{mode} {share * 100:.4g}%" for mode, share in ranked) or "(none)"


def _counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{mode} {n}" for mode, n in sorted(counts.items()))


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# --- status --------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    status, answer = _admin(args, "/flags/status", None)
    _expect_ok(status, answer)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return EXIT_OK
    print(_render_status(answer, time.time()))
    return EXIT_OK


def _render_status(s: dict[str, Any], now: float) -> str:
    loaded = s.get("loaded_at")
    when = "never" if not loaded else f"{format_instant(round(loaded))} ({now - loaded:.0f}s ago)"
    out = [
        f"flags:       {s.get('hash')} from {s.get('source')}, loaded {when}",
        f"last reload: {'error: ' + s['last_error'] if s.get('last_error') else 'ok'}",
        f"flag keys:   {', '.join(s.get('flags', [])) or '(none)'}",
    ]
    open_now = s.get("open_connections", {})
    out.append("open connections:" + ("" if open_now else " none"))
    for route, modes in sorted(open_now.items()):
        out.append(f"  {route}: {_counts(modes)}")
    drift = {route: n for route, n in s.get("drift", {}).items() if n}
    total = sum(drift.values())
    out.append(
        f"drift:       {total} open connection{'s' if total != 1 else ''} "
        "in a mode the flags in force no longer give" + (f" ({_counts(drift)})" if drift else "")
    )
    guards = s.get("guards") or {}
    out.append("guards:" + ("" if guards else "      none"))
    for key, state in sorted(guards.items()):
        out.append(f"  {key}: {_guard(state)}")
    return "\n".join(out)


def _guard(state: Any) -> str:
    """One line per guarded flag; the endpoint's shape may grow, so read it defensively."""
    if not isinstance(state, dict):
        return json.dumps(state, sort_keys=True)
    parts = ["TRIPPED (held on legacy)" if state.get("tripped") else "ok"]
    for watched, w in sorted((state.get("watching") or {}).items()):
        if isinstance(w, dict):
            ratio, samples = w.get("ratio"), w.get("samples")
            seen = "no samples yet" if ratio is None else f"{ratio:.2%} over {samples} samples"
            parts.append(
                f"{watched} {seen} (limit {w.get('limit')}, "
                f"judged from {state.get('min_samples')} samples)"
            )
    trip = state.get("trip")
    if isinstance(trip, dict) and trip.get("at"):
        parts.append(f"tripped at {format_instant(round(trip['at']))} on {trip.get('guard')}")
    return "; ".join(parts)


# --- the admin port ------------------------------------------------------------------------


def _admin(args: argparse.Namespace, path: str, data: bytes | None) -> tuple[int, Any]:
    base, token = _admin_target(args)
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if data is not None:
        headers["Content-Type"] = "application/yaml"
    url = base.rstrip("/") + path
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=ADMIN_TIMEOUT) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        if exc.code == 401:
            raise _Unable(
                f"the admin port at {base} wants a token; set {TOKEN_ENV} "
                "(or pass --config with admin_auth)."
            ) from None
        return exc.code, _json(body)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Unable(f"cannot reach the proxy's admin port at {base} ({reason}).") from None
    except ValueError as exc:  # a malformed --admin URL
        raise _Unable(f"--admin {exc}") from None


def _admin_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The admin base URL and bearer token: flags, then the config, then defaults."""
    token = os.environ.get(TOKEN_ENV) or None
    config = _config(args.config) if args.config else None
    if config is not None and token is None:
        token = config.admin_token
    if args.admin:
        base = args.admin if "://" in args.admin else f"http://{args.admin}"
    elif config is not None:
        host = config.admin_listen.host
        # A wildcard listen address is reached on loopback from this machine.
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        host = f"[{host}]" if ":" in host else host
        base = f"http://{host}:{config.admin_listen.port}"
    else:
        base = DEFAULT_ADMIN
    return base, token


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return {"error": body.decode(errors="replace").strip()}


def _expect_ok(status: int, answer: Any) -> None:
    if status != 200 or not isinstance(answer, dict):
        detail = answer.get("error") if isinstance(answer, dict) else None
        raise _Unable(f"the admin port answered {status}: {detail or answer}")


# --- shared --------------------------------------------------------------------------------


_PLACEHOLDER_ENV = "STRANGLER_FLAGS_TOOL_PLACEHOLDER"


def _config(path: str) -> Config:
    """The proxy's config, for its routes, flag file and admin address.

    These tools verify no token, and the admin token can come from STRANGLER_ADMIN_TOKEN,
    so a secret this shell does not have (jwt, admin_auth) is no reason to refuse: the
    section that needs it is set aside and the rest is read as the proxy reads it.
    """
    try:
        return load_config(path)
    except ConfigError as exc:
        error = exc
    # Every problem is reported at once: set aside the sections they are all in, if those
    # are only the secret-bearing ones, and read the rest.
    sections = {problem.key.partition(".")[0] for problem in error.problems}
    if sections <= {"jwt", "admin_auth"}:
        try:
            raw = yaml.safe_load(Path(path).read_text())
            if "jwt" in sections:
                _without_jwt_secret(raw)
            if "admin_auth" in sections:
                _without_admin_auth(raw)
            return parse_config(yaml.safe_dump(raw), path)
        except (ConfigError, OSError, yaml.YAMLError, AttributeError, TypeError):
            pass  # the file's own problems say more than the patched copy's
    raise _Unable(f"configuration error: {error}")


def _without_jwt_secret(raw: dict[str, Any]) -> None:
    jwt = raw.get("jwt") or {}
    for key in ("secret_env", "secret_file", "public_key_file"):
        jwt.pop(key, None)
    raw["jwt"] = {**jwt, "algorithms": ["HS256"], "secret_env": _PLACEHOLDER_ENV}
    os.environ[_PLACEHOLDER_ENV] = "never-used-to-verify-" + "x" * 32


def _without_admin_auth(raw: dict[str, Any]) -> None:
    raw.pop("admin_auth", None)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise _Unable(f"cannot read {path}: {exc.strerror or exc}") from None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
