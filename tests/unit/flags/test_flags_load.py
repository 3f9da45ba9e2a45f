"""Loading a flag file: from a path or bytes to a FlagSet with the file's digest."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from strangler.flags.load import FlagFileError, load_flags, parse_flags
from strangler.flags.model import Mode

# The full example file and its names are validation's; loading reads the same file.
from tests.unit.flags.test_flags_validate import FULL, ROUTES, SOURCE


def test_digest_is_sha256_of_the_file_bytes() -> None:
    data = textwrap.dedent(FULL).encode()
    assert parse_flags(data, SOURCE).digest == hashlib.sha256(data).hexdigest()


def test_load_flags_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text("flags: {f: {routes: [main], rollout: {unified: 1}}}\n")
    fs = load_flags(path, known_routes=ROUTES)
    assert fs.source == str(path) and fs.flags["f"].rollout == {Mode.UNIFIED: 100}


def test_load_flags_reports_a_missing_file_as_flag_file_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(FlagFileError, match="cannot be read") as info:
        load_flags(path)
    assert info.value.source == str(path) and info.value.key == ""
