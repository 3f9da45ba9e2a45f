"""The `autobahn` marker: `pytest -m autobahn` runs the conformance suite alone."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "autobahn: Autobahn|Testsuite against the proxy (needs Python 2.7)"
    )
