"""Golden-path reliability as words (pure): the status page's cells and the lines of
`strangler flags status`, from `/flags/status`'s `reliability` (route -> backend ->
judged turns, completed ones, their ratio; proxy/release/reliability.py).

A ratio is rounded down to two decimals, so 99.496% reads 99.49%, never the 99.5% it
falls short of. Entries are read defensively: a shape this module does not know reads
as "no turns ended", never as a structure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strangler.proxy.admin.wording import counted, number

BACKENDS = ("legacy", "unified")


def percent_down(part: int, whole: int) -> str:
    """`part` of `whole` as a percentage rounded down to two decimals, in integers (in
    floats 0.29 * 10000 is 2899.99...): 99496 of 100000 -> ``99.49%``."""
    hundredths = part * 10_000 // whole
    return f"{hundredths // 100}.{hundredths % 100:02d}".rstrip("0").rstrip(".") + "%"


def _counts(entry: Any) -> tuple[int, int] | None:
    """(judged turns, completed ones) of an entry, or None without turns."""
    if not isinstance(entry, Mapping):
        return None
    turns, completed = number(entry.get("turns")), number(entry.get("completed"))
    if not turns or completed is None:
        return None
    return int(turns), int(completed)


def reliability_text(entry: Any) -> str:
    """``99.8% of 512 turns``, or ``no turns ended``."""
    counts = _counts(entry)
    if counts is None:
        return "no turns ended"
    turns, completed = counts
    return f"{percent_down(completed, turns)} of {counted(turns, 'turn')}"


def below_objective(entry: Any, objective: float) -> bool | None:
    """Whether the entry's reliability is below `objective` (percent); None without turns."""
    counts = _counts(entry)
    if counts is None:
        return None
    turns, completed = counts
    return completed * 100 < objective * turns


def objective_text(objective: float) -> str:
    """The objective, in percent as written: ``99.5%``."""
    return f"{objective:g}%"
