"""The flag file: its YAML schema, validation, and loading into a ``FlagSet``.

This is the file release managers edit. A file that fails validation is never applied.
docs/FLAGS.md is the full guide; this is the reference.

Schema::

    version: 1                  # optional; only 1 is accepted
    segments:                   # optional: named groups of users, shared by every flag
      beta_testers:             # segment name: lowercase letters, digits, "_", "." and "-"
        users: [u1, u2]         #   listed users are in it, and so is anyone who satisfies
        when:                   #   every condition (a segment needs users, when, or both)
          - {claim: plan, one_of: [pro, enterprise]}
    flags:                      # optional; missing, empty or {} means every route is legacy
      unified_router:           # flag key: lowercase letters, digits, "_", "." and "-"
        routes: [main, factory] # required, non-empty list of route names; a route may
                                #   belong to one flag only (across the whole file)
        default: legacy         # optional (legacy): mode for users outside every rollout share
        anonymous: legacy       # optional (legacy): mode for connections without a user id
        kill_switch: false      # optional (false): true sends everyone on these routes to legacy
        targets:                # optional: mode -> list of user ids, beats rules and rollout
          unified: [alice]      #   numbers are accepted as ids ("1234" and 1234 are the same user)
          shadow: [bob]         #   a user may appear under one mode only
        rules:                  # optional: tried in order after targets; the first match wins
          - name: acme_staff    #   required, unique in the flag; reported in Decision.rule
            when:               #   every condition must hold; operators: equals, one_of,
              - {claim: org, equals: acme}              # ends_with, exists (true/false)
              - {claim: email, ends_with: "@example.com"}
            mode: unified       #   required
          - {name: beta, segment: beta_testers, mode: shadow, rollout: 50}
                                #   segment: members only; rollout: the share (0..100) of
                                #   matching users it applies to, by bucket; the rest go on
        rollout:                # optional: percent of users per mode, 0..100, up to 2 decimals
          unified: 5            #   keys: unified, live, shadow (legacy gets what remains);
          shadow: 20            #   the shares must add up to 100 or less
        effective_at: 2030-01-01T09:00:00Z  # optional: ISO 8601 with a timezone, or Unix
                                #   seconds; until then the routes are served as if the flag
                                #   were absent (legacy, no_flag), or as 'before' says:
        before: {default: shadow, anonymous: legacy}  # optional, needs effective_at
        on_change: {drain: {rate: 50}}  # optional: keep (default) leaves open connections
                                #   alone; drain closes moved ones, at most rate per second
        guard:                  # optional: limits the proxy watches (it decides what to do)
          max_mismatch_ratio: 0.05      # 0..1; at least one of the two ratios
          max_unified_error_ratio: 0.02 # 0..1
          window: 300           #   seconds (default 300)
          min_samples: 100      #   turns needed before judging (default 100)

Modes are ``legacy``, ``shadow``, ``live`` and ``unified``. Users are placed by a
deterministic bucket (see ``flags.bucketing``); ranges are laid out from bucket 0 in the
order unified | live | shadow | legacy, so raising a share only moves users forward.
A rule's ``rollout`` uses the same bucket: it covers buckets below its share.

Precedence for one connection: kill switch, effective_at (before it: ``before``), then
anonymous, then targets, then rules, then rollout, then default (see ``flags.evaluate``).

Conditions compare a claim's text: strings as they are, whole numbers in decimal,
booleans as true/false; a list-valued claim satisfies a condition if any element does.

Write user ids that look like numbers with leading zeros, underscores or colons in quotes
("0123"): YAML would read them as different numbers, so such spellings are rejected.
Duplicate keys anywhere in the file are rejected too (YAML would silently keep the last).
Error messages never repeat a user id: they point at its position, e.g. ``targets.shadow[2]``.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import gc
import hashlib
import math
import os
import re
import threading
from collections.abc import Callable, Collection, Hashable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, NoReturn, TypeVar

import yaml

from strangler.flags.model import (
    BASIS_POINTS,
    ROLLOUT_ORDER,
    Before,
    Condition,
    Flag,
    FlagSet,
    Guard,
    Mode,
    Operator,
    Rule,
    Segment,
)

_T = TypeVar("_T")

_DAY = 86_400.0


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


def load_flags(
    path: str | os.PathLike[str], known_routes: Collection[str] | None = None
) -> FlagSet:
    """Read and validate the flag file at ``path``; any problem raises FlagFileError."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FlagFileError.unreadable(source, exc) from exc
    return parse_flags(data, source, known_routes)


