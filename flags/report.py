"""A flag file's problems, reported: the first one raised (``FlagFileError``, for loading)
or every one collected as a ``Finding`` (for lint), by one walk either way."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar

_T = TypeVar("_T")


class FlagFileError(Exception):
    """A flag file that cannot be applied: which file, which key, and what is wrong."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(source, key, problem)
        self.source = source
        """The file path."""
        self.key = key
        """Dotted path of the offending value (``flags.x.rollout.unified``); "" for the file."""
        self.problem = problem
        """A plain sentence saying what is wrong."""

    def __str__(self) -> str:
        if not self.key:
            return f"{self.source}: {self.problem}"
        return f"{self.source}: {self.key}: {self.problem}"

    @classmethod
    def unreadable(cls, source: str, exc: OSError) -> FlagFileError:
        """The error for a file that could not be read."""
        reason = exc.strerror or type(exc).__name__
        return cls(source, "", f"the file cannot be read ({reason}).")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found by ``check_document``: where (dotted key), what, and how bad."""

    key: str
    message: str
    severity: Literal["error", "warning"]


def kind(value: object) -> str:
    """How a value reads in a message, without repeating it."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime.datetime):
        return "a timestamp"
    if isinstance(value, datetime.date):
        return "a date"
    return f"a {type(value).__name__}"


def name_list(values: Collection[str]) -> str:
    """Names the file defines, listed for a message."""
    return ", ".join(sorted(values)) if values else "(none)"


class Reporter:
    """Where a check's problems go: strict (the default) raises the first as FlagFileError;
    collecting records each one and the check goes on past the part it spoils."""

    def __init__(self, source: str, *, collect: bool) -> None:
        self._source = source
        self._collect = collect
        self._errors = 0
        self.findings: list[Finding] = []

    def _fail(self, key: str, problem: str) -> NoReturn:
        """A problem that spoils the value being read: unwind to the nearest ``_try``."""
        raise FlagFileError(self._source, key, problem)

    def _note(self, key: str, problem: str) -> None:
        """A problem the caller can step over (strict mode still raises it)."""
        if not self._collect:
            self._fail(key, problem)
        self._record(FlagFileError(self._source, key, problem))

    def _warn(self, key: str, message: str) -> None:
        if self._collect:
            self.findings.append(Finding(key, message, "warning"))

    def _record(self, err: FlagFileError) -> None:
        self._errors += 1
        self.findings.append(Finding(err.key, err.problem, "error"))

    def _try(self, check: Callable[..., _T], *args: Any) -> _T | None:
        """``check(*args)``; when collecting, a problem is recorded and None returned."""
        try:
            return check(*args)
        except FlagFileError as err:
            if not self._collect:
                raise
            self._record(err)
            return None

    def _reject_unknown_keys(
        self, mapping: dict[Any, Any], allowed: tuple[str, ...], at: str
    ) -> None:
        unknown = [str(key) for key in mapping if key not in allowed]
        if not unknown:
            return
        where = "at the top level" if not at else f"in {at}"
        listed = ", ".join(f"'{key}'" for key in unknown)
        self._note(
            f"{at}.{unknown[0]}" if at else unknown[0],
            f"unknown key{'s' if len(unknown) > 1 else ''} {listed} {where}; "
            f"allowed keys are {', '.join(allowed)}.",
        )
        # Lint reports each further key at its own line; a strict run stopped above.
        for key in unknown[1:]:
            self._note(
                f"{at}.{key}" if at else key,
                f"unknown key '{key}' {where}; allowed keys are {', '.join(allowed)}.",
            )
