"""Relative paths in strangler.yaml are relative to the folder the file is named in."""

from __future__ import annotations

from pathlib import Path

import pytest

from strangler.proxy.config import load_config
from tests.unit.proxy.config.test_config import GOOD


def test_a_config_mounted_through_symlinks_keeps_its_folder_as_the_base(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How the kubelet mounts a ConfigMap: the file is a link through ..data into a
    # timestamped folder that the next update replaces (and deletes).
    monkeypatch.setenv("CFG_TEST_SECRET", "s3cret-s3cret-s3cret-s3cret-s3cret")
    mount = tmp_path / "config"
    stamped = mount / "..2026_12_03_17_00_00.000000001"
    stamped.mkdir(parents=True)
    (stamped / "strangler.yaml").write_text(GOOD)
    (mount / "..data").symlink_to(stamped.name)
    (mount / "strangler.yaml").symlink_to("..data/strangler.yaml")
    config = load_config(mount / "strangler.yaml")
    assert config.flags.file == mount / "flags.yaml"