def parse_flags(data: bytes, source: str, known_routes: Collection[str] | None = None) -> FlagSet:
    """Validate flag file bytes into a FlagSet; ``source`` names the file in errors.

    When ``known_routes`` is given, every route a flag names must be one of them.
    The first problem found raises FlagFileError; ``flags.lint`` reports them all.
    """
    with _collector_paused():
        document = _parse_yaml(data, source)
        routes = None if known_routes is None else frozenset(known_routes)
        flagset = _Validator(source, routes).run(document, hashlib.sha256(data).hexdigest())
    assert flagset is not None  # a strict validator raises instead
    return flagset


_gc_lock = threading.Lock()
_gc_pausers = 0  # parses in progress (threads may overlap)
_gc_resume = False  # whether the collector was on before the first of them


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a flag file is parsed.

    A large file allocates hundreds of thousands of objects, which sets off full
    collections; each one holds the interpreter lock for a long stretch (measured: up
    to hundreds of ms with 100,000 targets), so the proxy's event loop, running in
    another thread, would stall. Parsing creates no reference cycles worth collecting
    meanwhile; the collector resumes right after, exactly as it was.
    """
    global _gc_pausers, _gc_resume
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_resume:
                gc.enable()


def check_document(
    document: Any,
    source: str,
    known_routes: Collection[str] | None = None,
    *,
    now: float,
) -> list[Finding]:
    """Every error and warning in an already parsed flag file, in document order."""
    routes = None if known_routes is None else frozenset(known_routes)
    validator = _Validator(source, routes, collect=True, now=now)
    validator.run(document, "")
    return validator.findings


def parse_instant(text: str) -> float:
    """Unix time of an ISO 8601 timestamp with a timezone; ValueError says what is wrong."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "is not an ISO 8601 timestamp (e.g. 2025-03-01T09:00:00Z or 2025-03-01T10:00:00+01:00)."
        ) from None
    return _timestamp(when)


def format_instant(timestamp: float) -> str:
    """A Unix time as ISO 8601 in UTC (``2025-03-01T09:00:00Z``), for messages."""
    when = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return when.isoformat().replace("+00:00", "Z")


def _timestamp(when: datetime.datetime) -> float:
    if when.tzinfo is None or when.utcoffset() is None:
        # A naive time would switch each replica at its own local clock's idea of it.
        raise ValueError(
            "needs a timezone (Z or an offset such as +01:00): without one, replicas in "
            "different zones would switch at different moments."
        )
    return when.timestamp()


# --- YAML -----------------------------------------------------------------------------------

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _SpelledInt(int):
    """An int YAML read from a spelling other than plain decimal (0123, 0x1f, 1_000, 1:30)."""

    __slots__ = ()


_STR_TAG = "tag:yaml.org,2002:str"


class _FlagConstructor:
    """How flag files are constructed, on either parser: odd int spellings are kept,
    duplicate mapping keys rejected (``flags.lint`` records them instead)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Plain strings (user ids, mostly) are the bulk of a large file: take their text
        # without the generic constructor machinery, which gives the same value.
        if node.tag == _STR_TAG and type(node) is yaml.ScalarNode:
            return node.value
        return super().construct_object(node, deep=deep)  # type: ignore[misc]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # "<<" merges may legitimately be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            first = seen.get(key)
            if first is not None:
                self.duplicate_key(node, first, key_node)
            else:
                seen[key] = key_node
        mapping: dict[Hashable, Any] = super().construct_mapping(node, deep=deep)  # type: ignore[misc]
        return mapping

    def duplicate_key(self, mapping: yaml.MappingNode, first: yaml.Node, again: yaml.Node) -> None:
        """A key appears twice in ``mapping``: ``first`` and ``again`` are its key nodes."""
        # The key itself is not echoed: under targets it could be a user id.
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping",
            mapping.start_mark,
            "found a duplicate key",
            again.start_mark,
        )


class FlagLoader(_FlagConstructor, yaml.SafeLoader):
    """The pure-Python parser: its syntax errors say the most (``flags.lint`` uses it)."""


# libyaml's parser (shipped in PyYAML's wheels) when present: a file with 100,000 user
# targets loads several times faster. Its syntax errors are terser, so a file it rejects
# is parsed again by FlagLoader for the message.
_FastBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FastFlagLoader(_FlagConstructor, _FastBase):  # type: ignore[valid-type,misc]
    """FlagLoader's construction on libyaml's parser, for the proxy's reloads."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    assert isinstance(node, yaml.ScalarNode)
    value = loader.construct_yaml_int(node)
    # Keep the fact that the text was not plain decimal: a user id "0123" read as 83
    # would silently target someone else.
    return value if node.value == str(value) else _SpelledInt(value)


