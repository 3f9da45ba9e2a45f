"""Proxy-wide shadow state: the switch, the count of open secondaries, and the recent
non-matching turns (kept for the admin port and, when configured, a JSONL file).

Every tee reports here; nothing here touches a socket.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from strangler.proxy.config import ShadowSettings
from strangler.proxy.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True)
class MismatchSample:
    """One recent non-matching turn, for the admin endpoint (no user data)."""

    at: float
    route: str
    mode: str
    turn: int
    request_type: str
    outcome: str
    differences: tuple[tuple[str, str], ...]
    legacy: tuple[Any, ...]  # the turn's events on each side, redacted
    unified: tuple[Any, ...]


@dataclass(eq=False)
class ShadowHub:
    """Proxy-wide shadow state: the switch, the secondary count, recent mismatches."""

    settings: ShadowSettings
    metrics: Metrics
    spawn: Callable[[Coroutine[Any, Any, None]], None]
    """Runs a tee's work on a task the proxy stops at shutdown."""
    enabled: bool = True
    active: int = 0
    samples: deque[MismatchSample] = field(default_factory=deque)

    _log: logging.Logger | None = None
    _listener: logging.handlers.QueueListener | None = None
    _handler: logging.Handler | None = None

    def __post_init__(self) -> None:
        self.enabled = self.settings.enabled
        self.samples = deque(maxlen=self.settings.mismatch_samples)
        if self.settings.mismatch_log is not None:
            self._open_log(self.settings.mismatch_log)

    def _open_log(self, path: Path) -> None:
        # The file is written by a listener thread, so a slow disk never stalls the loop.
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path,
            maxBytes=self.settings.mismatch_log_max_bytes,
            backupCount=self.settings.mismatch_log_backups,
            encoding="utf-8",
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._handler = handler
        self._listener = logging.handlers.QueueListener(records, handler)
        self._listener.start()
        self._log = logging.getLogger(f"strangler.mismatches.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        self._log.addHandler(logging.handlers.QueueHandler(records))

    def record(self, sample: MismatchSample) -> None:
        """Keep a non-matching turn for the admin port and the JSONL file."""
        self.samples.append(sample)
        if self._log is not None:
            self._log.info(json.dumps(asdict(sample), default=str, ensure_ascii=False))

    def admit(self, route: str) -> bool:
        """Whether one more secondary may open now; counts why not."""
        if not self.enabled:
            self.metrics.secondary_skipped.labels(route, "switched_off").inc()
            return False
        if self.active >= self.settings.max_secondary_connections:
            self.metrics.secondary_skipped.labels(route, "at_capacity").inc()
            return False
        return True

    def stop(self) -> None:
        """Write out and close the mismatch log (after the tees' tasks have stopped)."""
        if self._listener is not None:
            self._listener.stop()  # writes what is queued, then returns
            self._listener = None
        if self._handler is not None:
            self._handler.close()
            self._handler = None
