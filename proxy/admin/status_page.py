"""The release managers' status page: one server-rendered HTML document (pure).

The admin port gathers a `StatusSnapshot` from the running proxy; `render` turns it
into a page with inline CSS only (no scripts, no external assets), so it opens behind
any firewall and in any browser. Every value that reaches the page passes through
`html.escape`: flag keys, error messages and request types come from files and
clients and must never become markup. The snapshot carries no user ids or tokens
(targets are counted, mismatch samples are reduced to route, turn and categories),
so nothing here can leak them.

Everything reads as sentences for a person: guards (proxy/admin/guard_text.py), reloads
and their changes (proxy/admin/audit_text.py), percentages as the flag file writes them.
The structures stay on the JSON endpoints. Tables and cells have stable ids, classes and
`data-*` attributes (`#connections`, `tr[data-route=main] td[data-mode=unified]`) so
tools and tests can read the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strangler.flags.model import Mode
from strangler.proxy.admin.audit_text import detail_lines, event_text
from strangler.proxy.admin.guard_text import guard_text, state_sentences, state_word
from strangler.proxy.admin.reliability_text import (
    BACKENDS,
    below_objective,
    objective_text,
    reliability_text,
)
from strangler.proxy.admin.wording import counted, percent_text, stamp
from strangler.proxy.release.reliability import DEFAULT_OBJECTIVE

# Column order of the connections table: the order users move forward in.
MODES = (Mode.LEGACY.value, Mode.SHADOW.value, Mode.LIVE.value, Mode.UNIFIED.value)
# Rollout ranges from bucket 0, legacy last: how a flag's shares and targets are listed.
ROLLOUT_MODES = (Mode.UNIFIED.value, Mode.LIVE.value, Mode.SHADOW.value, Mode.LEGACY.value)


@dataclass(frozen=True, slots=True)
class FlagView:
    """One flag as the page shows it; targets are counts per mode, never the users."""

    key: str
    routes: tuple[str, ...]
    default: str
    anonymous: str
    kill_switch: bool
    shares: Mapping[str, float]  # percent of untargeted users per mode (proxy.release)
    targets: Mapping[str, int] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    drain_rate: float | None = None
    guard: Mapping[str, Any] | None = None
    effective_at: float | None = None


@dataclass(frozen=True, slots=True)
class MismatchView:
    """One recent non-matching turn: where and what kind, no transcript."""

    at: float
    route: str
    mode: str
    turn: int
    request_type: str
    outcome: str
    categories: tuple[str, ...]
    id: str = ""  # the turn page's address: /shadow/turns/<id>


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything the page shows, gathered at one instant."""

    generated_at: float
    flags_hash: str
    flags_source: str
    loaded_at: float | None
    last_error: str | None
    flags: tuple[FlagView, ...] = ()
    routes: tuple[str, ...] = ()  # every configured route, so idle ones show zeros
    connections: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    drift: Mapping[str, int] = field(default_factory=dict)
    audit: tuple[Mapping[str, Any], ...] = ()  # newest first
    mismatches: tuple[MismatchView, ...] = ()  # newest first
    guards: Mapping[str, Any] = field(default_factory=dict)
    draining: bool = False
    shadow_enabled: bool = True
    secondary_connections: int = 0
    shadow_shed: str = "off"  # shadow work shed to keep the primary fast (shadow/shed.py)
    # Route -> backend -> the last hour's judged and completed turns (/flags/status).
    reliability: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objective: float = DEFAULT_OBJECTIVE  # percent
    refresh_seconds: int = 5


