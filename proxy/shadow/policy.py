"""Which rule judges a field: the configured ``shadow.compare.rules`` over built-in defaults.

Pure code. A rule names an event type (or ``*``) and a dotted path (``*`` for any one key
or list index) and governs that field and everything under it, unless a deeper rule
names a field inside. Precedence, most specific first (docs/SHADOW.md):

1. the longer path (``data.result.summary`` beats ``data.result``);
2. at the first segment where two paths differ, a literal beats ``*``;
3. a named event type beats ``*``;
4. a configured rule beats a built-in default.

Nothing matched: ``exact``. Every field is data unless a rule says it is prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from strangler.legacy_adapters.canonical import VOLATILE_FIELDS
from strangler.proxy.config.compare import (
    ANY,
    EXACT,
    IGNORE,
    NOT_COMPARED,
    PRESENCE,
    CompareSettings,
    FieldRule,
)

_PROSE = "model prose, never the same twice: compared by presence"
_CHUNKS = "counts thinking chunks, and chunking is not a difference"

DEFAULTS: tuple[tuple[str, str, FieldRule, str], ...] = (
    (ANY, "data.message", PRESENCE, "status and error messages are prose: compared by presence"),
    ("agent_thinking", "data.reasoning", PRESENCE, _PROSE),
    ("agent_thinking", "data.step_number", IGNORE, _CHUNKS),
    ("agent_thinking", "data.progress_percentage", IGNORE, _CHUNKS),
    ("agent_completed", "data.final_response", PRESENCE, _PROSE),
    ("agent_completed", "data.result.summary", PRESENCE, _PROSE),
)
"""The built-in rules: (event type, path, rule, why). Everything else is exact."""

_FALLBACK_WHY = "default: not named by any rule, so it is data and compared exactly"


@dataclass(frozen=True, slots=True)
class _Entry:
    event_type: str
    path: tuple[str, ...]
    rule: FieldRule
    why: str
    configured: bool

    def matches(self, event_type: str, path: tuple[str, ...]) -> bool:
        """Whether this rule governs ``path`` (it names the path or one above it)."""
        if self.event_type not in (ANY, event_type) or len(self.path) > len(path):
            return False
        return all(mine in (ANY, theirs) for mine, theirs in zip(self.path, path, strict=False))

    def below(self, event_type: str, path: tuple[str, ...]) -> bool:
        """Whether this rule names a field strictly inside ``path``."""
        if self.event_type not in (ANY, event_type) or len(self.path) <= len(path):
            return False
        return all(mine in (ANY, theirs) for mine, theirs in zip(self.path, path, strict=False))

    def specificity(self) -> tuple[int, tuple[bool, ...], bool, bool]:
        literal = tuple(segment != ANY for segment in self.path)
        return (len(self.path), literal, self.event_type != ANY, self.configured)


_CACHE_LIMIT = 4096  # paths come from data: the memo is bounded, never a leak


class Policy:
    """The rules of one CompareSettings, ready to answer per (event type, path)."""

    __slots__ = ("_below", "_entries", "_rules")

    def __init__(self, settings: CompareSettings) -> None:
        configured = [
            _Entry(kind, tuple(path.split(".")), rule, _configured_why(kind, path), True)
            for kind, paths in settings.rules.items()
            for path, rule in paths.items()
        ]
        named = {(entry.event_type, entry.path) for entry in configured}
        defaults = [
            _Entry(
                kind, tuple(path.split(".")), rule, f"built-in default {kind} {path}: {why}", False
            )
            for kind, path, rule, why in DEFAULTS
            if (kind, tuple(path.split("."))) not in named
        ]
        self._entries = tuple(configured + defaults)
        self._rules: dict[tuple[str, tuple[str, ...]], tuple[FieldRule, str]] = {}
        self._below: dict[tuple[str, tuple[str, ...]], bool] = {}

    def rule(self, event_type: str, path: tuple[str, ...]) -> tuple[FieldRule, str]:
        """The rule for ``path`` of ``event_type`` events, and why it is that one."""
        key = (event_type, path)
        found = self._rules.get(key)
        if found is None:
            found = self._resolve(event_type, path)
            if len(self._rules) >= _CACHE_LIMIT:
                self._rules.clear()
            self._rules[key] = found
        return found

    def deeper(self, event_type: str, path: tuple[str, ...]) -> bool:
        """Whether some rule names a field inside ``path``: then the walk goes in."""
        key = (event_type, path)
        found = self._below.get(key)
        if found is None:
            found = any(entry.below(event_type, path) for entry in self._entries)
            if len(self._below) >= _CACHE_LIMIT:
                self._below.clear()
            self._below[key] = found
        return found

    def _resolve(self, event_type: str, path: tuple[str, ...]) -> tuple[FieldRule, str]:
        if event_type in NOT_COMPARED:
            return IGNORE, f"{event_type} is a control frame: never compared"
        volatile = VOLATILE_FIELDS.intersection(path)
        if volatile:
            field = min(volatile)
            return (
                IGNORE,
                f"{field} is a volatile field (docs/PROTOCOL.md section 4): never compared",
            )
        matching = [entry for entry in self._entries if entry.matches(event_type, path)]
        if not matching:
            return EXACT, _FALLBACK_WHY
        best = max(matching, key=_Entry.specificity)
        return best.rule, best.why


def _configured_why(event_type: str, path: str) -> str:
    return f"shadow.compare.rules.{event_type}.{path}"


@lru_cache(maxsize=16)
def policy(settings: CompareSettings) -> Policy:
    """The Policy of ``settings``, built once per settings object (they are immutable)."""
    return Policy(settings)


def rule_for(settings: CompareSettings, event_type: str, path: str) -> tuple[FieldRule, str]:
    """The rule that judges ``path`` (dotted) of ``event_type`` events, and why."""
    return policy(settings).rule(event_type, tuple(path.split(".")))
