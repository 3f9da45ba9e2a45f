"""Proxy-wide shadow state: the switch, the count of open secondaries, and the recent
non-matching turns (kept for the admin port and, when configured, a JSONL file).

Every non-matching turn is also one INFO line on the `strangler.mismatch` logger: the
same redacted record as JSON, so a fleet's log pipeline keeps what this process's ring
loses at restart. Every tee reports here; nothing here touches a socket.

The hub also keeps shadow work within its budget (`watch`): every `shed.sample_ms` it
samples the event loop's lag and the time the tees' comparisons took, and the shedding
level (proxy/shadow/shed.py) says whether new secondaries open, whether new turns are
compared, and how many open secondaries to close.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import queue
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from strangler.proxy.config import ShadowSettings
from strangler.proxy.shadow.noise import NoiseCounter
from strangler.proxy.shadow.shed import Level, Shedder
from strangler.proxy.telemetry.metrics import Metrics

MISMATCH_LOGGER = "strangler.mismatch"
"""The logger every mismatch record is written to, one JSON object per line (INFO)."""

evidence = logging.getLogger(MISMATCH_LOGGER)


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
    reason: str | None = None
    """Why the turn was not compared (``secondary_overflow``, ``secondary_late``, ...);
    None for a mismatch, whose differences say it."""
    rules: tuple[str, ...] = ()
    """Per difference, the policy rule that judged it ("" for the built-in checks)."""
    id: str = ""
    """Given by the hub when recorded: the turn page's address, /shadow/turns/<id>."""


class Sheddable(Protocol):
    """An open secondary the hub may close to shed its work (a tee)."""

    route: str

    def shed(self) -> None: ...


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
    noise: NoiseCounter = field(default_factory=NoiseCounter)
    """Per (event type, path): compared turns where that field differed within policy."""
    busy: float = 0.0
    shed_counts: dict[str, int] = field(default_factory=dict)
    """Shadow work shed since start, by reason (for the status page)."""
    """Seconds the tees' comparisons ran since the last shedding sample."""
    shedder: Shedder = field(init=False)
    # The open secondaries in the order they opened (a dict keeps it), to close the
    # newest first when shedding.
    _open: dict[Sheddable, None] = field(default_factory=dict)

    _log: logging.Logger | None = None
    _listener: logging.handlers.QueueListener | None = None
    _handler: logging.Handler | None = None

    def __post_init__(self) -> None:
        self.enabled = self.settings.enabled
        self.shedder = Shedder(self.settings.shed)
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

    def record(self, sample: MismatchSample) -> MismatchSample:
        """Keep a non-matching turn for the admin port, the JSONL file and the
        `strangler.mismatch` log; the sample as kept, with its id."""
        sample = replace(sample, id=self._new_id())
        self.samples.append(sample)
        if self._log is not None or evidence.isEnabledFor(logging.INFO):
            line = json.dumps(asdict(sample), default=str, ensure_ascii=False)
            evidence.info(line)
            if self._log is not None:
                self._log.info(line)
        return sample

    def sample(self, sample_id: str) -> MismatchSample | None:
        """The recent non-matching turn with this id, if still kept."""
        return next((s for s in self.samples if s.id == sample_id), None)

    def _new_id(self) -> str:
        # Random, not a counter: ids from before a restart (in the logs) never name
        # another turn after it. 8 hex digits; a clash with a kept sample is redrawn.
        while True:
            candidate = secrets.token_hex(4)
            if self.sample(candidate) is None:
                return candidate

    def admit(self, route: str) -> bool:
        """Whether one more secondary may open now; counts why not."""
        if not self.enabled:
            self.metrics.secondary_skipped.labels(route, "switched_off").inc()
            return False
        if self.active >= self.settings.max_secondary_connections:
            self.metrics.secondary_skipped.labels(route, "at_capacity").inc()
            return False
        if self.shedder.level >= Level.REFUSE:
            self.shed(route, "secondary_refused")
            return False
        return True

    # -- shedding (proxy/shadow/shed.py) ------------------------------------------------

    @property
    def skips_turns(self) -> bool:
        """Whether a turn starting now goes uncompared (verdict ``shed``)."""
        return self.shedder.level >= Level.SKIP

    def shed(self, route: str, reason: str) -> None:
        """Count one piece of shadow work shed (strangler_shadow_shed_total)."""
        self.metrics.shadow_shed.labels(route, reason).inc()
        self.shed_counts[reason] = self.shed_counts.get(reason, 0) + 1

    def opened(self, tee: Sheddable) -> None:
        self._open[tee] = None

    def closed(self, tee: Sheddable) -> None:
        self._open.pop(tee, None)

    async def watch(self) -> None:
        """Sample the loop's lag, the comparisons' time and the process's CPU time, and
        shed what the level says.

        The lag is how late a short timer fires: every frame of every connection waited
        as long. Runs until cancelled (at the proxy's stop).
        """
        settings = self.settings.shed
        if not settings.enabled:
            return
        loop = asyncio.get_running_loop()
        every = settings.sample_ms / 1000
        # The event loop's own thread: its CPU time is what the primary's frames wait
        # behind (the process's would add threads on other cores, such as the mismatch
        # log's writer, and read over one core while the loop itself has room).
        last, last_cpu = loop.time(), time.thread_time()
        while True:
            planned = loop.time() + every
            await asyncio.sleep(every)
            now, cpu = loop.time(), time.thread_time()
            busy, self.busy = self.busy, 0.0
            reading = self.shedder.sample(
                max(0.0, now - planned), busy, cpu - last_cpu, now - last, len(self._open)
            )
            last, last_cpu = now, cpu
            self.metrics.shed_level.set(reading.level)
            if reading.close:
                # The newest first; closing takes the tee out of `_open` at once.
                for tee in list(reversed(self._open))[: reading.close]:
                    self.closed(tee)
                    self.shed(tee.route, "secondary_closed")
                    tee.shed()

    def shed_summary(self) -> str:
        """The shedding level and the last sample, for the status page."""
        s = self.shedder
        if not self.settings.shed.enabled:
            return "off"
        shed = ", ".join(f"{n} {reason}" for reason, n in sorted(self.shed_counts.items()))
        return (
            f"{s.level.label} (loop lag {s.lag * 1000:.0f} ms, comparison {s.share:.0%},"
            f" process CPU {s.process:.0%}); shed since start: {shed or 'nothing'}"
        )

    def stop(self) -> None:
        """Write out and close the mismatch log (after the tees' tasks have stopped)."""
        if self._listener is not None:
            self._listener.stop()  # writes what is queued, then returns
            self._listener = None
        if self._handler is not None:
            self._handler.close()
            self._handler = None
