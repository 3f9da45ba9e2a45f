"""Audit records read as sentences: every kind of record, and every kind of change, from
real `audit_changes` output of two parsed flag files. No structure, no basis points and
no user id reaches the text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from strangler.flags.load import parse_flags
from strangler.proxy.admin.audit_text import detail_lines, event_text
from strangler.proxy.release.plan import audit_changes

BASE = """
segments:
  staff: {users: [alice-123, bob-456]}
flags:
  unified_router:
    routes: [main, factory]
    targets: {unified: [dave-001], shadow: [erin-002, fred-003]}
    rules:
      - {name: staff, segment: staff, mode: shadow}
      - {name: vip, when: [{claim: email, equals: "vip-person@example.com"}], mode: live}
    guard: {max_mismatch_ratio: 0.05, min_samples: 100}
  other:
    routes: [legacy]
"""
IDS = ("alice-123", "bob-456", "carol-789", "dave-001", "erin-002", "fred-003", "vip-")


def changes(before: str, after: str) -> list[str]:
    """The sentences of the change from `before` to `after` (both whole files)."""
    old = parse_flags(before.encode(), "before.yaml")
    new = parse_flags(after.encode(), "after.yaml")
    record = {
        "outcome": "applied",
        "old_hash": "aaaaaaaaaaaa",
        "new_hash": "bbbbbbbbbbbb",
        "changes": json.loads(json.dumps(audit_changes(old, new))),  # as /flags/audit has it
    }
    lines = detail_lines(record)
    text = " ".join(lines)
    for identifier in IDS:
        assert identifier not in text
    for structure in ("{", "}", "[", "]", "null", "None"):
        assert structure not in text
    return lines


def edit(old: str, new: str, count: int = 1) -> str:
    assert BASE.count(old) == count, old
    return BASE.replace(old, new)


def test_a_rollout_change_reads_in_percent_with_exact_decimals() -> None:
    lines = changes(BASE, edit("    guard:", "    rollout: {unified: 10, shadow: 0.5}\n    guard:"))
    assert lines == ["unified_router: rollout unified 0% → 10%, shadow 0% → 0.5%"]
    before = edit("    guard:", "    rollout: {unified: 12.34, shadow: 0.5}\n    guard:")
    after = edit("    guard:", "    rollout: {unified: 0.01, shadow: 0.5}\n    guard:")
    assert changes(before, after) == ["unified_router: rollout unified 12.34% → 0.01%"]


def test_targets_are_counted_never_listed() -> None:
    after = edit(
        "{unified: [dave-001], shadow: [erin-002, fred-003]}",
        "{unified: [dave-001, erin-002, carol-789], shadow: [fred-003]}",
    )
    assert changes(BASE, after) == [
        "unified_router: targets: 2 users added to unified, 1 user removed from shadow"
    ]


def test_flags_added_and_removed() -> None:
    without_other = BASE.split("  other:")[0]
    assert changes(BASE, without_other) == ["flag other removed"]
    assert changes(without_other, BASE) == ["flag other added"]


@pytest.mark.parametrize(
    ("old", "new", "sentence"),
    [
        (
            "routes: [main, factory]",
            "routes: [main, isolated]",
            "routes: added isolated; removed factory",
        ),
        ("routes: [main, factory]", "routes: [factory, main]", "routes: reordered"),
        (
            "routes: [main, factory]",
            "routes: [main, factory]\n    default: unified",
            "default mode legacy → unified",
        ),
        (
            "routes: [main, factory]",
            "routes: [main, factory]\n    anonymous: shadow",
            "anonymous users legacy → shadow",
        ),
        (
            "routes: [main, factory]",
            "routes: [main, factory]\n    kill_switch: true",
            "kill switch on: every user of its routes gets legacy",
        ),
        (
            "routes: [main, factory]",
            "routes: [main, factory]\n    on_change: {drain: {rate: 20}}",
            "on change: keep open connections in their mode → close moved connections at 20/s",
        ),
        (
            "routes: [main, factory]",
            "routes: [main, factory]\n    effective_at: 2030-01-01T09:00:00Z",
            "effective from 2030-01-01 09:00:00 UTC",
        ),
        (
            "guard: {max_mismatch_ratio: 0.05, min_samples: 100}",
            "guard: {max_mismatch_ratio: 0.05, max_unified_error_ratio: 0.02, min_samples: 50}",
            "guard: back to legacy on mismatches over 5% of at least 100 samples in 300 s → "
            "back to legacy on mismatches over 5% or unified errors over 2% "
            "of at least 50 samples in 300 s",
        ),
        (
            "    guard: {max_mismatch_ratio: 0.05, min_samples: 100}\n",
            "",
            "guard removed",
        ),
    ],
)
def test_each_field_of_a_flag_reads_as_a_sentence(old: str, new: str, sentence: str) -> None:
    assert changes(BASE, edit(old, new)) == [f"unified_router: {sentence}"]


def test_switches_and_schedules_read_both_ways() -> None:
    killed = edit("routes: [main, factory]", "routes: [main, factory]\n    kill_switch: true")
    assert changes(killed, BASE) == ["unified_router: kill switch off"]
    guarded = BASE
    unguarded = edit("    guard: {max_mismatch_ratio: 0.05, min_samples: 100}\n", "")
    assert changes(unguarded, guarded) == [
        "unified_router: guard added: back to legacy on mismatches over 5% "
        "of at least 100 samples in 300 s"
    ]
    scheduled = edit(
        "routes: [main, factory]",
        "routes: [main, factory]\n    effective_at: 2030-01-01T09:00:00Z\n"
        "    before: {default: shadow}",
    )
    later = scheduled.replace("2030-01-01T09:00:00Z", "2030-01-02T09:00:00Z")
    assert changes(scheduled, later) == [
        "unified_router: effective time 2030-01-01 09:00:00 UTC → 2030-01-02 09:00:00 UTC"
    ]
    assert changes(scheduled, BASE) == [
        "unified_router: no longer waits for an effective time",
        "unified_router: before its effective time: shadow (anonymous users: legacy) → "
        "not served by this flag",
    ]


def test_rules_added_removed_changed_and_reordered() -> None:
    staff, vip = (
        "      - {name: staff, segment: staff, mode: shadow}\n",
        "      - {name: vip, when: [{claim: email, equals: "
        '"vip-person@example.com"}], mode: live}\n',
    )
    added = edit(
        vip,
        vip + "      - {name: acme, when: [{claim: org, one_of: [acme]}], mode: unified, "
        "rollout: 12.5}\n",
    )
    assert changes(BASE, added) == [
        "unified_router: rule acme added: when org is one of … → unified, 12.5% of them"
    ]
    assert changes(added, BASE) == ["unified_router: rule acme removed"]
    assert changes(BASE, edit(staff + vip, vip + staff)) == [
        "unified_router: rules reordered: staff, vip → vip, staff"
    ]
    changed = edit(
        "{name: staff, segment: staff, mode: shadow}",
        "{name: staff, segment: staff, mode: live, rollout: 0.5}",
    ).replace("[alice-123, bob-456]", "[alice-123, bob-456, carol-789]")
    assert changes(BASE, changed) == [
        "unified_router: rule staff: mode shadow → live; rollout 100% → 0.5%; "
        "segment staff (2 listed users) → segment staff (3 listed users)"
    ]
    conditions = edit('equals: "vip-person@example.com"', 'ends_with: "@example.com"')
    assert changes(BASE, conditions) == [
        "unified_router: rule vip: conditions email equals … → email ends with …"
    ]
    # A condition's value alone: the record leaves values out, and so does the page.
    value = edit("vip-person@example.com", "other-vip@example.com")
    assert changes(BASE, value) == [
        "unified_router: rules: a condition's value changed (values are not shown)"
    ]


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "at": 1_800_000_000.0,
        "outcome": "applied",
        "old_hash": "1c26ab8eab6d",
        "new_hash": "1c26ab8eab6d",
        "changes": [],
        "error": None,
    }
    base.update(fields)
    return base


def test_the_start_up_record_names_the_flags_it_started_with() -> None:
    started = record(startup=True)
    assert event_text(started) == "started with flags 1c26ab8eab6d"
    assert detail_lines(started) == []


def test_a_reload_that_changed_nothing_says_so() -> None:
    for no_op in (record(), record(outcome="unchanged", new_hash=None)):
        assert event_text(no_op) == "reloaded, no change"
        assert detail_lines(no_op) == []


def test_an_applied_file_names_both_hashes_and_its_changes() -> None:
    applied = record(
        new_hash="0123456789ab",
        changes=[
            {
                "flag": "f",
                "change": "changed",
                "fields": {"default": {"from": "legacy", "to": "shadow"}},
            }
        ],
        guards_cleared=["f"],
    )
    assert event_text(applied) == "applied flags 0123456789ab, replacing 1c26ab8eab6d"
    assert detail_lines(applied) == [
        "f: default mode legacy → shadow",
        "guard on f cleared: it starts afresh",
    ]
    comment_only = record(new_hash="0123456789ab")
    assert detail_lines(comment_only) == ["no flag changed (only the file's text did)"]


def test_a_rejected_file_keeps_the_flags_in_force_and_gives_the_reason() -> None:
    rejected = record(
        outcome="rejected",
        new_hash=None,
        error="flags.yaml:3:12: flags.f.rollout.unified: must be 0..100",
    )
    assert event_text(rejected) == "rejected a flag file; flags 1c26ab8eab6d stay in force"
    assert detail_lines(rejected) == ["flags.yaml:3:12: flags.f.rollout.unified: must be 0..100"]


def test_a_guard_trip_record_reads_as_what_tripped_and_what_it_holds() -> None:
    trip = record(
        outcome="guard_tripped",
        flag="unified_router",
        guard="unified_error_ratio",
        ratio=0.12,
        limit=0.02,
        samples=150,
    )
    assert event_text(trip) == "guard tripped on unified_router"
    assert detail_lines(trip) == [
        "unified error ratio 12% over 150 unified interactions (limit 2%); "
        "new connections go to legacy until the flag file changes"
    ]


def test_unknown_kinds_and_shapes_stay_plain_words() -> None:
    odd = record(
        new_hash="0123456789ab",
        changes=[
            {"flag": "f", "change": "renamed"},
            {"flag": "f", "change": "changed", "fields": {"colour": {"from": [1], "to": {}}}},
            {"flag": "f", "change": "changed", "fields": {"targets": {"unified": "lots"}}},
            "not a change",
        ],
    )
    assert detail_lines(odd) == [
        "flag f: renamed",
        "f: colour changed",
        "f: targets: unified changed",
    ]
    assert event_text(record(outcome={"x": 1})) == "?"
