"""Stored transcripts never keep credentials, user ids or configured fields."""

from __future__ import annotations

from strangler.proxy.shadow.redact import REDACTED, redact


def test_secret_keys_are_redacted_at_any_depth_and_the_input_is_untouched() -> None:
    event = {
        "type": "tool_executing",
        "user_id": "u-1",
        "data": {"parameters": {"Authorization": "Bearer x", "q": "ok"}, "items": [{"token": "t"}]},
    }
    cleaned = redact(event)
    assert cleaned["user_id"] == REDACTED
    assert cleaned["data"]["parameters"] == {"Authorization": REDACTED, "q": "ok"}
    assert cleaned["data"]["items"] == [{"token": REDACTED}]
    assert event["user_id"] == "u-1"  # a copy, not an edit


def test_configured_paths_are_redacted_and_missing_paths_are_ignored() -> None:
    event = {"type": "t", "data": {"parameters": {"query": "my salary"}, "status": "ok"}}
    cleaned = redact(event, ["data.parameters.query", "data.nothing.here", "nope"])
    assert cleaned == {"type": "t", "data": {"parameters": {"query": REDACTED}, "status": "ok"}}
