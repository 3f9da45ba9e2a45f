"""The turn page: one recorded shadow turn, both sides' events side by side (pure).

Served at ``/shadow/turns/<id>`` on the admin port, linked from the status page's
mismatch table. One server-rendered HTML document with inline CSS and no scripts, like
the status page. Legacy is on the left as the reference; fields a difference names are
marked (``tr.leaf.diff``, and a ≠ a reader sees without colour), fields never compared
are grey, and each difference says the rule that judged it. The record's events were
redacted when the turn was recorded (proxy/shadow/redact.py), and every value passes
through `html.escape` here.
"""

from __future__ import annotations

from strangler.proxy.admin.status_page import e
from strangler.proxy.admin.turn_diff import EventView, Finding, TurnView
from strangler.proxy.admin.wording import stamp

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fafbfc}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;background:#fff;margin:.3em 0}
th,td{border:1px solid #d0d7de;padding:.25em .6em;text-align:left;vertical-align:top}
thead th{background:#eef1f4}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}
dt{font-weight:600}dd{margin:0}code{font-size:.95em}
#events{table-layout:fixed;width:100%}#events>tbody>tr>td{width:50%;padding:.4em}
.event{border:1px solid #d0d7de;border-radius:4px;background:#fff}
.event.diff{border:2px solid #b42318}
.event .head{background:#eef1f4;padding:.2em .5em;font-weight:600}
.event.diff .head{background:#fde2e1}
table.leaves{width:100%;margin:0;table-layout:fixed}
table.leaves th{width:40%;font-weight:400;font-family:ui-monospace,monospace;font-size:.9em}
table.leaves td{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-word}
tr.leaf.diff th,tr.leaf.diff td{background:#fff3b0;font-weight:700}
tr.leaf.volatile th,tr.leaf.volatile td{color:#8c959f}
.mark{color:#b42318;font-weight:700}.gap{color:#57606a;font-style:italic;margin:.3em}
.bad{color:#b42318;font-weight:600}.empty{color:#57606a;font-style:italic}
footer{margin-top:2em;color:#57606a;font-size:.9em}
"""

_MARK = '<span class="mark">≠</span> '


def _summary(v: TurnView) -> str:
    why = (
        f'<dt>Why</dt><dd id="turn-reason" data-reason="{e(v.reason)}">'
        f"{e(v.reason)}: {e(v.reason_text or 'see the secondary metrics')}</dd>"
        if v.reason
        else ""
    )
    return (
        '<section id="turn-summary"><dl>'
        f'<dt>Recorded</dt><dd id="turn-at">{e(stamp(v.at))}</dd>'
        f'<dt>Route</dt><dd id="turn-route">{e(v.route)}</dd>'
        f'<dt>Mode</dt><dd id="turn-mode">{e(v.mode)} ({e(v.primary)} answered the client)</dd>'
        f'<dt>Turn</dt><dd id="turn-index">{int(v.turn)} (0 is the connection\'s first)</dd>'
        f'<dt>Request</dt><dd id="turn-request">{e(v.request_type)}</dd>'
        f'<dt>Outcome</dt><dd id="turn-outcome" class="bad">{e(v.outcome)}</dd>'
        f"{why}</dl></section>"
    )


def _rule(f: Finding) -> str:
    # The record names a policy rule when the comparison gave one; a built-in check
    # (events, order, tools, end) is described instead.
    if f.rule:
        return f'rule <code class="rule-name">{e(f.rule)}</code>'
    return e(f.check)


def _findings(v: TurnView) -> str:
    if not v.findings:
        text = (
            "no differences: the turn was not compared"
            if v.reason
            else "no differences recorded for this turn"
        )
        body = f'<p class="empty" id="no-differences">{e(text)}</p>'
    else:
        rows = "".join(
            f'<tr data-category="{e(f.category)}"><td class="category">{e(f.category)}</td>'
            f'<td class="where"><code>{e(f.detail)}</code></td>'
            f'<td class="rule">{_rule(f)}</td></tr>'
            for f in v.findings
        )
        body = (
            '<table id="differences"><thead><tr><th>Category</th><th>Where</th>'
            f"<th>Judged by</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return f'<section id="section-differences"><h2>What differed</h2>{body}</section>'


def _event(view: EventView | None, side: str) -> str:
    if view is None:
        return f'<p class="gap">no {e(side)} event here</p>'
    leaves = "".join(
        f'<tr class="leaf{" diff" if leaf.differs else ""}{" volatile" if leaf.volatile else ""}"'
        f' data-path="{e(leaf.path)}"><th>'
        f"{_MARK if leaf.differs else ''}{e(leaf.path)}</th>"
        f"<td>{e(leaf.value)}</td></tr>"
        for leaf in view.leaves
    )
    tool = f' <code class="tool">{e(view.tool)}</code>' if view.tool else ""
    mark = _MARK if view.differs else ""
    return (
        f'<div class="event{" diff" if view.differs else ""}" data-type="{e(view.type)}"'
        f' data-position="{view.position}"><div class="head">{mark}{view.position}. '
        f'{e(view.type)}{tool}</div><table class="leaves"><tbody>{leaves}</tbody></table></div>'
    )


def _events(v: TurnView) -> str:
    if not v.rows:
        body = '<p class="empty" id="no-events">no events were kept for this turn</p>'
    else:
        rows = "".join(
            '<tr class="pair">'
            f'<td class="side legacy">{_event(row.legacy, "legacy")}</td>'
            f'<td class="side unified">{_event(row.unified, "unified")}</td></tr>'
            for row in v.rows
        )
        body = (
            '<table id="events"><thead><tr><th>legacy (the reference)</th><th>unified</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    return (
        '<section id="section-events"><h2>Events, side by side</h2>'
        "<p>Marked fields (≠) are the ones a difference names; grey fields are never "
        "compared (timestamps, ids, durations). User ids and tokens were redacted when "
        f"the turn was recorded.</p>{body}</section>"
    )


def render(v: TurnView) -> str:
    """The whole page for one recorded turn."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>shadow turn {e(v.id)}</title><style>{_CSS}</style></head>"
        f'<body><header><h1>Shadow turn <code id="turn-id">{e(v.id)}</code></h1>'
        '<p><a href="/status" id="back">back to the status page</a></p></header><main>'
        f"{_summary(v)}{_findings(v)}{_events(v)}"
        "</main><footer>Machine-readable: <code>/shadow</code> (every recent record, "
        "this one included); in a terminal: "
        f"<code>strangler shadow show {e(v.id)}</code>.</footer></body></html>\n"
    )


def render_missing(turn_id: str, kept: int) -> str:
    """The page for an id no longer (or never) kept."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"><title>shadow turn not found</title>'
        f"<style>{_CSS}</style></head><body><h1>Shadow turn not found</h1>"
        f'<p id="not-found">No recorded turn has the id <code>{e(turn_id)}</code>. The '
        f"proxy keeps the last {int(kept)} (shadow.mismatch_samples); older ones are in "
        "the <code>strangler.mismatch</code> log.</p>"
        '<p><a href="/status">back to the status page</a></p></body></html>\n'
    )
