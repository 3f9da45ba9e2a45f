"""`strangler conformance URL`: check a unified router against the protocol contract.

For the team that builds the unified router: connects to URL as the proxy would, tries
every rule of docs/asyncapi.yaml and docs/PROTOCOL.md (conformance_checks.py), and
prints one `PASS <check>` or `FAIL <check>: <reason>` line each, then `N passed, M
failed`. Exit 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:  # the checks load aiohttp and jsonschema: only when the command runs
    from strangler.proxy.commands.conformance_checks import Check
    from strangler.proxy.commands.conformance_probe import Router

SECRET_ENV: Final = "STRANGLER_JWT_SECRET"
EXIT_PASSED: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_CODES: Final = """\
exit status:
  0  every check passed
  1  at least one check failed (each FAIL line says why)
  2  usage error: no token and no secret, an unusable secret, a URL that is not
     ws:// or wss://
"""
EXAMPLES: Final = """\
Examples:
  STRANGLER_JWT_SECRET=... strangler conformance ws://127.0.0.1:8092/v1/ws
  strangler conformance ws://router.internal:8092/v1/ws --token "$JWT" --timeout 10
  STRANGLER_JWT_SECRET=... strangler conformance wss://router.internal/v1/ws \\
      --user conformance-bot --issuer my-issuer --audience my-audience"""


def add_conformance_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`strangler conformance URL [--secret S | --token T] [--timeout SECONDS] ...`."""
    conformance = sub.add_parser(
        "conformance",
        help="check a unified router against the protocol contract (docs/asyncapi.yaml)",
        description="Connect to the unified router at URL as the proxy would (its "
        "X-Strangler-Route, -Auth and -Shadow headers, the clients' subprotocol offers "
        "and credentials) and check it against the canonical protocol: handshake and "
        "subprotocol answer, authentication failures, the greeting per route, a full "
        "turn for every client message shape and alias, ping/pong, ack, errors on "
        "frames that are not JSON objects, close codes. Every frame the router sends "
        "is validated against docs/asyncapi.yaml. One PASS or FAIL line per check, "
        "then 'N passed, M failed'.\n\n"
        "Tokens are minted (HS256) for --user with --secret or the environment "
        f"variable {SECRET_ENV}, which the router must verify with; or --token gives "
        "one ready-made valid token (its sub is the user the router must report).",
        epilog=f"{EXIT_CODES}\n{EXAMPLES}",
    )
    conformance.add_argument("url", help="the router's WebSocket URL (ws:// or wss://)")
    conformance.add_argument(
        "--secret",
        default=None,
        help=f"HS256 secret to mint tokens with (default: ${SECRET_ENV}); a value here "
        "shows in the process list, the variable does not",
    )
    conformance.add_argument(
        "--token", default=None, help="a valid JWT to connect with instead of minting one"
    )
    conformance.add_argument("--user", default="conformance", help="sub of minted tokens")
    conformance.add_argument("--issuer", default="netra-auth-service", help="iss of minted tokens")
    conformance.add_argument("--audience", default="netra-platform", help="aud of minted tokens")
    conformance.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for a handshake or for each frame",
    )
    conformance.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    router = router_from(args)
    if isinstance(router, str):
        print(f"strangler conformance: {router}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(check_router(router, sys.stdout))


def router_from(args: argparse.Namespace) -> Router | str:
    """The router to check, or why the arguments cannot make one."""
    import jwt

    from strangler.proxy.commands.conformance_probe import Router
    from strangler.proxy.commands.contract import contract
    from strangler.proxy.edge.identity import mint_token

    if not args.url.startswith(("ws://", "wss://")):
        return f"URL must start with ws:// or wss://, got {args.url!r}"
    if args.timeout <= 0:
        return f"--timeout must be positive, got {args.timeout:g}"
    if args.token:
        try:
            claims = jwt.decode(args.token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return "--token is not a JWT"
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return "--token has no sub claim: the checks need the user the router reports"
        token, user = args.token, subject
    else:
        secret = args.secret or os.environ.get(SECRET_ENV)
        if not secret:
            return f"no token: give --token, or --secret or {SECRET_ENV} to mint one"
        try:
            token = mint_token(secret, args.user, issuer=args.issuer, audience=args.audience)
        except ValueError as exc:
            return f"{exc} (give a ready-made token with --token)"
        user = args.user
    return Router(url=args.url, contract=contract(), token=token, user=user, timeout=args.timeout)


async def check_router(router: Router, out: TextIO, checks: Sequence[Check] | None = None) -> int:
    """Run `checks` (default: all) one after another, report each, return the exit status."""
    from strangler.proxy.commands.conformance_checks import CHECKS

    checks = CHECKS if checks is None else checks
    failed = 0
    for check in checks:
        reason = await _outcome(check, router)
        if reason is None:
            print(f"PASS {check.name}", file=out, flush=True)
        else:
            failed += 1
            print(f"FAIL {check.name}: {reason}", file=out, flush=True)
    print(f"{len(checks) - failed} passed, {failed} failed", file=out, flush=True)
    return EXIT_FAILED if failed else EXIT_PASSED


async def _outcome(check: Check, router: Router) -> str | None:
    import aiohttp

    from strangler.proxy.commands.conformance_probe import Failed

    try:
        await check.run(router)
    except Failed as failure:
        return str(failure)
    except (aiohttp.ClientError, OSError) as exc:
        # The connection broke under the check (reset, refused mid-way): that is the router's.
        return f"the connection failed: {type(exc).__name__} {exc}".strip()
    return None
