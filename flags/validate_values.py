"""Checking one value of a flag file: names, modes, user ids, percentages, ratios and
positive numbers, each with a message that never repeats a user id."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from strangler.flags.model import Mode
from strangler.flags.report import Reporter, kind
from strangler.flags.schema import MODES, NAME
from strangler.flags.yaml_source import SpelledInt


class ValueChecks(Reporter):
    """The checks of single values that every part of the file shares."""

    def _name(self, name: Any, at: str, what: str) -> str:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            self._fail(at, f"{what} may only use lowercase letters, digits, '_', '.' and '-'.")
        return name

    def _mode(self, value: Any, at: str) -> Mode:
        if not isinstance(value, str):
            self._fail(at, f"must be a mode ({', '.join(MODES)}), not {kind(value)}.")
        if value not in MODES:
            self._fail(at, f"unknown mode '{value}'; modes are {', '.join(MODES)}.")
        return Mode(value)

    def _user_id(self, value: Any, at: str) -> str:
        # Messages here never repeat the value: it is (meant to be) a user id.
        if isinstance(value, SpelledInt):
            self._fail(
                at,
                "this user id is read by YAML as a number with a different spelling "
                "(leading zero, underscore, colon or prefix); put it in quotes.",
            )
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self._fail(at, f"user ids must be strings (quote them), not {kind(value)}.")
        if not value:
            self._fail(at, "user ids cannot be empty.")
        return value

    def _basis_points(self, value: Any, at: str) -> int:
        if isinstance(value, SpelledInt):
            self._fail(at, "write the percentage as a plain decimal number (e.g. 5 or 12.5).")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(at, f"must be a percentage from 0 to 100, not {kind(value)}.")
        if isinstance(value, float) and not math.isfinite(value):
            self._fail(at, "must be a percentage from 0 to 100, not infinity or NaN.")
        if not 0 <= value <= 100:
            self._fail(at, f"must be a percentage from 0 to 100, not {value}.")
        # Decimal of the float's shortest repr: 12.34 is exactly 1234 basis points.
        scaled = Decimal(repr(value)) * 100
        if scaled != scaled.to_integral_value():
            self._fail(at, f"{value} has more than 2 decimals; the finest step is 0.01%.")
        return int(scaled)

    def _positive(self, value: Any, at: str, unit: str) -> float:
        if isinstance(value, SpelledInt):
            self._fail(at, "write the number as a plain decimal number.")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(at, f"must be a positive number ({unit}), not {kind(value)}.")
        if not math.isfinite(value) or value <= 0:
            self._fail(at, f"must be a positive number ({unit}), not {value}.")
        return float(value)

    def _ratio(self, value: Any, at: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(at, f"must be a ratio from 0 to 1, not {kind(value)}.")
        if not (math.isfinite(value) and 0 <= value <= 1):
            self._fail(at, f"must be a ratio from 0 to 1 (0.05 is 5%), not {value}.")
        return float(value)
