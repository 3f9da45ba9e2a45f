"""Shed turns: never judged from part of what they saw, and never shifting the pairing
of the turns around them."""

from __future__ import annotations

from strangler.proxy.shadow.verdict import Outcome, Side
from tests.unit.proxy.shadow.playbook import Playbook, completed, ev, golden, started


def request(book: Playbook, at: float, *, shed: bool = False) -> bool:
    return book.comparator.client_message(
        {"type": "start_agent", "payload": {"user_request": "hi"}}, at, shed=shed
    )


def test_a_shed_turn_says_shed_and_the_turns_around_it_are_still_compared() -> None:
    book = Playbook()
    request(book, 0.0)
    assert request(book, 1.0, shed=True)
    request(book, 2.0)
    # Both sides answer the three turns; the shed one differs, and that is not seen.
    book.legacy(golden(), 0.1)
    book.unified(golden(), 0.1)
    book.legacy(golden(), 1.1)
    book.unified([started(), ev("agent_thinking", text="other"), completed("failed")], 1.1)
    book.legacy(golden(), 2.1)
    book.unified(golden(), 2.1)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.MATCH),
        (1, Outcome.SHED),
        (2, Outcome.MATCH),
    ]
    shed = book.verdicts[1]
    assert shed.differences == () and shed.legacy_events == shed.unified_events == ()


def test_a_shed_turn_is_given_at_once_and_its_events_keep_nothing() -> None:
    book = Playbook()
    request(book, 0.0, shed=True)
    assert not book.comparator.keeps(Side.LEGACY)
    assert not book.comparator.keeps(Side.UNIFIED)
    assert book.poll(0.0)[0].outcome is Outcome.SHED
    assert not book.comparator.comparing
    request(book, 1.0)
    book.legacy(golden(), 0.1)  # the shed turn's: moves the cursor, keeps nothing
    assert book.comparator.keeps(Side.LEGACY)
    assert book.comparator.comparing


def test_a_shed_secondary_sheds_the_turns_it_had_not_finished_and_every_later_one() -> None:
    book = Playbook()
    request(book, 0.0)
    request(book, 1.0)
    book.unified(golden(), 0.1)  # the secondary finished turn 0, not turn 1
    book.unified([started()], 1.1)
    book.verdicts += book.comparator.secondary_shed(1.5)
    request(book, 2.0)
    book.legacy(golden(), 0.1)
    book.legacy(golden(), 1.1)
    book.legacy(golden(), 2.1)
    assert [(v.turn, v.outcome) for v in book.verdicts] == [
        (0, Outcome.MATCH),  # whole on both sides: still judged
        (1, Outcome.SHED),
        (2, Outcome.SHED),
    ]


def test_a_failed_secondary_is_not_shed_after_the_fact() -> None:
    book = Playbook()
    request(book, 0.0)
    book.verdicts += book.comparator.secondary_failed("died", 0.5)
    assert book.comparator.secondary_shed(0.6) == []
    book.legacy(golden(), 0.1)
    assert [v.outcome for v in book.verdicts] == [Outcome.SHADOW_ERROR]


def test_in_live_mode_the_primary_is_unified_and_the_shed_turn_still_pairs() -> None:
    book = Playbook(primary=Side.UNIFIED)
    request(book, 0.0, shed=True)
    request(book, 1.0)
    book.unified(golden(), 0.1)
    book.legacy(golden(), 0.1)
    book.unified(golden(), 1.1)
    book.legacy(golden(), 1.1)
    assert [v.outcome for v in book.verdicts] == [Outcome.SHED, Outcome.MATCH]


def test_a_repeated_turn_end_still_reaches_the_turn_it_repeats() -> None:
    # Legacy ended turn 0 and no next request is in: a second agent_completed from it
    # belongs to turn 0, which waits for the secondary, so it must be read whole.
    book = Playbook()
    request(book, 0.0)
    book.legacy(golden(), 0.1)
    assert book.comparator.keeps(Side.LEGACY)
