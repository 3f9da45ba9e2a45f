"""The flag file: its YAML schema, validation, and loading into a ``FlagSet``.

This is the file release managers edit. A file that fails validation is never applied.

Schema::

    version: 1                  # optional; only 1 is accepted
    flags:                      # optional; missing, empty or {} means every route is legacy
      unified_router:           # flag key: lowercase letters, digits, "_", "." and "-"
        routes: [main, factory] # required, non-empty list of route names; a route may
                                #   belong to one flag only (across the whole file)
        default: legacy         # optional (legacy): mode for users outside every rollout share
        anonymous: legacy       # optional (legacy): mode for connections without a user id
        kill_switch: false      # optional (false): true sends everyone on these routes to legacy
        targets:                # optional: mode -> list of user ids, beats the rollout
          unified: [alice]      #   numbers are accepted as ids ("1234" and 1234 are the same user)
          shadow: [bob]         #   a user may appear under one mode only
        rollout:                # optional: percent of users per mode, 0..100, up to 2 decimals
          unified: 5            #   keys: unified, live, shadow (legacy gets what remains);
          shadow: 20            #   the shares must add up to 100 or less

Modes are ``legacy``, ``shadow``, ``live`` and ``unified``. Users are placed by a
deterministic bucket (see ``flags.bucketing``); ranges are laid out from bucket 0 in the
order unified | live | shadow | legacy, so raising a share only moves users forward.

Precedence for one connection: kill switch, then anonymous, then targets, then rollout,
then default.

Write user ids that look like numbers with leading zeros, underscores or colons in quotes
("0123"): YAML would read them as different numbers, so such spellings are rejected.
Duplicate keys anywhere in the file are rejected too (YAML would silently keep the last).
Error messages never repeat a user id: they point at its position, e.g. ``targets.shadow[2]``.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import math
import os
import re
from collections.abc import Collection, Hashable
from decimal import Decimal
from typing import Any, NoReturn

import yaml

from flags.model import BASIS_POINTS, ROLLOUT_ORDER, Flag, FlagSet, Mode


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
    """
    document = _parse_yaml(data, source)
    routes = None if known_routes is None else frozenset(known_routes)
    return _Validator(source, routes).flagset(document, hashlib.sha256(data).hexdigest())


# --- YAML -----------------------------------------------------------------------------------

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _SpelledInt(int):
    """An int YAML read from a spelling other than plain decimal (0123, 0x1f, 1_000, 1:30)."""

    __slots__ = ()


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) that also rejects duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # "<<" merges may legitimately be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                # The key itself is not echoed: under targets it could be a user id.
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a duplicate key",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    assert isinstance(node, yaml.ScalarNode)
    value = loader.construct_yaml_int(node)
    # Keep the fact that the text was not plain decimal: a user id "0123" read as 83
    # would silently target someone else.
    return value if node.value == str(value) else _SpelledInt(value)


_StrictLoader.add_constructor(_INT_TAG, _construct_int)


