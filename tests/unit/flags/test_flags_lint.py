"""Flag file lint: every problem, at the line and column of the YAML it is about."""

from __future__ import annotations

import textwrap

import pytest

from strangler.flags.instants import parse_instant
from strangler.flags.lint import Problem, lint
from strangler.flags.load import FlagFileError, parse_flags

SOURCE = "flags.yaml"
ROUTES = ("main", "factory", "isolated")
NOW = parse_instant("2030-06-01T00:00:00Z")


def run(text: str, known_routes: tuple[str, ...] | None = ROUTES) -> list[Problem]:
    return lint(textwrap.dedent(text).lstrip("\n").encode(), SOURCE, known_routes, now=NOW)


def only(text: str, known_routes: tuple[str, ...] | None = ROUTES) -> Problem:
    problems = run(text, known_routes)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_a_clean_file_has_no_problems() -> None:
    assert (
        run(
            """
            version: 1
            segments:
              staff: {users: [ann], when: [{claim: org, equals: acme}]}
            flags:
              unified_router:
                routes: [main, factory]
                targets: {unified: [alice]}
                rules:
                  - {name: staff, segment: staff, mode: shadow, rollout: 50}
                rollout: {unified: 5}
                effective_at: 2030-06-01T09:00:00Z
                before: {default: legacy}
                on_change: {drain: {rate: 20}}
                guard: {max_mismatch_ratio: 0.05}
            """
        )
        == []
    )


def test_problem_prints_as_file_line_column_severity_message() -> None:
    problem = only(
        """
        flags:
          unified_router:
            routes: [main]
            default: legacyy
        """
    )
    assert str(problem) == (
        "flags.yaml:4:5: error: flags.unified_router.default: unknown mode 'legacyy'; "
        "modes are legacy, shadow, live, unified."
    )
    assert (problem.file, problem.line, problem.column, problem.severity) == (
        SOURCE,
        4,
        5,
        "error",
    )


def test_yaml_syntax_error_is_reported_at_its_line_and_nothing_else() -> None:
    problem = only(
        """
        flags:
          unified_router:
            routes: [main
            default: legacy
        """
    )
    assert (problem.line, problem.severity) == (4, "error")
    assert problem.message.startswith("the file is not valid YAML: ")


def test_bad_indentation_is_a_syntax_error_at_the_offending_line() -> None:
    problem = only("flags:\n  a:\n    routes: [main]\n - oops\n")
    assert problem.line == 4
    assert "expected <block end>" in problem.message


def test_text_that_is_not_utf8_is_reported_at_its_line() -> None:
    (problem,) = lint(b"flags:\n  a: \xff\n", SOURCE, now=NOW)
    assert (problem.line, problem.column) == (2, 6)
    assert "must be UTF-8" in problem.message


def test_impossible_timestamp_is_reported_at_its_line_by_lint_and_rejected_by_load() -> None:
    text = "flags:\n  a:\n    routes: [main]\n    effective_at: 2030-13-45T09:00:00Z\n"
    problem = only(text)
    assert (problem.line, problem.column) == (4, 19)
    assert "month must be in 1..12" in problem.message
    with pytest.raises(FlagFileError, match="timestamp is not a real date"):
        parse_flags(text.encode(), SOURCE)


def test_every_duplicate_key_is_reported_at_its_own_line_at_every_depth() -> None:
    problems = run(
        """
        version: 1
        flags:
          unified_router:
            routes: [main]
            default: legacy
            default: shadow
            rules:
              - name: a
                when: [{claim: org, equals: acme}]
                mode: unified
                mode: shadow
          unified_router:
            routes: [factory]
        version: 1
        """
    )
    assert [str(p) for p in problems] == [
        "flags.yaml:6:5: error: duplicate key 'default' in flags.unified_router: "
        "it is already written at line 5; YAML would silently keep only the last one.",
        "flags.yaml:11:9: error: duplicate key 'mode' in flags.unified_router.rules[0]: "
        "it is already written at line 10; YAML would silently keep only the last one.",
        "flags.yaml:12:3: error: duplicate key 'unified_router' in flags: "
        "it is already written at line 3; YAML would silently keep only the last one.",
        "flags.yaml:14:1: error: duplicate key 'version' at the top level: "
        "it is already written at line 1; YAML would silently keep only the last one.",
    ]


