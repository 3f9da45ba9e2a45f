"""Reading a flag file's YAML: bytes that are not YAML, or not a flag file, are a
FlagFileError about the whole file."""

from __future__ import annotations

import pytest

from strangler.flags.load import FlagFileError, parse_flags

SOURCE = "/etc/strangler/flags.yaml"


def test_invalid_utf8_is_a_yaml_error() -> None:
    with pytest.raises(FlagFileError, match="not valid YAML") as info:
        parse_flags(b"flags: {}\n\xff\xfe", SOURCE)
    assert info.value.key == ""


@pytest.mark.parametrize(
    "data",
    [
        b"[" * 5000,
        b"flags: " + b"{a: " * 5000,
        b"flags: {f: {routes: " + b"[" * 5000 + b"]" * 5000 + b"}}",
    ],
    ids=["bare_list", "mapping", "closed_list"],
)
def test_values_nested_thousands_deep_are_a_flag_file_error(data: bytes) -> None:
    with pytest.raises(FlagFileError, match="nested too deeply"):
        parse_flags(data, "deep.yaml")
