"""The fleet guard's I/O: every `fleet.poll_interval` seconds, ask Prometheus for each
fleet-guarded ratio and hand the answers to `ReleaseControl.fleet_verdict`.

What the answers mean is decided in proxy/release/fleet.py (pure). This module only
asks, and says when Prometheus cannot be asked: `strangler_fleet_guard_up` goes to 0,
one WARNING line per change of state, and `fleet` guards judge locally meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from strangler.proxy.config.settings import FleetSettings
from strangler.proxy.release.control import ReleaseControl
from strangler.proxy.release.fleet import (
    AnswerError,
    evidence,
    observations_query,
    replica_count,
    replicas_query,
    vector,
)
from strangler.proxy.telemetry.metrics import Metrics

log = logging.getLogger("strangler.proxy")


class Unreachable(Exception):
    """Prometheus gave no usable answer; the message says why (never a credential)."""


class FleetWatch:
    """Polls one Prometheus for the fleet's guard evidence and replica count."""

    def __init__(self, settings: FleetSettings, release: ReleaseControl, metrics: Metrics) -> None:
        assert settings.prometheus_url is not None
        self.settings = settings
        self.release = release
        self.metrics = metrics
        self._url = settings.prometheus_url.rstrip("/") + "/api/v1/query"
        parts = urlsplit(settings.prometheus_url)
        # For log lines: a URL may carry user:password, the host and port never do.
        self._where = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self._up: bool | None = None
        self._session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """Poll until cancelled (the proxy's stop)."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            try:
                while True:
                    await self.poll()
                    await asyncio.sleep(self.settings.poll_interval)
            finally:
                self._session = None

    async def poll(self) -> None:
        """One look at every fleet-guarded ratio of the file in force."""
        digest = self.release.flags.current.digest
        try:
            # The replica count doubles as the liveness probe when no guard asks anything.
            await self._query(replicas_query(self.settings.selector))
            for check in self.release.guards.fleet_checks():
                expr = observations_query(
                    self.settings.selector,
                    check.flag,
                    check.watched,
                    check.window,
                    digest,
                    self.settings.poll_interval,
                )
                self.release.fleet_verdict(check, evidence(await self._query(expr)), digest)
        except Unreachable as exc:
            self._set_up(False, str(exc))
            return
        self._set_up(True, "")

    async def replicas(self) -> int | None:
        """How many replicas Prometheus scraped last; None when it cannot say."""
        try:
            return replica_count(await self._query(replicas_query(self.settings.selector)))
        except Unreachable:
            return None

    async def _query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        session = self._session
        if session is None:
            raise Unreachable("not started")
        try:
            async with session.post(self._url, data={"query": expr}) as response:
                body: Any = await response.json(content_type=None)
            return vector(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            reason = str(exc) if isinstance(exc, AnswerError) else type(exc).__name__
            raise Unreachable(reason) from None

    def _set_up(self, up: bool, reason: str) -> None:
        self.release.fleet_up = up
        self.metrics.fleet_guard_up.set(int(up))
        if up is self._up:
            return
        if up:
            log.log(
                logging.INFO if self._up is None else logging.WARNING,
                "fleet guard up: Prometheus at %s answers; fleet guards judge fleet-wide",
                self._where,
            )
        else:
            log.warning(
                "fleet guard down: Prometheus at %s cannot be asked (%s); guards with "
                "source fleet judge this replica's own traffic until it answers",
                self._where,
                reason,
            )
        self._up = up
