"""How numbers, instants and counts read on the status page (pure).

One place for the page's small words, so a percent or a time reads the same in every
table: percentages are trimmed decimals (``10%``, ``0.5%``), never basis points or 0..1.
"""

from __future__ import annotations

import time
from typing import Any


def percent_text(value: float) -> str:
    """A percentage as a person writes it: 10 -> ``10%``, 0.5 -> ``0.5%``.

    Two decimals are the flag file's own precision (basis points), so a rollout value
    is shown exactly; a measured ratio is rounded to them.
    """
    if 0 < value < 0.005:
        return "under 0.01%"  # rounding it to 0% would read as "none"
    return f"{value:.2f}".rstrip("0").rstrip(".") + "%"


def ratio_text(ratio: float) -> str:
    """A ratio 0..1 (a guard's limit or measurement) as a percentage."""
    return percent_text(ratio * 100)


def stamp(at: float) -> str:
    """An instant in UTC, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def clock(at: float, now: float) -> str:
    """An instant as the time of day when it is today (UTC), else with its date."""
    if time.gmtime(at)[:3] == time.gmtime(now)[:3]:
        return time.strftime("%H:%M:%S UTC", time.gmtime(at))
    return stamp(at)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 user``, ``3 users``."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def word(value: Any) -> str:
    """A scalar from a record as text; anything else as a placeholder, never a structure
    (the page shows sentences, the JSON endpoints keep the structures)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return "?"


def number(value: Any) -> float | None:
    """A number from a record, or None when it is not one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
