"""A flag as a flagd flag definition that puts every user in the same mode, or why it cannot.

strangler buckets a user as ``(murmur3_x86_32(seed 0, unsigned, UTF-8 "<flag>:<user>") *
10000) >> 32`` (flags/bucketing.py). flagd's ``fractional`` operator in its "v2" rule
(flagd 0.15.0 to 0.16.x, the latest release checked; openfeature-flagd-core 1.x for
Python; the flagd test bed's ``@fractional-v2``) computes ``(murmur3_x86_32(seed 0,
unsigned, UTF-8 bucketBy) * total_weight) >> 32`` and gives the first variant whose
running weight passes that bucket.
With a bucketBy of ``{"cat": ["<flag>:", {"var": "targetingKey"}]}`` and weights in basis
points adding up to exactly 10000, both compute the same bucket and the same ranges, so
the export is exact for every rollout. It matches no other generation: flagd before
0.15.0 took ``|int32 hash| / MaxInt32 * 100`` as a float percentage ("v1"), and the
"v3" rule (openfeature-flagd-core 2.x, not yet in a flagd release) hashes a CBOR
encoding of the bucketBy value.

What JsonLogic cannot say exactly is refused, never approximated: rules on token claims
(flagd reads a context the caller builds, and claim matching has no exact JsonLogic
equivalent), and an ``effective_at`` with a fraction of a second (``$flagd.timestamp``
counts whole seconds). Guards and drain are the proxy's own run-time behaviour and are
not part of a definition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from strangler.flags.model import BASIS_POINTS, ROLLOUT_ORDER, Flag, Mode, Rule

FLAGD_SCHEMA = "https://flagd.dev/schema/v0/flags.json"
RULE_GENERATION = "fractional-v2"
"""The flagd test bed's name for the fractional rule this export matches."""

_KEY: dict[str, Any] = {"var": "targetingKey"}
_VARIANTS = {mode.value: mode.value for mode in Mode}
_TARGET_ORDER = (*ROLLOUT_ORDER, Mode.LEGACY)


def problems(flag: Flag) -> list[str]:
    """Why ``flag`` cannot be expressed exactly as a flagd definition (empty: it can)."""
    if flag.kill_switch:
        return []  # everyone is on legacy whatever else the flag says
    found: list[str] = []
    if flag.effective_at is not None and flag.effective_at != math.floor(flag.effective_at):
        found.append(
            "effective_at has a fraction of a second; flagd's $flagd.timestamp counts "
            "whole seconds, so the switch-over second would differ."
        )
    for rule in flag.rules:
        claims = sorted({c.claim for c in _conditions(rule)})
        if claims:
            found.append(
                f"rule {rule.name!r} tests token claims ({', '.join(claims)}); flagd would "
                "read them from a context the caller builds, and claim matching (list "
                "claims, numbers and booleans as text) has no exact JsonLogic equivalent."
            )
    return found


def _conditions(rule: Rule) -> tuple[Any, ...]:
    segment_when = rule.segment.when if rule.segment is not None else ()
    return (*rule.when, *segment_when)


def flag_definition(flag: Flag) -> dict[str, Any]:
    """The flagd definition of ``flag``; ValueError if :func:`problems` has any."""
    found = problems(flag)
    if found:
        raise ValueError(f"flag {flag.key!r} cannot be exported exactly: {found[0]}")
    definition: dict[str, Any] = {
        "state": "ENABLED",
        "variants": dict(_VARIANTS),
        "defaultVariant": (Mode.LEGACY if flag.kill_switch else flag.default).value,
    }
    if not flag.kill_switch:
        definition["targeting"] = _targeting(flag)
    definition["metadata"] = {
        "strangler_routes": ",".join(flag.routes),
        "strangler_bucketing": RULE_GENERATION,
    }
    return definition


def flagd_document(flags: Iterable[Flag]) -> dict[str, Any]:
    """A flagd flag definition file holding ``flags``."""
    return {
        "$schema": FLAGD_SCHEMA,
        "flags": {flag.key: flag_definition(flag) for flag in flags},
    }


def _targeting(flag: Flag) -> Any:
    """The JsonLogic that evaluates like flags/evaluate.py, step for step."""
    in_force = _in_force(flag)
    if flag.effective_at is None:
        return in_force
    before = flag.before
    if before is None:
        early: Any = Mode.LEGACY.value  # as if the flag were not in the file
    else:
        early = _if(_anonymous(), before.anonymous.value, before.default.value)
    # Whole seconds (problems() refuses others): floor(now) < E exactly when now < E.
    starts = int(flag.effective_at)
    return _if({"<": [{"var": "$flagd.timestamp"}, starts]}, early, in_force)


def _in_force(flag: Flag) -> Any:
    # Built from the end: each step is the "else" of the one before it.
    tail = _rollout(flag)
    for rule in reversed(flag.rules):
        test = _rule_test(flag, rule)
        if test is not None:
            tail = _if(test, rule.mode.value, tail)
    by_mode: dict[Mode, list[str]] = {}
    for user, mode in flag.targets.items():
        by_mode.setdefault(mode, []).append(user)
    # A user is targeted to one mode only, so the order of these tests does not matter.
    for mode in reversed(_TARGET_ORDER):
        if mode not in by_mode:
            continue
        tail = _if({"in": [_KEY, sorted(by_mode[mode])]}, mode.value, tail)
    return _if(_anonymous(), flag.anonymous.value, tail)


def _rule_test(flag: Flag, rule: Rule) -> Any | None:
    """The rule's test (its segment's users, within its share); None: it never applies."""
    if rule.rollout <= 0:
        return None
    segment = rule.segment
    assert segment is not None and segment.users, "claim rules are refused by problems()"
    test: Any = {"in": [_KEY, sorted(segment.users)]}
    if rule.rollout >= BASIS_POINTS:
        return test
    share = _fractional(flag, [("in", rule.rollout), ("out", BASIS_POINTS - rule.rollout)])
    return {"and": [test, {"==": [share, "in"]}]}


def _rollout(flag: Flag) -> Any:
    weights = [(mode.value, flag.rollout.get(mode, 0)) for mode in ROLLOUT_ORDER]
    weights.append((flag.default.value, BASIS_POINTS - flag.thresholds[2]))
    kept = [(variant, weight) for variant, weight in weights if weight > 0]
    if len(kept) == 1:
        return kept[0][0]
    return _fractional(flag, kept)


def _fractional(flag: Flag, weights: list[tuple[str, int]]) -> dict[str, Any]:
    # Weights add up to BASIS_POINTS, so flagd's bucket is strangler's bucket.
    assert sum(weight for _, weight in weights) == BASIS_POINTS
    bucket_by = {"cat": [f"{flag.key}:", _KEY]}
    return {"fractional": [bucket_by, *([variant, weight] for variant, weight in weights)]}


def _anonymous() -> dict[str, Any]:
    # No identity (absent or empty targetingKey), as `not user_id` in evaluate().
    return {"!": _KEY}


def _if(test: Any, then: Any, otherwise: Any) -> dict[str, Any]:
    # Nested three-argument ifs, not one long chain: every JsonLogic engine reads these.
    return {"if": [test, then, otherwise]}
