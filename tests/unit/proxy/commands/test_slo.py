"""`strangler slo rules`: the rules it writes for the objectives it is given (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import yaml

from strangler.proxy.commands.cli import main
from strangler.proxy.commands.slo import WINDOWS, Objectives, exception, percent, rules


def _rules(text: str) -> dict[str, str]:
    """record or alert name -> expression, of every rule in the file."""
    (group,) = yaml.safe_load(text)["groups"]
    return {rule.get("record") or rule["alert"]: rule["expr"] for rule in group["rules"]}


def test_an_error_ratio_is_recorded_for_every_window_and_the_budget_period() -> None:
    recorded = _rules(rules(Objectives()))
    for window in (*WINDOWS, "30d"):
        assert f"strangler:golden_path:error_ratio_{window}" in recorded
    assert WINDOWS == ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    assert "strangler:golden_path:error_budget_remaining_30d" in recorded


def test_reliability_leaves_abandoned_turns_out_and_counts_interrupted_ones_as_failed() -> None:
    expr = _rules(rules(Objectives()))["strangler:golden_path:error_ratio_1h"]
    assert 'outcome=~"incomplete|errored|interrupted|timed_out"' in expr
    assert 'outcome!="abandoned"' in expr
    assert "by (route, backend)" in expr and "instance" not in expr


def test_the_alerts_pair_the_workbooks_windows_and_burn_rates() -> None:
    recorded = _rules(rules(Objectives()))
    fast = " ".join(recorded["StranglerGoldenPathBudgetBurnFast"].split())
    slow = " ".join(recorded["StranglerGoldenPathBudgetBurnSlow"].split())
    budget = "/ on (route, backend) (1 - strangler:golden_path:objective)"
    assert f"error_ratio_1h {budget} > 14.4" in fast
    assert f"error_ratio_5m {budget} > 14.4" in fast
    assert "error_ratio_6h" in fast and "error_ratio_30m" in fast and "> 6" in fast
    assert "error_ratio_1d" in slow and "error_ratio_2h" in slow and "> 3" in slow
    assert "error_ratio_3d" in slow and "error_ratio_6h" in slow and "> 1" in slow


def test_an_objective_for_one_route_and_backend_comes_before_the_default() -> None:
    text = rules(Objectives(Decimal("99"), {("factory", "legacy"): Decimal("99.95")}))
    expr = _rules(text)["strangler:golden_path:objective"]
    override, default = expr.split("\nor\n")
    assert 'route="factory", backend="legacy"' in override and "+ 0.9995)" in override
    assert default.strip().endswith("(strangler_turns_total) + 0.99)")
    assert "strangler slo rules --objective 99 --objective-for factory:legacy=99.95" in text


@pytest.mark.parametrize("text", ["100", "0", "-1", "99.5%", "nan", "inf", "lots"])
def test_an_objective_outside_0_to_100_percent_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        percent(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("main=99.9", "ROUTE:BACKEND=PERCENT"),
        ("main:unified", "ROUTE:BACKEND=PERCENT"),
        ("Main:unified=99.9", "route name"),
        ("main:shadow=99.9", "legacy or unified"),
        ("main:unified=101", "below 100"),
    ],
)
def test_a_malformed_objective_for_a_route_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        exception(text)


def test_the_command_prints_the_rules_and_refuses_a_bad_objective(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["slo", "rules", "--objective-for", "main:unified=99.9"]) == 0
    out = capsys.readouterr().out
    assert out == rules(Objectives(Decimal("99.5"), {("main", "unified"): Decimal("99.9")}))
    with pytest.raises(SystemExit) as refused:
        main(["slo", "rules", "--objective", "100"])
    assert refused.value.code == 2
    assert "above 0 and below 100 percent, not 100" in capsys.readouterr().err
