"""The per-connection decision: route + user id -> mode and reason. Pure and hot-path."""

from __future__ import annotations

from dataclasses import dataclass

from flags.bucketing import bucket
from flags.model import FlagSet, Mode, Reason


@dataclass(frozen=True, slots=True)
class Decision:
    """The mode a connection gets, why, from which flag and (for rollouts) which bucket."""

    mode: Mode
    reason: Reason
    flag: str | None
    bucket: int | None


# Decisions are immutable, so the one answer that names no flag is shared.
_NO_FLAG = Decision(Mode.LEGACY, Reason.NO_FLAG, None, None)


def evaluate(flagset: FlagSet, route: str, user_id: str | None) -> Decision:
    """Decide the mode for a connection on ``route`` by ``user_id`` (None: anonymous).

    Precedence: no flag for the route, kill switch, anonymous, target, rollout, default.
    """
    flag = flagset.by_route.get(route)
    if flag is None:
        return _NO_FLAG
    if flag.kill_switch:
        return Decision(Mode.LEGACY, Reason.KILL_SWITCH, flag.key, None)
    if not user_id:
        # No identity, no experiment: a random bucket would flip the user between visits.
        return Decision(flag.anonymous, Reason.ANONYMOUS, flag.key, None)
    target = flag.targets.get(user_id)
    if target is not None:
        return Decision(target, Reason.TARGET, flag.key, None)
    b = bucket(flag.key, user_id)
    unified_end, live_end, shadow_end = flag.thresholds
    if b < shadow_end:
        if b < unified_end:
            return Decision(Mode.UNIFIED, Reason.ROLLOUT, flag.key, b)
        if b < live_end:
            return Decision(Mode.LIVE, Reason.ROLLOUT, flag.key, b)
        return Decision(Mode.SHADOW, Reason.ROLLOUT, flag.key, b)
    return Decision(flag.default, Reason.DEFAULT, flag.key, b)
