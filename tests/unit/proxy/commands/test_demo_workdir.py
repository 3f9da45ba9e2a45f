"""The demo's working folder: its configuration is valid and editors find its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strangler.proxy.commands.demo import DEMO_SECRET, prepare_workdir
from strangler.proxy.config import json_schema, load_config


def test_the_copied_config_points_editors_at_a_schema_written_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRANGLER_JWT_SECRET", DEMO_SECRET)
    config = prepare_workdir(tmp_path / "demo")
    first = config.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./strangler.schema.json"
    schema = config.parent / "strangler.schema.json"
    assert json.loads(schema.read_text()) == json_schema()
    load_config(config)  # the modeline is a comment: the proxy still reads the file


def test_an_edited_flag_file_survives_a_second_start(tmp_path: Path) -> None:
    config = prepare_workdir(tmp_path)
    flags = config.parent / "flags.yaml"
    flags.write_text("flags: {}\n")
    prepare_workdir(tmp_path)
    assert flags.read_text() == "flags: {}\n"
