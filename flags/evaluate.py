"""The per-connection decision: route + identity -> mode and reason. Pure and hot-path.

Order for one connection (the first that applies decides):

1. no flag covers the route: legacy, ``no_flag``;
2. ``kill_switch``: legacy, ``kill_switch`` (always, even before ``effective_at``);
3. before ``effective_at``: the flag's ``before`` modes (``anonymous``/``default``), or
   legacy with ``no_flag`` when it has none, exactly as if the flag were not in the file;
4. no user id: the flag's anonymous mode, ``anonymous`` (never a bucket, never a rule);
5. ``targets``: ``target``;
6. ``rules``, in order: the first matching rule whose share contains the user's bucket,
   ``rule`` (its name in ``Decision.rule``);
7. the rollout ranges: ``rollout``;
8. the flag's default mode: ``default``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from strangler.flags.bucketing import bucket
from strangler.flags.model import BASIS_POINTS, Flag, FlagSet, Mode, Reason


class Decision(NamedTuple):
    """The mode a connection gets, why, from which flag, bucket and rule.

    ``reason`` is a bounded metric label; for ``Reason.RULE`` the rule's name is in
    ``rule`` (None otherwise). ``bucket`` is set when the decision read it (rollout,
    default, or a rule with a share below 100%), None otherwise.

    A named tuple, not a frozen dataclass: one is built per connection, and a tuple
    is built several times faster.
    """

    mode: Mode
    reason: Reason
    flag: str | None
    bucket: int | None
    rule: str | None = None


# Decisions are immutable, so the one answer that names no flag is shared.
_NO_FLAG = Decision(Mode.LEGACY, Reason.NO_FLAG, None, None)
_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})
_UNIFIED, _LIVE, _SHADOW = Mode.UNIFIED, Mode.LIVE, Mode.SHADOW
_RULE, _ROLLOUT, _DEFAULT, _TARGET = Reason.RULE, Reason.ROLLOUT, Reason.DEFAULT, Reason.TARGET


def evaluate(
    flagset: FlagSet,
    route: str,
    user_id: str | None,
    claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> Decision:
    """Decide the mode for a connection on ``route`` by ``user_id`` (None: anonymous).

    ``claims`` are the verified identity claims rules test (None: no claims). ``now`` is
    the Unix time ``effective_at`` is compared with; None reads the clock, and only for
    a flag that has ``effective_at``. See the module docstring for the order.
    """
    flag = flagset.by_route.get(route)
    if flag is None:
        return _NO_FLAG
    if flag.kill_switch:
        return Decision(Mode.LEGACY, Reason.KILL_SWITCH, flag.key, None)
    if flag.effective_at is not None and (time.time() if now is None else now) < flag.effective_at:
        return _before(flag, user_id)
    if not user_id:
        # No identity, no experiment: a random bucket would flip the user between visits.
        return Decision(flag.anonymous, Reason.ANONYMOUS, flag.key, None)
    target = flag.targets.get(user_id)
    if target is not None:
        return Decision(target, _TARGET, flag.key, None)
    b: int | None = None
    if flag.rules:
        facts = _NO_CLAIMS if claims is None else claims
        for rule in flag.rules:
            if not rule.matches(user_id, facts):
                continue
            if rule.rollout >= BASIS_POINTS:
                return Decision(rule.mode, _RULE, flag.key, None, rule.name)
            if b is None:
                b = bucket(flag.key, user_id)
            if b < rule.rollout:
                return Decision(rule.mode, _RULE, flag.key, b, rule.name)
            # Outside the rule's share: carry on as if the rule had not matched.
    if b is None:
        b = bucket(flag.key, user_id)
    unified_end, live_end, shadow_end = flag.thresholds
    if b < shadow_end:
        if b < unified_end:
            return Decision(_UNIFIED, _ROLLOUT, flag.key, b)
        if b < live_end:
            return Decision(_LIVE, _ROLLOUT, flag.key, b)
        return Decision(_SHADOW, _ROLLOUT, flag.key, b)
    return Decision(flag.default, _DEFAULT, flag.key, b)


def _before(flag: Flag, user_id: str | None) -> Decision:
    before = flag.before
    if before is None:
        return _NO_FLAG
    if not user_id:
        return Decision(before.anonymous, Reason.ANONYMOUS, flag.key, None)
    return Decision(before.default, Reason.DEFAULT, flag.key, None)
