"""Every Prometheus metric the proxy exports, in one place.

Labels are bounded by design (DESIGN.md): route names and flag keys come from the
configuration, everything else from the small enumerations below. A user id, token,
raw path or connection id is never a label value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from strangler.flags.model import WATCHED
from strangler.proxy import __version__

# No `<name>_created` series beside each counter and histogram series: in the text format
# they are gauges of a creation time that no dashboard, rule or alert reads, and they
# made up over a third of /metrics. Process-wide, and every process that serves /metrics
# (single, worker, supervisor, demo) imports this module before its first scrape.
disable_created_metrics()  # type: ignore[no-untyped-call]

# How a relayed connection ended (the `outcome` label of strangler_connections_total).
OUTCOMES = (
    "client_closed",  # the client sent a close frame
    "backend_closed",  # the backend sent a close frame
    "client_gone",  # the client vanished without a close frame
    "backend_gone",  # the backend vanished without a close frame
    "too_big",  # a message over relay.max_message_bytes
    "protocol_error",  # a peer broke the WebSocket protocol
    "shutdown",  # closed with 1001 when the grace period ran out
    "drained",  # closed with 1012 after a flag change moved it (drain policy)
    "stalled",  # the client stopped reading for longer than limits.stalled_timeout
    "auth_failed",  # refused after accept, in the route's legacy style
)

DIRECTIONS = ("client_to_backend", "backend_to_client")

# Why an upstream handshake did not produce a WebSocket.
CONNECT_FAILURES = (
    "refused",  # nothing listening, or the host unreachable
    "connect_timeout",  # TCP not established within the connect timeout
    "handshake_timeout",  # connected, but no handshake answer within the timeout
    "status",  # answered with an HTTP status instead of 101 (mirrored to the client)
    "bad_handshake",  # a 101 that is not a valid WebSocket answer
    "tls",
    "error",
)

# Why the proxy refused a client handshake (the `reason` label of refusals).
REFUSALS = (
    "auth_failed",
    "no_route",
    "bad_subprotocol",
    "upstream_refused",
    "upstream_unavailable",
    "shutting_down",
    "too_many_connections",  # the global connection limit
    "too_many_from_client",  # the per-client-IP connection limit
    "bad_handshake",  # a malformed upgrade request
)

# Why a frame or handshake was bad input (strangler_bad_input_total).
BAD_INPUT = (
    "invalid_json",  # a translated client frame that is not a JSON object with a type
    "invalid_utf8",  # a client text frame that is not UTF-8 (closed 1007)
    "too_big",  # a client message over relay.max_message_bytes (closed 1009)
    "protocol_error",  # a client frame that breaks RFC 6455 (closed 1002)
    "bad_handshake",  # an upgrade request with a bad Sec-WebSocket-Key or version (400)
    "bad_request",  # HTTP the parser refused (oversized or malformed header), route "none"
    "bad_target",  # an absolute-form target that is not an http(s) URL (400), route "none"
    "bad_version",  # an upgrade for a WebSocket version other than 13 (426)
)

# What a guard watches.
GUARDS = WATCHED  # proxy/release/guards.py defines what a guard can watch

# What one guard observation was (strangler_guard_observations_total): the fleet guard
# sums these over every replica, so each replica's guard judges the same evidence.
GUARD_RESULTS = ("ok", "bad")

# Why a shadow/live connection ran without its secondary.
SECONDARY_SKIPS = ("switched_off", "at_capacity")

# How a secondary connection failed (its client never notices); `overflow`: it sent
# faster than it was compared, or read the client's copy slower than the client sent.
SECONDARY_FAILURES = ("refused", "unavailable", "died", "protocol_error", "overflow")

# The bounded queues whose overflow drops data: the client's copy to the secondary and
# the secondary's frames (both that secondary's overflow), client and primary frames
# waiting for the comparison (`compare`: the comparison fell behind the primary).
SECONDARY_QUEUES = ("to_secondary", "from_secondary", "compare")

# Shadow work shed to keep the primary fast (proxy/shadow/shed.py): a secondary not
# opened, a turn not compared, an open secondary closed.
SHADOW_SHED = ("secondary_refused", "turn_skipped", "secondary_closed")

# How an observed turn ended (strangler_turns_total; proxy/relay/turns.py says when).
TURN_OUTCOMES = ("completed", "incomplete", "errored", "abandoned", "interrupted", "timed_out")
# The golden path, in order: the `event` label of strangler_turn_missing_events_total.
GOLDEN_PATH = (
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
)
# The backend serving each mode's client (the primary in shadow and live): the
# (mode, backend) pairs whose turn series are primed.
PRIMARY_BACKENDS = (
    ("legacy", "legacy"),
    ("unified", "unified"),
    ("shadow", "legacy"),
    ("live", "unified"),
)

# Why an admin listener refused a request (proxy/admin/trust.py): a Host it does not
# answer to (421), a cross-site request that would change state (403).
ADMIN_REFUSALS = ("host", "origin")
ADMIN_REFUSALS_NAME = "strangler_admin_refusals"
ADMIN_REFUSALS_HELP = "Requests an admin listener refused: a foreign Host, a cross-site change."


class Tally:
    """A counter series added to in plain integers and flushed to Prometheus in batches.

    Messages and bytes are counted per chunk or frame, flag evaluations per handshake;
    prometheus-client's ``inc`` (a lock and two checks) cost about a tenth of the byte
    tunnel's CPU per message and an eighth of a connection's mode decision.
    ``Metrics.flush`` moves what was added into the counter: at every scrape of the admin
    port, once a second, and at shutdown; a scrape in one process is therefore exact,
    and under ``--workers`` a worker's counts reach the supervisor within a second.
    """

    __slots__ = ("_series", "pending")

    def __init__(self, series: Counter) -> None:
        self._series = series
        self.pending = 0

    def add(self, amount: int = 1) -> None:
        self.pending += amount

    def flush(self) -> None:
        if self.pending:
            amount, self.pending = self.pending, 0
            self._series.inc(amount)


_TURN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Observed turns: from a first event within milliseconds to a long agent run.
_OBSERVED_TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """The proxy's metrics, registered on an injected registry so tests get a fresh one.

    Under `strangler run --workers N` every process writes its values to shared files
    (prometheus-client's multiprocess mode); each gauge's `multiprocess_mode` says how
    the supervisor combines them: `livesum` for counts of open things, `livemax` where
    every worker holds the same value or the worst one matters. Without the
    PROMETHEUS_MULTIPROC_DIR environment variable the modes are ignored.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Gauge(
            "strangler_build_info",
            "Version of the running proxy.",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(__version__).set(1)
        self.connections_open = Gauge(
            "strangler_connections_open",
            "Client WebSocket connections open now.",
            ["route", "mode"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.connections = Counter(
            "strangler_connections",
            "Client WebSocket connections that ended, by how they ended.",
            ["route", "mode", "outcome"],
            registry=r,
        )
        self.messages = Counter(
            "strangler_messages",
            "WebSocket messages relayed.",
            ["route", "backend", "direction"],
            registry=r,
        )
        self.bytes = Counter(
            "strangler_bytes",
            "WebSocket payload bytes relayed.",
            ["route", "backend", "direction"],
            registry=r,
        )
        self.upstream_connect_seconds = Histogram(
            "strangler_upstream_connect_seconds",
            "Time to complete the upstream WebSocket handshake.",
            ["backend"],
            buckets=_CONNECT_BUCKETS,
            registry=r,
        )
        self.upstream_connect_failures = Counter(
            "strangler_upstream_connect_failures",
            "Upstream handshakes that did not produce a WebSocket, by reason.",
            ["backend", "reason"],
            registry=r,
        )
        self.handshake_refusals = Counter(
            "strangler_handshake_refusals",
            "Client handshakes the proxy refused or ended right after accept, by reason.",
            ["route", "reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "strangler_auth_failures",
            "Tokens that failed verification at the edge, by reason.",
            ["route", "reason"],
            registry=r,
        )
        self.flag_evaluations = Counter(
            "strangler_flag_evaluations",
            "Per-connection mode decisions.",
            ["flag", "mode", "reason"],
            registry=r,
        )
        self.flag_reloads = Counter(
            "strangler_flag_reloads",
            "Flag file reload attempts, by result.",
            ["result"],
            registry=r,
        )
        self.flags_info = Gauge(
            "strangler_flags_info",
            "The active flag file: 1 for its content hash (first 12 hex digits of SHA-256).",
            ["hash"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.flags_loaded_timestamp = Gauge(
            "strangler_flags_loaded_timestamp_seconds",
            "When the active flag file was applied (Unix time).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.http_requests = Counter(
            "strangler_http_passthrough_requests",
            "Plain HTTP requests forwarded to the legacy backend, by status class.",
            ["status_class"],
            registry=r,
        )
        # -- shadow and live: the compared secondary -----------------------------------
        self.secondary_open = Gauge(
            "strangler_secondary_connections_open",
            "Compared secondary connections open now.",
            ["route", "backend"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.secondary_skipped = Counter(
            "strangler_secondary_skipped",
            "Connections in shadow or live mode served without a secondary, by reason.",
            ["route", "reason"],
            registry=r,
        )
        self.secondary_failures = Counter(
            "strangler_secondary_failures",
            "Secondary connections that failed, by reason.",
            ["route", "backend", "reason"],
            registry=r,
        )
        self.secondary_dropped = Counter(
            "strangler_secondary_dropped_frames",
            "Frames dropped because a bounded secondary or comparison queue was full.",
            ["route", "queue"],
            registry=r,
        )
        self.shadow_shed = Counter(
            "strangler_shadow_shed",
            "Shadow work shed to keep the primary fast, by what was shed.",
            ["route", "reason"],
            registry=r,
        )
        self.shed_level = Gauge(
            "strangler_shadow_shed_level",
            "How much shadow work is shed: 0 none, 1 refuse, 2 skip turns, 3 close secondaries.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.comparisons = Counter(
            "strangler_comparisons",
            "Turn verdicts of the comparator, by outcome.",
            ["route", "mode", "outcome"],
            registry=r,
        )
        self.mismatches = Counter(
            "strangler_mismatches",
            "Mismatched turns, once per category each shows (turns: strangler_comparisons_total).",
            ["route", "mode", "category"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "strangler_turn_duration_seconds",
            "Seconds from a client request to the turn's last event, per backend.",
            ["route", "backend", "role"],
            buckets=_TURN_BUCKETS,
            registry=r,
        )
        self.first_event_seconds = Histogram(
            "strangler_turn_first_event_seconds",
            "Seconds from a client request to the turn's first event, per backend.",
            ["route", "backend", "role"],
            buckets=_TURN_BUCKETS,
            registry=r,
        )
        # -- every turn, on every mode and backend (proxy/relay/turns.py) -----------------
        self.turns_started = Counter(
            "strangler_turns_started",
            "Turns started: client turn messages, and agent_started with no turn open.",
            ["route", "mode", "backend"],
            registry=r,
        )
        self.turns = Counter(
            "strangler_turns",
            "Turns that ended, by outcome (completed: the whole golden path).",
            ["route", "mode", "backend", "outcome"],
            registry=r,
        )
        self.turn_missing_events = Counter(
            "strangler_turn_missing_events",
            "Golden-path event types missing from incomplete turns, once per turn and type.",
            ["route", "mode", "backend", "event"],
            registry=r,
        )
        self.turn_time_to_first_event = Histogram(
            "strangler_turn_time_to_first_event_seconds",
            "Seconds from a client's turn message to the turn's first event.",
            ["route", "mode", "backend"],
            buckets=_OBSERVED_TURN_BUCKETS,
            registry=r,
        )
        self.turn_time_to_complete = Histogram(
            "strangler_turn_time_to_complete_seconds",
            "Seconds from a turn's start to its agent_completed.",
            ["route", "mode", "backend"],
            buckets=_OBSERVED_TURN_BUCKETS,
            registry=r,
        )
        # -- release management: fallback, drift, drain, guards --------------------------
        self.fallbacks = Counter(
            "strangler_fallbacks",
            "Connections served by legacy because the unified backend could not be reached.",
            ["route"],
            registry=r,
        )
        self.drift = Gauge(
            "strangler_connection_drift",
            "Open connections whose mode differs from what the flags in force now say.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.drained = Counter(
            "strangler_drained_connections",
            "Connections closed with 1012 so the client reconnects into its new mode.",
            ["route"],
            registry=r,
        )
        self.rollout_share = Gauge(
            "strangler_flag_rollout_share",
            "Configured share of a flag's users per mode (0..1), targets not included.",
            ["flag", "mode"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.guard_tripped = Gauge(
            "strangler_guard_tripped",
            "1 while a flag's guard holds it on legacy.",
            ["flag"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.guard_trips = Counter(
            "strangler_guard_trips",
            "Times a guard tripped, by what it watches.",
            ["flag", "guard"],
            registry=r,
        )
        self.guard_observations = Counter(
            "strangler_guard_observations",
            "Observations a flag's guard judged, by what it watches and whether each was bad.",
            ["flag", "guard", "result"],
            registry=r,
        )
        self.fleet_guard_up = Gauge(
            "strangler_fleet_guard_up",
            "1 while the fleet guard's last look at Prometheus succeeded; 0 while it fails "
            "(the local guards judge) or no fleet guard runs.",
            registry=r,
            multiprocess_mode="livemin",
        )
        # -- bad input and the loop ------------------------------------------------------
        self.bad_input = Counter(
            "strangler_bad_input",
            "Frames or handshakes refused as bad input, by reason.",
            ["route", "reason"],
            registry=r,
        )
        self.admin_refusals = Counter(
            ADMIN_REFUSALS_NAME, ADMIN_REFUSALS_HELP, ["reason"], registry=r
        )
        for reason in ADMIN_REFUSALS:
            self.admin_refusals.labels(reason)
        self.loop_lag = Gauge(
            "strangler_event_loop_lag_seconds",
            "How late the event loop ran a timer, sampled every second.",
            registry=r,
            multiprocess_mode="livemax",
        )
        ProcessCollector(registry=r)
        self._active_hash: str | None = None
        self._tallies: dict[tuple[Counter, tuple[str, ...]], Tally] = {}
        self._series: dict[tuple[Histogram, tuple[str, ...]], Histogram] = {}

    def tally(self, counter: Counter, *labels: str) -> Tally:
        """The shared tally of one series of ``counter`` (a bounded set, as its labels are)."""
        key = (counter, labels)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally(counter.labels(*labels))
        return tally

    def series(self, histogram: Histogram, *labels: str) -> Histogram:
        """One labelled series of ``histogram``, found once (a bounded set, as its labels
        are): prometheus-client's ``labels`` checks and joins the values on every call,
        which per compared turn cost more than the observation."""
        key = (histogram, labels)
        child = self._series.get(key)
        if child is None:
            child = self._series[key] = histogram.labels(*labels)
        return child

    def flush(self) -> None:
        """Move every tally's pending count into its counter."""
        for tally in self._tallies.values():
            tally.flush()

    def prime(self, routes: Iterable[str], modes: Iterable[str]) -> None:
        """Create the per-route series at zero, so rates and ratios exist before traffic."""
        modes = tuple(modes)
        for route in routes:
            self.drift.labels(route)
            self.fallbacks.labels(route)
            self.drained.labels(route)
            for mode in modes:
                self.connections_open.labels(route, mode)
            for reason in REFUSALS:
                self.handshake_refusals.labels(route, reason)
            # Rare events: without a zero series their panels and rates show nothing
            # rather than "none happened".
            for reason in BAD_INPUT:
                self.bad_input.labels(route, reason)
            for reason in SECONDARY_SKIPS:
                self.secondary_skipped.labels(route, reason)
            for queue in SECONDARY_QUEUES:
                self.secondary_dropped.labels(route, queue)
            # Reliability is a ratio of these: each mode's serving backend has a zero
            # series for every outcome before its first turn.
            for mode, backend in PRIMARY_BACKENDS:
                if mode in modes:
                    self.turns_started.labels(route, mode, backend)
                    for outcome in TURN_OUTCOMES:
                        self.turns.labels(route, mode, backend, outcome)
            for reason in SHADOW_SHED:
                self.shadow_shed.labels(route, reason)

    def set_active_flags(self, digest: str, loaded_at: float) -> None:
        """Point strangler_flags_info at the file now in force."""
        short = digest[:12]
        if self._active_hash is not None and self._active_hash != short:
            # Under --workers a removed series survives in the shared files: zero it first.
            self.flags_info.labels(self._active_hash).set(0)
            self.flags_info.remove(self._active_hash)
        self._active_hash = short
        self.flags_info.labels(short).set(1)
        self.flags_loaded_timestamp.set(loaded_at)


@dataclass(frozen=True, slots=True)
class WorkerSample:
    """One worker process as the supervisor sees it (proxy/runtime/worker_slot.py)."""

    index: int
    up: bool
    restarts: int
    cpu_seconds: float | None  # None when /proc cannot tell (not Linux, or gone)
    resident_bytes: int | None


class WorkerStatsCollector(Collector):
    """Per-worker process figures on the supervisor's /metrics.

    process_* series cannot be summed from the shared files, so the supervisor reads
    each worker from /proc; the `worker` label is the index (0..N-1), never a pid.
    """

    def __init__(self, sample: Callable[[], Iterable[WorkerSample]]) -> None:
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "strangler_worker_up", "1 while the worker process runs.", labels=["worker"]
        )
        restarts = CounterMetricFamily(
            "strangler_worker_restarts",
            "Times the supervisor restarted a worker after it died.",
            labels=["worker"],
        )
        cpu = CounterMetricFamily(
            "strangler_worker_cpu_seconds",
            "User and system CPU time of the worker process now running.",
            labels=["worker"],
        )
        rss = GaugeMetricFamily(
            "strangler_worker_resident_memory_bytes",
            "Resident memory of the worker process.",
            labels=["worker"],
        )
        for w in self._sample():
            label = [str(w.index)]
            up.add_metric(label, 1.0 if w.up else 0.0)
            restarts.add_metric(label, w.restarts)
            if w.cpu_seconds is not None:
                cpu.add_metric(label, w.cpu_seconds)
            if w.resident_bytes is not None:
                rss.add_metric(label, w.resident_bytes)
        yield from (up, restarts, cpu, rss)


class WithOwnAdminRefusals(Collector):
    """The supervisor's /metrics: the workers' shared files (`inner`) plus the refusals
    of the supervisor's own admin listener, added into the one
    strangler_admin_refusals_total family, so the name is never exposed twice."""

    def __init__(self, inner: Collector, own: Callable[[], dict[str, int]]) -> None:
        self._inner = inner
        self._own = own

    def collect(self) -> Iterator[Metric]:
        totals = {reason: float(n) for reason, n in self._own().items()}
        for family in self._inner.collect():
            if family.name != ADMIN_REFUSALS_NAME:
                yield family
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels.get("reason", "")
                    totals[reason] = totals.get(reason, 0.0) + sample.value
        merged = CounterMetricFamily(ADMIN_REFUSALS_NAME, ADMIN_REFUSALS_HELP, labels=["reason"])
        for reason in sorted(set(ADMIN_REFUSALS) | totals.keys()):
            merged.add_metric([reason], totals.get(reason, 0.0))
        yield merged
