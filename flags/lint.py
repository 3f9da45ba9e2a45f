"""Flag file lint: every problem in a flag file, each at its line and column (pure).

``flags.load`` stops at the first problem, which is right for the proxy (a bad file is
never applied) but slow for a release manager fixing a file. ``lint`` reports them all:
YAML syntax errors, every duplicate key, and everything ``check_document`` finds
(errors and warnings), each placed at the line of the YAML node it is about. A finding
about a key the file does not have (a missing ``routes``) is placed at the nearest
enclosing key that it does have.

Messages never repeat a user id: the validator points at positions instead, and a
duplicate key is only named when it is a schema word, a flag or a segment name.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from strangler.flags.load import check_document
from strangler.flags.schema import (
    BEFORE_KEYS,
    CONDITION_KEYS,
    DRAIN_KEYS,
    FLAG_KEYS,
    GUARD_KEYS,
    MODES,
    RULE_KEYS,
    SEGMENT_KEYS,
    TOP_KEYS,
)
from strangler.flags.yaml_source import FlagLoader

Severity = Literal["error", "warning"]

# Keys that are part of the schema, so naming a duplicate of one cannot leak a user id.
_SCHEMA_WORDS = frozenset(
    (
        *TOP_KEYS,
        *FLAG_KEYS,
        *SEGMENT_KEYS,
        *RULE_KEYS,
        *CONDITION_KEYS,
        *BEFORE_KEYS,
        *GUARD_KEYS,
        *MODES,
        "drain",
        *DRAIN_KEYS,
    )
)
# Mappings whose keys are names the file defines (flag keys, segment names).
_NAMED_PARENTS = frozenset(("flags", "segments"))
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


@dataclass(frozen=True, slots=True)
class Problem:
    """One lint finding: where (file, 1-based line and column), how bad, and what."""

    file: str
    line: int
    column: int
    severity: Severity
    message: str
    """A plain sentence, prefixed with the dotted key it is about when there is one."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"


@dataclass(frozen=True, slots=True)
class _Duplicate:
    mapping: yaml.MappingNode
    first: yaml.Node
    again: yaml.Node


class _LintLoader(FlagLoader):
    """FlagLoader that records duplicate keys (YAML keeps the last) instead of raising."""

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self.duplicates: list[_Duplicate] = []

    def duplicate_key(self, mapping: yaml.MappingNode, first: yaml.Node, again: yaml.Node) -> None:
        self.duplicates.append(_Duplicate(mapping, first, again))


def lint(
    data: bytes,
    source: str,
    known_routes: Collection[str] | None = None,
    *,
    now: float | None = None,
) -> list[Problem]:
    """Every problem in the flag file ``data`` (named ``source``), in file order.

    ``known_routes``: when given, flags may only name these routes. ``now`` (Unix time,
    default: the clock) is what ``effective_at`` warnings compare with.
    """
    try:
        return _lint(data, source, known_routes, now)
    except RecursionError:
        # Thousands of nested brackets: the parser and the walks over the tree recurse.
        message = "the file is not a flag file: its values are nested too deeply."
        return [Problem(source, 1, 1, "error", message)]


def _lint(
    data: bytes, source: str, known_routes: Collection[str] | None, now: float | None
) -> list[Problem]:
    try:
        loader = _LintLoader(data)
    except yaml.YAMLError as exc:  # the reader checks the encoding up front
        return [_syntax_problem(source, exc, data)]
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            return [_syntax_problem(source, exc, data)]
        paths = _index(root) if root is not None else {}
        try:
            document = loader.construct_document(root) if root is not None else None
        except yaml.YAMLError as exc:
            return [_syntax_problem(source, exc, data)]
        except (ValueError, OverflowError) as exc:
            # YAML's timestamp constructor raises plain ValueError on 2030-13-45.
            return [_bad_timestamp(source, root, exc)]
        problems = [_duplicate_problem(source, d, paths) for d in _unique(loader.duplicates)]
    finally:
        loader.dispose()
    findings = check_document(
        document, source, known_routes, now=time.time() if now is None else now
    )
    for finding in findings:
        mark = _locate(finding.key, paths, root)
        message = f"{finding.key}: {finding.message}" if finding.key else finding.message
        problems.append(Problem(source, mark.line + 1, mark.column + 1, finding.severity, message))
    # Stable sort: findings on one line keep the validator's order.
    problems.sort(key=lambda p: (p.line, p.column))
    return problems


# --- where a dotted key is --------------------------------------------------------------


