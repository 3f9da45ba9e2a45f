"""The status page renderer: every section, empty states, and hostile text kept as text."""

from __future__ import annotations

from strangler.proxy.admin.status_page import (
    FlagView,
    MismatchView,
    StatusSnapshot,
    guard_text,
    render,
)
from tests.html_tree import Element, parse, table_rows

NOW = 1_800_000_000.0
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
                shares={"legacy": 0.75, "unified": 0.05, "shadow": 0.2},
                targets={"unified": 2, "shadow": 1},
                rules=("staff",),
                drain_rate=2.0,
                guard={"max_mismatch_ratio": 0.05, "window": 300.0},
            ),
        ),
        "routes": ("main", "factory", "legacy"),
        "connections": {"main": {"unified": 2, "legacy": 1}, "factory": {"shadow": 1}},
        "drift": {"main": 1},
        "audit": (
            {
                "at": NOW - 5,
                "outcome": "applied",
                "old_hash": "aaaaaaaaaaaa",
                "new_hash": "0123456789ab",
                "changes": [
                    {
                        "flag": "unified_router",
                        "change": "changed",
                        "fields": {"rollout": {"from": {}, "to": {"unified": 500}}},
                    }
                ],
                "error": None,
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
        "guards": {"unified_router": {"tripped": False, "mismatch_ratio": 0.01}},
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
    assert flag.find("span", data_mode="unified").text == "unified 5%"
    assert flag.find("span", data_mode="legacy").text == "legacy 75%"
    assert flag.find("td", class_="kill").text == "off"
    assert "2.0/s" in flag.find("td", class_="drain").text
    assert flag.find("td", class_="guard").text == "back to legacy on mismatches over 5% in 300 s"
    assert flag.find("td", class_="targets").text == "shadow: 1, unified: 2"

    reload = doc.by_id("audit").find("tr", class_="reload")
    assert reload.find("td", class_="outcome").text == "applied"
    assert "aaaaaaaaaaaa" in reload.find("td", class_="hashes").text
    assert "unified_router: changed" in reload.find("td", class_="changes").text

    mismatch = doc.by_id("mismatches").find("tr", data_route="main")
    assert mismatch.find("td", class_="turn").text == "1"
    assert mismatch.find("td", class_="categories").text == "tool_set"

    guard = doc.by_id("guards").find("tr", data_flag="unified_router")
    assert guard.find("dd", data_key="tripped").text == "false"


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


def test_a_guard_reads_as_a_sentence_and_an_unknown_shape_as_it_is() -> None:
    both = {
        "max_mismatch_ratio": 0.02,
        "max_unified_error_ratio": 0.125,
        "min_samples": 200,
        "window": 60.0,
    }
    assert guard_text(both) == (
        "back to legacy on mismatches over 2% or unified errors over 12.5% "
        "of at least 200 samples in 60 s"
    )
    assert guard_text({"window": 60.0}) == '{"window": 60.0}'