FlagLoader.add_constructor(_INT_TAG, _construct_int)
FastFlagLoader.add_constructor(_INT_TAG, _construct_int)


def yaml_error_message(exc: yaml.YAMLError) -> tuple[yaml.Mark | None, str]:
    """Where a YAML error is (if known) and the sentence that reports it."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "unreadable YAML"
        return mark, f"the file is not valid YAML{where}: {problem}."
    detail = " ".join(str(exc).split())
    return None, f"the file is not valid YAML: {detail}."


def _parse_yaml(data: bytes, source: str) -> Any:
    try:
        try:
            return yaml.load(data, Loader=FastFlagLoader)
        except yaml.YAMLError:
            # Rare, and worth a better sentence: the pure parser's, if it agrees.
            return yaml.load(data, Loader=FlagLoader)
    except yaml.YAMLError as exc:
        raise FlagFileError(source, "", yaml_error_message(exc)[1]) from exc
    except (ValueError, OverflowError) as exc:
        # YAML's timestamp constructor raises these, unmarked, for 2030-13-45T09:00:00Z.
        raise FlagFileError(
            source, "", f"the file is not valid YAML: a timestamp is not a real date ({exc})."
        ) from exc
    except RecursionError:
        # Thousands of nested brackets: no flag file looks like this.
        raise FlagFileError(
            source, "", "the file is not a flag file: its values are nested too deeply."
        ) from None


# --- validation -----------------------------------------------------------------------------

_TOP_KEYS = ("version", "segments", "flags")
_FLAG_KEYS = (
    "routes",
    "default",
    "anonymous",
    "kill_switch",
    "targets",
    "rules",
    "rollout",
    "effective_at",
    "before",
    "on_change",
    "guard",
)
_SEGMENT_KEYS = ("users", "when")
_RULE_KEYS = ("name", "when", "segment", "mode", "rollout")
_OPERATORS = tuple(op.value for op in Operator)
_CONDITION_KEYS = ("claim", *_OPERATORS)
_BEFORE_KEYS = ("default", "anonymous")
_GUARD_KEYS = ("max_mismatch_ratio", "max_unified_error_ratio", "window", "min_samples")
_NAME = re.compile(r"[a-z0-9_.-]+")
_FLAG_KEY = _NAME
_MODES = tuple(mode.value for mode in Mode)
_ROLLOUT_MODES = tuple(mode.value for mode in ROLLOUT_ORDER)


def _kind(value: object) -> str:
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


def _names(values: Collection[str]) -> str:
    return ", ".join(sorted(values)) if values else "(none)"


def _percent(basis_points: int) -> str:
    whole, rest = divmod(basis_points, 100)
    return f"{whole}%" if rest == 0 else f"{whole}.{rest:02d}".rstrip("0") + "%"


def _atoms(rule: Rule) -> frozenset[tuple[str, str, object]]:
    """A rule's conditions as comparable atoms (one_of order does not matter)."""
    atoms: set[tuple[str, str, object]] = {
        (c.claim, c.op.value, frozenset(c.value) if isinstance(c.value, tuple) else c.value)
        for c in rule.when
    }
    if rule.segment is not None:
        atoms.add(("", "segment", rule.segment.name))
    return frozenset(atoms)


