"""Loading the flag file: bytes or a path in, a validated ``FlagSet`` out, or the
``FlagFileError`` that says why it cannot be applied (the schema is ``flags.schema``)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import threading
from collections.abc import Collection, Iterator
from typing import Any

from strangler.flags.instants import format_instant, parse_instant
from strangler.flags.model import FlagSet
from strangler.flags.report import Finding, FlagFileError
from strangler.flags.validate import Validator
from strangler.flags.yaml_source import FlagLoader, read_yaml

# The loader's entry points, and the names importers have always found here; each of
# those is owned by the module it is imported from.
__all__ = [
    "Finding",
    "FlagFileError",
    "FlagLoader",
    "check_document",
    "format_instant",
    "load_flags",
    "parse_flags",
    "parse_instant",
]


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
        document = read_yaml(data, source)
        routes = None if known_routes is None else frozenset(known_routes)
        flagset = Validator(source, routes).run(document, hashlib.sha256(data).hexdigest())
    assert flagset is not None  # a strict validator raises instead
    return flagset


def check_document(
    document: Any,
    source: str,
    known_routes: Collection[str] | None = None,
    *,
    now: float,
) -> list[Finding]:
    """Every error and warning in an already parsed flag file, in document order."""
    routes = None if known_routes is None else frozenset(known_routes)
    validator = Validator(source, routes, collect=True, now=now)
    validator.run(document, "")
    return validator.findings


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
