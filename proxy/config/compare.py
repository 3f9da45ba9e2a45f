"""How turns are compared: the settings under ``shadow.compare`` and the fixed rules
(control frames, volatile fields) that no setting overrides. Pure; the comparator in
proxy/shadow/compare.py applies them, proxy/shadow/policy.py picks the rule for a path.

A field rule says how one JSON path of one event type is judged (docs/SHADOW.md):
``exact`` (data, the default), ``presence`` (model prose), ``ignore``, ``numeric`` with a
relative and an absolute tolerance, ``unordered`` (a list compared as a multiset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass as section
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

# The canonical event model owns the list (docs/PROTOCOL.md); the comparison ignores them.
from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.errors import SECTION, problems_of

NOT_COMPARED = frozenset(
    {
        "ping",
        "pong",
        "heartbeat",
        "heartbeat_ack",
        "ack",
        "connection_established",
        "system_message",
    }
)
"""Control frames: ignored by the comparison, and they do not break a turn."""

ANY = "*"
"""In a rule's event type: every event type; in a path: any one key or list index."""


class RuleName(StrEnum):
    """How a field is judged."""

    EXACT = "exact"
    PRESENCE = "presence"
    IGNORE = "ignore"
    NUMERIC = "numeric"
    UNORDERED = "unordered"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One rule: its name and, for ``numeric``, the tolerances.

    Two numbers differ when ``|a - b| > abs + rel * max(|a|, |b|)`` (Diffy's noise rule).
    """

    name: RuleName
    rel: float = 0.0
    abs: float = 0.0

    def __str__(self) -> str:
        if self.name is RuleName.NUMERIC:
            return f"numeric (rel {self.rel:g}, abs {self.abs:g})"
        return self.name.value


EXACT = FieldRule(RuleName.EXACT)
PRESENCE = FieldRule(RuleName.PRESENCE)
IGNORE = FieldRule(RuleName.IGNORE)

_RULE_NAMES = ", ".join(name.value for name in RuleName)
_TOLERANCES = ("rel", "abs")


def _event_type(kind: str) -> str:
    if not kind:
        raise ValueError("an event type must be a non-empty string")
    if kind in NOT_COMPARED:
        raise ValueError(f"{kind} events are never compared")
    return kind


def split_path(path: str) -> tuple[str, ...]:
    """A dotted path's segments; ValueError if it is not one or names a volatile field."""
    parts = tuple(path.split("."))
    if not all(parts):
        raise ValueError(f"{path!r} is not a dotted field path like 'data.result.items.*.id'")
    volatile = VOLATILE_FIELDS.intersection(parts)
    if volatile:
        # Volatile fields are stripped before comparing, so such a path never differs.
        raise ValueError(f"{path!r} names the volatile field {min(volatile)!r}")
    return parts


def _field_path(path: str) -> str:
    split_path(path)
    return path


def _tolerance(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key, 0.0)
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a finite number of at least 0, not {value!r}")
    return float(value)


def parse_rule(value: Any) -> FieldRule:
    """A rule as written: a name, or ``{rule: numeric, rel: 0.01, abs: 0.5}``."""
    if isinstance(value, FieldRule):
        return value
    data: Mapping[str, Any]
    if isinstance(value, str):
        data = {"rule": value}
    elif isinstance(value, Mapping):
        data = value
    else:
        raise ValueError(f"a rule is one of {_RULE_NAMES}, or a mapping with a 'rule' key")
    unknown = sorted(set(data) - {"rule", *_TOLERANCES}, key=str)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected rule, rel, abs)")
    name = data.get("rule")
    if name not in tuple(RuleName):
        raise ValueError(f"unknown rule {name!r} (one of {_RULE_NAMES})")
    rule = RuleName(name)
    given = [key for key in _TOLERANCES if key in data]
    if given and rule is not RuleName.NUMERIC:
        raise ValueError(f"{given[0]} is a tolerance of the numeric rule, not of {rule.value}")
    if rule is not RuleName.NUMERIC:
        return FieldRule(rule)
    return FieldRule(rule, _tolerance(data, "rel"), _tolerance(data, "abs"))


EventType = Annotated[StrictStr, AfterValidator(_event_type)]
FieldPath = Annotated[StrictStr, AfterValidator(_field_path)]
_RULE_SCHEMA = {
    "anyOf": [
        {"enum": [name.value for name in RuleName]},
        {
            "type": "object",
            "properties": {
                "rule": {"enum": [name.value for name in RuleName]},
                "rel": {"type": "number", "minimum": 0},
                "abs": {"type": "number", "minimum": 0},
            },
            "required": ["rule"],
            "additionalProperties": False,
        },
    ]
}
Rule = Annotated[Any, AfterValidator(parse_rule), WithJsonSchema(_RULE_SCHEMA)]

_MOVED = (
    "was replaced by 'rules': every field is now compared by value unless a rule says "
    "otherwise; write for example rules: {{'*': {{{example}: {rule}}}}} (docs/SHADOW.md)"
)


@section(frozen=True, slots=True, config=SECTION)
class CompareSettings:
    """How turns are compared and how long the secondary may take."""

    # hash=False: the mapping is unhashable; equality still compares it.
    rules: Annotated[
        Mapping[EventType, Mapping[FieldPath, Rule]],
        Field(
            description="Per event type ('*': any), dotted paths ('*': any key or index) and "
            "the rule that judges them: exact, presence, ignore, numeric (rel, abs), "
            "unordered. Built-in defaults compare data exactly and model prose by presence."
        ),
    ] = field(default_factory=dict, hash=False)
    timeout_factor: Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)] = Field(
        default=3.0,
        description="The secondary may take this many times the primary's turn duration...",
    )
    timeout_floor: Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)] = Field(
        default=5.0,
        description="...but never less than this many seconds after the primary's turn end.",
    )
    max_events_per_turn: Annotated[StrictInt, Field(ge=1)] = Field(
        default=1000,
        description="Events kept per side and turn; more are cut and counted as one more.",
    )
    # The keys of the previous version, refused with the way to write them now.
    fields: SkipJsonSchema[Any] = Field(default=None, exclude=True, repr=False)
    free_text: SkipJsonSchema[Any] = Field(default=None, exclude=True, repr=False)

    @field_validator("fields", "free_text")
    @classmethod
    def _moved(cls, value: Any, info: ValidationInfo) -> None:
        if value is not None:
            free_text = info.field_name == "free_text"
            example = "data.reasoning" if free_text else "data.status"
            raise ValueError(
                _MOVED.format(example=example, rule="presence" if free_text else "exact")
            )
        return None

    def __post_init__(self) -> None:
        # Frozen: a caller's dict is copied once so the settings never change under a turn.
        frozen = {
            kind: MappingProxyType({path: parse_rule(rule) for path, rule in paths.items()})
            for kind, paths in self.rules.items()
        }
        object.__setattr__(self, "rules", MappingProxyType(frozen))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CompareSettings:
        """Validate a YAML mapping; a ValueError names the key and says what is wrong."""
        try:
            return _ADAPTER.validate_python(data)
        except ValidationError as exc:
            first = problems_of(exc, cls)[0]
            raise ValueError(f"{first.key or 'compare'}: {first.problem}") from None


_ADAPTER = TypeAdapter(CompareSettings)
