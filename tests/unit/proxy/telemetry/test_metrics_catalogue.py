"""docs/METRICS.md against proxy.metrics: the catalogue lists exactly the metrics the
proxy registers, with their types, label names and (where a bounded enumeration in the
code defines them) label values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args, get_type_hints

from prometheus_client.metrics import MetricWrapperBase

from strangler.flags.model import Mode, Reason
from strangler.flags.watch import ReloadResult
from strangler.proxy.edge.identity import AUTH_REASONS
from strangler.proxy.shadow.verdict import Category, Outcome, Side
from strangler.proxy.telemetry import metrics as metrics_module
from strangler.proxy.telemetry.metrics import Metrics, WorkerSample, WorkerStatsCollector

CATALOGUE = Path(__file__).resolve().parents[4] / "docs" / "METRICS.md"

_MODES = tuple(m.value for m in Mode)
_BACKENDS = tuple(s.value for s in Side)

# Where a label's values come from in the code: (exposed metric name, label) -> values.
# A label listed here must show exactly these values in the catalogue; a label whose
# values the catalogue lists as code values must be listed here.
BOUNDED: dict[tuple[str, str], tuple[str, ...]] = {
    ("strangler_connections_open", "mode"): _MODES,
    ("strangler_connections_total", "mode"): _MODES,
    ("strangler_connections_total", "outcome"): metrics_module.OUTCOMES,
    ("strangler_messages_total", "backend"): _BACKENDS,
    ("strangler_messages_total", "direction"): metrics_module.DIRECTIONS,
    ("strangler_bytes_total", "backend"): _BACKENDS,
    ("strangler_bytes_total", "direction"): metrics_module.DIRECTIONS,
    ("strangler_upstream_connect_seconds", "backend"): _BACKENDS,
    ("strangler_upstream_connect_failures_total", "backend"): _BACKENDS,
    ("strangler_upstream_connect_failures_total", "reason"): metrics_module.CONNECT_FAILURES,
    ("strangler_handshake_refusals_total", "reason"): metrics_module.REFUSALS,
    ("strangler_auth_failures_total", "reason"): tuple(AUTH_REASONS),
    ("strangler_bad_input_total", "reason"): metrics_module.BAD_INPUT,
    ("strangler_admin_refusals_total", "reason"): metrics_module.ADMIN_REFUSALS,
    ("strangler_flag_evaluations_total", "mode"): _MODES,
    ("strangler_flag_evaluations_total", "reason"): tuple(r.value for r in Reason),
    ("strangler_flag_reloads_total", "result"): get_args(get_type_hints(ReloadResult)["outcome"]),
    ("strangler_flag_rollout_share", "mode"): _MODES,
    ("strangler_guard_trips_total", "guard"): tuple(metrics_module.GUARDS),
    ("strangler_guard_observations_total", "guard"): tuple(metrics_module.GUARDS),
    ("strangler_guard_observations_total", "result"): metrics_module.GUARD_RESULTS,
    ("strangler_secondary_connections_open", "backend"): _BACKENDS,
    ("strangler_secondary_skipped_total", "reason"): metrics_module.SECONDARY_SKIPS,
    ("strangler_secondary_failures_total", "backend"): _BACKENDS,
    ("strangler_secondary_failures_total", "reason"): metrics_module.SECONDARY_FAILURES,
    ("strangler_secondary_dropped_frames_total", "queue"): metrics_module.SECONDARY_QUEUES,
    ("strangler_comparisons_total", "mode"): _MODES,
    ("strangler_comparisons_total", "outcome"): tuple(o.value for o in Outcome),
    ("strangler_mismatches_total", "mode"): _MODES,
    ("strangler_mismatches_total", "category"): tuple(c.value for c in Category),
    ("strangler_turn_duration_seconds", "backend"): _BACKENDS,
    ("strangler_turn_first_event_seconds", "backend"): _BACKENDS,
    ("strangler_turns_started_total", "mode"): _MODES,
    ("strangler_turns_started_total", "backend"): _BACKENDS,
    ("strangler_turns_total", "mode"): _MODES,
    ("strangler_turns_total", "backend"): _BACKENDS,
    ("strangler_turns_total", "outcome"): metrics_module.TURN_OUTCOMES,
    ("strangler_turn_missing_events_total", "mode"): _MODES,
    ("strangler_turn_missing_events_total", "backend"): _BACKENDS,
    ("strangler_turn_missing_events_total", "event"): metrics_module.GOLDEN_PATH,
    ("strangler_turn_time_to_first_event_seconds", "mode"): _MODES,
    ("strangler_turn_time_to_first_event_seconds", "backend"): _BACKENDS,
    ("strangler_turn_time_to_complete_seconds", "mode"): _MODES,
    ("strangler_turn_time_to_complete_seconds", "backend"): _BACKENDS,
}


@dataclass
class Entry:
    """One metric as the catalogue or the code describes it."""

    kind: str
    labels: list[str] = field(default_factory=list)
    # label -> listed code values; None where the catalogue describes them in words.
    values: dict[str, tuple[str, ...] | None] = field(default_factory=dict)


_HEADING = re.compile(r"^### `([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*$")
_TYPE = re.compile(r"^Type: (counter|gauge|histogram|summary|info)\.")
_ROW = re.compile(r"^\| `([a-zA-Z_][a-zA-Z0-9_]*)` \| (.+) \|\s*$")
_VALUE_LIST = re.compile(r"^`[^`]+`(, `[^`]+`)*$")


def parse_catalogue(text: str) -> dict[str, Entry]:
    """Entries by exposed name. Raises ValueError on an entry without a type."""
    entries: dict[str, Entry] = {}
    current: str | None = None
    for line in text.splitlines():
        if m := _HEADING.match(line):
            current = m.group(1)
            if current in entries:
                raise ValueError(f"{current} is catalogued twice")
            entries[current] = Entry(kind="")
        elif current is not None and (m := _TYPE.match(line)):
            entries[current].kind = m.group(1)
        elif current is not None and (m := _ROW.match(line)):
            label, cell = m.group(1), m.group(2).strip()
            entry = entries[current]
            entry.labels.append(label)
            listed = _VALUE_LIST.match(cell) is not None
            entry.values[label] = tuple(v.strip("`") for v in cell.split(", ")) if listed else None
    for name, entry in entries.items():
        if not entry.kind:
            raise ValueError(f"{name} has no 'Type: ...' line")
    return entries


def registered(m: Metrics) -> dict[str, Entry]:
    """Entries by exposed name, from what the registry actually collects, plus the
    per-worker metrics the supervisor of `--workers N` adds."""
    m.registry.register(WorkerStatsCollector(lambda: [WorkerSample(0, True, 0, 1.0, 1)]))
    # The label names of a labelled metric are only kept on its wrapper object.
    wrappers = {w._name: w for w in vars(m).values() if isinstance(w, MetricWrapperBase)}
    out: dict[str, Entry] = {}
    for family in m.registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        wrapper = wrappers.get(family.name)
        if wrapper is not None:
            labels = list(wrapper._labelnames)
        else:  # collectors such as ProcessCollector: their samples carry the labels
            labels = sorted({k for s in family.samples for k in s.labels})
        out[name] = Entry(kind=family.type, labels=labels)
    return out


def differences(catalogue: dict[str, Entry], code: dict[str, Entry]) -> list[str]:
    """Every disagreement between the catalogue and the code, as readable lines."""
    out: list[str] = []
    for name in sorted(code.keys() - catalogue.keys()):
        out.append(f"{name}: registered by proxy.metrics but missing from docs/METRICS.md")
    for name in sorted(catalogue.keys() - code.keys()):
        out.append(f"{name}: in docs/METRICS.md but not registered by proxy.metrics")
    for name in sorted(code.keys() & catalogue.keys()):
        doc, real = catalogue[name], code[name]
        if doc.kind != real.kind:
            out.append(f"{name}: type {real.kind} in the code, {doc.kind} in the catalogue")
        if sorted(doc.labels) != sorted(real.labels):
            out.append(f"{name}: labels {real.labels} in the code, {doc.labels} in the catalogue")
        for label in doc.labels:
            listed = doc.values.get(label)
            source = BOUNDED.get((name, label))
            if source is None and listed is not None:
                out.append(f"{name}{{{label}}}: values listed but no code enumeration known")
            elif source is not None and listed is None:
                out.append(f"{name}{{{label}}}: the code bounds it to {source}; list them")
            elif source is not None and listed is not None and set(source) != set(listed):
                out.append(
                    f"{name}{{{label}}}: code values {sorted(source)}, catalogue {sorted(listed)}"
                )
    for name, label in sorted(BOUNDED):
        if name not in code or label not in code[name].labels:
            out.append(f"{name}{{{label}}}: enumerated in this test but not in the code")
    return out


def test_catalogue_lists_exactly_the_registered_metrics() -> None:
    catalogue = parse_catalogue(CATALOGUE.read_text())
    assert differences(catalogue, registered(Metrics())) == []


def test_a_metric_missing_from_the_catalogue_is_reported() -> None:
    catalogue = parse_catalogue(CATALOGUE.read_text())
    del catalogue["strangler_fallbacks_total"]
    assert differences(catalogue, registered(Metrics())) == [
        "strangler_fallbacks_total: registered by proxy.metrics but missing from docs/METRICS.md"
    ]


def test_a_catalogued_metric_the_code_does_not_register_is_reported() -> None:
    text = CATALOGUE.read_text() + "\n### `strangler_imaginary_total`\n\nType: counter.\n"
    problems = differences(parse_catalogue(text), registered(Metrics()))
    assert problems == [
        "strangler_imaginary_total: in docs/METRICS.md but not registered by proxy.metrics"
    ]


def test_a_wrong_type_label_or_value_is_reported() -> None:
    catalogue = parse_catalogue(CATALOGUE.read_text())
    catalogue["strangler_connection_drift"].kind = "counter"
    catalogue["strangler_bytes_total"].labels.remove("direction")
    catalogue["strangler_connections_total"].values["outcome"] = ("client_closed",)
    problems = differences(catalogue, registered(Metrics()))
    assert len(problems) == 3
    assert problems[0].startswith("strangler_bytes_total: labels")
    assert problems[1].startswith("strangler_connection_drift: type gauge in the code")
    assert problems[2].startswith("strangler_connections_total{outcome}: code values")


def test_an_entry_without_a_type_is_refused() -> None:
    try:
        parse_catalogue("### `strangler_x_total`\n\nNo type line here.\n")
    except ValueError as exc:
        assert "strangler_x_total" in str(exc)
    else:
        raise AssertionError("an entry without a type was accepted")
