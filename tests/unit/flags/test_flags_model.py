"""The flag model: read-only, with rollout thresholds precomputed at construction."""

from __future__ import annotations

import pytest

from strangler.flags.model import Flag, FlagSet, Mode


def make_flag(key: str = "f", routes: tuple[str, ...] = ("main",), **rollout: int) -> Flag:
    return Flag(
        key=key,
        routes=routes,
        default=Mode.LEGACY,
        anonymous=Mode.LEGACY,
        kill_switch=False,
        targets={"alice": Mode.UNIFIED},
        rollout={Mode(mode): share for mode, share in rollout.items()},
    )


def test_thresholds_are_cumulative_in_order_unified_live_shadow() -> None:
    assert make_flag(unified=500, live=100, shadow=2000).thresholds == (500, 600, 2600)
    assert make_flag(shadow=2000).thresholds == (0, 0, 2000)


def test_flag_mappings_are_read_only_copies() -> None:
    targets = {"alice": Mode.UNIFIED}
    flag = Flag("f", ("main",), Mode.LEGACY, Mode.LEGACY, False, targets, {})
    targets["bob"] = Mode.LIVE
    assert "bob" not in flag.targets
    with pytest.raises(TypeError):
        flag.targets["carol"] = Mode.LIVE  # type: ignore[index]


def test_flag_is_hashable_and_compares_by_value() -> None:
    assert make_flag(unified=5) == make_flag(unified=5)
    assert make_flag(unified=5) != make_flag(unified=6)
    assert len({make_flag(unified=5), make_flag(unified=5)}) == 1


@pytest.mark.parametrize(
    "rollout",
    [
        {Mode.LEGACY: 10},
        {Mode.UNIFIED: -1},
        {Mode.UNIFIED: 10001},
        {Mode.LIVE: 6000, Mode.SHADOW: 5000},
    ],
)
def test_flag_rejects_rollout_that_cannot_be_laid_out(rollout: dict[Mode, int]) -> None:
    with pytest.raises(ValueError):
        Flag("f", ("main",), Mode.LEGACY, Mode.LEGACY, False, {}, rollout)


def test_empty_flagset_has_no_flags_and_no_digest() -> None:
    empty = FlagSet.empty()
    assert dict(empty.flags) == {} and dict(empty.by_route) == {}
    assert empty.digest == ""


def test_from_flags_indexes_every_route() -> None:
    a, b = make_flag("a", ("main", "factory")), make_flag("b", ("isolated",))
    flagset = FlagSet.from_flags([a, b], digest="d", source="s")
    assert flagset.by_route == {"main": a, "factory": a, "isolated": b}
    assert flagset.flags == {"a": a, "b": b}


def test_from_flags_rejects_a_route_claimed_twice() -> None:
    with pytest.raises(ValueError, match="'a' and 'b'"):
        FlagSet.from_flags([make_flag("a", ("main",)), make_flag("b", ("main",))])
