"""Flag file validation: what a valid file means, and an error naming key and problem for
each mistake."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from strangler.flags.load import FlagFileError, parse_flags
from strangler.flags.model import FlagSet, Mode

SOURCE = "/etc/strangler/flags.yaml"
ROUTES = ("main", "factory", "isolated")


def parse(text: str, known_routes: tuple[str, ...] | None = ROUTES) -> FlagSet:
    return parse_flags(textwrap.dedent(text).encode(), SOURCE, known_routes)


def error_of(text: str, known_routes: tuple[str, ...] | None = ROUTES) -> FlagFileError:
    with pytest.raises(FlagFileError) as info:
        parse(text, known_routes)
    assert info.value.source == SOURCE
    return info.value


FULL = """
    version: 1
    flags:
      unified_router:
        routes: [main, factory]
        default: shadow
        anonymous: legacy
        kill_switch: false
        targets: {unified: [alice, 1234], shadow: ["0042"], legacy: [carol]}
        rollout: {unified: 5, live: 0.01, shadow: 12.5}
      other:
        routes: [isolated]
"""


def test_full_file_parses_into_flags_indexed_by_route() -> None:
    fs = parse(FULL)
    flag = fs.flags["unified_router"]
    assert flag.routes == ("main", "factory")
    assert (flag.default, flag.anonymous, flag.kill_switch) == (Mode.SHADOW, Mode.LEGACY, False)
    assert flag.targets == {
        "alice": Mode.UNIFIED,
        "1234": Mode.UNIFIED,
        "0042": Mode.SHADOW,
        "carol": Mode.LEGACY,
    }
    assert flag.rollout == {Mode.UNIFIED: 500, Mode.LIVE: 1, Mode.SHADOW: 1250}
    assert flag.thresholds == (500, 501, 1751)
    assert fs.by_route["main"] is flag and fs.by_route["isolated"] is fs.flags["other"]
    assert fs.source == SOURCE


def test_optional_fields_default_to_legacy_without_targets_or_rollout() -> None:
    flag = parse("flags: {f: {routes: [main]}}").flags["f"]
    assert (flag.default, flag.anonymous, flag.kill_switch) == (Mode.LEGACY, Mode.LEGACY, False)
    assert dict(flag.targets) == {} and dict(flag.rollout) == {}


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "flags: {}\n", "flags:\n", "version: 1\n"])
def test_empty_file_or_no_flags_is_valid_and_everyone_is_legacy(text: str) -> None:
    fs = parse(text)
    assert dict(fs.flags) == {} and dict(fs.by_route) == {}
    assert fs.digest == hashlib.sha256(text.encode()).hexdigest()


def test_rollout_may_add_up_to_exactly_100() -> None:
    flag = parse(
        "flags: {f: {routes: [main], rollout: {unified: 33.33, live: 33.33, shadow: 33.34}}}"
    )
    assert flag.flags["f"].thresholds == (3333, 6666, 10000)


def test_routes_are_not_checked_without_known_routes() -> None:
    assert "anything" in parse("flags: {f: {routes: [anything]}}", known_routes=None).by_route


# (YAML, expected dotted key, fragments the problem must contain)
INVALID = [
    pytest.param("- a\n- b\n", "", ["mapping", "not a list"], id="not-a-mapping"),
    pytest.param("just text\n", "", ["mapping", "not a string"], id="scalar-file"),
    pytest.param(
        "flags: {}\nflgs: {}\n", "flgs", ["unknown key 'flgs'", "top level"], id="top-key"
    ),
    pytest.param("version: 2\n", "version", ["version 1"], id="version"),
    pytest.param("flags: [a]\n", "flags", ["mapping", "not a list"], id="flags-list"),
    pytest.param(
        "flags: {Unified Router: {routes: [main]}}\n",
        "flags.Unified Router",
        ["lowercase"],
        id="flag-key",
    ),
    pytest.param("flags: {f: 5}\n", "flags.f", ["mapping", "not a number"], id="flag-not-mapping"),
    pytest.param("flags: {f: }\n", "flags.f", ["empty (null)"], id="flag-null"),
    pytest.param(
        "flags: {f: {routes: [main], rolout: {unified: 5}, target: {}}}\n",
        "flags.f.rolout",
        ["unknown keys 'rolout', 'target'", "allowed keys are"],
        id="flag-keys",
    ),
    pytest.param("flags: {f: {default: live}}\n", "flags.f.routes", ["required"], id="no-routes"),
    pytest.param("flags: {f: {routes: []}}\n", "flags.f.routes", ["non-empty"], id="empty-routes"),
    pytest.param("flags: {f: {routes: main}}\n", "flags.f.routes", ["list"], id="routes-str"),
    pytest.param(
        "flags: {f: {routes: [main, 7]}}\n", "flags.f.routes[1]", ["string"], id="route-type"
    ),
    pytest.param(
        "flags: {f: {routes: [main, main]}}\n", "flags.f.routes[1]", ["twice"], id="route-twice"
    ),
    pytest.param(
        "flags: {f: {routes: [main, nope]}}\n",
        "flags.f.routes[1]",
        ["unknown route 'nope'", "factory, isolated, main"],
        id="unknown-route",
    ),
    pytest.param(
        "flags: {f: {routes: [main], default: unifed}}\n",
        "flags.f.default",
        ["unknown mode 'unifed'", "legacy, shadow, live, unified"],
        id="unknown-mode",
    ),
    pytest.param(
        "flags: {f: {routes: [main], anonymous: 1}}\n",
        "flags.f.anonymous",
        ["mode", "not a number"],
        id="mode-type",
    ),
    pytest.param(
        "flags: {f: {routes: [main], kill_switch: 'yes please'}}\n",
        "flags.f.kill_switch",
        ["true or false"],
        id="kill-switch-type",
    ),
    pytest.param(
        "flags: {f: {routes: [main], targets: [alice]}}\n",
        "flags.f.targets",
        ["mapping"],
        id="targets-list",
    ),
    pytest.param(
        "flags: {f: {routes: [main], targets: {unifed: [x]}}}\n",
        "flags.f.targets",
        ["'unifed'", "did you mean 'unified'"],
        id="targets-mode-typo",
    ),
    pytest.param(
        "flags: {f: {routes: [main], targets: {unified: x}}}\n",
        "flags.f.targets.unified",
        ["list"],
        id="targets-not-list",
    ),
    pytest.param(
        "flags: {f: {routes: [main], targets: {unified: [x, 1.5]}}}\n",
        "flags.f.targets.unified[1]",
        ["strings", "not a number"],
        id="user-id-float",
    ),
    pytest.param(
        "flags: {f: {routes: [main], targets: {unified: [0123]}}}\n",
        "flags.f.targets.unified[0]",
        ["quotes"],
        id="user-id-leading-zero",
    ),
    pytest.param(
        "flags: {f: {routes: [main], targets: {unified: ['']}}}\n",
        "flags.f.targets.unified[0]",
        ["empty"],
        id="user-id-empty",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: [5]}}\n",
        "flags.f.rollout",
        ["mapping"],
        id="rollout-list",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {legacy: 50}}}\n",
        "flags.f.rollout.legacy",
        ["legacy has no share"],
        id="rollout-legacy",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {everyone: 5}}}\n",
        "flags.f.rollout.everyone",
        ["unknown mode 'everyone'", "unified, live, shadow"],
        id="rollout-unknown-mode",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {unified: 5%}}}\n",
        "flags.f.rollout.unified",
        ["percentage", "not a string"],
        id="rollout-string",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {unified: true}}}\n",
        "flags.f.rollout.unified",
        ["not a boolean"],
        id="rollout-bool",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {unified: -1}}}\n",
        "flags.f.rollout.unified",
        ["0 to 100"],
        id="rollout-negative",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {shadow: 100.5}}}\n",
        "flags.f.rollout.shadow",
        ["0 to 100"],
        id="rollout-over-100",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {live: 12.345}}}\n",
        "flags.f.rollout.live",
        ["more than 2 decimals"],
        id="rollout-3-decimals",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {live: .nan}}}\n",
        "flags.f.rollout.live",
        ["NaN"],
        id="rollout-nan",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {live: 010}}}\n",
        "flags.f.rollout.live",
        ["plain decimal"],
        id="rollout-octal",
    ),
    pytest.param(
        "flags: {f: {routes: [main], rollout: {unified: 60, live: 30, shadow: 10.5}}}\n",
        "flags.f.rollout",
        ["100.5%", "more than 100%"],
        id="rollout-sum",
    ),
    pytest.param(
        "flags:\n  a: {routes: [main]}\n  b: {routes: [factory, main]}\n",
        "flags.b.routes[1]",
        ["route 'main'", "flags 'a' and 'b'"],
        id="route-claimed-twice",
    ),
    pytest.param(
        "flags:\n  f:\n    routes: [main]\n    rollout: {unified: 5}\n    rollout: {unified: 50}\n",
        "",
        ["line 5, column 5", "duplicate key"],
        id="duplicate-key",
    ),
    pytest.param(
        "flags:\n  f:\n    routes: [main\n    default: live\n",
        "",
        ["not valid YAML", "line 4, column"],
        id="yaml-syntax",
    ),
]


@pytest.mark.parametrize(("text", "key", "fragments"), INVALID)
def test_invalid_file_raises_error_naming_key_and_problem(
    text: str, key: str, fragments: list[str]
) -> None:
    err = error_of(text)
    assert err.key == key
    for fragment in fragments:
        assert fragment in err.problem


def test_user_in_two_target_lists_points_at_both_without_naming_the_user() -> None:
    err = error_of(
        "flags: {f: {routes: [main], targets: {unified: [a, secret-user], shadow: [secret-user]}}}"
    )
    assert err.key == "flags.f.targets.shadow[0]"
    assert "targets.unified[1]" in err.problem and "only one mode" in err.problem
    assert "secret-user" not in str(err)


def test_user_id_written_as_target_mode_is_not_echoed() -> None:
    err = error_of("flags: {f: {routes: [main], targets: {secret-user: unified}}}")
    assert err.key == "flags.f.targets" and "not a mode" in err.problem
    assert "secret-user" not in str(err)


def test_a_guard_may_limit_the_failure_ratio_of_unified_turns() -> None:
    flags = parse(
        "flags:\n  f:\n    routes: [main]\n"
        "    guard: {max_unified_turn_failure_ratio: 0.02, min_samples: 200}\n"
    )
    guard = flags.flags["f"].guard
    assert guard is not None
    assert (guard.max_unified_turn_failure_ratio, guard.min_samples) == (0.02, 200)
    assert guard.max_mismatch_ratio is None and guard.max_unified_error_ratio is None
    with pytest.raises(FlagFileError, match="max_unified_turn_failure_ratio: must be a ratio"):
        parse("flags:\n  f:\n    routes: [main]\n    guard: {max_unified_turn_failure_ratio: 2}\n")
