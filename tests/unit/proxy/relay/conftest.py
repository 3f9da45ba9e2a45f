"""Every frame-scanner test runs against both scanners: the Python one alone, and the one
whose usual case is native (proxy/relay/_wsscan.c)."""

from __future__ import annotations

import pytest

from strangler.proxy.relay.wsframes import NATIVE, FrameRules, PyFrameScanner

NOT_BUILT = (
    "the native frame scanner (proxy/relay/_wsscan.c) was not built: `make` builds it "
    "with the C compiler (gcc) and Python's headers; STRANGLER_PURE_PYTHON=1 switches it off"
)


def native_scanner() -> type[FrameRules]:
    """The native scanner class, or the test fails saying why there is none."""
    if NATIVE is None:
        pytest.fail(NOT_BUILT)
    return NATIVE


@pytest.fixture(params=["python", "native"])
def each_scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebinds the test module's `FrameScanner` to each scanner in turn."""
    scanner = PyFrameScanner if request.param == "python" else native_scanner()
    monkeypatch.setattr(request.module, "FrameScanner", scanner)
