"""The installed layout: everything under `strangler`, every folder package listed."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PROJECT["tool"]["setuptools"]


def _folder(package: str) -> Path:
    """The repository folder setuptools installs `package` from."""
    mapping: dict[str, str] = SETUPTOOLS["package-dir"]
    for prefix in sorted(mapping, key=len, reverse=True):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix) :].lstrip(".")
            return REPO / mapping[prefix] / Path(*rest.split("."))
    raise AssertionError(f"{package} is not under any package-dir mapping")


def test_every_installed_package_is_under_the_strangler_name() -> None:
    # Generic top-level names (proxy, flags, demo) would collide in site-packages.
    assert all(p.startswith("strangler.") for p in SETUPTOOLS["packages"])
    assert all(p.startswith("strangler.") for p in SETUPTOOLS["package-dir"])


def test_every_package_folder_is_listed_for_installation() -> None:
    listed = set(SETUPTOOLS["packages"])
    on_disk = set()
    for prefix, folder in SETUPTOOLS["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            on_disk.add(".".join((prefix, *parts)))
    assert on_disk == listed


def test_listed_packages_import_from_their_folders() -> None:
    for package in SETUPTOOLS["packages"]:
        module = importlib.import_module(package)
        assert Path(module.__file__ or "").parent == _folder(package), package


def test_the_command_points_at_an_installed_module() -> None:
    target = PROJECT["project"]["scripts"]["strangler"]
    module, _, function = target.partition(":")
    assert module.startswith("strangler.")
    assert callable(getattr(importlib.import_module(module), function))
