"""The Prometheus rules pass `promtool check rules` and their own `promtool test rules`
unit tests (scripts/check-rules.sh), and those unit tests notice a broken alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from strangler.proxy.commands.slo import Objectives, exception, percent, rules
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
    assert done.stdout.count("SUCCESS") == 6  # three rule files checked, three test files passed


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


def _promtool_test(promtool: str, test_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


def test_the_committed_slo_rules_are_the_generators_default_output() -> None:
    assert (RULES / "slo.rules.yml").read_text() == rules(Objectives()), (
        "run: strangler slo rules > dashboards/prometheus/slo.rules.yml"
    )


def test_the_slo_unit_tests_catch_a_ratio_without_its_zero_denominator_filter(
    tmp_path: Path,
) -> None:
    promtool = require("promtool")
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES, copy)
    slo = copy / "slo.rules.yml"
    text = slo.read_text()
    assert text.count("> 0)") == 8  # one per window, 30 days included
    slo.write_text(text.replace("> 0)", ")"))
    done = _promtool_test(promtool, copy / "tests" / "slo_test.yml")
    assert done.returncode != 0
    assert "strangler:golden_path:error_ratio_5m" in done.stdout + done.stderr  # NaN, not none


def test_the_slo_unit_tests_catch_abandoned_turns_counted_as_judged(tmp_path: Path) -> None:
    promtool = require("promtool")
    copy = tmp_path / "prometheus"
    shutil.copytree(RULES, copy)
    slo = copy / "slo.rules.yml"
    judged = 'outcome!="abandoned"'
    assert judged in slo.read_text()
    slo.write_text(slo.read_text().replace(judged, 'outcome!="none"'))
    done = _promtool_test(promtool, copy / "tests" / "slo_test.yml")
    assert done.returncode != 0
    assert "StranglerGoldenPathBudgetBurnFast" in done.stdout + done.stderr


def test_an_objective_for_one_route_and_backend_judges_only_that_pair(tmp_path: Path) -> None:
    promtool = require("promtool")
    route_backend, objective = exception("main:unified=99.9")
    generated = rules(Objectives(percent("99.5"), {route_backend: objective}))
    (tmp_path / "slo.rules.yml").write_text(generated)
    shutil.copy(Path(__file__).with_name("slo_override_test.yml"), tmp_path)
    done = _promtool_test(promtool, tmp_path / "slo_override_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
