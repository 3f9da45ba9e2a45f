"""Tallies: per-message counts kept in plain integers until a flush reaches the counter."""

from prometheus_client import CollectorRegistry

from strangler.proxy.telemetry.metrics import Metrics


def messages(registry: CollectorRegistry, direction: str) -> float | None:
    return registry.get_sample_value(
        "strangler_messages_total",
        {"route": "main", "backend": "legacy", "direction": direction},
    )


def test_a_tally_reaches_its_counter_only_when_flushed_and_only_once() -> None:
    metrics = Metrics()
    tally = metrics.tally(metrics.messages, "main", "legacy", "client_to_backend")
    tally.add()
    tally.add(4)
    assert messages(metrics.registry, "client_to_backend") == 0
    metrics.flush()
    assert messages(metrics.registry, "client_to_backend") == 5
    metrics.flush()
    assert messages(metrics.registry, "client_to_backend") == 5
    tally.add(2)
    metrics.flush()
    assert messages(metrics.registry, "client_to_backend") == 7


def test_one_tally_per_series_so_connections_share_it() -> None:
    metrics = Metrics()
    first = metrics.tally(metrics.messages, "main", "legacy", "client_to_backend")
    again = metrics.tally(metrics.messages, "main", "legacy", "client_to_backend")
    other = metrics.tally(metrics.messages, "main", "legacy", "backend_to_client")
    bytes_ = metrics.tally(metrics.bytes, "main", "legacy", "client_to_backend")
    assert first is again
    assert len({id(first), id(other), id(bytes_)}) == 3
    first.add(3)
    other.add(1)
    bytes_.add(300)
    metrics.flush()
    assert messages(metrics.registry, "client_to_backend") == 3
    assert messages(metrics.registry, "backend_to_client") == 1
    assert (
        metrics.registry.get_sample_value(
            "strangler_bytes_total",
            {"route": "main", "backend": "legacy", "direction": "client_to_backend"},
        )
        == 300
    )