class _Validator:
    """Turns the parsed YAML document into a FlagSet.

    Strict (the default): the first problem raises FlagFileError. Collecting (for lint):
    each problem is recorded, the part it spoils is skipped, and checking goes on; lint
    warnings are recorded too. Both walk the file in the same order, so the first error
    collected is the one a strict run raises.
    """

    def __init__(
        self,
        source: str,
        known_routes: frozenset[str] | None,
        *,
        collect: bool = False,
        now: float = 0.0,
    ) -> None:
        self._source = source
        self._known_routes = known_routes
        self._collect = collect
        self._now = now
        self._errors = 0
        self.findings: list[Finding] = []
        self._segment_names: set[str] = set()
        self._used_segments: set[str] = set()

    # -- reporting --

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

    # -- the file --

    def run(self, document: Any, digest: str) -> FlagSet | None:
        """The FlagSet, or None when collecting found errors."""
        flagset = self._try(self._document, document, digest)
        return None if self._errors else flagset

    def _document(self, document: Any, digest: str) -> FlagSet:
        if document is None:
            return FlagSet.from_flags((), digest=digest, source=self._source)
        if not isinstance(document, dict):
            self._fail("", f"the file must be a mapping with a 'flags' key, not {_kind(document)}.")
        self._reject_unknown_keys(document, _TOP_KEYS, "")
        if "version" in document:
            version = document["version"]
            if isinstance(version, bool) or version != 1:
                self._note("version", "only version 1 is supported.")
        # Segments first, whatever their place in the file: rules refer to them.
        segments = self._try(self._segments, document.get("segments")) or {}
        raw_flags = document.get("flags")
        if raw_flags is None:
            raw_flags = {}
        if not isinstance(raw_flags, dict):
            self._fail("flags", f"must be a mapping of flag keys to flags, not {_kind(raw_flags)}.")
        claimed: dict[str, str] = {}  # route -> flag key, to name both flags on a conflict
        flags = [
            flag
            for key, body in raw_flags.items()
            if (flag := self._try(self._flag, key, body, claimed, segments)) is not None
        ]
        for name in sorted(self._segment_names - self._used_segments):
            self._warn(f"segments.{name}", "no rule uses this segment.")
        return FlagSet.from_flags(
            flags, digest=digest, source=self._source, segments=segments.values()
        )

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

    def _name(self, name: Any, at: str, what: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            self._fail(at, f"{what} may only use lowercase letters, digits, '_', '.' and '-'.")
        return name

    # -- segments --

    def _segments(self, raw: Any) -> dict[str, Segment]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self._fail(
                "segments", f"must be a mapping of segment names to segments, not {_kind(raw)}."
            )
        self._segment_names = {str(name) for name in raw}
        segments: dict[str, Segment] = {}
        for name, body in raw.items():
            segment = self._try(self._segment, name, body)
            if segment is not None:
                segments[segment.name] = segment
        return segments

    def _segment(self, name: Any, body: Any) -> Segment | None:
        at = f"segments.{name}"
        name = self._name(name, at, "segment names")
        if not isinstance(body, dict):
            self._fail(at, f"must be a mapping with 'users' and/or 'when', not {_kind(body)}.")
        errors = self._errors
        self._reject_unknown_keys(body, _SEGMENT_KEYS, at)
        users = self._try(self._user_list, body.get("users", []), f"{at}.users") or frozenset()
        when = self._try(self._conditions, body.get("when", []), f"{at}.when") or ()
        if self._errors > errors:
            return None
        if not users and not when:
            self._fail(at, "needs 'users' (a list of user ids) or 'when' (conditions), or both.")
        return Segment(name, users, when)

    def _user_list(self, raw: Any, at: str) -> frozenset[str]:
        if not isinstance(raw, list):
            self._fail(at, f"must be a list of user ids (use [] for none), not {_kind(raw)}.")
        users = (self._try(self._user_id, item, f"{at}[{index}]") for index, item in enumerate(raw))
        return frozenset(user for user in users if user is not None)

    # -- conditions --

    def _conditions(self, raw: Any, at: str) -> tuple[Condition, ...]:
        if not isinstance(raw, list):
            self._fail(
                at,
                f"must be a list of conditions such as {{claim: org, equals: acme}}, "
                f"not {_kind(raw)}.",
            )
        found = (
            self._try(self._condition, item, f"{at}[{index}]") for index, item in enumerate(raw)
        )
        return tuple(condition for condition in found if condition is not None)

    def _condition(self, raw: Any, at: str) -> Condition:
        if not isinstance(raw, dict):
            self._fail(
                at, f"must be a mapping such as {{claim: org, equals: acme}}, not {_kind(raw)}."
            )
        self._reject_unknown_keys(raw, _CONDITION_KEYS, at)
        if "claim" not in raw:
            self._fail(f"{at}.claim", "is required: name the claim to test (e.g. claim: org).")
        claim = raw["claim"]
        if not isinstance(claim, str) or not claim:
            self._fail(f"{at}.claim", f"must be a claim name, not {_kind(claim)}.")
        ops = [key for key in raw if key in _OPERATORS]
        if not ops:
            self._fail(at, f"needs one operator: {', '.join(_OPERATORS)}.")
        if len(ops) > 1:
            self._fail(
                f"{at}.{ops[1]}",
                f"a condition has one operator, this one has {' and '.join(ops)}; "
                "write one condition per test (all of them must hold).",
            )
        op = Operator(ops[0])
        key = f"{at}.{op.value}"
        value = raw[op.value]
        if op is Operator.EXISTS:
            if not isinstance(value, bool):
                self._fail(key, f"must be true or false, not {_kind(value)}.")
            return Condition(claim, op, value)
        if op is Operator.ONE_OF:
            if not isinstance(value, list) or not value:
                self._fail(key, f"must be a non-empty list of values, not {_kind(value)}.")
            return Condition(
                claim,
                op,
                tuple(self._claim_value(item, f"{key}[{i}]") for i, item in enumerate(value)),
            )
        if op is Operator.ENDS_WITH:
            if not isinstance(value, str) or not value:
                self._fail(key, f"must be a non-empty string, not {_kind(value)}.")
            if "." in value and value[0] not in "@.":
                self._warn(
                    key,
                    "this suffix has no '@' or '.' in front, so it also matches longer "
                    "domains ending in the same letters; start it with '@' for addresses "
                    "or '.' for subdomains.",
                )
            return Condition(claim, op, value)
        return Condition(claim, op, self._claim_value(value, key))

    def _claim_value(self, value: Any, at: str) -> str:
        # Messages never repeat the value: it may be an email or another identifier.
        if isinstance(value, _SpelledInt):
            self._fail(
                at,
                "YAML reads this as a number with a different spelling "
                "(leading zero, underscore, colon or prefix); put it in quotes.",
            )
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | str):
            return str(value)
        self._fail(
            at, f"must be a string, a whole number or true/false, not {_kind(value)} (quote it)."
        )

    # -- flags --

    def _flag(
        self, key: Any, body: Any, claimed: dict[str, str], segments: dict[str, Segment]
    ) -> Flag | None:
        at = f"flags.{key}"
        if not isinstance(key, str) or not _FLAG_KEY.fullmatch(key):
            self._fail(at, "flag keys may only use lowercase letters, digits, '_', '.' and '-'.")
        if not isinstance(body, dict):
            self._fail(at, f"must be a mapping with at least 'routes', not {_kind(body)}.")
        errors = self._errors
        self._reject_unknown_keys(body, _FLAG_KEYS, at)
        kill_switch = body.get("kill_switch", False)
        if not isinstance(kill_switch, bool):
            self._note(f"{at}.kill_switch", f"must be true or false, not {_kind(kill_switch)}.")
        routes = self._try(self._routes, key, body, claimed) or ()
        default = (
            self._try(self._mode, body.get("default", "legacy"), f"{at}.default") or Mode.LEGACY
        )
        anonymous = (
            self._try(self._mode, body.get("anonymous", "legacy"), f"{at}.anonymous") or Mode.LEGACY
        )
        targets = self._try(self._targets, body.get("targets", {}), f"{at}.targets") or {}
        rollout = self._try(self._rollout, body.get("rollout", {}), f"{at}.rollout") or {}
        rules = self._try(self._rules, body.get("rules", []), f"{at}.rules", segments) or ()
        effective_at = None
        if "effective_at" in body:
            effective_at = self._try(self._effective_at, body["effective_at"], f"{at}.effective_at")
        before = None
        if "before" in body:
            before = self._try(self._before, body, at)
        drain_rate = self._try(self._on_change, body.get("on_change", "keep"), at)
        guard = None
        if "guard" in body:
            guard = self._try(self._guard, body["guard"], f"{at}.guard")
        if self._errors > errors:
            return None
        return Flag(
            key=key,
            routes=routes,
            default=default,
            anonymous=anonymous,
            kill_switch=kill_switch,
            targets=targets,
            rollout=rollout,
            rules=rules,
            effective_at=effective_at,
            before=before,
            drain_rate=drain_rate,
            guard=guard,
        )

    def _routes(
        self, flag_key: str, body: dict[Any, Any], claimed: dict[str, str]
    ) -> tuple[str, ...]:
        at = f"flags.{flag_key}.routes"
        if "routes" not in body:
            self._fail(at, "is required: list the routes this flag covers.")
        routes = body["routes"]
        if not isinstance(routes, list):
            self._fail(at, f"must be a non-empty list of route names, not {_kind(routes)}.")
        if not routes:
            self._fail(at, "must be a non-empty list of route names; this one is empty.")
        for index, route in enumerate(routes):
            item = f"{at}[{index}]"
            if not isinstance(route, str) or not route:
                self._note(item, f"route names must be non-empty strings, not {_kind(route)}.")
                continue
            if self._known_routes is not None and route not in self._known_routes:
                self._note(
                    item,
                    f"unknown route '{route}'; known routes are {_names(self._known_routes)}.",
                )
            owner = claimed.get(route)
            if owner == flag_key:
                self._note(item, f"route '{route}' is listed twice.")
            elif owner is not None:
                self._note(
                    item,
                    f"route '{route}' is claimed by both flags '{owner}' and '{flag_key}'; "
                    "a route can belong to only one flag.",
                )
            else:
                claimed[route] = flag_key
        return tuple(routes)

    def _mode(self, value: Any, at: str) -> Mode:
        if not isinstance(value, str):
            self._fail(at, f"must be a mode ({', '.join(_MODES)}), not {_kind(value)}.")
        if value not in _MODES:
            self._fail(at, f"unknown mode '{value}'; modes are {', '.join(_MODES)}.")
        return Mode(value)

    def _targets(self, raw: Any, at: str) -> dict[str, Mode]:
        if not isinstance(raw, dict):
            self._fail(at, f"must be a mapping of modes to lists of user ids, not {_kind(raw)}.")
        targets: dict[str, Mode] = {}
        where: dict[str, str] = {}  # user id -> "targets.<mode>[i]", to point at the clash
        for number, (mode_name, users) in enumerate(raw.items(), start=1):
            if not isinstance(mode_name, str) or mode_name not in _MODES:
                # Only echo the key when it is a near miss of a mode name: a key that is
                # nothing like a mode may be a user id written the wrong way round.
                close = difflib.get_close_matches(str(mode_name), _MODES, n=1)
                named = f"'{mode_name}' (did you mean '{close[0]}'?)" if close else f"#{number}"
                self._note(
                    at,
                    f"key {named} is not a mode; targets maps each mode "
                    f"({', '.join(_MODES)}) to a list of user ids.",
                )
                continue
            mode = Mode(mode_name)
            if not isinstance(users, list):
                self._note(
                    f"{at}.{mode_name}",
                    f"must be a list of user ids (use [] for none), not {_kind(users)}.",
                )
                continue
            for index, raw_user in enumerate(users):
                item = f"{at}.{mode_name}[{index}]"
                user = self._try(self._user_id, raw_user, item)
                if user is None:
                    continue
                previous = targets.get(user)
                if previous is not None and previous is not mode:
                    self._note(
                        item,
                        f"this user id is also listed at {where[user]}; "
                        "a user can be targeted to only one mode.",
                    )
                    continue
                targets[user] = mode
                where.setdefault(user, f"targets.{mode_name}[{index}]")
        return targets

    def _user_id(self, value: Any, at: str) -> str:
        # Messages here never repeat the value: it is (meant to be) a user id.
        if isinstance(value, _SpelledInt):
            self._fail(
                at,
                "this user id is read by YAML as a number with a different spelling "
                "(leading zero, underscore, colon or prefix); put it in quotes.",
            )
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            self._fail(at, f"user ids must be strings (quote them), not {_kind(value)}.")
        if not value:
            self._fail(at, "user ids cannot be empty.")
        return value

    def _rollout(self, raw: Any, at: str) -> dict[Mode, int]:
        if not isinstance(raw, dict):
            self._fail(at, f"must be a mapping of modes to percentages, not {_kind(raw)}.")
        rollout: dict[Mode, int] = {}
        for mode_name, share in raw.items():
            key = f"{at}.{mode_name}"
            if mode_name == "legacy":
                self._note(
                    key,
                    "legacy has no share: it gets whoever the other modes leave; "
                    f"rollout keys are {', '.join(_ROLLOUT_MODES)}.",
                )
                continue
            if not isinstance(mode_name, str) or mode_name not in _ROLLOUT_MODES:
                self._note(
                    key,
                    f"unknown mode '{mode_name}'; rollout keys are {', '.join(_ROLLOUT_MODES)}.",
                )
                continue
            basis_points = self._try(self._basis_points, share, key)
            if basis_points is not None:
                rollout[Mode(mode_name)] = basis_points
        total = sum(rollout.values())
        if total > BASIS_POINTS:
            self._fail(at, f"the shares add up to {_percent(total)}, more than 100%.")
        return rollout

    def _basis_points(self, value: Any, at: str) -> int:
        if isinstance(value, _SpelledInt):
            self._fail(at, "write the percentage as a plain decimal number (e.g. 5 or 12.5).")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(at, f"must be a percentage from 0 to 100, not {_kind(value)}.")
        if isinstance(value, float) and not math.isfinite(value):
            self._fail(at, "must be a percentage from 0 to 100, not infinity or NaN.")
        if not 0 <= value <= 100:
            self._fail(at, f"must be a percentage from 0 to 100, not {value}.")
        # Decimal of the float's shortest repr: 12.34 is exactly 1234 basis points.
        scaled = Decimal(repr(value)) * 100
        if scaled != scaled.to_integral_value():
            self._fail(at, f"{value} has more than 2 decimals; the finest step is 0.01%.")
        return int(scaled)

    # -- rules --

    def _rules(self, raw: Any, at: str, segments: dict[str, Segment]) -> tuple[Rule, ...]:
        if not isinstance(raw, list):
            self._fail(at, f"must be a list of rules, not {_kind(raw)}.")
        names: dict[str, int] = {}
        rules: list[tuple[int, Rule]] = []
        for index, item in enumerate(raw):
            rule = self._try(self._rule, item, f"{at}[{index}]", index, names, segments)
            if rule is None:
                continue
            if rule.rollout == 0:
                self._warn(f"{at}[{index}].rollout", "rollout 0 means this rule never applies.")
            atoms = _atoms(rule)
            for earlier_index, earlier in rules:
                if earlier.rollout == BASIS_POINTS and _atoms(earlier) <= atoms:
                    self._warn(
                        f"{at}[{index}]",
                        f"rule '{rule.name}' can never apply: every user it matches also "
                        f"matches rule '{earlier.name}' (rules[{earlier_index}]), which comes "
                        "first and applies to all of them.",
                    )
                    break
            rules.append((index, rule))
        return tuple(rule for _, rule in rules)

    def _rule(
        self,
        raw: Any,
        at: str,
        index: int,
        names: dict[str, int],
        segments: dict[str, Segment],
    ) -> Rule | None:
        if not isinstance(raw, dict):
            self._fail(
                at,
                f"must be a mapping with name, mode and 'when' or 'segment', not {_kind(raw)}.",
            )
        errors = self._errors
        self._reject_unknown_keys(raw, _RULE_KEYS, at)
        if "name" not in raw:
            self._fail(f"{at}.name", "is required: rules are reported by name.")
        name = self._name(raw["name"], f"{at}.name", "rule names")
        first = names.setdefault(name, index)
        if first != index:
            self._note(
                f"{at}.name",
                f"rule '{name}' is already defined at rules[{first}]; rule names must be unique "
                "within a flag.",
            )
        if "mode" not in raw:
            self._note(f"{at}.mode", f"is required: the mode ({', '.join(_MODES)}) to give.")
        mode = self._try(self._mode, raw.get("mode", "legacy"), f"{at}.mode") or Mode.LEGACY
        when = self._try(self._conditions, raw.get("when", []), f"{at}.when") or ()
        segment = None
        if "segment" in raw:
            segment = self._try(self._segment_ref, raw["segment"], f"{at}.segment", segments)
        share = BASIS_POINTS
        if "rollout" in raw:
            basis_points = self._try(self._basis_points, raw["rollout"], f"{at}.rollout")
            share = BASIS_POINTS if basis_points is None else basis_points
        if self._errors > errors:
            return None
        if not when and segment is None:
            self._fail(
                at,
                "needs 'when' (conditions) or 'segment', or both: a rule for everyone "
                "is what default and rollout are for.",
            )
        return Rule(name=name, mode=mode, when=when, segment=segment, rollout=share)

    def _segment_ref(self, value: Any, at: str, segments: dict[str, Segment]) -> Segment | None:
        if not isinstance(value, str):
            self._fail(at, f"must be a segment name, not {_kind(value)}.")
        self._used_segments.add(value)
        segment = segments.get(value)
        if segment is None:
            if value in self._segment_names:
                # Defined but invalid: its own error is reported; do not pile on.
                self._fail(at, f"segment '{value}' is invalid (see its own error).")
            self._fail(
                at,
                f"unknown segment '{value}'; segments are {_names(self._segment_names)}.",
            )
        return segment

    # -- effective_at, before, on_change, guard --

    def _effective_at(self, value: Any, at: str) -> float:
        if isinstance(value, datetime.datetime):
            timestamp = self._instant(lambda: _timestamp(value), at)
        elif isinstance(value, datetime.date):
            self._fail(
                at,
                "a date alone is not an instant; give a time and a timezone, "
                "e.g. 2025-03-01T09:00:00Z.",
            )
        elif isinstance(value, str):
            timestamp = self._instant(lambda: parse_instant(value), at)
        elif isinstance(value, _SpelledInt):
            self._fail(at, "write Unix seconds as a plain decimal number.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value) or value < 0:
                self._fail(at, "Unix seconds must be a finite number, 0 or more.")
            timestamp = float(value)
        else:
            self._fail(
                at,
                f"must be an ISO 8601 timestamp with a timezone or Unix seconds, "
                f"not {_kind(value)}.",
            )
        if self._now - timestamp > _DAY:
            self._warn(
                at,
                f"has been in effect since {format_instant(timestamp)}; "
                "effective_at (and before) can go.",
            )
        return timestamp

    def _instant(self, convert: Callable[[], float], at: str) -> float:
        try:
            return convert()
        except (ValueError, OverflowError, OSError) as exc:
            self._fail(at, str(exc) if isinstance(exc, ValueError) else "is out of range.")

    def _before(self, body: dict[Any, Any], at: str) -> Before:
        at = f"{at}.before"
        if "effective_at" not in body:
            self._fail(at, "only applies with effective_at: it says how to serve until then.")
        raw = body["before"]
        if not isinstance(raw, dict):
            self._fail(at, f"must be a mapping such as {{default: shadow}}, not {_kind(raw)}.")
        self._reject_unknown_keys(raw, _BEFORE_KEYS, at)
        if "default" not in raw:
            self._fail(f"{at}.default", "is required: the mode every user gets until then.")
        return Before(
            default=self._mode(raw["default"], f"{at}.default"),
            anonymous=self._mode(raw.get("anonymous", "legacy"), f"{at}.anonymous"),
        )

    def _on_change(self, raw: Any, at: str) -> float | None:
        at = f"{at}.on_change"
        usage = "on_change is 'keep' or {drain: {rate: <connections per second>}}"
        if raw == "keep":
            return None
        if not isinstance(raw, dict):
            self._fail(at, f"{usage}, not {_kind(raw) if not isinstance(raw, str) else repr(raw)}.")
        self._reject_unknown_keys(raw, ("drain",), at)
        if "drain" not in raw:
            self._fail(at, f"{usage}.")
        drain = raw["drain"]
        if not isinstance(drain, dict):
            self._fail(
                f"{at}.drain", f"must be a mapping such as {{rate: 50}}, not {_kind(drain)}."
            )
        self._reject_unknown_keys(drain, ("rate",), f"{at}.drain")
        if "rate" not in drain:
            self._fail(f"{at}.drain.rate", "is required: connections closed per second, at most.")
        return self._positive(drain["rate"], f"{at}.drain.rate", "connections per second")

    def _positive(self, value: Any, at: str, unit: str) -> float:
        if isinstance(value, _SpelledInt):
            self._fail(at, "write the number as a plain decimal number.")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(at, f"must be a positive number ({unit}), not {_kind(value)}.")
        if not math.isfinite(value) or value <= 0:
            self._fail(at, f"must be a positive number ({unit}), not {value}.")
        return float(value)

    def _guard(self, raw: Any, at: str) -> Guard:
        if not isinstance(raw, dict):
            self._fail(
                at, f"must be a mapping such as {{max_mismatch_ratio: 0.05}}, not {_kind(raw)}."
            )
        self._reject_unknown_keys(raw, _GUARD_KEYS, at)
        mismatch = unified_error = None
        if "max_mismatch_ratio" in raw:
            mismatch = self._ratio(raw["max_mismatch_ratio"], f"{at}.max_mismatch_ratio")
        if "max_unified_error_ratio" in raw:
            unified_error = self._ratio(
                raw["max_unified_error_ratio"], f"{at}.max_unified_error_ratio"
            )
        if mismatch is None and unified_error is None:
            self._fail(at, "needs max_mismatch_ratio or max_unified_error_ratio, or both.")
        window = self._positive(raw.get("window", 300), f"{at}.window", "seconds")
        min_samples = raw.get("min_samples", 100)
        if (
            isinstance(min_samples, bool | _SpelledInt)
            or not isinstance(min_samples, int)
            or min_samples < 1
        ):
            self._fail(
                f"{at}.min_samples",
                f"must be a whole number, 1 or more, not {_kind(min_samples)}"
                + (f" {min_samples}." if isinstance(min_samples, int) else "."),
            )
        return Guard(mismatch, unified_error, window, min_samples)

    def _ratio(self, value: Any, at: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._fail(at, f"must be a ratio from 0 to 1, not {_kind(value)}.")
        if not (math.isfinite(value) and 0 <= value <= 1):
            self._fail(at, f"must be a ratio from 0 to 1 (0.05 is 5%), not {value}.")
        return float(value)
