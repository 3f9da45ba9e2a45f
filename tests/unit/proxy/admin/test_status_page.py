"""The status page renderer: every section, empty states, hostile text kept as text, and
every value a person reads written as a sentence (no JSON, no basis points, no user ids)."""

from __future__ import annotations

import calendar
import re

from strangler.proxy.admin.status_page import (
    FlagView,
    MismatchView,
    StatusSnapshot,
    render,
    targets_text,
)
from tests.html_tree import Element, parse, table_rows

# 2027-01-15 08:00:00 UTC
NOW = float(calendar.timegm((2027, 1, 15, 8, 0, 0)))
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"\''


def full_snapshot(**overrides: object) -> StatusSnapshot:
    values: dict[str, object] = {
        "generated_at": NOW,
        "flags_hash": "0123456789ab",
        "flags_source": "/etc/strangler/flags.yaml",
        "loaded_at": NOW - 30,
        "last_error": None,
        "flags": (
            FlagView(
                key="unified_router",
                routes=("main", "factory"),
                default="legacy",
                anonymous="legacy",
                kill_switch=False,
                shares={"legacy": 75, "unified": 5, "shadow": 19.5, "live": 0.5},
                targets={"unified": 2, "shadow": 1},
                rules=("staff",),
                drain_rate=2.0,
                guard={"max_mismatch_ratio": 0.05, "window": 300.0, "min_samples": 100},
            ),
        ),
        "routes": ("main", "factory", "legacy"),
        "connections": {"main": {"unified": 2, "legacy": 1}, "factory": {"shadow": 1}},
        "drift": {"main": 1},
        "audit": (  # newest first, as /flags/audit has them
            {
                "at": NOW - 2,
                "outcome": "guard_tripped",
                "old_hash": "0123456789ab",
                "new_hash": "0123456789ab",
                "flag": "unified_router",
                "guard": "mismatch_ratio",
                "ratio": 0.0625,
                "limit": 0.05,
                "samples": 160,
                "changes": [],
                "error": None,
            },
            {
                "at": NOW - 5,
                "outcome": "applied",
                "old_hash": "aaaaaaaaaaaa",
                "new_hash": "0123456789ab",
                "changes": [
                    {
                        "flag": "unified_router",
                        "change": "changed",
                        "fields": {
                            "rollout": {"from": {"unified": 0}, "to": {"unified": 5, "live": 0.5}},
                            "targets": {"unified": "+1 -0"},
                        },
                    }
                ],
                "error": None,
            },
            {
                "at": NOW - 8,
                "outcome": "rejected",
                "old_hash": "aaaaaaaaaaaa",
                "new_hash": None,
                "changes": [],
                "error": "flags.yaml:9:14: flags.unified_router.rollout.unified: must be 0..100",
            },
            {
                "at": NOW - 9,
                "outcome": "unchanged",
                "old_hash": "aaaaaaaaaaaa",
                "new_hash": None,
                "changes": [],
                "error": None,
            },
            {
                "at": NOW - 10,
                "outcome": "applied",
                "old_hash": "aaaaaaaaaaaa",
                "new_hash": "aaaaaaaaaaaa",
                "changes": [],
                "error": None,
                "startup": True,
            },
        ),
        "mismatches": (
            MismatchView(
                at=NOW - 2,
                route="main",
                mode="shadow",
                turn=1,
                request_type="start_agent",
                outcome="mismatch",
                categories=("tool_set",),
            ),
        ),
        "guards": {  # the shape of /flags/status guards (proxy.release.guards)
            "unified_router": {
                "tripped": True,
                "window_seconds": 300.0,
                "min_samples": 100,
                "watching": {
                    "mismatch_ratio": {"limit": 0.05, "samples": 160, "bad": 10, "ratio": 0.0625}
                },
                "trip": {
                    "guard": "mismatch_ratio",
                    "ratio": 0.0625,
                    "limit": 0.05,
                    "samples": 160,
                    "at": NOW - 2,
                },
            },
            "other": {
                "tripped": False,
                "window_seconds": 60.0,
                "min_samples": 100,
                "watching": {
                    "mismatch_ratio": {"limit": 0.05, "samples": 120, "bad": 1, "ratio": 1 / 120},
                    "unified_error_ratio": {"limit": 0.02, "samples": 0, "bad": 0, "ratio": None},
                },
                "trip": None,
            },
        },
    }
    values.update(overrides)
    return StatusSnapshot(**values)  # type: ignore[arg-type]


