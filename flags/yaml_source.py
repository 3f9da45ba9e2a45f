"""Reading a flag file's YAML: libyaml for speed, the pure parser for messages; numbers
spelled oddly kept recognisable, and duplicate keys refused."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import yaml

from strangler.flags.report import FlagFileError

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


class SpelledInt(int):
    """An int YAML read from a spelling other than plain decimal (0123, 0x1f, 1_000, 1:30)."""

    __slots__ = ()


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
    return value if node.value == str(value) else SpelledInt(value)


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


def read_yaml(data: bytes, source: str) -> Any:
    """The document in flag file bytes; YAML that cannot be read raises FlagFileError."""
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
