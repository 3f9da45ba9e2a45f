"""Reading `strangler.yaml`: its YAML, with the line and column of every key, checked
against the schema as a whole, into the `Config` the proxy runs with."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from strangler.proxy.config.errors import ConfigError, Problem, problems_of
from strangler.proxy.config.jwt import JwtSettings
from strangler.proxy.config.schema import Document, RouteSection, compile_path
from strangler.proxy.config.settings import (
    AuthStyle,
    Backend,
    Config,
    FlagsSettings,
    Route,
    ShadowSettings,
)

Marks = dict[str, tuple[int, int]]


def read(path: str | os.PathLike[str]) -> str:
    """The text of the file at `path`; a ConfigError says why it cannot be read: the
    OS's reason (`strangler.yaml: cannot read: No such file or directory`), or where
    the first byte that is not UTF-8 is."""
    source = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        # The line's text before the bad byte is good UTF-8: count its characters.
        column = len(data[data.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode()) + 1
        problem = f"not UTF-8 text ({exc.reason}); the file must be UTF-8"
        raise ConfigError(source, problems=[Problem("", problem, line, column)]) from None


def parse(text: str, source: str, verify: Callable[[JwtSettings], object]) -> Config:
    """Check `text` as a whole, every problem reported at once; `verify` tries the jwt keys."""
    data, marks = _read_yaml(text, source)
    # The folder the file is named in, symlinks not followed: a ConfigMap mounts
    # strangler.yaml as a link into a timestamped folder the next update deletes.
    base = Path(os.path.abspath(source)).parent
    data = _unset_nulls({} if data is None else data)
    try:
        document = Document.model_validate(data, context={"base": base, "verify": verify})
    except ValidationError as exc:
        empty = "" not in marks  # no YAML node at all: only what is missing can be told
        if empty:
            marks[""] = (1, 1)
        problems = problems_of(exc, Document, marks)
        raise ConfigError(source, problems=[_EMPTY, *problems] if empty else problems) from None
    return _config(document, source, base)


_EMPTY = Problem("", "the file has no settings (it is empty, or only comments)", 1, 1)


def _read_yaml(text: str, source: str) -> tuple[Any, Marks]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(source, problems=[_yaml_problem(exc)]) from None
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date like 2030-13-45
        raise ConfigError(source, "", f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    marks: Marks = {}
    problems: list[Problem] = []
    if root is not None:
        marks[""] = (root.start_mark.line + 1, root.start_mark.column + 1)
        _index(root, "", marks, problems)
    if problems:
        raise ConfigError(source, problems=problems)
    return data, marks


def _yaml_problem(exc: yaml.MarkedYAMLError) -> Problem:
    """A syntax error at its line and column, with what was open there (an unclosed
    bracket or quote) when YAML says where that began."""
    mark = exc.problem_mark or exc.context_mark
    problem = f"not valid YAML: {exc.problem or exc.context or 'unreadable'}"
    began = exc.context_mark
    if exc.problem and exc.context and began is not None and began is not mark:
        problem += f" ({exc.context} at line {began.line + 1}, column {began.column + 1})"
    return Problem("", problem, *((mark.line + 1, mark.column + 1) if mark else (None, None)))


def _index(node: yaml.Node, key: str, marks: Marks, problems: list[Problem]) -> None:
    """Each dotted key -> the line and column of its key (a list item: of the item); a key
    written twice in one mapping is a problem, as YAML would silently keep the last."""
    children: list[tuple[str, yaml.Node, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        children = [
            (f"{key}.{k.value}" if key else str(k.value), k, v)
            for k, v in node.value
            if isinstance(k, yaml.ScalarNode)
        ]
    elif isinstance(node, yaml.SequenceNode):
        children = [(f"{key}[{i}]", item, item) for i, item in enumerate(node.value)]
    for child, where, value in children:
        at = (where.start_mark.line + 1, where.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode) and child in marks and where.value != "<<":
            first = marks[child][0]
            problems.append(Problem(child, f"written twice (first at line {first})", *at))
            continue
        marks[child] = at
        _index(value, child, marks, problems)


def _unset_nulls(data: Any, path: tuple[str, ...] = ()) -> Any:
    """A key written with no value (`listen:`) takes its default, as it always has."""
    if isinstance(data, list):
        return [_unset_nulls(item, path) for item in data]
    if not isinstance(data, dict) or path == ("shadow", "compare"):
        return data  # comparison settings refuse a null: they never took it as unset
    return {k: _unset_nulls(v, (*path, str(k))) for k, v in data.items() if v is not None}


def _route(entry: RouteSection) -> Route:
    anonymous = entry.auth is AuthStyle.NONE if entry.anonymous is None else entry.anonymous
    pattern, lost = compile_path(entry.path), entry.upstream_lost_close_code
    return Route(
        entry.name, entry.path, entry.dialect, entry.auth, anonymous, pattern, lost, entry.greeting
    )


def _config(doc: Document, source: str, base: Path) -> Config:
    legacy, unified, shadow = doc.backends.legacy, doc.backends.unified, doc.shadow
    fallback = unified.on_unavailable == "fallback"
    routes = [_route(entry) for entry in doc.routes]
    log = shadow.mismatch_log
    return Config(
        source=source,
        listen=doc.listen,
        admin_listen=doc.admin_listen,
        legacy=Backend("legacy", legacy.url.rstrip("/"), legacy.connect_timeout),
        unified=Backend(
            "unified",
            unified.url,
            unified.connect_timeout,
            fallback,
            redeems_tickets=unified.redeems_tickets,
        ),
        # Literal paths win over patterns so /ws/factory is never taken for /ws/{user_id}.
        routes=tuple(sorted(routes, key=lambda route: route.pattern is not None)),
        flags=FlagsSettings(base / doc.flags.file, doc.flags.poll_interval),
        jwt=doc.jwt.settings,
        relay=doc.relay,
        http_passthrough=tuple(doc.http_passthrough),
        tickets=doc.tickets,
        shadow=ShadowSettings(
            **shadow.model_dump(exclude={"compare", "redact", "mismatch_log", "shed"}),
            compare=shadow.compare,
            shed=shadow.shed,
            redact=tuple(shadow.redact),
            mismatch_log=base / log.path if log.path else None,
            mismatch_log_max_bytes=log.max_bytes,
            mismatch_log_backups=log.backups,
        ),
        limits=doc.limits,
        admin_token=doc.admin_auth.token,
        admin_allowed_hosts=tuple(doc.admin_trust.allowed_hosts),
        logging=doc.logging,
        fleet=doc.fleet,
    )
