"""The supervisor's pieces that need no running workers: /proc figures, the shared
metrics directory, exit descriptions, per-worker series and merged admin answers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from strangler.proxy.runtime.workers import (
    Answer,
    Worker,
    describe_exit,
    fresh_metrics_dir,
    merge_answers,
    proc_stats,
)
from strangler.proxy.telemetry.metrics import WorkerSample, WorkerStatsCollector


def test_proc_stats_reads_cpu_and_resident_memory_of_a_live_process() -> None:
    cpu, rss = proc_stats(os.getpid())
    assert cpu is not None and cpu >= 0
    assert rss is not None and rss > 1024 * 1024  # a Python interpreter holds megabytes


def test_proc_stats_of_a_process_that_is_gone_is_unknown() -> None:
    assert proc_stats(2**22 + 1) == (None, None)  # above Linux's largest pid


def test_exits_are_described_by_code_or_signal_name() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


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


def test_worker_series_are_labelled_by_index_never_by_pid() -> None:
    registry = CollectorRegistry()
    samples = [WorkerSample(0, True, 0, 1.5, 4096), WorkerSample(1, False, 3, None, None)]
    registry.register(WorkerStatsCollector(lambda: samples))
    text = generate_latest(registry).decode()
    assert 'strangler_worker_up{worker="0"} 1.0' in text
    assert 'strangler_worker_up{worker="1"} 0.0' in text
    assert 'strangler_worker_restarts_total{worker="1"} 3.0' in text
    assert 'strangler_worker_cpu_seconds_total{worker="0"} 1.5' in text
    assert 'strangler_worker_resident_memory_bytes{worker="0"} 4096.0' in text
    # A worker that is down has no CPU or memory figure rather than a made-up zero.
    assert 'strangler_worker_cpu_seconds_total{worker="1"}' not in text
    assert "pid" not in text


def _json(worker: int, status: int, body: object) -> Answer:
    return Answer(
        Worker(worker), status, "application/json; charset=utf-8", json.dumps(body).encode()
    )


def test_json_answers_are_merged_under_the_common_status() -> None:
    merged = merge_answers([_json(0, 400, {"error": "a"}), _json(1, 400, {"error": "a"})])
    assert merged.status == 400
    assert merged.body is not None
    body = json.loads(bytes(merged.body))  # type: ignore[arg-type]
    assert [(w["worker"], w["status"], w["body"]) for w in body["workers"]] == [
        (0, 400, {"error": "a"}),
        (1, 400, {"error": "a"}),
    ]


def test_workers_that_disagree_give_502_and_a_missing_worker_is_listed() -> None:
    merged = merge_answers(
        [_json(0, 200, {}), _json(1, 400, {}), Answer(Worker(2), None, error="not running")]
    )
    assert merged.status == 502
    body = json.loads(bytes(merged.body))  # type: ignore[arg-type]
    assert body["workers"][2] == {"worker": 2, "pid": None, "error": "not running"}


def test_no_worker_answering_is_503() -> None:
    merged = merge_answers([Answer(Worker(0), None, error="not running")])
    assert merged.status == 503


def test_a_page_is_passed_on_from_the_first_worker_that_answered() -> None:
    page = Answer(Worker(0), None, error="not running")
    first = Answer(Worker(1), 302, "text/plain", b"", location="/status")
    second = Answer(Worker(2), 302, "text/plain", b"", location="/status")
    merged = merge_answers([page, first, second])
    assert merged.status == 302
    assert merged.headers["Location"] == "/status"
