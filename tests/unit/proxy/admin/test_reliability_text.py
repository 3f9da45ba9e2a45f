"""Golden-path reliability as words: rounded down, never up to the objective it misses."""

from __future__ import annotations

import pytest

from strangler.proxy.admin.reliability_text import (
    below_objective,
    objective_text,
    percent_down,
    reliability_text,
)


@pytest.mark.parametrize(
    ("part", "whole", "text"),
    [
        (1, 1, "100%"),
        (199, 200, "99.5%"),
        (99_496, 100_000, "99.49%"),
        (29, 100, "29%"),  # 0.29 * 10000 is 2899.99... in floats
        (1, 3, "33.33%"),
        (0, 7, "0%"),
        (1, 200_000, "0%"),
    ],
)
def test_a_share_is_a_percentage_rounded_down(part: int, whole: int, text: str) -> None:
    assert percent_down(part, whole) == text


def test_a_reliability_reads_with_its_turns_and_says_none_without() -> None:
    text = reliability_text({"turns": 200, "completed": 199, "ratio": 0.995})
    assert text == "99.5% of 200 turns"
    assert reliability_text({"turns": 1, "completed": 0, "ratio": 0.0}) == "0% of 1 turn"
    for nothing in ({"turns": 0, "completed": 0, "ratio": None}, None, "x", {"turns": "9"}):
        assert reliability_text(nothing) == "no turns ended"


def test_below_the_objective_is_exact_not_rounded() -> None:
    assert below_objective({"turns": 200, "completed": 199}, 99.5) is False  # exactly on it
    assert below_objective({"turns": 100_000, "completed": 99_496}, 99.5) is True
    assert below_objective({"turns": 0, "completed": 0}, 99.5) is None
    assert objective_text(99.5) == "99.5%" and objective_text(99.0) == "99%"
