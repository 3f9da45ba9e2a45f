"""How turns are compared: the settings under ``shadow.compare`` and the fixed rules
(control frames, volatile fields) that no setting overrides. Pure; the comparator in
proxy/shadow/compare.py applies them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# The canonical event model owns the list (docs/PROTOCOL.md); the comparison ignores them.
from strangler.legacy_adapters.canonical import VOLATILE_FIELDS

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


_STATUS_PATH = "data.status"

_DEFAULT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"agent_started": (_STATUS_PATH,), "agent_completed": (_STATUS_PATH,)}
)
_SETTING_KEYS = ("fields", "free_text", "timeout_factor", "timeout_floor", "max_events_per_turn")


@dataclass(frozen=True, slots=True)
class CompareSettings:
    """How turns are compared and how long the secondary may take."""

    # hash=False: the mapping is unhashable; equality still compares it.
    fields: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: _DEFAULT_FIELDS, hash=False
    )
    """Per event type, dotted field paths compared by value."""
    free_text: tuple[str, ...] = (
        "data.reasoning",
        "data.final_response",
        "data.message",
        "data.result",
    )
    """Dotted paths compared by presence only: model output is not deterministic."""
    timeout_factor: float = 3.0
    """The secondary may take this many times the primary's turn duration..."""
    timeout_floor: float = 5.0
    """...but never less than this many seconds, counted from the primary's turn end."""
    max_events_per_turn: int = 1000
    """Events kept per side and turn; more are cut and counted as an extra event."""

    def __post_init__(self) -> None:
        _check_factor("timeout_factor", self.timeout_factor)
        _check_floor("timeout_floor", self.timeout_floor)
        _check_max_events("max_events_per_turn", self.max_events_per_turn)
        # Frozen: a caller's dict is copied once so the settings never change under a turn.
        frozen = {kind: tuple(paths) for kind, paths in self.fields.items()}
        object.__setattr__(self, "fields", MappingProxyType(frozen))
        object.__setattr__(self, "free_text", tuple(self.free_text))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CompareSettings:
        """Validate a YAML mapping; a ValueError names the key and says what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("compare: must be a mapping of settings")
        for key in data:
            if key not in _SETTING_KEYS:
                raise ValueError(
                    f"{key}: unknown compare setting; expected one of {', '.join(_SETTING_KEYS)}"
                )
        defaults = cls()
        fields = _parse_fields(data["fields"]) if "fields" in data else defaults.fields
        free_text = (
            _parse_paths("free_text", data["free_text"])
            if "free_text" in data
            else defaults.free_text
        )
        return cls(
            fields=fields,
            free_text=free_text,
            timeout_factor=_check_factor(
                "timeout_factor", data.get("timeout_factor", defaults.timeout_factor)
            ),
            timeout_floor=_check_floor(
                "timeout_floor", data.get("timeout_floor", defaults.timeout_floor)
            ),
            max_events_per_turn=_check_max_events(
                "max_events_per_turn",
                data.get("max_events_per_turn", defaults.max_events_per_turn),
            ),
        )


def _seconds(key: str, value: object, *, minimum: float, inclusive: bool) -> float:
    # bool is an int subclass, but `timeout_factor: yes` is a typo, not a number.
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        above = number > minimum or (inclusive and number == minimum)
        if math.isfinite(number) and above:
            return number
    bound = "zero or more" if inclusive else "above zero"
    raise ValueError(f"{key}: must be a number {bound}, got {value!r}")


def _check_factor(key: str, value: object) -> float:
    return _seconds(key, value, minimum=0.0, inclusive=False)


def _check_floor(key: str, value: object) -> float:
    return _seconds(key, value, minimum=0.0, inclusive=True)


def _check_max_events(key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key}: must be a whole number of at least 1, got {value!r}")
    return value


def _parse_fields(value: object) -> Mapping[str, tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ValueError("fields: must map event types to lists of field paths")
    parsed: dict[str, tuple[str, ...]] = {}
    for kind, paths in value.items():
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"fields: event type {kind!r} must be a non-empty string")
        if kind in NOT_COMPARED:
            raise ValueError(f"fields.{kind}: {kind} events are never compared")
        parsed[kind] = _parse_paths(f"fields.{kind}", paths)
    return MappingProxyType(parsed)


def _parse_paths(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{key}: must be a list of dotted field paths")
    for position, path in enumerate(value):
        where = f"{key}[{position}]"
        if not isinstance(path, str) or not all(path.split(".")):
            raise ValueError(f"{where}: {path!r} is not a dotted field path like 'data.status'")
        volatile = VOLATILE_FIELDS.intersection(path.split("."))
        if volatile:
            # Volatile fields are stripped before comparing, so such a path never differs.
            raise ValueError(f"{where}: {path!r} names the volatile field {min(volatile)!r}")
    return tuple(value)