def e(value: object) -> str:
    """Any value as escaped text (quotes too, so it is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def _when(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    age = round(now - at)
    return f"{stamp(at)} ({age} s ago)" if age >= 0 else f"{stamp(at)} (in {-age} s)"


def _empty(ident: str, text: str) -> str:
    return f'<p class="empty" id="{ident}">{e(text)}</p>'


def _table(ident: str, head: Iterable[str], rows: list[str]) -> str:
    cells = "".join(f"<th>{e(h)}</th>" for h in head)
    return (
        f'<table id="{ident}"><thead><tr>{cells}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _summary(s: StatusSnapshot) -> str:
    state = "draining" if s.draining else "serving"
    open_total = sum(sum(modes.values()) for modes in s.connections.values())
    error = (
        f'<dd id="flags-error" class="bad">{e(s.last_error)}</dd>'
        if s.last_error
        else '<dd id="flags-error" class="ok">none</dd>'
    )
    shadow = "on" if s.shadow_enabled else "off"
    return (
        '<section id="summary"><h2>Active flags</h2><dl>'
        f'<dt>State</dt><dd id="state">{state}</dd>'
        f'<dt>Flags hash</dt><dd id="flags-hash"><code>{e(s.flags_hash)}</code></dd>'
        f'<dt>Flag file</dt><dd id="flags-source"><code>{e(s.flags_source)}</code></dd>'
        f'<dt>Loaded at</dt><dd id="flags-loaded-at">{e(_when(s.loaded_at, s.generated_at))}</dd>'
        f"<dt>Last reload error</dt>{error}"
        f'<dt>Open connections</dt><dd id="open-total">{open_total}</dd>'
        f'<dt>Shadow switch</dt><dd id="shadow-switch">{shadow}, '
        f"{counted(s.secondary_connections, 'secondary connection')}</dd>"
        f'<dt>Shadow shedding</dt><dd id="shadow-shed">{e(s.shadow_shed)}</dd>'
        "</dl></section>"
    )


def _mode_order(mode: str) -> int:
    return ROLLOUT_MODES.index(mode) if mode in ROLLOUT_MODES else len(ROLLOUT_MODES)


def targets_text(targets: Mapping[str, int]) -> str:
    """Targets as counts per mode (never the users): ``by target: 3 users on unified``."""
    listed = [
        f"{counted(n, 'user')} on {m}"
        for m, n in sorted(targets.items(), key=lambda kv: _mode_order(kv[0]))
        if n
    ]
    return "by target: " + (", ".join(listed) or "nobody")


def _shares(f: FlagView) -> str:
    shares = ", ".join(
        f'<span class="share" data-mode="{e(m)}">{e(percent_text(v))} {e(m)}</span>'
        for m, v in sorted(f.shares.items(), key=lambda kv: _mode_order(kv[0]))
    )
    return f"by percentage rollout: {shares or 'nobody'}"


def _flag_row(f: FlagView, tripped: bool) -> str:
    kill = '<td class="kill on">ON</td>' if f.kill_switch else '<td class="kill">off</td>'
    drain = (
        f"close moved connections at {e(f'{f.drain_rate:g}')}/s"
        if f.drain_rate
        else "keep open connections in their mode"
    )
    guard = e(guard_text(f.guard)) if f.guard else "none"
    if tripped:  # what the file says is not what users get: say so where it is read
        guard = f'<span class="bad">tripped: held on legacy</span>; {guard}'
    effective = (
        f'<br><span class="effective">effective from {e(stamp(f.effective_at))}</span>'
        if f.effective_at is not None
        else ""
    )
    rules = ", ".join(e(r) for r in f.rules) or "none"
    return (
        f'<tr data-flag="{e(f.key)}"><td class="key"><code>{e(f.key)}</code>{effective}</td>'
        f'<td class="routes">{", ".join(e(r) for r in f.routes)}</td>{kill}'
        f'<td class="targets">{e(targets_text(f.targets))}</td>'
        f'<td class="rules">by rule: {rules}</td>'
        f'<td class="shares">{_shares(f)}</td>'
        f'<td class="default">{e(f.default)} (anonymous users: {e(f.anonymous)})</td>'
        f'<td class="drain">{drain}</td><td class="guard">{guard}</td></tr>'
    )


def _flags(s: StatusSnapshot) -> str:
    head = (
        "Flag",
        "Routes",
        "Kill switch",
        "Targets",
        "Rules",
        "Rollout (everyone else)",
        "Default",
        "Drain policy",
        "Guard",
    )
    body = (
        _table(
            "flags",
            head,
            [_flag_row(f, state_word(s.guards.get(f.key)) == "tripped") for f in s.flags],
        )
        if s.flags
        else _empty("no-flags", "no flags: every route is served by legacy")
    )
    return (
        '<section id="section-flags"><h2>Flags</h2>'
        "<p>A user's mode comes from the first that applies, in the columns' order: "
        "kill switch, target, rule, percentage rollout (sticky per user), default.</p>"
        f"{body}</section>"
    )


def _connections(s: StatusSnapshot) -> str:
    routes = list(s.routes) + sorted(set(s.connections) - set(s.routes))
    rows = []
    for route in routes:
        modes = s.connections.get(route, {})
        cells = "".join(f'<td class="n" data-mode="{m}">{int(modes.get(m, 0))}</td>' for m in MODES)
        total = sum(modes.values())
        drift = int(s.drift.get(route, 0))
        drift_class = "n drift bad" if drift else "n drift"
        rows.append(
            f'<tr data-route="{e(route)}"><th scope="row">{e(route)}</th>{cells}'
            f'<td class="n total">{total}</td>'
            f'<td class="{drift_class}" data-drift="{drift}">{drift}</td></tr>'
        )
    body = (
        _table("connections", ("Route", *MODES, "Total", "Drifted"), rows)
        if rows
        else _empty("no-connections", "no routes configured")
    )
    return (
        '<section id="section-connections"><h2>Open connections by route and mode</h2>'
        "<p>Drifted: open connections whose mode the flags in force no longer give them "
        "(they keep it until they reconnect or are drained).</p>"
        f"{body}</section>"
    )


def _reliability_cell(backend: str, entry: Any, objective: float) -> str:
    below = below_objective(entry, objective)
    state = "none" if below is None else "bad" if below else "ok"
    text = reliability_text(entry)
    if below:
        text += f", below the {objective_text(objective)} objective"
    return f'<td class="reliability {state}" data-backend="{backend}">{e(text)}</td>'


def _reliability(s: StatusSnapshot) -> str:
    routes = list(s.routes) + sorted(set(s.reliability) - set(s.routes))
    rows = []
    for route in routes:
        backends = s.reliability.get(route)
        entries = backends if isinstance(backends, Mapping) else {}
        cells = "".join(_reliability_cell(b, entries.get(b), s.objective) for b in BACKENDS)
        rows.append(f'<tr data-route="{e(route)}"><th scope="row">{e(route)}</th>{cells}</tr>')
    body = (
        _table("reliability", ("Route", *BACKENDS), rows)
        if rows
        else _empty("no-reliability", "no routes configured")
    )
    return (
        '<section id="section-reliability"><h2>Golden-path reliability, last hour</h2>'
        "<p>Of the turns that ended in the last hour on this proxy process, the share that "
        "got all five golden-path events (agent_started, agent_thinking, tool_executing, "
        "tool_completed, agent_completed), by the backend that served them. Turns the "
        "client left are not counted. Objective: "
        f'<span id="objective">{e(objective_text(s.objective))}</span>. '
        "Every replica together: the migration dashboard.</p>"
        f"{body}</section>"
    )


def _audit(s: StatusSnapshot) -> str:
    rows = []
    for record in s.audit:
        outcome = str(record.get("outcome", "?"))
        at = record.get("at")
        when = _when(at if isinstance(at, int | float) else None, s.generated_at)
        lines = detail_lines(record)
        if outcome == "rejected":
            details = "".join(f'<span class="error bad">{e(line)}</span>' for line in lines)
        elif lines:
            details = "<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>"
        else:
            details = ""
        rows.append(
            f'<tr class="reload {e(outcome)}" data-outcome="{e(outcome)}">'
            f'<td class="at">{e(when)}</td>'
            f'<td class="event">{e(event_text(record))}</td>'
            f'<td class="changes">{details}</td></tr>'
        )
    body = (
        _table("audit", ("At", "What happened", "Changes"), rows)
        if rows
        else _empty("no-audit", "no reloads recorded")
    )
    return f'<section id="section-audit"><h2>Recent reloads and guard trips</h2>{body}</section>'


def _turn_link(m: MismatchView) -> str:
    # Ids are the hub's hex; quoted like any value all the same.
    if not m.id:
        return '<td class="details">-</td>'
    return f'<td class="details"><a href="/shadow/turns/{e(m.id)}">side by side</a></td>'


def _mismatches(s: StatusSnapshot) -> str:
    rows = [
        f'<tr data-route="{e(m.route)}" data-outcome="{e(m.outcome)}" data-id="{e(m.id)}">'
        f'<td class="at">{e(_when(m.at, s.generated_at))}</td>'
        f'<td class="route">{e(m.route)}</td><td class="mode">{e(m.mode)}</td>'
        f'<td class="turn">{int(m.turn)}</td><td class="request">{e(m.request_type)}</td>'
        f'<td class="outcome">{e(m.outcome)}</td>'
        f'<td class="categories">{e(", ".join(m.categories) or "-")}</td>{_turn_link(m)}</tr>'
        for m in s.mismatches
    ]
    body = (
        _table(
            "mismatches",
            ("At", "Route", "Mode", "Turn", "Request", "Outcome", "Categories", "Turn page"),
            rows,
        )
        if rows
        else _empty("no-mismatches", "no shadow mismatches recorded")
    )
    return (
        '<section id="section-mismatches"><h2>Recent shadow mismatches</h2>'
        "<p>Each turn's page shows both sides' events next to each other; the records "
        "(redacted) are on <code>/shadow</code>.</p>"
        f"{body}</section>"
    )


def _guards(s: StatusSnapshot) -> str:
    rows = []
    for key, value in sorted(s.guards.items(), key=lambda kv: str(kv[0])):
        word = state_word(value)
        lines = "".join(f"<li>{e(line)}</li>" for line in state_sentences(value, s.generated_at))
        rows.append(
            f'<tr data-flag="{e(key)}" data-state="{word}"><th scope="row">{e(key)}</th>'
            f'<td class="state {"bad" if word == "tripped" else "ok"}">{word}</td>'
            f'<td class="details"><ul>{lines}</ul></td></tr>'
        )
    body = (
        _table("guards", ("Flag", "State", "Details"), rows)
        if rows
        else _empty("no-guards", "no guards configured")
    )
    return f'<section id="section-guards"><h2>Guards</h2>{body}</section>'


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;margin:.3em 0}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
thead th{background:#eef1f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}
dt{font-weight:600}dd{margin:0}ul{margin:0;padding-left:1.2em}
.bad{color:#b42318;font-weight:600}.ok{color:#137333}.kill.on{background:#fde2e1}
.empty{color:#57606a;font-style:italic}.share{white-space:nowrap}
footer{margin-top:2em;color:#57606a;font-size:.9em}
"""


def render(s: StatusSnapshot) -> str:
    """The whole page for one snapshot."""
    refresh = (
        f'<meta http-equiv="refresh" content="{int(s.refresh_seconds)}">'
        if s.refresh_seconds > 0
        else ""
    )
    generated = stamp(s.generated_at)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"{refresh}<title>strangler status</title><style>{_CSS}</style></head>"
        "<body><header><h1>strangler status</h1>"
        f'<p id="generated">generated {e(generated)}</p></header><main>'
        f"{_summary(s)}{_flags(s)}{_connections(s)}{_reliability(s)}"
        f"{_audit(s)}{_mismatches(s)}{_guards(s)}"
        "</main><footer>Machine-readable: <code>/flags/status</code>, "
        "<code>/flags/audit</code>, <code>/shadow</code>, <code>/metrics</code>.</footer>"
        "</body></html>\n"
    )
