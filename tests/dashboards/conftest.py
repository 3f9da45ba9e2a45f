"""A real Prometheus for the dashboard and rule tests, started once per module.

It scrapes itself and whatever proxies a test names (file-based service discovery, so
targets change without a restart), every second, and evaluates the rule files of
dashboards/prometheus every second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.dashboards.promql import RULE_FILES
from tests.functional.conftest import free_port, stack  # noqa: F401 - the fixture, re-exported

MISSING = (
    "{0} not found on PATH: run scripts/install-test-deps.sh "
    "(it installs Debian's prometheus package, which brings {0})"
)


def require(program: str) -> str:
    """The path of `program`, or a test failure that says how to install it."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(MISSING.format(program), pytrace=False)
    return path


@dataclass
class PrometheusUnderTest:
    url: str
    targets_file: Path
    log: Path

    def scrape(self, admin_ports: list[int]) -> None:
        """Scrape these proxies' admin ports from now on (and only these)."""
        targets = [{"targets": [f"127.0.0.1:{p}" for p in admin_ports]}]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        os.replace(tmp, self.targets_file)  # atomic: Prometheus never reads half a file


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusUnderTest]:
    binary = require("prometheus")
    d = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    targets = d / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {
                "job_name": "strangler",
                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
            },
        ],
    }
    (d / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = d / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited early:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in 30 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield PrometheusUnderTest(url, targets, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
