"""Checking a whole flag file: the document, each flag and its sections, into a FlagSet.

The checks of single values and of segments, conditions and rules are in
``flags.validate_values`` and ``flags.validate_rules``; the schema is ``flags.schema``.
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Callable
from typing import Any

from strangler.flags.instants import format_instant, parse_instant, unix_time
from strangler.flags.model import (
    BASIS_POINTS,
    GUARD_SOURCES,
    Before,
    Flag,
    FlagSet,
    Guard,
    Mode,
    Segment,
)
from strangler.flags.report import kind, name_list
from strangler.flags.schema import (
    BEFORE_KEYS,
    DRAIN_KEYS,
    FLAG_KEYS,
    GUARD_KEYS,
    GUARD_RATIOS,
    MODES,
    NAME,
    ROLLOUT_MODES,
    TOP_KEYS,
    VERSION,
)
from strangler.flags.validate_rules import RuleChecks
from strangler.flags.yaml_source import SpelledInt

_DAY = 86_400.0


def _percent(basis_points: int) -> str:
    whole, rest = divmod(basis_points, 100)
    return f"{whole}%" if rest == 0 else f"{whole}.{rest:02d}".rstrip("0") + "%"


class Validator(RuleChecks):
    """Turns the parsed YAML document into a FlagSet, strict or collecting (``Reporter``).

    Both walk the file in the same order, so the first error collected is the one a
    strict run raises.
    """

    def __init__(
        self,
        source: str,
        known_routes: frozenset[str] | None,
        *,
        collect: bool = False,
        now: float = 0.0,
    ) -> None:
        super().__init__(source, collect=collect)
        self._known_routes = known_routes
        self._now = now

    # -- the file --

    def run(self, document: Any, digest: str) -> FlagSet | None:
        """The FlagSet, or None when collecting found errors."""
        flagset = self._try(self._document, document, digest)
        return None if self._errors else flagset

    def _document(self, document: Any, digest: str) -> FlagSet:
        if document is None:
            return FlagSet.from_flags((), digest=digest, source=self._source)
        if not isinstance(document, dict):
            self._fail("", f"the file must be a mapping with a 'flags' key, not {kind(document)}.")
        self._reject_unknown_keys(document, TOP_KEYS, "")
        if "version" in document:
            version = document["version"]
            if isinstance(version, bool) or version != VERSION:
                self._note("version", f"only version {VERSION} is supported.")
        # Segments first, whatever their place in the file: rules refer to them.
        segments = self._try(self._segments, document.get("segments")) or {}
        raw_flags = document.get("flags")
        if raw_flags is None:
            raw_flags = {}
        if not isinstance(raw_flags, dict):
            self._fail("flags", f"must be a mapping of flag keys to flags, not {kind(raw_flags)}.")
        claimed: dict[str, str] = {}  # route -> flag key, to name both flags on a conflict
        flags = [
            flag
            for key, body in raw_flags.items()
            if (flag := self._try(self._flag, key, body, claimed, segments)) is not None
        ]
        for name in sorted(self._segment_names - self._used_segments):
            self._warn(f"segments.{name}", "no rule uses this segment.")
        return FlagSet.from_flags(
            flags, digest=digest, source=self._source, segments=segments.values()
        )

    # -- flags --

    def _flag(
        self, key: Any, body: Any, claimed: dict[str, str], segments: dict[str, Segment]
    ) -> Flag | None:
        at = f"flags.{key}"
        if not isinstance(key, str) or not NAME.fullmatch(key):
            self._fail(at, "flag keys may only use lowercase letters, digits, '_', '.' and '-'.")
        if not isinstance(body, dict):
            self._fail(at, f"must be a mapping with at least 'routes', not {kind(body)}.")
        errors = self._errors
        self._reject_unknown_keys(body, FLAG_KEYS, at)
        kill_switch = body.get("kill_switch", False)
        if not isinstance(kill_switch, bool):
            self._note(f"{at}.kill_switch", f"must be true or false, not {kind(kill_switch)}.")
        routes = self._try(self._routes, key, body, claimed) or ()
        default = (
            self._try(self._mode, body.get("default", "legacy"), f"{at}.default") or Mode.LEGACY
        )
        anonymous = (
            self._try(self._mode, body.get("anonymous", "legacy"), f"{at}.anonymous") or Mode.LEGACY
        )
        targets = self._try(self._targets, body.get("targets", {}), f"{at}.targets") or {}
        rollout = self._try(self._rollout, body.get("rollout", {}), f"{at}.rollout") or {}
        rules = self._try(self._rules, body.get("rules", []), f"{at}.rules", segments) or ()
        effective_at = None
        if "effective_at" in body:
            effective_at = self._try(self._effective_at, body["effective_at"], f"{at}.effective_at")
        before = None
        if "before" in body:
            before = self._try(self._before, body, at)
        drain_rate, drain_fleet_rate = self._try(
            self._on_change, body.get("on_change", "keep"), at
        ) or (None, None)
        guard = None
        if "guard" in body:
            guard = self._try(self._guard, body["guard"], f"{at}.guard")
        if self._errors > errors:
            return None
        return Flag(
            key=key,
            routes=routes,
            default=default,
            anonymous=anonymous,
            kill_switch=kill_switch,
            targets=targets,
            rollout=rollout,
            rules=rules,
            effective_at=effective_at,
            before=before,
            drain_rate=drain_rate,
            drain_fleet_rate=drain_fleet_rate,
            guard=guard,
        )

    def _routes(
        self, flag_key: str, body: dict[Any, Any], claimed: dict[str, str]
    ) -> tuple[str, ...]:
        at = f"flags.{flag_key}.routes"
        if "routes" not in body:
            self._fail(at, "is required: list the routes this flag covers.")
        routes = body["routes"]
        if not isinstance(routes, list):
            self._fail(at, f"must be a non-empty list of route names, not {kind(routes)}.")
        if not routes:
            self._fail(at, "must be a non-empty list of route names; this one is empty.")
        for index, route in enumerate(routes):
            item = f"{at}[{index}]"
            if not isinstance(route, str) or not route:
                self._note(item, f"route names must be non-empty strings, not {kind(route)}.")
                continue
            if self._known_routes is not None and route not in self._known_routes:
                self._note(
                    item,
                    f"unknown route '{route}'; known routes are {name_list(self._known_routes)}.",
                )
            owner = claimed.get(route)
            if owner == flag_key:
                self._note(item, f"route '{route}' is listed twice.")
            elif owner is not None:
                self._note(
                    item,
                    f"route '{route}' is claimed by both flags '{owner}' and '{flag_key}'; "
                    "a route can belong to only one flag.",
                )
            else:
                claimed[route] = flag_key
        return tuple(routes)

    def _targets(self, raw: Any, at: str) -> dict[str, Mode]:
        if not isinstance(raw, dict):
            self._fail(at, f"must be a mapping of modes to lists of user ids, not {kind(raw)}.")
        targets: dict[str, Mode] = {}
        where: dict[str, str] = {}  # user id -> "targets.<mode>[i]", to point at the clash
        for number, (mode_name, users) in enumerate(raw.items(), start=1):
            if not isinstance(mode_name, str) or mode_name not in MODES:
                # Only echo the key when it is a near miss of a mode name: a key that is
                # nothing like a mode may be a user id written the wrong way round.
                close = difflib.get_close_matches(str(mode_name), MODES, n=1)
                named = f"'{mode_name}' (did you mean '{close[0]}'?)" if close else f"#{number}"
                self._note(
                    at,
                    f"key {named} is not a mode; targets maps each mode "
                    f"({', '.join(MODES)}) to a list of user ids.",
                )
                continue
            mode = Mode(mode_name)
            if not isinstance(users, list):
                self._note(
                    f"{at}.{mode_name}",
                    f"must be a list of user ids (use [] for none), not {kind(users)}.",
                )
                continue
            for index, raw_user in enumerate(users):
                item = f"{at}.{mode_name}[{index}]"
                user = self._try(self._user_id, raw_user, item)
                if user is None:
                    continue
                previous = targets.get(user)
                if previous is not None and previous is not mode:
                    self._note(
                        item,
                        f"this user id is also listed at {where[user]}; "
                        "a user can be targeted to only one mode.",
                    )
                    continue
                targets[user] = mode
                where.setdefault(user, f"targets.{mode_name}[{index}]")
        return targets

    def _rollout(self, raw: Any, at: str) -> dict[Mode, int]:
        if not isinstance(raw, dict):
            self._fail(at, f"must be a mapping of modes to percentages, not {kind(raw)}.")
        rollout: dict[Mode, int] = {}
        for mode_name, share in raw.items():
            key = f"{at}.{mode_name}"
            if mode_name == "legacy":
                self._note(
                    key,
                    "legacy has no share: it gets whoever the other modes leave; "
                    f"rollout keys are {', '.join(ROLLOUT_MODES)}.",
                )
                continue
            if not isinstance(mode_name, str) or mode_name not in ROLLOUT_MODES:
                self._note(
                    key,
                    f"unknown mode '{mode_name}'; rollout keys are {', '.join(ROLLOUT_MODES)}.",
                )
                continue
            basis_points = self._try(self._basis_points, share, key)
            if basis_points is not None:
                rollout[Mode(mode_name)] = basis_points
        total = sum(rollout.values())
        if total > BASIS_POINTS:
            self._fail(at, f"the shares add up to {_percent(total)}, more than 100%.")
        return rollout

    # -- effective_at, before, on_change, guard --

    def _effective_at(self, value: Any, at: str) -> float:
        if isinstance(value, datetime.datetime):
            timestamp = self._instant(lambda: unix_time(value), at)
        elif isinstance(value, datetime.date):
            self._fail(
                at,
                "a date alone is not an instant; give a time and a timezone, "
                "e.g. 2025-03-01T09:00:00Z.",
            )
        elif isinstance(value, str):
            timestamp = self._instant(lambda: parse_instant(value), at)
        elif isinstance(value, SpelledInt):
            self._fail(at, "write Unix seconds as a plain decimal number.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value) or value < 0:
                self._fail(at, "Unix seconds must be a finite number, 0 or more.")
            timestamp = float(value)
        else:
            self._fail(
                at,
                f"must be an ISO 8601 timestamp with a timezone or Unix seconds, "
                f"not {kind(value)}.",
            )
        if self._now - timestamp > _DAY:
            self._warn(
                at,
                f"has been in effect since {format_instant(timestamp)}; "
                "effective_at (and before) can go.",
            )
        return timestamp

    def _instant(self, convert: Callable[[], float], at: str) -> float:
        try:
            return convert()
        except (ValueError, OverflowError, OSError) as exc:
            self._fail(at, str(exc) if isinstance(exc, ValueError) else "is out of range.")

    def _before(self, body: dict[Any, Any], at: str) -> Before:
        at = f"{at}.before"
        if "effective_at" not in body:
            self._fail(at, "only applies with effective_at: it says how to serve until then.")
        raw = body["before"]
        if not isinstance(raw, dict):
            self._fail(at, f"must be a mapping such as {{default: shadow}}, not {kind(raw)}.")
        self._reject_unknown_keys(raw, BEFORE_KEYS, at)
        if "default" not in raw:
            self._fail(f"{at}.default", "is required: the mode every user gets until then.")
        return Before(
            default=self._mode(raw["default"], f"{at}.default"),
            anonymous=self._mode(raw.get("anonymous", "legacy"), f"{at}.anonymous"),
        )

    def _on_change(self, raw: Any, at: str) -> tuple[float | None, float | None]:
        """(per-replica rate, fleet-wide rate); (None, None) for keep."""
        at = f"{at}.on_change"
        usage = (
            "on_change is 'keep', {drain: {rate: <connections per second per replica>}} "
            "or {drain: {fleet_rate: <connections per second across the fleet>}}"
        )
        if raw == "keep":
            return None, None
        if not isinstance(raw, dict):
            self._fail(at, f"{usage}, not {kind(raw) if not isinstance(raw, str) else repr(raw)}.")
        self._reject_unknown_keys(raw, ("drain",), at)
        if "drain" not in raw:
            self._fail(at, f"{usage}.")
        drain = raw["drain"]
        if not isinstance(drain, dict):
            self._fail(f"{at}.drain", f"must be a mapping such as {{rate: 50}}, not {kind(drain)}.")
        self._reject_unknown_keys(drain, DRAIN_KEYS, f"{at}.drain")
        if "rate" not in drain and "fleet_rate" not in drain:
            self._fail(
                f"{at}.drain.rate",
                "is required: connections closed per second, at most, by each replica "
                "(or fleet_rate: across every replica).",
            )
        rate = fleet_rate = None
        if "rate" in drain:
            rate = self._positive(drain["rate"], f"{at}.drain.rate", "connections per second")
        if "fleet_rate" in drain:
            fleet_rate = self._positive(
                drain["fleet_rate"], f"{at}.drain.fleet_rate", "connections per second"
            )
        return rate, fleet_rate

    def _guard(self, raw: Any, at: str) -> Guard:
        if not isinstance(raw, dict):
            self._fail(
                at, f"must be a mapping such as {{max_mismatch_ratio: 0.05}}, not {kind(raw)}."
            )
        self._reject_unknown_keys(raw, GUARD_KEYS, at)
        ratios = {key: self._ratio(raw[key], f"{at}.{key}") for key in GUARD_RATIOS if key in raw}
        if not ratios:
            self._fail(at, f"needs at least one of {', '.join(GUARD_RATIOS)}.")
        window = self._positive(raw.get("window", 300), f"{at}.window", "seconds")
        min_samples = raw.get("min_samples", 100)
        if (
            isinstance(min_samples, bool | SpelledInt)
            or not isinstance(min_samples, int)
            or min_samples < 1
        ):
            self._fail(
                f"{at}.min_samples",
                f"must be a whole number, 1 or more, not {kind(min_samples)}"
                + (f" {min_samples}." if isinstance(min_samples, int) else "."),
            )
        source = raw.get("source", "local")
        if source not in GUARD_SOURCES:
            self._fail(
                f"{at}.source",
                f"must be one of {', '.join(GUARD_SOURCES)}, not "
                + (repr(source) if isinstance(source, str) else kind(source))
                + ".",
            )
        return Guard(**ratios, window=window, min_samples=min_samples, source=source)
