"""`strangler flags status --fleet`: every replica's flag file from Prometheus's answer."""

from __future__ import annotations

from typing import Any

from strangler.proxy.commands.flags_fleet import fleet_text
from strangler.proxy.release.fleet import Replica, flag_files, replicas_view, vector


def answer(*series: tuple[dict[str, str], str]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": m, "value": [1700000000.0, v]} for m, v in series],
        },
    }


def test_the_fleet_view_names_each_replica_its_file_and_when_it_was_applied() -> None:
    job = {"job": "strangler"}
    hashes = vector(
        answer(
            ({**job, "instance": "a:1", "hash": "aaaaaaaaaaaa"}, "1"),
            ({**job, "instance": "b:1", "hash": "aaaaaaaaaaaa"}, "1"),
            ({**job, "instance": "c:1", "hash": "cccccccccccc"}, "1"),
        )
    )
    loaded = vector(
        answer(({**job, "instance": "a:1"}, "100"), ({**job, "instance": "c:1"}, "NaN"))
    )
    replicas = replicas_view(hashes, loaded)
    assert replicas[0] == Replica("strangler/a:1", ("aaaaaaaaaaaa",), 100.0)
    assert replicas[2] == Replica("strangler/c:1", ("cccccccccccc",), None)
    assert flag_files(replicas) == {"aaaaaaaaaaaa", "cccccccccccc"}
    text = fleet_text(replicas, now=160.0)
    assert text.splitlines()[0] == "fleet: 3 replicas, SKEW: 2 flag files"
    assert "1970-01-01T00:01:40Z (60s ago)" in text
    one = fleet_text(replicas[:2], now=160.0)
    assert one.splitlines()[0] == "fleet: 2 replicas, one flag file everywhere"
