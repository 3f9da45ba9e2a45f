"""The schema reference: its example is a valid flag file."""

from __future__ import annotations

import textwrap

import strangler.flags.schema as flags_schema
from strangler.flags.load import parse_flags
from strangler.flags.model import FlagSet

SOURCE = "/etc/strangler/flags.yaml"


def parse(text: str, known_routes: tuple[str, ...]) -> FlagSet:
    return parse_flags(textwrap.dedent(text).encode(), SOURCE, known_routes)


def test_schema_example_in_module_docstring_is_valid() -> None:
    doc = flags_schema.__doc__ or ""
    example = doc.split("Schema::\n\n", 1)[1].split("\n\n", 1)[0]
    fs = parse(example, known_routes=("main", "factory"))
    assert set(fs.by_route) == {"main", "factory"}