def test_duplicate_key_that_is_not_a_schema_word_is_not_named() -> None:
    # Such a key could be a user id written where a mapping was not expected.
    problems = run("segments:\n  s:\n    users: [a]\n    alice123: 1\n    alice123: 2\n")
    duplicate = next(p for p in problems if "duplicate" in p.message)
    assert duplicate.line == 5
    assert "alice123" not in duplicate.message
    assert duplicate.message.startswith("duplicate this key in segments.s:")


def test_user_targeted_to_two_modes_points_at_the_second_without_naming_the_user() -> None:
    problem = only(
        """
        flags:
          unified_router:
            routes: [main]
            targets:
              unified: [alice, "0042"]
              shadow:
                - carol
                - "0042"
        """
    )
    assert (problem.line, problem.column) == (8, 11)
    assert problem.message == (
        "flags.unified_router.targets.shadow[1]: this user id is also listed at "
        "targets.unified[1]; a user can be targeted to only one mode."
    )
    assert "0042" not in str(problem)


def test_unreachable_rule_is_a_warning_at_the_rule() -> None:
    problem = only(
        """
        flags:
          unified_router:
            routes: [main]
            rules:
              - name: acme
                when: [{claim: org, equals: acme}]
                mode: unified
              - name: acme_pros
                when: [{claim: org, equals: acme}, {claim: plan, equals: pro}]
                mode: shadow
        """
    )
    assert (problem.line, problem.column, problem.severity) == (8, 9, "warning")
    assert problem.message == (
        "flags.unified_router.rules[1]: rule 'acme_pros' can never apply: every user it "
        "matches also matches rule 'acme' (rules[0]), which comes first and applies to all "
        "of them."
    )


def test_a_rule_behind_a_partial_rollout_rule_is_reachable() -> None:
    assert (
        run(
            """
            flags:
              f:
                routes: [main]
                rules:
                  - {name: some, when: [{claim: org, equals: acme}], mode: unified, rollout: 10}
                  - {name: rest, when: [{claim: org, equals: acme}], mode: shadow}
            """
        )
        == []
    )


def test_unknown_segment_lists_the_defined_ones() -> None:
    problems = run(
        """
        segments:
          beta: {users: [u1]}
        flags:
          f:
            routes: [main]
            rules:
              - name: r
                segment: betta
                mode: shadow
        """
    )
    error = next(p for p in problems if p.severity == "error")
    assert (error.line, error.column) == (8, 9)
    assert error.message == "flags.f.rules[0].segment: unknown segment 'betta'; segments are beta."


def test_unused_segment_is_a_warning_at_its_definition() -> None:
    problem = only(
        """
        segments:
          used: {users: [u1]}
          forgotten: {when: [{claim: org, equals: acme}]}
        flags:
          f:
            routes: [main]
            rules: [{name: r, segment: used, mode: shadow}]
        """
    )
    assert (problem.line, problem.column, problem.severity) == (3, 3, "warning")
    assert problem.message == "segments.forgotten: no rule uses this segment."


def test_unknown_route_is_checked_against_known_routes_only_when_given() -> None:
    text = """
        flags:
          f:
            routes:
              - main
              - mian
        """
    problem = only(text)
    assert (problem.line, problem.column) == (5, 9)
    assert problem.message == (
        "flags.f.routes[1]: unknown route 'mian'; known routes are factory, isolated, main."
    )
    assert run(text, known_routes=None) == []


def test_route_claimed_by_two_flags_points_at_the_second_claim() -> None:
    problem = only("flags:\n  a: {routes: [main]}\n  b:\n    routes: [factory, main]\n")
    assert (problem.line, problem.column) == (4, 23)
    assert "claimed by both flags 'a' and 'b'" in problem.message


