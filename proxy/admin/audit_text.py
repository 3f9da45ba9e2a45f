"""Audit records as sentences for the status page (pure).

The records are those of `/flags/audit` (proxy/release/control.py; the per-flag changes
from proxy/release/plan.py `audit_changes`): rollout values in percent, targets and
segment users as counts, condition values left out. This says what happened in words
(``started with flags 1c26ab8eab6d``, ``rollout unified 0% → 10%``) and never shows a
structure; the JSON stays on the endpoint for machines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from strangler.proxy.admin.guard_text import guard_text, trip_details
from strangler.proxy.admin.wording import counted, number, percent_text, stamp, word

# Modes are listed as rollout ranges are laid out from bucket 0, legacy last.
_MODE_ORDER = ("unified", "live", "shadow", "legacy")
_TARGET_DELTA = re.compile(r"\+(\d+) -(\d+)")
_OPERATORS = {
    "equals": "equals …",
    "one_of": "is one of …",
    "ends_with": "ends with …",
    "exists": "is checked for presence",
}


def is_no_op(record: Mapping[str, Any]) -> bool:
    """A reload that left the flags as they were (same file, or a touch)."""
    outcome = record.get("outcome")
    if outcome == "unchanged":
        return True
    return (
        outcome == "applied"
        and not record.get("startup")
        and record.get("old_hash") == record.get("new_hash")
        and not record.get("changes")
    )


def event_text(record: Mapping[str, Any]) -> str:
    """What the record is about, in one short sentence."""
    outcome = record.get("outcome")
    old, new = word(record.get("old_hash") or "none"), word(record.get("new_hash") or "")
    if outcome == "applied" and record.get("startup"):
        return f"started with flags {new}"
    if is_no_op(record):
        return "reloaded, no change"
    if outcome == "applied":
        return f"applied flags {new}, replacing {old}"
    if outcome == "rejected":
        return f"rejected a flag file; flags {old} stay in force"
    if outcome == "guard_tripped":
        return f"guard tripped on {word(record.get('flag'))}"
    return word(outcome)


def detail_lines(record: Mapping[str, Any]) -> list[str]:
    """The record's details: each change as a sentence, the error, or the trip."""
    outcome = record.get("outcome")
    if outcome == "rejected":
        return [word(record.get("error") or "no reason recorded")]
    if outcome == "guard_tripped":
        return [trip_details(record)]  # the record carries the trip's own fields
    lines: list[str] = []
    changes = record.get("changes")
    if isinstance(changes, Sequence) and not isinstance(changes, str):
        for change in changes:
            if isinstance(change, Mapping):
                lines.extend(change_lines(change))
    if outcome == "applied" and not lines and not record.get("startup") and not is_no_op(record):
        lines.append("no flag changed (only the file's text did)")
    cleared = record.get("guards_cleared")
    if isinstance(cleared, Sequence) and not isinstance(cleared, str):
        lines.extend(f"guard on {word(flag)} cleared: it starts afresh" for flag in cleared)
    return lines


def change_lines(change: Mapping[str, Any]) -> list[str]:
    """One flag's change (added, removed, or changed field by field) as sentences."""
    flag, kind = word(change.get("flag")), change.get("change")
    if kind in ("added", "removed"):
        return [f"flag {flag} {kind}"]
    fields = change.get("fields")
    if kind != "changed" or not isinstance(fields, Mapping):
        return [f"flag {flag}: {word(kind)}"]
    return [
        f"{flag}: {line}"
        for name, value in fields.items()
        for line in field_lines(str(name), value)
    ]


def field_lines(name: str, value: Any) -> list[str]:
    """One changed field of a flag, ``{"from": ..., "to": ...}`` (targets: counts)."""
    if name == "targets":
        return [_targets(value)]
    if not isinstance(value, Mapping) or "from" not in value or "to" not in value:
        return [f"{name.replace('_', ' ')} changed"]
    a, b = value["from"], value["to"]
    if name == "rollout":
        return [_rollout(a, b)]
    if name == "rules":
        return _rules(a, b)
    if name == "routes":
        return [_routes(a, b)]
    if name == "default":
        return [f"default mode {word(a)} → {word(b)}"]
    if name == "anonymous":
        return [f"anonymous users {word(a)} → {word(b)}"]
    if name == "kill_switch":
        return ["kill switch on: every user of its routes gets legacy" if b else "kill switch off"]
    if name == "drain_rate":
        return [f"on change: {_drain(a)} → {_drain(b)}"]
    if name == "effective_at":
        return [_effective(a, b)]
    if name == "before":
        return [f"before its effective time: {_before(a)} → {_before(b)}"]
    if name == "guard":
        return [_guard(a, b)]
    return [f"{name.replace('_', ' ')} changed"]


def _rollout(a: Any, b: Any) -> str:
    before = a if isinstance(a, Mapping) else {}
    after = b if isinstance(b, Mapping) else {}
    modes = sorted(set(before) | set(after), key=_mode_order)
    moves = [
        f"{word(mode)} {_pct(before.get(mode))} → {_pct(after.get(mode))}"
        for mode in modes
        if _pct(before.get(mode)) != _pct(after.get(mode))
    ]
    return "rollout " + (", ".join(moves) if moves else "unchanged")


