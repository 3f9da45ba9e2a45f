"""What `strangler client` prints and sends: error frames, closes, auth verdicts, typed lines."""

from __future__ import annotations

import json

from strangler.legacy_adapters.canonical import canonical_client
from strangler.proxy.commands.client_text import (
    answers,
    auth_failure,
    close_text,
    describe,
    expects,
    refusal_text,
    sent_text,
    user_frame,
)

MAIN_AUTH_FRAME = {
    "type": "error_message",
    "error_code": "AUTH_FAILED",
    "error_message": "Invalid token signature",
    "details": {},
    "timestamp": 1.0,
}


def test_an_auth_failed_frame_reads_as_its_code_and_message() -> None:
    assert describe(MAIN_AUTH_FRAME).split(None, 1) == [
        "error_message",
        "AUTH_FAILED: Invalid token signature",
    ]


def test_nested_and_flat_error_frames_show_their_code_and_message() -> None:
    nested = {"type": "error", "data": {"error_code": "INVALID_MESSAGE", "message": "Bad"}}
    flat = {"type": "error", "error": "invalid_json", "message": "Bad"}
    assert describe(nested).endswith("INVALID_MESSAGE: Bad")
    assert describe(flat).endswith("invalid_json: Bad")


def test_a_close_shows_code_name_and_reason() -> None:
    assert close_text(1012, "service restart") == '1012 (service restart) "service restart"'
    assert close_text(1000, "") == "1000 (normal closure)"
    assert close_text(4001, "custom") == '4001 "custom"'


def test_the_main_routes_refusal_is_an_auth_failure_with_code_message_and_close() -> None:
    verdict = auth_failure([MAIN_AUTH_FRAME], 1008, "Authentication failed")
    assert verdict == (
        'AUTH_FAILED "Invalid token signature"; the server closed the connection with '
        '1008 (policy violation) "Authentication failed"'
    )


def test_a_1008_naming_authentication_is_an_auth_failure_without_a_frame() -> None:
    verdict = auth_failure([], 1008, "Authentication failed")
    assert verdict is not None and "1008 (policy violation)" in verdict


def test_other_closes_are_not_auth_failures() -> None:
    assert auth_failure([], 1008, "Too many concurrent connections") is None
    assert auth_failure([], 1012, "service restart") is None
    assert auth_failure([{"type": "error", "error": "invalid_json"}], 1000, "") is None


def test_a_refused_handshake_shows_status_and_body() -> None:
    body = b'{"error": "authentication_failed", "message": "Invalid token signature"}'
    assert refusal_text(403, "Forbidden", body) == f"HTTP 403 Forbidden: {body.decode()}"
    assert refusal_text(503, "Service Unavailable", b"") == (
        "HTTP 503 Service Unavailable, empty body"
    )


def test_a_plain_line_becomes_a_canonical_chat_message() -> None:
    frame = user_frame("Why did my GPU costs grow?\n")
    assert frame is not None
    message = json.loads(frame)
    assert message == {
        "type": "user_message",
        "payload": {"text": "Why did my GPU costs grow?", "references": [], "thread_id": None},
    }
    # Already in the envelope every dialect's adapter accepts: canonicalising keeps it.
    assert canonical_client(message) is message


def test_a_line_starting_with_a_brace_is_sent_as_typed() -> None:
    assert user_frame('{"type": "ping", "timestamp": 1}\n') == '{"type": "ping", "timestamp": 1}'
    assert user_frame("{not json\n") == "{not json"


def test_blank_lines_send_nothing() -> None:
    assert user_frame("\n") is None
    assert user_frame("   \r\n") is None


def test_the_echo_of_a_sent_frame_names_its_type() -> None:
    assert sent_text(json.dumps({"type": "user_message", "payload": {"text": "Hi"}})) == (
        f"{'user_message':<24} Hi"
    )
    assert sent_text("{oops").startswith("(not JSON)")


def test_what_the_server_owes_for_each_frame_sent() -> None:
    assert expects(user_frame("Hi") or "") == "turn"
    assert expects('{"type": "chat_message", "content": "Hi"}') == "turn"  # an alias
    assert expects('{"type": "ping", "timestamp": 1}') == "reply"
    assert expects('{"type": "switch_thread", "payload": {}}') == "reply"  # acked
    assert expects("{oops") == "reply"  # an error frame
    assert expects('{"type": "pong"}') == "nothing"
    assert expects('{"type": "heartbeat_ack"}') == "nothing"


def test_what_a_received_frame_answers() -> None:
    assert answers({"type": "agent_completed"}) == "turn"
    assert answers({"type": "agent_error"}) == "turn"
    assert answers({"type": "agent_thinking"}) == "nothing"
    assert answers({"type": "heartbeat"}) == "nothing"
    assert answers({"type": "connection_established"}) == "nothing"
    assert answers({"type": "pong"}) == "reply"
    assert answers({"type": "ack"}) == "reply"
    assert answers({"type": "error", "error": "invalid_json"}) == "reply"