def test_missing_routes_is_reported_at_the_flag() -> None:
    problem = only("flags:\n  f:\n    default: shadow\n")
    assert (problem.line, problem.column) == (2, 3)
    assert problem.message == "flags.f.routes: is required: list the routes this flag covers."


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rollout:\n      unified: 101\n",
            5,
            7,
            "flags.f.rollout.unified: must be a percentage from 0 to 100, not 101.",
            id="share-over-100",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rollout:\n      unified: 60\n      shadow: 41\n",
            4,
            5,
            "flags.f.rollout: the shares add up to 101%, more than 100%.",
            id="shares-add-up-over-100",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n"
            "      - {name: r, when: [{claim: o, exists: true}], mode: live, rollout: 150}\n",
            5,
            65,
            "flags.f.rules[0].rollout: must be a percentage from 0 to 100, not 150.",
            id="rule-share-over-100",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rollout: {unified: 0.125}\n",
            4,
            15,
            "flags.f.rollout.unified: 0.125 has more than 2 decimals; the finest step is 0.01%.",
            id="share-too-fine",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rollout: {legacy: 10}\n",
            4,
            15,
            "flags.f.rollout.legacy: legacy has no share: it gets whoever the other modes "
            "leave; rollout keys are unified, live, shadow.",
            id="legacy-share",
        ),
    ],
)
def test_percentages_out_of_range(text: str, line: int, column: int, message: str) -> None:
    problem = only(text)
    assert (problem.line, problem.column, problem.severity) == (line, column, "error")
    assert problem.message == message


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    anonymous: unifed\n",
            4,
            5,
            "flags.f.anonymous: unknown mode 'unifed'; modes are legacy, shadow, live, unified.",
            id="unknown-mode",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n"
            "      - {name: r, when: [{claim: o, exists: true}], mode: fast}\n",
            5,
            53,
            "flags.f.rules[0].mode: unknown mode 'fast'; modes are legacy, shadow, live, unified.",
            id="unknown-rule-mode",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    targets:\n      shaddow: [u1]\n",
            4,
            5,
            "flags.f.targets: key 'shaddow' (did you mean 'shadow'?) is not a mode; targets "
            "maps each mode (legacy, shadow, live, unified) to a list of user ids.",
            id="unknown-target-mode",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rollout: {turbo: 5}\n",
            4,
            15,
            "flags.f.rollout.turbo: unknown mode 'turbo'; rollout keys are unified, live, shadow.",
            id="unknown-rollout-mode",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    default: shadow\n    rolout: {unified: 5}\n",
            5,
            5,
            "flags.f.rolout: unknown key 'rolout' in flags.f; allowed keys are routes, default, "
            "anonymous, kill_switch, targets, rules, rollout, effective_at, before, on_change, "
            "guard.",
            id="unknown-flag-key",
        ),
        pytest.param(
            "version: 1\nflag:\n  f: {routes: [main]}\n",
            2,
            1,
            "flag: unknown key 'flag' at the top level; allowed keys are version, segments, flags.",
            id="unknown-top-key",
        ),
        pytest.param(
            "version: 2\n",
            1,
            1,
            "version: only version 1 is supported.",
            id="version",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    targets:\n      unified: [0123]\n",
            5,
            17,
            "flags.f.targets.unified[0]: this user id is read by YAML as a number with a "
            "different spelling (leading zero, underscore, colon or prefix); put it in quotes.",
            id="spelled-number-user-id",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    kill_switch: yes please\n",
            4,
            5,
            "flags.f.kill_switch: must be true or false, not a string.",
            id="kill-switch-not-bool",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n      - name: a\n"
            "        when: [{claim: o, exists: true}]\n        mode: live\n"
            "      - name: a\n        when: [{claim: p, exists: true}]\n        mode: live\n",
            8,
            9,
            "flags.f.rules[1].name: rule 'a' is already defined at rules[0]; rule names must "
            "be unique within a flag.",
            id="duplicate-rule-name",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n      - name: everyone\n"
            "        mode: unified\n",
            5,
            9,
            "flags.f.rules[0]: needs 'when' (conditions) or 'segment', or both: a rule for "
            "everyone is what default and rollout are for.",
            id="rule-without-conditions",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n      - name: r\n"
            "        when:\n          - {claim: org, equals: a, one_of: [b]}\n"
            "        mode: live\n",
            7,
            37,
            "flags.f.rules[0].when[0].one_of: a condition has one operator, this one has equals "
            "and one_of; write one condition per test (all of them must hold).",
            id="two-operators",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n      - name: r\n"
            "        when:\n          - {claim: org, exists: maybe}\n        mode: live\n",
            7,
            26,
            "flags.f.rules[0].when[0].exists: must be true or false, not a string.",
            id="exists-not-bool",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    effective_at: 2030-01-01T09:00:00\n",
            4,
            5,
            "flags.f.effective_at: needs a timezone (Z or an offset such as +01:00): without "
            "one, replicas in different zones would switch at different moments.",
            id="naive-effective-at",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    before: {default: shadow}\n",
            4,
            5,
            "flags.f.before: only applies with effective_at: it says how to serve until then.",
            id="before-without-effective-at",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    on_change:\n      drain: {rate: 0}\n",
            5,
            15,
            "flags.f.on_change.drain.rate: must be a positive number (connections per "
            "second), not 0.",
            id="drain-rate-zero",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    guard:\n      max_mismatch_ratio: 5\n",
            5,
            7,
            "flags.f.guard.max_mismatch_ratio: must be a ratio from 0 to 1 (0.05 is 5%), not 5.",
            id="guard-ratio-over-1",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    guard: {window: 60}\n",
            4,
            5,
            "flags.f.guard: needs at least one of max_mismatch_ratio, max_unified_error_ratio, "
            "max_unified_turn_failure_ratio.",
            id="guard-without-ratio",
        ),
    ],
)
def test_each_error_is_reported_at_its_line(
    text: str, line: int, column: int, message: str
) -> None:
    problem = only(text)
    assert (problem.line, problem.column, problem.severity) == (line, column, "error")
    assert problem.message == message


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n"
            "      - {name: never, when: [{claim: o, exists: true}], mode: live, rollout: 0}\n",
            5,
            69,
            "flags.f.rules[0].rollout: rollout 0 means this rule never applies.",
            id="rule-rollout-zero",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    rules:\n      - name: r\n"
            "        when:\n          - {claim: email, ends_with: acme.com}\n        mode: live\n",
            7,
            28,
            "flags.f.rules[0].when[0].ends_with: this suffix has no '@' or '.' in front, so it "
            "also matches longer domains ending in the same letters; start it with '@' for "
            "addresses or '.' for subdomains.",
            id="ends-with-without-separator",
        ),
        pytest.param(
            "flags:\n  f:\n    routes: [main]\n    effective_at: 2030-01-01T09:00:00Z\n",
            4,
            5,
            "flags.f.effective_at: has been in effect since 2030-01-01T09:00:00Z; effective_at "
            "(and before) can go.",
            id="effective-at-long-past",
        ),
    ],
)
def test_each_warning_is_reported_at_its_line(
    text: str, line: int, column: int, message: str
) -> None:
    problem = only(text)
    assert (problem.line, problem.column, problem.severity) == (line, column, "warning")
    assert problem.message == message


