"""The supervisor's shared metrics directory: emptied of an earlier run's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from strangler.proxy.runtime.supervisor import fresh_metrics_dir


def test_a_given_metrics_directory_loses_only_its_stale_metric_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("kept")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path, owned = fresh_metrics_dir()
    assert (path, owned) == (tmp_path, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_without_a_given_directory_a_new_empty_one_is_made_and_owned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path, owned = fresh_metrics_dir()
    try:
        assert owned
        assert list(path.iterdir()) == []
    finally:
        path.rmdir()