def _mode_order(mode: Any) -> int:
    return _MODE_ORDER.index(mode) if mode in _MODE_ORDER else len(_MODE_ORDER)


def _pct(value: Any) -> str:
    n = number(value)
    return percent_text(n if n is not None else 0.0)


def _targets(value: Any) -> str:
    if not isinstance(value, Mapping) or not value:
        return "targets changed"
    parts = []
    for mode, delta in sorted(value.items(), key=lambda kv: _mode_order(kv[0])):
        found = _TARGET_DELTA.fullmatch(str(delta))
        if found is None:
            parts.append(f"{word(mode)} changed")
            continue
        added, removed = int(found[1]), int(found[2])
        if added:
            parts.append(f"{counted(added, 'user')} added to {word(mode)}")
        if removed:
            parts.append(f"{counted(removed, 'user')} removed from {word(mode)}")
    return "targets: " + ", ".join(parts)


def _routes(a: Any, b: Any) -> str:
    before = [word(r) for r in a] if isinstance(a, Sequence) and not isinstance(a, str) else []
    after = [word(r) for r in b] if isinstance(b, Sequence) and not isinstance(b, str) else []
    added = [r for r in after if r not in before]
    removed = [r for r in before if r not in after]
    parts = []
    if added:
        parts.append(f"added {', '.join(added)}")
    if removed:
        parts.append(f"removed {', '.join(removed)}")
    return "routes: " + ("; ".join(parts) if parts else "reordered")


def _drain(rate: Any) -> str:
    n = number(rate)
    if n is None:
        return "keep open connections in their mode"
    return f"close moved connections at {n:g}/s"


def _effective(a: Any, b: Any) -> str:
    start, end = number(a), number(b)
    if end is None:
        return "no longer waits for an effective time"
    if start is None:
        return f"effective from {stamp(end)}"
    return f"effective time {stamp(start)} → {stamp(end)}"


def _before(value: Any) -> str:
    if not isinstance(value, Mapping):
        return "not served by this flag"
    return f"{word(value.get('default'))} (anonymous users: {word(value.get('anonymous'))})"


def _guard(a: Any, b: Any) -> str:
    if not isinstance(b, Mapping):
        return "guard removed"
    if not isinstance(a, Mapping):
        return f"guard added: {guard_text(b)}"
    return f"guard: {guard_text(a)} → {guard_text(b)}"


def _rules(a: Any, b: Any) -> list[str]:
    before = _named(a)
    after = _named(b)
    lines = [
        f"rule {name} added: {_rule(rule)}" for name, rule in after.items() if name not in before
    ]
    lines += [f"rule {name} removed" for name in before if name not in after]
    for name, rule in after.items():
        old = before.get(name)
        if old is not None and old != rule:
            lines.append(f"rule {name}: {'; '.join(_rule_changes(old, rule))}")
    kept_before = [n for n in before if n in after]
    kept_after = [n for n in after if n in before]
    if kept_before != kept_after:
        lines.append(f"rules reordered: {', '.join(kept_before)} → {', '.join(kept_after)}")
    # Condition values are left out of the record (they can name people), so a change
    # of one alone leaves nothing else to say.
    return lines or ["rules: a condition's value changed (values are not shown)"]


def _named(rules: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(rules, Sequence) or isinstance(rules, str):
        return {}
    return {word(r.get("name")): r for r in rules if isinstance(r, Mapping)}


def _rule(rule: Mapping[str, Any]) -> str:
    who = []
    segment = rule.get("segment")
    if isinstance(segment, Mapping):
        who.append(f"segment {_segment(segment)}")
    conditions = _conditions(rule.get("when"))
    if conditions:
        who.append(f"when {conditions}")
    share = number(rule.get("rollout"))
    of_them = f", {percent_text(share)} of them" if share is not None and share < 100 else ""
    return f"{', '.join(who) or 'everyone'} → {word(rule.get('mode'))}{of_them}"


def _segment(segment: Mapping[str, Any]) -> str:
    users = number(segment.get("users"))
    listed = f" ({counted(int(users), 'listed user')})" if users else ""
    conditions = _conditions(segment.get("when"))
    return f"{word(segment.get('name'))}{listed}" + (f" when {conditions}" if conditions else "")


def _conditions(when: Any) -> str:
    if not isinstance(when, Sequence) or isinstance(when, str):
        return ""
    parts = []
    for condition in when:
        claim, _, op = word(condition).rpartition(" ")
        parts.append(f"{claim} {_OPERATORS.get(op, op)}" if claim else word(condition))
    return " and ".join(parts)


def _rule_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    if old.get("mode") != new.get("mode"):
        out.append(f"mode {word(old.get('mode'))} → {word(new.get('mode'))}")
    if old.get("rollout") != new.get("rollout"):
        out.append(f"rollout {_pct(old.get('rollout'))} → {_pct(new.get('rollout'))}")
    if old.get("when") != new.get("when"):
        out.append(
            f"conditions {_conditions(old.get('when')) or 'none'} → "
            f"{_conditions(new.get('when')) or 'none'}"
        )
    a, b = old.get("segment"), new.get("segment")
    if a != b:
        before = f"segment {_segment(a)}" if isinstance(a, Mapping) else "no segment"
        after = f"segment {_segment(b)}" if isinstance(b, Mapping) else "no segment"
        out.append(f"{before} → {after}")
    return out or ["changed"]
