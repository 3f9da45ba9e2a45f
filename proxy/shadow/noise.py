"""Noise you can see: how often each field differed within its rule, bounded.

Pure code. A verdict's noise is the (event type, path) pairs the field policy tolerated
in that turn (proxy/shadow/compare.py); counting them per path shows a release manager
which fields are noisy, so the policy can be tightened or loosened. Paths and counts
only: never a value. The number of distinct paths is capped, beyond it turns count as
overflow, so data-shaped keys can never grow the table without bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_PATHS = 200
"""Distinct (event type, path) pairs kept; later new ones only count as overflow."""


@dataclass(slots=True)
class NoiseCounter:
    """Per (event type, path): compared turns in which that field differed within policy."""

    limit: int = MAX_PATHS
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    overflow: int = 0
    """Times a path beyond the cap was seen (its turns are not lost, only not named)."""

    def add(self, noise: Iterable[tuple[str, str]]) -> None:
        """Count one turn's tolerated differences (each pair once per turn)."""
        counts = self.counts
        for key in noise:
            if key in counts:
                counts[key] += 1
            elif len(counts) < self.limit:
                counts[key] = 1
            else:
                self.overflow += 1

    def snapshot(self) -> dict[str, Any]:
        """The table for the admin port: most frequent first, then by name."""
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return {
            "paths": [
                {"event_type": kind, "path": path, "turns": turns} for (kind, path), turns in ranked
            ],
            "overflow": self.overflow,
            "max_paths": self.limit,
        }
