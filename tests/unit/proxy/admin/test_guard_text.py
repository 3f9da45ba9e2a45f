"""Guards read as sentences: as configured, and in every state the proxy reports them in
(read from real `Guards.snapshot` output, not a hand-made copy of its shape)."""

from __future__ import annotations

import calendar
from dataclasses import asdict

from strangler.flags.model import (
    MISMATCH_RATIO,
    UNIFIED_ERROR_RATIO,
    UNIFIED_TURN_FAILURE_RATIO,
    Flag,
    FlagSet,
    Guard,
    Mode,
)
from strangler.proxy.admin.guard_text import guard_text, state_sentences, state_word
from strangler.proxy.release.guards import Guards

# 2027-01-15 14:03:12 UTC
NOW = float(calendar.timegm((2027, 1, 15, 14, 3, 12)))


def guarded(guard: Guard) -> Guards:
    flag = Flag(
        key="unified_router",
        routes=("main",),
        default=Mode.LEGACY,
        anonymous=Mode.LEGACY,
        kill_switch=False,
        targets={},
        rollout={Mode.SHADOW: 10_000},
        guard=guard,
    )
    guards = Guards()
    guards.configure(FlagSet.from_flags([flag], digest="d1", source="flags.yaml"))
    return guards


def state(guards: Guards, now: float = NOW) -> object:
    return guards.snapshot(now)["unified_router"]


def observe(guards: Guards, watched: str, good: int, bad: int, at: float = NOW) -> None:
    for _ in range(good):
        guards.observe("unified_router", watched, False, at)
    for _ in range(bad):
        guards.observe("unified_router", watched, True, at)


def test_a_configured_guard_reads_as_a_sentence_with_singular_and_plural() -> None:
    both = Guard(max_mismatch_ratio=0.02, max_unified_error_ratio=0.125, window=60, min_samples=200)
    assert guard_text(asdict(both)) == (
        "back to legacy on mismatches over 2% or unified errors over 12.5% "
        "of at least 200 samples in 60 s"
    )
    one = Guard(max_mismatch_ratio=0.5, min_samples=1)
    assert guard_text(asdict(one)) == (
        "back to legacy on mismatches over 50% of at least 1 sample in 300 s"
    )
    assert guard_text({"window": 60.0}) == "a guard watching nothing this page knows"


def test_a_guard_without_samples_says_what_it_waits_for() -> None:
    guards = guarded(Guard(max_mismatch_ratio=0.05, min_samples=100, window=300))
    assert state_word(state(guards)) == "clear"
    assert state_sentences(state(guards), NOW) == [
        "watching the mismatch ratio: no comparisons in the last 300 s yet; "
        "trips above 5% after 100 samples"
    ]


def test_a_watching_guard_gives_its_ratio_count_and_limits() -> None:
    guards = guarded(Guard(max_mismatch_ratio=0.05, min_samples=100, window=300))
    observe(guards, MISMATCH_RATIO, good=1, bad=0)
    assert state_sentences(state(guards), NOW) == [
        "watching the mismatch ratio: 0% of 1 comparison in the last 300 s; "
        "trips above 5% after 100 samples"
    ]
    observe(guards, MISMATCH_RATIO, good=118, bad=1)
    assert state_word(state(guards)) == "clear"
    # 1 bad of 120: 0.83%, to the flag file's two decimals.
    assert state_sentences(state(guards), NOW) == [
        "watching the mismatch ratio: 0.83% of 120 comparisons in the last 300 s; "
        "trips above 5% after 100 samples"
    ]


def test_a_guard_watching_both_ratios_says_each() -> None:
    guards = guarded(
        Guard(max_mismatch_ratio=0.05, max_unified_error_ratio=0.02, min_samples=100, window=60)
    )
    observe(guards, UNIFIED_ERROR_RATIO, good=199, bad=1)
    assert state_sentences(state(guards), NOW) == [
        "watching the mismatch ratio: no comparisons in the last 60 s yet; "
        "trips above 5% after 100 samples",
        "watching the unified error ratio: 0.5% of 200 unified interactions in the last 60 s; "
        "trips above 2% after 100 samples",
    ]


def test_a_tripped_guard_says_when_why_and_what_it_holds() -> None:
    # Judged first at the 150th sample, with 18 bad: 12% > 10%.
    guards = guarded(Guard(max_unified_error_ratio=0.1, min_samples=150, window=300))
    observe(guards, UNIFIED_ERROR_RATIO, good=132, bad=18)
    tripped = state(guards)
    assert state_word(tripped) == "tripped"
    assert state_sentences(tripped, NOW + 60) == [
        "tripped at 14:03:12 UTC: unified error ratio 12% over 150 unified interactions "
        "(limit 10%); new connections go to legacy until the flag file changes"
    ]
    # Seen another day, the trip carries its date.
    assert state_sentences(tripped, NOW + 86_400)[0].startswith(
        "tripped at 2027-01-15 14:03:12 UTC: unified error ratio 12%"
    )


def test_a_shape_this_page_does_not_know_is_a_plain_sentence() -> None:
    assert state_word("paused") == "clear"
    assert state_sentences("paused", NOW) == ["paused"]
    assert state_sentences({"tripped": False}, NOW) == ["watching nothing"]
    assert state_sentences({"tripped": False, "watching": {"x": None}}, NOW) == ["watching x"]
    assert state_sentences({"tripped": False, "watching": {"x": [1]}}, NOW) == ["watching x"]


def test_the_turn_guard_reads_in_turns() -> None:
    guard = Guard(max_unified_turn_failure_ratio=0.02, min_samples=200, window=300)
    assert guard_text(asdict(guard)) == (
        "back to legacy on unified turns missing the golden path over 2% of at least "
        "200 samples in 300 s"
    )
    guards = guarded(guard)
    observe(guards, UNIFIED_TURN_FAILURE_RATIO, good=196, bad=4)
    assert state_sentences(state(guards), NOW) == [
        "watching the unified golden-path failure ratio: 2% of 200 unified turns in the "
        "last 300 s; trips above 2% after 200 samples"
    ]
    observe(guards, UNIFIED_TURN_FAILURE_RATIO, good=0, bad=1)
    assert state_sentences(state(guards), NOW + 1) == [
        "tripped at 14:03:12 UTC: unified golden-path failure ratio 2.49% over 201 unified "
        "turns (limit 2%); new connections go to legacy until the flag file changes"
    ]
