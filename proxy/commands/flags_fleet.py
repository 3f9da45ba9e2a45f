"""`strangler flags status --fleet`: which flag file every replica serves, from the
Prometheus that scrapes them all, so "is my change live everywhere?" has an answer.

Exit 0 when every replica serves one file, 1 when they disagree (skew), 3 when
Prometheus cannot be asked or sees no replica.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from strangler.flags.instants import format_instant
from strangler.proxy.commands.admin_client import Unable, tool_config
from strangler.proxy.config.settings import FleetSettings
from strangler.proxy.release.fleet import (
    AnswerError,
    Replica,
    flag_files,
    hashes_query,
    loaded_query,
    replicas_view,
    vector,
)

PROMETHEUS_TIMEOUT = 10.0


class CannotAsk(Unable):
    """Prometheus could not be asked, or sees no replica (exit 3)."""


def fleet_status(args: argparse.Namespace) -> tuple[int, list[Replica]]:
    """(exit code, replicas); prints the table, or the JSON with `--json`."""
    settings = tool_config(args.config).fleet if args.config else FleetSettings()
    url = args.prometheus or settings.prometheus_url
    if not url:
        raise Unable("no Prometheus to ask: pass --prometheus URL or set fleet.prometheus_url.")
    replicas = replicas_view(
        _query(url, hashes_query(settings.selector)), _query(url, loaded_query(settings.selector))
    )
    if not replicas:
        raise CannotAsk(f"Prometheus at {url} sees no replica matching {settings.selector}.")
    files = flag_files(replicas)
    if args.json:
        print(
            json.dumps(
                {
                    "replicas": [
                        {"instance": r.instance, "hashes": list(r.hashes), "loaded_at": r.loaded_at}
                        for r in replicas
                    ],
                    "flag_files": sorted(files),
                    "skew": len(files) > 1,
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        print(fleet_text(replicas, time.time()))
    return (1 if len(files) > 1 else 0), replicas


def fleet_text(replicas: list[Replica], now: float) -> str:
    """The table: one line per replica, the files named, skew said in words."""
    files = flag_files(replicas)
    verdict = "one flag file everywhere" if len(files) == 1 else f"SKEW: {len(files)} flag files"
    lines = [f"fleet: {len(replicas)} replicas, {verdict}"]
    width = max(len(r.instance) for r in replicas)
    for r in replicas:
        applied = "unknown"
        if r.loaded_at is not None:
            applied = f"{format_instant(r.loaded_at)} ({max(0, now - r.loaded_at):.0f}s ago)"
        lines.append(f"  {r.instance:<{width}}  {', '.join(r.hashes) or '-':<12}  {applied}")
    return "\n".join(lines)


def _query(url: str, expr: str) -> list[tuple[dict[str, str], float]]:
    data = urllib.parse.urlencode({"query": expr}).encode()
    request = urllib.request.Request(url.rstrip("/") + "/api/v1/query", data=data)
    try:
        with urllib.request.urlopen(request, timeout=PROMETHEUS_TIMEOUT) as response:
            body: Any = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = _json(exc.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CannotAsk(f"cannot reach Prometheus at {url} ({reason}).") from None
    try:
        return vector(body)
    except AnswerError as exc:
        raise CannotAsk(f"Prometheus at {url}: {exc}") from None


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
