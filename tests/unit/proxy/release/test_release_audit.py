"""The audit record of a reload names no user: not in targets, segments or conditions."""

import json

from strangler.flags.load import parse_flags
from strangler.proxy.release.plan import audit_changes

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
