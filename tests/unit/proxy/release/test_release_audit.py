"""The audit record of a reload names no user (not in targets, segments or conditions)
and states rollout values in percent, as the flag file does; the start-up is its own
record, not a reload that changed nothing."""

import json
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from strangler.flags.load import parse_flags
from strangler.flags.model import BASIS_POINTS, Mode
from strangler.flags.watch import FlagWatcher, ReloadResult
from strangler.proxy.config import LimitSettings
from strangler.proxy.relay.connections import OpenConnections
from strangler.proxy.release.control import ReleaseControl
from strangler.proxy.release.plan import audit_changes, percent, plan, rollout_points
from strangler.proxy.telemetry.metrics import Metrics

BEFORE = """
segments:
  staff: {users: [alice-123, bob-456]}
flags:
  unified_router:
    routes: [main]
    rules:
      - {name: staff, segment: staff, mode: shadow}
      - {name: vip, when: [{claim: email, equals: "vip-person@example.com"}], mode: live}
    targets: {unified: [dave-001]}
"""

AFTER = (
    BEFORE.replace("[alice-123, bob-456]", "[alice-123, bob-456, carol-789]")
    .replace("vip-person@example.com", "other-vip@example.com")
    .replace("[dave-001]", "[dave-001, erin-002]")
)


def test_segment_users_and_condition_values_are_summarised_not_named() -> None:
    old = parse_flags(BEFORE.encode(), "before.yaml")
    new = parse_flags(AFTER.encode(), "after.yaml")
    changes = audit_changes(old, new)
    text = json.dumps(changes)
    for identifier in ("alice-123", "bob-456", "carol-789", "dave-001", "erin-002", "vip-"):
        assert identifier not in text
    (change,) = changes
    fields = change["fields"]
    assert fields["targets"] == {"unified": "+1 -0"}
    staff_before, vip_before = fields["rules"]["from"]
    staff_after, vip_after = fields["rules"]["to"]
    assert (staff_before["segment"]["users"], staff_after["segment"]["users"]) == (2, 3)
    assert vip_before["when"] == vip_after["when"] == ["email equals"]
    assert (vip_after["name"], vip_after["mode"]) == ("vip", "live")


ROLLOUT = """
flags:
  unified_router:
    routes: [main]
    rules:
      - {name: staff, when: [{claim: org, equals: acme}], mode: shadow, rollout: 12.5}
    rollout: {unified: 10, shadow: 0.5}
"""


def test_rollout_changes_are_in_percent_as_the_file_writes_them() -> None:
    old = parse_flags(b"flags:\n  unified_router:\n    routes: [main]\n", "before.yaml")
    new = parse_flags(ROLLOUT.encode(), "after.yaml")
    (change,) = audit_changes(old, new)
    fields = change["fields"]
    # JSON of the record, as /flags/audit and the audit log line carry it.
    assert json.dumps(fields["rollout"]) == '{"from": {}, "to": {"unified": 10, "shadow": 0.5}}'
    (staff,) = fields["rules"]["to"]
    assert staff["rollout"] == 12.5
    back = audit_changes(new, parse_flags(ROLLOUT.replace("10,", "0.01,").encode(), "x.yaml"))
    assert back[0]["fields"]["rollout"]["to"] == {"unified": 0.01, "shadow": 0.5}


def test_percent_is_exact_for_every_basis_point() -> None:
    assert percent(1000) == 10 and isinstance(percent(1000), int)
    assert (percent(50), percent(1), percent(1234), percent(10_000)) == (0.5, 0.01, 12.34, 100)
    for points in range(BASIS_POINTS + 1):
        whole, cents = divmod(points, 100)
        written = str(whole) if not cents else f"{whole}.{cents:02d}".rstrip("0")
        assert json.dumps(percent(points)) == written  # as JSON, exactly the file's decimal


def test_the_plan_states_rollout_shares_in_percent() -> None:
    old = parse_flags(b"flags:\n  unified_router:\n    routes: [main]\n", "before.yaml")
    new = parse_flags(ROLLOUT.encode(), "after.yaml")
    (population,) = plan([], old, new, lambda *_: Mode.LEGACY).population
    assert population["percent_before"] == {"legacy": 100}
    assert population["percent_after"] == {"unified": 10, "shadow": 0.5, "legacy": 89.5}
    assert rollout_points(new.flags["unified_router"]) == {
        "unified": 1000,
        "shadow": 50,
        "legacy": 8950,
    }


async def test_the_first_record_is_the_start_up_and_later_ones_are_reloads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flags.yaml"
    path.write_text("flags:\n  unified_router:\n    routes: [main]\n")
    watcher = FlagWatcher(path, known_routes=("main",))
    started = watcher.load_initial()
    metrics = Metrics()
    control = ReleaseControl(
        watcher,
        metrics,
        ("main",),
        OpenConnections(metrics, LimitSettings(), 1.0, _never_spawned),
        _never_spawned,
    )
    caplog.set_level(logging.INFO, logger="strangler.audit")
    control.on_reload(ReloadResult("applied", started, None))  # what the server reports
    path.write_text(ROLLOUT)
    assert (await watcher.reload()).outcome == "applied"  # no compare: control diffs it
    control.on_reload(ReloadResult("applied", watcher.current, None))
    control.on_reload(ReloadResult("unchanged", watcher.current, None))
    first, applied, unchanged = control.audit
    assert first["startup"] is True and first["new_hash"] == started.digest[:12]
    assert "startup" not in applied and "startup" not in unchanged
    assert applied["changes"][0]["fields"]["rollout"]["to"] == {"unified": 10, "shadow": 0.5}
    # The audit log line is the same record: percent there too.
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "strangler.audit"]
    assert logged[1]["changes"][0]["fields"]["rollout"]["to"] == {"unified": 10, "shadow": 0.5}


def _never_spawned(work: Coroutine[Any, Any, None]) -> None:
    work.close()
    raise AssertionError("nothing here drains")