def page(snapshot: StatusSnapshot) -> Element:
    return parse(render(snapshot))


def test_every_section_is_present_with_its_numbers() -> None:
    doc = page(full_snapshot())
    for ident in (
        "summary",
        "section-flags",
        "section-connections",
        "section-audit",
        "section-mismatches",
        "section-guards",
    ):
        doc.by_id(ident)
    assert doc.by_id("flags-hash").text == "0123456789ab"
    assert doc.by_id("flags-error").text == "none"
    assert doc.by_id("open-total").text == "4"
    assert doc.by_id("shadow-switch").text == "on, 0 secondary connections"
    one = page(full_snapshot(secondary_connections=1, shadow_enabled=False))
    assert one.by_id("shadow-switch").text == "off, 1 secondary connection"

    rows = table_rows(doc.by_id("connections"), lambda r: r.attrs["data-route"])
    assert list(rows) == ["main", "factory", "legacy"]
    main = rows["main"]
    assert main.find("td", data_mode="unified").text == "2"
    assert main.find("td", data_mode="legacy").text == "1"
    assert main.find("td", data_mode="shadow").text == "0"
    assert main.find("td", class_="drift").text == "1"
    assert rows["factory"].find("td", data_mode="shadow").text == "1"
    assert rows["legacy"].find("td", class_="total").text == "0"

    flag = doc.by_id("flags").find("tr", data_flag="unified_router")
    assert flag.find("td", class_="routes").text == "main, factory"
    assert flag.find("span", data_mode="unified").text == "5% unified"
    assert flag.find("span", data_mode="legacy").text == "75% legacy"
    assert flag.find("td", class_="kill").text == "off"
    assert flag.find("td", class_="drain").text == "close moved connections at 2/s"
    assert flag.find("td", class_="guard").text == (
        "tripped: held on legacy; "
        "back to legacy on mismatches over 5% of at least 100 samples in 300 s"
    )

    mismatch = doc.by_id("mismatches").find("tr", data_route="main")
    assert mismatch.find("td", class_="turn").text == "1"
    assert mismatch.find("td", class_="categories").text == "tool_set"


def test_rollout_shares_and_targets_are_labelled_by_how_users_get_them() -> None:
    flag = page(full_snapshot()).by_id("flags").find("tr", data_flag="unified_router")
    # Forward modes first, legacy last; percent as the file writes it, decimals exact.
    assert flag.find("td", class_="shares").text == (
        "by percentage rollout: 5% unified, 0.5% live, 19.5% shadow, 75% legacy"
    )
    assert (
        flag.find("td", class_="targets").text == "by target: 2 users on unified, 1 user on shadow"
    )
    assert flag.find("td", class_="rules").text == "by rule: staff"
    assert flag.find("td", class_="default").text == "legacy (anonymous users: legacy)"
    assert targets_text({}) == "by target: nobody"
    assert targets_text({"unified": 1, "shadow": 0}) == "by target: 1 user on unified"


def test_reloads_and_trips_read_as_sentences_newest_first() -> None:
    rows = page(full_snapshot()).by_id("audit").find("tbody").find_all("tr")
    events = [(row.attrs["data-outcome"], row.find("td", class_="event").text) for row in rows]
    assert events == [
        ("guard_tripped", "guard tripped on unified_router"),
        ("applied", "applied flags 0123456789ab, replacing aaaaaaaaaaaa"),
        ("rejected", "rejected a flag file; flags aaaaaaaaaaaa stay in force"),
        ("unchanged", "reloaded, no change"),
        ("applied", "started with flags aaaaaaaaaaaa"),
    ]
    trip, applied, rejected, unchanged, started = rows
    assert [li.text for li in trip.find_all("li")] == [
        "mismatch ratio 6.25% over 160 comparisons (limit 5%); "
        "new connections go to legacy until the flag file changes"
    ]
    assert [li.text for li in applied.find_all("li")] == [
        "unified_router: rollout unified 0% → 5%, live 0% → 0.5%",
        "unified_router: targets: 1 user added to unified",
    ]
    error = rejected.find("span", class_="error")
    assert error.text.endswith("rollout.unified: must be 0..100")
    assert "bad" in error.attrs["class"].split()
    assert unchanged.find("td", class_="changes").text == ""
    assert started.find("td", class_="changes").text == ""
    assert trip.find("td", class_="at").text == "2027-01-15 07:59:58 UTC (2 s ago)"


