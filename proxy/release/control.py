"""The flags in force and what follows from them: the mode a connection gets, reloads
and their audit trail, guards that hold a flag on legacy, drift and drain.

Every decision of a connection's mode goes through `ReleaseControl.decide`: the rule
itself is `flags.evaluate` (pure); this adds only a tripped guard's hold and the count
per flag, mode and reason. What changes when a file is applied or a guard trips
(published shares and guard series, drift marks, drained connections) lives here too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from strangler.flags.evaluate import Decision, evaluate
from strangler.flags.model import UNIFIED_TURN_FAILURE_RATIO, WATCHED, Flag, FlagSet, Mode, Reason
from strangler.flags.watch import FlagWatcher, ReloadResult
from strangler.proxy.config import Route
from strangler.proxy.edge.identity import Identity
from strangler.proxy.relay.connections import Connection, OpenConnections
from strangler.proxy.release.fleet import Evidence, Verdict, per_replica_rate, verdict
from strangler.proxy.release.guards import FleetCheck, Guards, Trip
from strangler.proxy.release.plan import OpenConnection, Plan, audit_changes, plan, rollout_shares
from strangler.proxy.release.reliability import GOOD, Recent, judged
from strangler.proxy.telemetry.metrics import Metrics, Tally

log = logging.getLogger("strangler.proxy")
# One JSON record per flag reload (applied or rejected); never names a user.
audit_log = logging.getLogger("strangler.audit")

CLOSE_SERVICE_RESTART = 1012
# Compared on every handshake: a module constant costs less than an enum class attribute.
_LEGACY = Mode.LEGACY


def ticket_decision(decision: Decision, redeems_tickets: bool) -> Decision:
    """Where a ticket connection may go. Only the legacy backend redeems tickets unless
    the unified router says it does; and a ticket is single use, so no mode may hand it
    to two backends: shadow and live lose their comparison (docs/PROTOCOL.md, Tickets)."""
    if not redeems_tickets:
        mode = _LEGACY
    else:
        mode = {Mode.SHADOW: _LEGACY, Mode.LIVE: Mode.UNIFIED}.get(decision.mode, decision.mode)
    if mode is decision.mode:
        return decision
    return decision._replace(mode=mode, reason=Reason.TICKET)


@dataclass(eq=False)
class ReleaseControl:
    """The flags in force, the guards, and the open connections they move."""

    flags: FlagWatcher
    metrics: Metrics
    route_names: tuple[str, ...]
    connections: OpenConnections
    spawn: Callable[[Coroutine[Any, Any, None]], None]
    """Runs background work (a drain) on a task the proxy stops at shutdown."""
    redeems_tickets: bool = False
    """Whether the unified router redeems tickets (`backends.unified.redeems_tickets`)."""
    guards: Guards = field(default_factory=Guards)
    replicas: Callable[[], Awaitable[int | None]] | None = None
    """Asks Prometheus how many replicas the fleet has (a fleet drain rate is shared)."""
    replicas_hint: int | None = None
    """`fleet.replicas`: the count to divide by when Prometheus cannot say."""
    fleet_up: bool = False
    """Whether the fleet guard's last look at Prometheus succeeded (proxy/release/
    fleet_watch.py sets it); while False, `fleet` guards judge locally."""
    audit: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    recent: Recent = field(default_factory=Recent)
    """Golden-path reliability per route and backend over the last hour, this process."""
    _active_flags: FlagSet = field(init=False)
    _started: bool = field(default=False, init=False)
    _evaluation_tallies: dict[tuple[Any, ...], Tally] = field(default_factory=dict)
    _observation_tallies: dict[tuple[str, str, bool], Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._active_flags = self.flags.current
        self.guards.configure(self._active_flags)

    def decide(self, route: Route, identity: Identity | None, *, ticket: bool = False) -> Decision:
        """This connection's mode, from the flags in force now (`ticket`: the client
        presented a ticket rather than a token)."""
        if identity is None:
            decision = self.evaluate(self.flags.current, route.name, None, None, ticket)
        else:
            decision = self.evaluate(
                self.flags.current, route.name, identity.user_id, identity.claims, ticket
            )
        key = decision[:3]  # flag, mode, reason
        tally = self._evaluation_tallies.get(key)
        if tally is None:
            # labels() costs more than the decision itself; the tallies are kept (a
            # bounded set: flags x modes x reasons).
            m = self.metrics
            tally = m.tally(
                m.flag_evaluations,
                decision.flag or "none",
                decision.mode.value,
                decision.reason.value,
            )
            self._evaluation_tallies[key] = tally
        tally.add()
        return decision

    def evaluate(
        self,
        flagset: FlagSet,
        route: str,
        user_id: str | None,
        claims: Mapping[str, Any] | None,
        ticket: bool = False,
    ) -> Decision:
        """The one decision rule: the flags, then a tripped guard holding a flag on legacy,
        then the backends that can redeem a ticket."""
        decision = evaluate(flagset, route, user_id, claims)
        if decision.mode is not _LEGACY and self.guards.holds(flagset, decision.flag):
            return decision._replace(mode=Mode.LEGACY, reason=Reason.GUARD)
        if ticket and decision.mode is not _LEGACY:
            return ticket_decision(decision, self.redeems_tickets)
        return decision

    def mode_for(
        self,
        flagset: FlagSet,
        route: str,
        user_id: str | None,
        claims: Mapping[str, Any],
        ticket: bool = False,
    ) -> Mode:
        return self.evaluate(flagset, route, user_id, claims, ticket).mode

    # -- release management -----------------------------------------------------------

    def on_reload(self, result: ReloadResult) -> None:
        """A reload was attempted: audit it; if applied, update drift and drain.

        The server reports the file it starts with as the first result, before it serves:
        that record says ``startup`` so nobody reads it as a reload that changed nothing.
        """
        previous = self._active_flags
        startup, self._started = not self._started, True
        cleared: list[str] = []
        if result.outcome == "applied":
            self._active_flags = result.flagset
            cleared = self.guards.configure(result.flagset)
        record: dict[str, Any] = {
            "at": time.time(),
            "outcome": result.outcome,
            "old_hash": previous.digest[:12],
            "new_hash": result.flagset.digest[:12] if result.outcome == "applied" else None,
            "changes": _changes(previous, result) if result.outcome == "applied" else [],
            "error": str(result.error) if result.error else None,
        }
        if startup:
            record["startup"] = True
        if cleared:
            record["guards_cleared"] = sorted(cleared)
        self._audit(record)
        if result.outcome == "applied":
            self._publish_shares(result.flagset)
            self.publish_guards()
            self.refresh_drift()
            for flag in result.flagset.flags.values():
                self._drain_moved(flag)

    def _audit(self, record: dict[str, Any]) -> None:
        self.audit.append(record)
        audit_log.info("%s", json.dumps(record, sort_keys=True))

    # -- guards ------------------------------------------------------------------------

    def observe(self, flag: str | None, watched: str, bad: bool) -> None:
        """One observation for a flag's guard; trips it when the budget is spent."""
        if flag is None:
            return
        tally = self._observation_tallies.get((flag, watched, bad))
        if tally is not None:  # a guarded flag: the fleet guard sums these
            tally.add()
        trip = self.guards.observe(flag, watched, bad, time.time(), self.fleet_up)
        if trip is not None:
            self._tripped(trip)

    def turn_ended(
        self, route: str, backend: str, flag: str | None, outcome: str, count: int
    ) -> None:
        """Turns that ended (proxy/relay/turnbook.py): into the last hour's reliability,
        and each unified one not abandoned into its flag's turn guard (docs/SLO.md)."""
        self.recent.ended(route, backend, outcome, count, time.time())
        if backend == "unified" and flag is not None and judged(outcome):
            bad = outcome != GOOD
            for _ in range(count):
                self.observe(flag, UNIFIED_TURN_FAILURE_RATIO, bad)

    def reliability(self) -> dict[str, dict[str, dict[str, float | int | None]]]:
        """Route -> backend -> the last hour's judged turns, completed ones and their ratio."""
        return {
            route: {backend: r.as_json() for backend, r in backends.items()}
            for route, backends in self.recent.last_hour(time.time()).items()
        }

    def fleet_verdict(self, check: FleetCheck, seen: Evidence | None, digest: str) -> Verdict:
        """The fleet's evidence for one guarded ratio, read under the file `digest`: trips
        the guard when over the limit; inconclusive evidence changes nothing."""
        found = verdict(check.limit, check.min_samples, seen)
        if found is Verdict.TRIP and seen is not None:
            trip = self.guards.fleet_trip(check, seen.total, seen.bad, digest, time.time())
            if trip is not None:
                self._tripped(trip)
        return found

    def _tripped(self, trip: Trip) -> None:
        """Hold the flag on legacy: record it, then move its connections per its policy."""
        self.metrics.guard_tripped.labels(trip.flag).set(1)
        self.metrics.guard_trips.labels(trip.flag, trip.watched).inc()
        log.warning(
            "guard tripped: flag %s %s %.3f over %d %s samples (limit %g); holding it on legacy",
            trip.flag,
            trip.watched,
            trip.ratio,
            trip.samples,
            "fleet-wide" if trip.source == "fleet" else "local",
            trip.limit,
        )
        current = self.flags.current
        self._audit(
            {
                "at": trip.at,
                "outcome": "guard_tripped",
                "old_hash": current.digest[:12],
                "new_hash": current.digest[:12],
                "flag": trip.flag,
                "guard": trip.watched,
                "ratio": round(trip.ratio, 4),
                "limit": trip.limit,
                "samples": trip.samples,
                "source": trip.source,
                "changes": [],
                "error": None,
            }
        )
        self.refresh_drift()
        flag = current.flags.get(trip.flag)
        if flag is not None:
            self._drain_moved(flag)

    def publish_guards(self) -> None:
        """One series per guarded flag, at zero until it trips (alerts need the zero)."""
        self.metrics.guard_tripped.clear()
        for key, flag in self.flags.current.flags.items():
            if flag.guard is None:
                continue
            self.metrics.guard_tripped.labels(key).set(int(self.guards.tripped(key)))
            for watched in WATCHED:
                self.metrics.guard_trips.labels(key, watched)
                # At zero from the start: `increase` cannot see a counter's first value.
                for bad in (False, True):
                    self._observation_tallies[(key, watched, bad)] = self.metrics.tally(
                        self.metrics.guard_observations, key, watched, "bad" if bad else "ok"
                    )

    def refresh_drift(self) -> None:
        """Mark open connections whose mode the flags in force no longer give them."""
        counts: dict[str, int] = {route: 0 for route in self.route_names}
        current = self.flags.current
        for conn in self.connections:
            conn.drifted = (
                self.mode_for(current, conn.route.name, conn.user_id, conn.claims, conn.ticket)
                is not conn.mode
            )
            counts[conn.route.name] += conn.drifted
        for route, n in counts.items():
            self.metrics.drift.labels(route).set(n)

    def guard_states(self) -> dict[str, Any]:
        """Per flag with a guard: its limits, the window's counts, and the trip if any."""
        return self.guards.snapshot(time.time())

    def plan(self, candidate: FlagSet) -> Plan:
        """What applying `candidate` would do to the connections open now."""
        return plan(
            # A ticket connection stays where the ticket rule put it, whatever the flags.
            (
                OpenConnection(c.route.name, c.user_id, c.claims, c.mode)
                for c in self.connections
                if not c.ticket
            ),
            self.flags.current,
            candidate,
            self.mode_for,
        )

    def _publish_shares(self, flagset: FlagSet) -> None:
        self.metrics.rollout_share.clear()
        for key, flag in flagset.flags.items():
            for mode, share in rollout_shares(flag).items():
                self.metrics.rollout_share.labels(key, mode).set(share)

    def _drain_moved(self, flag: Flag) -> None:
        """Under the flag's drain policy, close its drifted connections (keep: nothing)."""
        if not flag.drain_rate and not flag.drain_fleet_rate:
            return
        routes = set(flag.routes)
        moved = [c for c in self.connections if c.drifted and c.route.name in routes]
        if moved:
            self.spawn(self._drain(flag, moved))

    async def _drain(self, flag: Flag, moved: list[Connection]) -> None:
        """Close moved connections with 1012 so clients reconnect into their new mode, at
        most the flag's rate per second, with jitter so a rollback is no reconnect storm.

        A fleet rate is shared: the replica count is asked of Prometheus now, at drain
        time (proxy/release/fleet.py, `per_replica_rate`, says what stands in for it).
        Each gap is 1 to 1.5 times 1/rate: never faster than the rate, and replicas that
        drain together do not close in lockstep."""
        seen = None
        if flag.drain_fleet_rate is not None and self.replicas is not None:
            seen = await self.replicas()
        drain = per_replica_rate(flag.drain_fleet_rate, flag.drain_rate, seen, self.replicas_hint)
        if drain is None:
            return
        rate = drain.per_replica
        log.info(
            "flag %s: draining %d connections at %g/s (%s)", flag.key, len(moved), rate, drain.basis
        )
        for conn in moved:
            await asyncio.sleep(random.uniform(1.0, 1.5) / rate)
            if conn not in self.connections or not conn.drifted or conn.ending:
                continue
            conn.ending = "drained"
            self.metrics.drained.labels(conn.route.name).inc()
            await conn.close(CLOSE_SERVICE_RESTART, "service restart")


def _changes(previous: FlagSet, result: ReloadResult) -> list[dict[str, Any]]:
    """The audit diff of an applied reload: the watcher's, worked out off the loop (a
    diff of 100,000 targets is tens of ms), or here for a watcher without one."""
    if isinstance(result.changes, list):
        return result.changes
    return audit_changes(previous, result.flagset)
