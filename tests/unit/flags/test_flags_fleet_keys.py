"""The flag file's fleet keys: a guard's `source` and a drain's `fleet_rate`."""

from __future__ import annotations

import pytest

from strangler.flags.load import FlagFileError, parse_flags


def flag(extra: str) -> bytes:
    return f"flags:\n  f:\n    routes: [main]\n{extra}".encode()


def test_a_guard_judges_local_evidence_unless_it_says_fleet_or_both() -> None:
    plain = parse_flags(flag("    guard: {max_mismatch_ratio: 0.1}\n"), "f.yaml")
    assert plain.flags["f"].guard is not None and plain.flags["f"].guard.source == "local"
    for source in ("fleet", "both"):
        text = flag(f"    guard: {{max_mismatch_ratio: 0.1, source: {source}}}\n")
        guard = parse_flags(text, "f.yaml").flags["f"].guard
        assert guard is not None and guard.source == source


def test_an_unknown_guard_source_is_refused_at_its_key() -> None:
    with pytest.raises(FlagFileError, match=r"guard\.source: must be one of local, fleet, both"):
        parse_flags(flag("    guard: {max_mismatch_ratio: 0.1, source: cluster}\n"), "f.yaml")


def test_a_drain_takes_a_per_replica_rate_a_fleet_rate_or_both() -> None:
    per_replica = parse_flags(flag("    on_change: {drain: {rate: 5}}\n"), "f.yaml").flags["f"]
    assert (per_replica.drain_rate, per_replica.drain_fleet_rate) == (5, None)
    fleet = parse_flags(flag("    on_change: {drain: {fleet_rate: 60}}\n"), "f.yaml").flags["f"]
    assert (fleet.drain_rate, fleet.drain_fleet_rate) == (None, 60)
    both = parse_flags(flag("    on_change: {drain: {fleet_rate: 60, rate: 2}}\n"), "f.yaml")
    assert (both.flags["f"].drain_rate, both.flags["f"].drain_fleet_rate) == (2, 60)


@pytest.mark.parametrize(
    ("drain", "message"),
    [
        ("{}", r"drain\.rate: is required"),
        ("{fleet_rate: 0}", r"drain\.fleet_rate"),
        ("{fleet_rate: 5, speed: 1}", r"speed"),
    ],
)
def test_a_drain_without_a_positive_rate_is_refused(drain: str, message: str) -> None:
    with pytest.raises(FlagFileError, match=message):
        parse_flags(flag(f"    on_change: {{drain: {drain}}}\n"), "f.yaml")
