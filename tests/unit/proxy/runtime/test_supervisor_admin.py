"""The supervisor's admin port without running workers: per-worker series and the
answers of several workers merged into one."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, generate_latest

from strangler.proxy.runtime.supervisor_admin import Answer, merge_answers
from strangler.proxy.runtime.worker_slot import Worker
from strangler.proxy.telemetry.metrics import WorkerSample, WorkerStatsCollector


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