def test_guards_read_as_clear_or_tripped_with_a_sentence() -> None:
    guards = table_rows(page(full_snapshot()).by_id("guards"), lambda r: r.attrs["data-flag"])
    assert list(guards) == ["other", "unified_router"]
    tripped, clear = guards["unified_router"], guards["other"]
    assert tripped.attrs["data-state"] == "tripped"
    assert tripped.find("td", class_="state").text == "tripped"
    assert [li.text for li in tripped.find_all("li")] == [
        "tripped at 07:59:58 UTC: mismatch ratio 6.25% over 160 comparisons (limit 5%); "
        "new connections go to legacy until the flag file changes"
    ]
    assert clear.find("td", class_="state").text == "clear"
    assert [li.text for li in clear.find_all("li")] == [
        "watching the mismatch ratio: 0.83% of 120 comparisons in the last 60 s; "
        "trips above 5% after 100 samples",
        "watching the unified error ratio: no unified interactions in the last 60 s yet; "
        "trips above 2% after 100 samples",
    ]


def test_what_a_person_reads_has_no_json_and_no_basis_points() -> None:
    text = page(full_snapshot()).find("body").text
    for structure in ("{", "}", "[", "]", "null", "None", "true", "false", '"'):
        assert structure not in text, structure
    # Where rollout values show, none is in basis points (5% would be 500, 0.5% 50).
    doc = page(full_snapshot())
    cells = doc.find_all("td", class_="shares") + doc.find_all("td", class_="changes")
    shown = " ".join(cell.text for cell in cells)
    assert "0.5%" in shown and "19.5%" in shown
    assert not re.search(r"\b(500|50|1950|7500)\b", shown)


def test_empty_states_say_so() -> None:
    doc = page(
        StatusSnapshot(
            generated_at=NOW,
            flags_hash="",
            flags_source="flags.yaml",
            loaded_at=None,
            last_error=None,
        )
    )
    assert doc.by_id("no-flags").text.startswith("no flags")
    assert doc.by_id("no-connections").text == "no routes configured"
    assert doc.by_id("no-audit").text == "no reloads recorded"
    assert doc.by_id("no-mismatches").text == "no shadow mismatches recorded"
    assert doc.by_id("no-guards").text == "no guards configured"
    assert doc.by_id("flags-loaded-at").text == "never"
    assert doc.find_all("table") == []


def test_a_kill_switch_and_a_reload_error_stand_out() -> None:
    flag = full_snapshot().flags[0]
    doc = page(
        full_snapshot(
            flags=(
                FlagView(
                    key=flag.key,
                    routes=flag.routes,
                    default="legacy",
                    anonymous="legacy",
                    kill_switch=True,
                    shares={"legacy": 1.0},
                ),
            ),
            last_error="flags.yaml: flags.unified_router.rollout: out of range",
        )
    )
    error = doc.by_id("flags-error")
    assert "bad" in error.attrs["class"].split()
    assert error.text.endswith("out of range")
    assert doc.find("td", class_="kill").text == "ON"


