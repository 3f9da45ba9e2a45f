"""How the `strangler flags` tools reach what they inspect: the proxy's configuration as
the tools read it, and the running proxy's admin port.

`Unable` is the one failure: the tool cannot do its job, and its message says why (the
command prints it on one line and exits 2).
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from strangler.proxy.config import Config, ConfigError, load_config, parse_config

DEFAULT_ADMIN = "http://127.0.0.1:8090"
TOKEN_ENV = "STRANGLER_ADMIN_TOKEN"
ADMIN_TIMEOUT = 10.0


class Unable(Exception):
    """The command cannot do its job; the message says why (exit 2)."""


def add_admin_arguments(parser: argparse.ArgumentParser) -> None:
    """`--admin` and `--config`: where `ask` finds the admin port and its token."""
    parser.add_argument("--admin", help=f"admin URL (default: from --config, else {DEFAULT_ADMIN})")
    parser.add_argument("--config", "-c", help="strangler.yaml, for the admin address and token")


def ask(args: argparse.Namespace, path: str, data: bytes | None) -> tuple[int, Any]:
    """GET `path` of the running proxy's admin port (POST `data` when given): the HTTP
    status and the decoded JSON answer."""
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
            raise Unable(
                f"the admin port at {base} wants a token; set {TOKEN_ENV} "
                "(or pass --config with admin_auth)."
            ) from None
        return exc.code, _json(body)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unable(f"cannot reach the proxy's admin port at {base} ({reason}).") from None
    except ValueError as exc:  # a malformed --admin URL
        raise Unable(f"--admin {exc}") from None


def _admin_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The admin base URL and bearer token: flags, then the config, then defaults."""
    token = os.environ.get(TOKEN_ENV) or None
    config = tool_config(args.config) if args.config else None
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


def expect_ok(status: int, answer: Any) -> None:
    """Raise `Unable` unless the admin port answered 200 with a JSON object."""
    if status != 200 or not isinstance(answer, dict):
        detail = answer.get("error") if isinstance(answer, dict) else None
        raise Unable(f"the admin port answered {status}: {detail or answer}")


_PLACEHOLDER_ENV = "STRANGLER_FLAGS_TOOL_PLACEHOLDER"


def tool_config(path: str) -> Config:
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
    raise Unable(f"configuration error: {error}")


def _without_jwt_secret(raw: dict[str, Any]) -> None:
    jwt = raw.get("jwt") or {}
    for key in ("secret_env", "secret_file", "public_key_file"):
        jwt.pop(key, None)
    raw["jwt"] = {**jwt, "algorithms": ["HS256"], "secret_env": _PLACEHOLDER_ENV}
    os.environ[_PLACEHOLDER_ENV] = "never-used-to-verify-" + "x" * 32


def _without_admin_auth(raw: dict[str, Any]) -> None:
    raw.pop("admin_auth", None)


def read_file(path: str) -> bytes:
    """The file's bytes, or `Unable` naming it and why it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise Unable(f"cannot read {path}: {exc.strerror or exc}") from None
