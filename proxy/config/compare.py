"""How turns are compared: the settings under ``shadow.compare`` and the fixed rules
(control frames, volatile fields) that no setting overrides. Pure; the comparator in
proxy/shadow/compare.py applies them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
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
)
from pydantic.dataclasses import dataclass as section

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


def _event_type(kind: str) -> str:
    if not kind:
        raise ValueError("an event type must be a non-empty string")
    if kind in NOT_COMPARED:
        raise ValueError(f"{kind} events are never compared")
    return kind


def _field_path(path: str) -> str:
    if not all(path.split(".")):
        raise ValueError(f"{path!r} is not a dotted field path like 'data.status'")
    volatile = VOLATILE_FIELDS.intersection(path.split("."))
    if volatile:
        # Volatile fields are stripped before comparing, so such a path never differs.
        raise ValueError(f"{path!r} names the volatile field {min(volatile)!r}")
    return path


EventType = Annotated[StrictStr, AfterValidator(_event_type)]
FieldPath = Annotated[StrictStr, AfterValidator(_field_path)]

_STATUS_PATH = "data.status"

_DEFAULT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"agent_started": (_STATUS_PATH,), "agent_completed": (_STATUS_PATH,)}
)


@section(frozen=True, slots=True, config=SECTION)
class CompareSettings:
    """How turns are compared and how long the secondary may take."""

    # hash=False: the mapping is unhashable; equality still compares it.
    fields: Annotated[
        Mapping[EventType, tuple[FieldPath, ...]],
        Field(description="Per event type, dotted field paths compared by value."),
    ] = field(default_factory=lambda: _DEFAULT_FIELDS, hash=False)
    free_text: tuple[FieldPath, ...] = Field(
        default=("data.reasoning", "data.final_response", "data.message", "data.result"),
        description="Dotted paths compared by presence only: model output is not deterministic.",
    )
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

    def __post_init__(self) -> None:
        # Frozen: a caller's dict is copied once so the settings never change under a turn.
        frozen = {kind: tuple(paths) for kind, paths in self.fields.items()}
        object.__setattr__(self, "fields", MappingProxyType(frozen))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CompareSettings:
        """Validate a YAML mapping; a ValueError names the key and says what is wrong."""
        try:
            return _ADAPTER.validate_python(data)
        except ValidationError as exc:
            first = problems_of(exc, cls)[0]
            raise ValueError(f"{first.key or 'compare'}: {first.problem}") from None


_ADAPTER = TypeAdapter(CompareSettings)