def test_hostile_strings_stay_text() -> None:
    snapshot = full_snapshot(
        flags_source=HOSTILE,
        last_error=HOSTILE,
        flags=(
            FlagView(
                key=HOSTILE,
                routes=(HOSTILE,),
                default="legacy",
                anonymous="legacy",
                kill_switch=False,
                shares={HOSTILE: 1.0},
                targets={HOSTILE: 1},
                rules=(HOSTILE,),
                guard={HOSTILE: HOSTILE},
            ),
        ),
        routes=(HOSTILE,),
        connections={HOSTILE: {"legacy": 1}},
        drift={HOSTILE: 1},
        audit=(
            {
                "at": HOSTILE,
                "outcome": HOSTILE,
                "old_hash": HOSTILE,
                "new_hash": HOSTILE,
                "changes": [{"flag": HOSTILE, "change": HOSTILE, "fields": {HOSTILE: HOSTILE}}],
                "error": HOSTILE,
            },
        ),
        mismatches=(MismatchView(NOW, HOSTILE, HOSTILE, 1, HOSTILE, HOSTILE, (HOSTILE,)),),
        guards={HOSTILE: {HOSTILE: HOSTILE}, "other": HOSTILE},
    )
    text = render(snapshot)
    doc = parse(text)
    # Nothing the snapshot carried became markup...
    assert doc.find_all("script") == []
    assert doc.find_all("img") == []
    assert not any(k.startswith("on") for el in doc.iter() for k in el.attrs)
    assert "<script>" not in text
    # ...and it is all still there for a person to read, as text and as attribute values.
    assert doc.by_id("flags-error").text == " ".join(HOSTILE.split())
    assert doc.by_id("connections").find("tr", data_route=HOSTILE)
    assert doc.by_id("flags").find("tr", data_flag=HOSTILE)
    assert doc.by_id("mismatches").find("tr", data_route=HOSTILE)
    assert (
        doc.by_id("guards").find("tr", data_flag="other").text.endswith(" ".join(HOSTILE.split()))
    )
    changes = doc.by_id("audit").find("td", class_="changes").text
    assert changes == f"flag {' '.join(HOSTILE.split())}: {' '.join(HOSTILE.split())}"


def test_the_page_is_self_contained() -> None:
    doc = page(full_snapshot())
    assert doc.find_all("script") == []
    assert doc.find_all("link") == []
    assert not [el for el in doc.iter() if "src" in el.attrs or "href" in el.attrs]
    refresh = doc.find("meta", http_equiv="refresh")
    assert refresh.attrs["content"] == "5"


def test_no_refresh_when_turned_off() -> None:
    doc = page(full_snapshot(refresh_seconds=0))
    assert doc.find_all("meta", http_equiv="refresh") == []


def test_golden_path_reliability_reads_per_route_and_backend_against_the_objective() -> None:
    snapshot = full_snapshot(
        reliability={
            "main": {
                "legacy": {"turns": 2000, "completed": 1999, "ratio": 0.9995},
                "unified": {"turns": 1000, "completed": 994, "ratio": 0.994},
            },
            "factory": {"unified": {"turns": 1, "completed": 1, "ratio": 1.0}},
        }
    )
    doc = page(snapshot)
    assert doc.by_id("objective").text == "99.5%"
    rows = table_rows(doc.by_id("reliability"), lambda r: r.attrs["data-route"])
    assert list(rows) == ["main", "factory", "legacy"]  # every configured route

    def cells(route: str) -> dict[str, tuple[str, str]]:
        return {
            td.attrs["data-backend"]: (td.text, td.attrs["class"])
            for td in rows[route].find_all("td")
        }

    assert cells("main") == {
        "legacy": ("99.95% of 2000 turns", "reliability ok"),
        "unified": ("99.4% of 1000 turns, below the 99.5% objective", "reliability bad"),
    }
    assert cells("factory") == {
        "legacy": ("no turns ended", "reliability none"),
        "unified": ("100% of 1 turn", "reliability ok"),
    }
    assert cells("legacy")["unified"] == ("no turns ended", "reliability none")


def test_another_objective_and_a_shape_the_page_does_not_know() -> None:
    doc = page(
        full_snapshot(
            objective=99.9,
            reliability={"main": {"legacy": {"turns": 1000, "completed": 999}, "unified": [1]}},
        )
    )
    assert doc.by_id("objective").text == "99.9%"
    main = doc.by_id("reliability").find("tr", data_route="main")
    assert main.find("td", data_backend="legacy").text == "99.9% of 1000 turns"
    assert main.find("td", data_backend="unified").text == "no turns ended"
