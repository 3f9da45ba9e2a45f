"""The Prometheus rules pass `promtool check rules` and their own `promtool test rules`
unit tests (scripts/check-rules.sh), and those unit tests notice a broken alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dashboards.conftest import require
from tests.dashboards.promql import ROOT, RULES

pytestmark = pytest.mark.timeout(60)


def test_rules_pass_promtool_check_and_their_unit_tests() -> None:
    require("promtool")
    done = subprocess.run(
        [str(ROOT / "scripts" / "check-rules.sh")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 4  # two rule files checked, two test files passed


def test_the_unit_tests_catch_a_mismatch_alert_without_its_sample_guard(tmp_path: Path) -> None:
    promtool = require("promtool")
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES, copy)
    alerts = copy / "alerts.rules.yml"
    guarded = "strangler:comparisons:turns_5m > 50"
    assert guarded in alerts.read_text()
    alerts.write_text(alerts.read_text().replace(guarded, "strangler:comparisons:turns_5m > 0"))
    done = subprocess.run(
        [promtool, "test", "rules", str(copy / "tests" / "alerts_test.yml")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode != 0
    assert "StranglerMismatchRatioHigh" in done.stdout + done.stderr


def test_the_unit_tests_catch_a_skew_alert_that_counts_a_single_replica(tmp_path: Path) -> None:
    promtool = require("promtool")
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES, copy)
    alerts = copy / "alerts.rules.yml"
    replicas = "count by (job) (count by (job, instance) (strangler_flags_info == 1)) > 1"
    assert replicas in alerts.read_text()
    alerts.write_text(alerts.read_text().replace(replicas, replicas.replace("> 1", "> 0")))
    done = subprocess.run(
        [promtool, "test", "rules", str(copy / "tests" / "alerts_test.yml")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode != 0
    assert "StranglerFlagSkew" in done.stdout + done.stderr
