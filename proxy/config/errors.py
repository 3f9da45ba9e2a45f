"""`ConfigError`: every problem in a configuration file, each at its line and column, in
this project's words; pydantic's own wording, and any secret, never reach a message."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import ConfigDict, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

# Every section: unknown keys are errors, and pydantic's own rendering never shows an input.
SECTION = ConfigDict(extra="forbid", hide_input_in_errors=True)

# Keys whose value may be, or name, a secret: a message about one never repeats its value.
SECRET_KEYS = frozenset({"secret_env", "secret_file", "token_env", "token_file"})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in the file: the dotted key ("" for the file), what, and where."""

    key: str
    problem: str
    line: int | None = None  # 1-based, as editors count
    column: int | None = None

    def render(self, source: str) -> str:
        """`file:line:col: dotted.key: what is wrong`."""
        where = f"{source}:{self.line}:{self.column}" if self.line else source
        return f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


class ConfigError(Exception):
    """The configuration file does not fit the schema. `problems` holds all of them, `key`
    and `problem` repeat the first; `str()` is one line per problem."""

    def __init__(
        self, source: str, key: str = "", problem: str = "", *, problems: Sequence[Problem] = ()
    ) -> None:
        self.source = source
        self.problems = tuple(problems) or (Problem(key, problem),)
        self.key, self.problem = self.problems[0].key, self.problems[0].problem
        super().__init__("\n".join(p.render(source) for p in self.problems))


def at(problem: str, *key: str | int) -> PydanticCustomError:
    """An error a validator raises about `key`, below the value it validates."""
    return PydanticCustomError("strangler", "{problem}", {"problem": problem, "at": key})


def dotted(loc: Sequence[str | int]) -> str:
    """`("routes", 2, "dialect")` -> `routes[2].dialect`, as the file's keys nest."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":  # a mapping key that failed: the entry is its own place
            text += f".{part}" if text else part
    return text


def problems_of(
    exc: ValidationError, model: type, marks: Mapping[str, tuple[int, int]] | None = None
) -> list[Problem]:
    """Each error of `exc` (from validating `model`) as a Problem, in file order."""
    problems, marks = [], marks or {}
    for error in exc.errors():
        loc = (*error["loc"], *error.get("ctx", {}).get("at", ()))
        # A missing key is reported where it is missing from: its mapping.
        place = dotted(loc[:-1] if error["type"] in _MISSING else loc)
        while place not in marks and place:  # up to the nearest key the file has
            place = place[: place.rindex("[")] if place.endswith("]") else place.rpartition(".")[0]
        line, column = marks.get(place, (None, None))
        problems.append(Problem(dotted(loc), _describe(error, model, loc), line, column))
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


# What a `<kind>_type` error expected; any other kind (dict, model, dataclass): a mapping.
_EXPECTED = {"int": "a whole number", "float": "a number", "string": "a string"}
_EXPECTED.update(list="a list", tuple="a list", bool="true or false")
_SHOWN = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
_MISSING = ("missing", "missing_argument")
# Enumerations whose message names the kind of thing that was not recognised.
_NOUNS = {"dialect": "dialect", "auth": "auth style"}


def _describe(error: ErrorDetails, model: type, loc: Sequence[str | int]) -> str:
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    name = next((part for part in reversed(loc) if isinstance(part, str)), "")
    shown = type(value) in (str, int, float) and name not in SECRET_KEYS
    got = f", got {value!r}" if shown else ""
    if kind in ("strangler", "value_error"):
        return str(ctx.get("problem", ctx.get("error")))
    if kind in _MISSING:
        return "is required"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown key (expected one of {', '.join(_keys_at(model, loc[:-1]))})"
    if kind.endswith("_type"):
        nature = "empty (null)" if value is None else _SHOWN.get(type(value), "a mapping")
        return f"must be {_EXPECTED.get(kind.split('_')[0], 'a mapping')}, not {nature}"
    if kind in ("literal_error", "enum"):
        options = [o.strip("'") for o in re.split(r", | or ", str(ctx["expected"]))]
        if name in _NOUNS and shown:
            return f"unknown {_NOUNS[name]} {value!r} (one of {', '.join(options)})"
        choice = " or ".join(options) if len(options) == 2 else f"one of {', '.join(options)}"
        return f"must be {choice}{got}"
    if kind in ("greater_than", "greater_than_equal"):
        bound: float = ctx["gt"] if "gt" in ctx else ctx["ge"]
        bound = int(bound) if float(bound).is_integer() else bound  # 0, not 0.0
        return f"must be {'greater than' if 'gt' in ctx else 'at least'} {bound}{got}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}{got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    return "must be a finite number" if kind == "finite_number" else "is not a value it takes"


def _keys_at(model: Any, loc: Sequence[str | int]) -> list[str]:
    """The keys the section at `loc` takes: its model's fields, walking down from `model`."""
    for part in loc:
        field = getattr(model, "__pydantic_fields__", {}).get(part)
        if field is not None:  # list indexes keep the list's model
            types = (field.annotation, *get_args(field.annotation))
            model = next((t for t in types if hasattr(t, "__pydantic_fields__")), None)
    return sorted(getattr(model, "__pydantic_fields__", {}))