def test_unknown_operator_is_an_unknown_key_and_a_condition_without_operator() -> None:
    problems = run(
        """
        flags:
          f:
            routes: [main]
            rules:
              - name: r
                when:
                  - {claim: org, matches: acme}
                mode: live
        """
    )
    assert [(p.line, p.column, p.message) for p in problems] == [
        (
            7,
            13,
            "flags.f.rules[0].when[0]: needs one operator: equals, one_of, ends_with, exists.",
        ),
        (
            7,
            26,
            "flags.f.rules[0].when[0].matches: unknown key 'matches' in "
            "flags.f.rules[0].when[0]; allowed keys are claim, equals, one_of, ends_with, "
            "exists.",
        ),
    ]


def test_segment_without_users_or_conditions_is_an_error_and_unused() -> None:
    problems = run("segments:\n  empty: {}\nflags:\n  f: {routes: [main]}\n")
    assert [(p.line, p.column, p.severity, p.message) for p in problems] == [
        (
            2,
            3,
            "error",
            "segments.empty: needs 'users' (a list of user ids) or 'when' (conditions), or both.",
        ),
        (2, 3, "warning", "segments.empty: no rule uses this segment."),
    ]


def test_all_problems_come_in_file_order_with_errors_and_warnings_mixed() -> None:
    problems = run(
        """
        segments:
          unused: {users: [u1]}
        flags:
          f:
            routes: [main, nowhere]
            default: sideways
            rules:
              - {name: r, when: [{claim: o, exists: true}], mode: live, rollout: 0}
            rollout: {unified: 70, shadow: 40}
        """
    )
    assert [(p.line, p.severity) for p in problems] == [
        (2, "warning"),
        (5, "error"),
        (6, "error"),
        (8, "warning"),
        (9, "error"),
    ]


def test_an_empty_file_is_clean() -> None:
    assert lint(b"", SOURCE, now=NOW) == []
    assert lint(b"# nothing yet\n", SOURCE, now=NOW) == []


def test_a_file_that_is_not_a_mapping_is_reported_at_line_1() -> None:
    problem = only("- main\n- factory\n")
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message == "the file must be a mapping with a 'flags' key, not a list."


def test_values_nested_thousands_deep_are_one_problem_not_a_crash() -> None:
    (problem,) = lint(b"flags: " + b"[" * 5000, "deep.yaml")
    assert str(problem) == (
        "deep.yaml:1:1: error: the file is not a flag file: its values are nested too deeply."
    )