def _index(root: yaml.Node) -> dict[str, yaml.Mark]:
    """Each dotted key of the document (as check_document spells them) -> its mark.

    A mapping entry is placed at its key (``default:``), a list item at the item. A key
    written twice resolves to its last occurrence, the one YAML keeps.
    """
    marks: dict[str, yaml.Mark] = {"": root.start_mark}
    for path, mark in _walk(root, ""):
        marks[path] = mark
    return marks


def _walk(node: yaml.Node, path: str) -> Iterator[tuple[str, yaml.Mark]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = f"{path}.{key_node.value}" if path else str(key_node.value)
            yield child, key_node.start_mark
            yield from _walk(value_node, child)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = f"{path}[{index}]"
            yield child, item.start_mark
            yield from _walk(item, child)


def _parent(key: str) -> str:
    """``a.b[2].c`` -> ``a.b[2]`` -> ``a.b`` -> ``a`` -> ``""``."""
    if key.endswith("]"):
        return key[: key.rindex("[")]
    return key[: key.rindex(".")] if "." in key else ""


def _locate(key: str, marks: dict[str, yaml.Mark], root: yaml.Node | None) -> yaml.Mark:
    while key:
        mark = marks.get(key)
        if mark is not None:
            return mark
        key = _parent(key)
    if root is not None:
        return root.start_mark
    return yaml.Mark("", 0, 0, 0, None, 0)


# --- problems YAML itself reports ----------------------------------------------------------


def _syntax_problem(source: str, exc: yaml.YAMLError, data: bytes) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable YAML"
        if problem.startswith("but ") and exc.context:
            problem = f"{exc.context}, {problem}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Problem(source, line, column, "error", f"the file is not valid YAML: {problem}.")
    if isinstance(exc, yaml.reader.ReaderError):
        # The position counts bytes for undecodable input, characters otherwise.
        before = data[: exc.position]
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        return Problem(
            source,
            line,
            column,
            "error",
            f"the file is not valid YAML: character #x{code:02x} is not allowed here "
            f"({exc.reason}); the file must be UTF-8 text.",
        )
    detail = " ".join(str(exc).split())
    return Problem(source, 1, 1, "error", f"the file is not valid YAML: {detail}.")


def _bad_timestamp(source: str, root: yaml.Node | None, exc: Exception) -> Problem:
    """Place YAML's unmarked timestamp error at the first timestamp that fails."""
    loader = yaml.SafeLoader("")
    try:
        for node in _scalars(root):
            if node.tag != _TIMESTAMP_TAG:
                continue
            try:
                loader.construct_yaml_timestamp(node)
            except (ValueError, OverflowError) as bad:
                return Problem(
                    source,
                    node.start_mark.line + 1,
                    node.start_mark.column + 1,
                    "error",
                    f"this timestamp is not a real date and time ({bad}).",
                )
    finally:
        loader.dispose()
    return Problem(source, 1, 1, "error", f"the file is not valid YAML: {exc}.")


def _scalars(node: yaml.Node | None) -> Iterator[yaml.ScalarNode]:
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield from _scalars(key_node)
            yield from _scalars(value_node)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _scalars(item)


def _unique(duplicates: list[_Duplicate]) -> list[_Duplicate]:
    seen: set[tuple[int, int]] = set()
    out = []
    for d in duplicates:
        where = (d.again.start_mark.line, d.again.start_mark.column)
        if where not in seen:
            seen.add(where)
            out.append(d)
    return out


def _duplicate_problem(source: str, d: _Duplicate, marks: dict[str, yaml.Mark]) -> Problem:
    within = _path_of(d.mapping, marks)
    key: Any = d.again.value if isinstance(d.again, yaml.ScalarNode) else None
    named = isinstance(key, str) and (key in _SCHEMA_WORDS or within in _NAMED_PARENTS)
    what = f"key '{key}'" if named else "this key"
    where = f" in {within}" if within else " at the top level"
    at = d.again.start_mark
    return Problem(
        source,
        at.line + 1,
        at.column + 1,
        "error",
        f"duplicate {what}{where}: it is already written at line {d.first.start_mark.line + 1}; "
        "YAML would silently keep only the last one.",
    )


def _path_of(mapping: yaml.MappingNode, marks: dict[str, yaml.Mark]) -> str:
    """The dotted key of a mapping node, found by the marks of its keys."""
    for key_node, _ in mapping.value:
        index = key_node.start_mark.index
        # The longest path at that mark is the key's own (a list item that is a block
        # mapping starts where its first key does).
        found = [path for path, mark in marks.items() if path and mark.index == index]
        if found:
            return _parent(max(found, key=len))
    return ""