def _parse_yaml(data: bytes, source: str) -> Any:
    try:
        return yaml.load(data, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "unreadable YAML"
        raise FlagFileError(source, "", f"the file is not valid YAML{where}: {problem}.") from exc
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise FlagFileError(source, "", f"the file is not valid YAML: {detail}.") from exc


# --- validation -----------------------------------------------------------------------------

_TOP_KEYS = ("version", "flags")
_FLAG_KEYS = ("routes", "default", "anonymous", "kill_switch", "targets", "rollout")
_FLAG_KEY = re.compile(r"[a-z0-9_.-]+")
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
    if isinstance(value, datetime.date):
        return "a date"
    return f"a {type(value).__name__}"


def _names(values: Collection[str]) -> str:
    return ", ".join(sorted(values)) if values else "(none)"


def _percent(basis_points: int) -> str:
    whole, rest = divmod(basis_points, 100)
    return f"{whole}%" if rest == 0 else f"{whole}.{rest:02d}".rstrip("0") + "%"


class _Validator:
    """Turns the parsed YAML document into a FlagSet, or raises the first problem found."""

    def __init__(self, source: str, known_routes: frozenset[str] | None) -> None:
        self._source = source
        self._known_routes = known_routes

    def _fail(self, key: str, problem: str) -> NoReturn:
        raise FlagFileError(self._source, key, problem)

    def flagset(self, document: Any, digest: str) -> FlagSet:
        if document is None:
            return FlagSet.from_flags((), digest=digest, source=self._source)
        if not isinstance(document, dict):
            self._fail("", f"the file must be a mapping with a 'flags' key, not {_kind(document)}.")
        self._reject_unknown_keys(document, _TOP_KEYS, "")
        if "version" in document:
            version = document["version"]
            if isinstance(version, bool) or version != 1:
                self._fail("version", "only version 1 is supported.")
        raw_flags = document.get("flags")
        if raw_flags is None:
            raw_flags = {}
        if not isinstance(raw_flags, dict):
            self._fail("flags", f"must be a mapping of flag keys to flags, not {_kind(raw_flags)}.")
        claimed: dict[str, str] = {}  # route -> flag key, to name both flags on a conflict
        flags = [self._flag(key, body, claimed) for key, body in raw_flags.items()]
        return FlagSet.from_flags(flags, digest=digest, source=self._source)

    def _reject_unknown_keys(
        self, mapping: dict[Any, Any], allowed: tuple[str, ...], at: str
    ) -> None:
        unknown = [str(key) for key in mapping if key not in allowed]
        if unknown:
            listed = ", ".join(f"'{key}'" for key in unknown)
            where = "at the top level" if not at else f"in {at}"
            self._fail(
                f"{at}.{unknown[0]}" if at else unknown[0],
                f"unknown key{'s' if len(unknown) > 1 else ''} {listed} {where}; "
                f"allowed keys are {', '.join(allowed)}.",
            )

    def _flag(self, key: Any, body: Any, claimed: dict[str, str]) -> Flag:
        at = f"flags.{key}"
        if not isinstance(key, str) or not _FLAG_KEY.fullmatch(key):
            self._fail(at, "flag keys may only use lowercase letters, digits, '_', '.' and '-'.")
        if not isinstance(body, dict):
            self._fail(at, f"must be a mapping with at least 'routes', not {_kind(body)}.")
        self._reject_unknown_keys(body, _FLAG_KEYS, at)
        kill_switch = body.get("kill_switch", False)
        if not isinstance(kill_switch, bool):
            self._fail(f"{at}.kill_switch", f"must be true or false, not {_kind(kill_switch)}.")
        return Flag(
            key=key,
            routes=self._routes(key, body, claimed),
            default=self._mode(body.get("default", "legacy"), f"{at}.default"),
            anonymous=self._mode(body.get("anonymous", "legacy"), f"{at}.anonymous"),
            kill_switch=kill_switch,
            targets=self._targets(body.get("targets", {}), f"{at}.targets"),
            rollout=self._rollout(body.get("rollout", {}), f"{at}.rollout"),
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
                self._fail(item, f"route names must be non-empty strings, not {_kind(route)}.")
            if self._known_routes is not None and route not in self._known_routes:
                self._fail(
                    item,
                    f"unknown route '{route}'; known routes are {_names(self._known_routes)}.",
                )
            owner = claimed.get(route)
            if owner == flag_key:
                self._fail(item, f"route '{route}' is listed twice.")
            if owner is not None:
                self._fail(
                    item,
                    f"route '{route}' is claimed by both flags '{owner}' and '{flag_key}'; "
                    "a route can belong to only one flag.",
                )
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
                self._fail(
                    at,
                    f"key {named} is not a mode; targets maps each mode "
                    f"({', '.join(_MODES)}) to a list of user ids.",
                )
            mode = Mode(mode_name)
            if not isinstance(users, list):
                self._fail(
                    f"{at}.{mode_name}",
                    f"must be a list of user ids (use [] for none), not {_kind(users)}.",
                )
            for index, raw_user in enumerate(users):
                item = f"{at}.{mode_name}[{index}]"
                user = self._user_id(raw_user, item)
                previous = targets.get(user)
                if previous is not None and previous is not mode:
                    self._fail(
                        item,
                        f"this user id is also listed at {where[user]}; "
                        "a user can be targeted to only one mode.",
                    )
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
                self._fail(
                    key,
                    "legacy has no share: it gets whoever the other modes leave; "
                    f"rollout keys are {', '.join(_ROLLOUT_MODES)}.",
                )
            if not isinstance(mode_name, str) or mode_name not in _ROLLOUT_MODES:
                self._fail(
                    key,
                    f"unknown mode '{mode_name}'; rollout keys are {', '.join(_ROLLOUT_MODES)}.",
                )
            rollout[Mode(mode_name)] = self._basis_points(share, key)
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
