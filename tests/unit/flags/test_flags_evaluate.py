"""Evaluation: precedence, rollout layout, distribution and forward-only movement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest

from strangler.flags.bucketing import bucket
from strangler.flags.evaluate import Decision, evaluate
from strangler.flags.model import Flag, FlagSet, Mode, Reason

KEY = "unified_router"
RANK = {Mode.LEGACY: 0, Mode.SHADOW: 1, Mode.LIVE: 2, Mode.UNIFIED: 3}


def flagset(
    *,
    rollout: Mapping[Mode, int] | None = None,
    targets: Mapping[str, Mode] | None = None,
    default: Mode = Mode.LEGACY,
    anonymous: Mode = Mode.LEGACY,
    kill_switch: bool = False,
) -> FlagSet:
    flag = Flag(
        key=KEY,
        routes=("main", "factory"),
        default=default,
        anonymous=anonymous,
        kill_switch=kill_switch,
        targets=targets or {},
        rollout=rollout or {},
    )
    return FlagSet.from_flags([flag], digest="test", source="test")


def shares(unified: float = 0, live: float = 0, shadow: float = 0) -> dict[Mode, int]:
    """Percentages to basis points."""
    return {
        Mode.UNIFIED: round(unified * 100),
        Mode.LIVE: round(live * 100),
        Mode.SHADOW: round(shadow * 100),
    }


def test_route_without_flag_is_legacy_with_no_flag_reason() -> None:
    fs = flagset(rollout=shares(unified=100))
    assert evaluate(fs, "isolated", "alice") == Decision(Mode.LEGACY, Reason.NO_FLAG, None, None)
    assert evaluate(FlagSet.empty(), "main", "alice").reason is Reason.NO_FLAG


def test_kill_switch_beats_targets_rollout_and_anonymous() -> None:
    fs = flagset(
        rollout=shares(unified=100),
        targets={"alice": Mode.UNIFIED},
        anonymous=Mode.SHADOW,
        kill_switch=True,
    )
    for user in ("alice", "bob", None):
        assert evaluate(fs, "main", user) == Decision(Mode.LEGACY, Reason.KILL_SWITCH, KEY, None)


@pytest.mark.parametrize("user", [None, ""])
def test_anonymous_gets_anonymous_mode_and_never_a_bucket(user: str | None) -> None:
    fs = flagset(rollout=shares(unified=100), anonymous=Mode.SHADOW, default=Mode.LIVE)
    assert evaluate(fs, "main", user) == Decision(Mode.SHADOW, Reason.ANONYMOUS, KEY, None)


def test_targets_beat_rollout() -> None:
    fs = flagset(
        rollout=shares(unified=100),
        targets={"alice": Mode.SHADOW, "bob": Mode.LEGACY},
    )
    assert evaluate(fs, "main", "alice") == Decision(Mode.SHADOW, Reason.TARGET, KEY, None)
    assert evaluate(fs, "factory", "bob") == Decision(Mode.LEGACY, Reason.TARGET, KEY, None)
    assert evaluate(fs, "main", "carol").mode is Mode.UNIFIED


def test_rollout_ranges_are_unified_then_live_then_shadow_then_default() -> None:
    fs = flagset(rollout=shares(unified=10, live=5, shadow=20), default=Mode.LEGACY)
    for i in range(2000):
        user = f"user-{i}"
        b = bucket(KEY, user)
        decision = evaluate(fs, "main", user)
        assert decision.bucket == b and decision.flag == KEY
        if b < 1000:
            assert (decision.mode, decision.reason) == (Mode.UNIFIED, Reason.ROLLOUT)
        elif b < 1500:
            assert (decision.mode, decision.reason) == (Mode.LIVE, Reason.ROLLOUT)
        elif b < 3500:
            assert (decision.mode, decision.reason) == (Mode.SHADOW, Reason.ROLLOUT)
        else:
            assert (decision.mode, decision.reason) == (Mode.LEGACY, Reason.DEFAULT)


def test_range_upper_bound_is_exclusive() -> None:
    b = bucket(KEY, "alice")  # 79
    assert evaluate(flagset(rollout={Mode.UNIFIED: b}), "main", "alice").mode is Mode.LEGACY
    assert evaluate(flagset(rollout={Mode.UNIFIED: b + 1}), "main", "alice").mode is Mode.UNIFIED


def test_users_outside_every_share_get_the_default_mode_with_their_bucket() -> None:
    decision = evaluate(flagset(default=Mode.SHADOW), "main", "bob")
    assert decision == Decision(Mode.SHADOW, Reason.DEFAULT, KEY, bucket(KEY, "bob"))


def test_distribution_matches_shares_within_one_percent() -> None:
    fs = flagset(rollout=shares(unified=10, live=5, shadow=20))
    n = 100_000
    counts = Counter(evaluate(fs, "main", f"user-{i}").mode for i in range(n))
    expected = {Mode.UNIFIED: 0.10, Mode.LIVE: 0.05, Mode.SHADOW: 0.20, Mode.LEGACY: 0.65}
    for mode, share in expected.items():
        assert abs(counts[mode] / n - share) <= 0.01, (mode, counts[mode] / n)


USERS = [f"user-{i}" for i in range(20_000)]


def modes(rollout: dict[Mode, int]) -> list[Mode]:
    fs = flagset(rollout=rollout)
    return [evaluate(fs, "main", user).mode for user in USERS]


BASES = [shares(), shares(10, 5, 20), shares(30, 30, 30), shares(live=50), shares(unified=99)]


@pytest.mark.parametrize("base", BASES, ids=lambda b: "-".join(str(v) for v in b.values()))
@pytest.mark.parametrize("raised", [Mode.UNIFIED, Mode.LIVE, Mode.SHADOW])
def test_raising_any_share_never_moves_a_user_backwards(
    base: dict[Mode, int], raised: Mode
) -> None:
    room = 10_000 - sum(base.values())
    before = modes(base)
    for step in sorted({1, 100, 1000, room} & set(range(1, room + 1))):
        after = modes({**base, raised: base[raised] + step})
        assert all(RANK[a] >= RANK[b] for b, a in zip(before, after, strict=True))
        if step >= 100:  # 1% of 20,000 users: someone must have moved
            assert after != before


def test_a_full_journey_only_ever_moves_users_forward() -> None:
    journey = [
        shares(shadow=5),
        shares(shadow=50),
        shares(live=5, shadow=50),
        shares(unified=1, live=5, shadow=50),
        shares(unified=1, live=30, shadow=69),
        shares(unified=20, live=30, shadow=50),
        shares(unified=100),
    ]
    before = modes(shares())
    for rollout in journey:
        after = modes(rollout)
        assert all(RANK[a] >= RANK[b] for b, a in zip(before, after, strict=True))
        before = after


def test_lowering_unified_moves_the_highest_unified_buckets_back_first() -> None:
    buckets = {user: bucket(KEY, user) for user in USERS}
    previous = {
        u for u, m in zip(USERS, modes(shares(30, 10, 10)), strict=True) if m is Mode.UNIFIED
    }
    for unified in (25, 20, 10, 1, 0):
        current = {
            u
            for u, m in zip(USERS, modes(shares(unified, 10, 10)), strict=True)
            if m is Mode.UNIFIED
        }
        moved = previous - current
        assert current <= previous and moved
        assert min(buckets[u] for u in moved) > max((buckets[u] for u in current), default=-1)
        previous = current
