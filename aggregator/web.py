"""The central view as a web page, for auditors and SREs: server-rendered HTML, an SVG
chart drawn here (aggregator.chart), no script and nothing fetched from elsewhere.

Login is by the same bearer tokens as the API (auditor or SRE): the token is checked
once and exchanged for a random session id in an HttpOnly, SameSite=Strict cookie,
kept in memory for eight hours. Every value shown is escaped.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from aggregator.chart import bars
from aggregator.queries import ViewQueries
from cordon.errors import AuthError
from cordon.tokens import Grant, Tokens

__all__ = ["Sessions", "web_routes"]

COOKIE = "cordon_session"
SESSION_S = 8 * 3600
ROLES = ("auditor", "sre")


@dataclass
class Sessions:
    lifetime_s: float = SESSION_S
    _live: dict[str, tuple[Grant, float]] = field(default_factory=dict)

    def open(self, grant: Grant) -> str:
        session = secrets.token_urlsafe(32)
        self._live[session] = (grant, time.monotonic() + self.lifetime_s)
        return session

    def grant(self, session: str | None) -> Grant | None:
        found = self._live.get(session or "")
        if found is None:
            return None
        if time.monotonic() > found[1]:
            self._live.pop(session or "", None)
            return None
        return found[0]

    def close(self, session: str | None) -> None:
        self._live.pop(session or "", None)


def web_routes(
    store: ViewQueries, tokens: Tokens, regions: list[str], audit_apis: dict[str, str]
) -> APIRouter:
    router = APIRouter(include_in_schema=False)  # pages, not API: outside /openapi.json
    sessions = Sessions()

    def signed_in(request: Request) -> Grant | None:
        return sessions.grant(request.cookies.get(COOKIE))

    @router.get("/ui/login")
    async def login_page() -> HTMLResponse:
        return HTMLResponse(_page("Sign in", _login_form(None)))

    @router.post("/ui/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body())[:4096].decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        try:
            grant = tokens.authorize(f"Bearer {token.strip()}", ROLES, None)
        except AuthError as exc:
            return HTMLResponse(_page("Sign in", _login_form(str(exc))), status_code=401)
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(
            COOKIE,
            sessions.open(grant),
            max_age=SESSION_S,
            httponly=True,
            samesite="strict",
            path="/ui",
        )
        return response

    @router.post("/ui/logout")
    async def logout(request: Request) -> Response:
        sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/ui/")
    async def overview(request: Request) -> Response:
        grant = signed_in(request)
        if grant is None:
            return RedirectResponse("/ui/login", status_code=303)
        body = _overview(store, regions, audit_apis)
        return HTMLResponse(_page("Cordon — regions", body, grant))

    @router.get("/ui/records")
    async def records(
        request: Request,
        pseudonym: str = "",
        since: str = "",
        until: str = "",
    ) -> Response:
        grant = signed_in(request)
        if grant is None:
            return RedirectResponse("/ui/login", status_code=303)
        body = _drill_down(store, audit_apis, pseudonym.strip(), since.strip(), until.strip())
        return HTMLResponse(_page("Cordon — records", body, grant))

    return router


# -- pages ------------------------------------------------------------------------------


def _overview(store: ViewQueries, regions: list[str], audit_apis: dict[str, str]) -> str:
    fresh = store.freshness()
    gaps = store.gaps()
    numbering = store.replica_gaps()
    now = datetime.now(UTC)
    shown = sorted(set(regions) | set(fresh))
    failed = {region: store.witness_failures(region) for region in shown}
    rows = []
    for region in shown:
        f = fresh.get(region)
        failures = failed[region]
        holes = [g for g in gaps if g["region"] == region]
        status, css = _status(f, failures, holes, now)
        verified = f and f["newest_verified_checkpoint"]
        rows.append(
            f'<tr class="region" data-region="{escape(region)}">'
            f"<td><strong>{escape(region)}</strong></td>"
            f'<td><span class="badge {css}">{escape(status)}</span></td>'
            f"<td>{escape(_newest(f, now))}</td>"
            f"<td>{f['summaries'] if f else 0}</td>"
            f"<td>{verified['size'] if verified else '—'}</td>"
            f"<td>{f['checkpoints_verified'] if f else 0} / "
            f'<span class="{"bad" if failures else ""}">{len(failures)}</span></td>'
            f"<td>{f['waiting_for_checkpoint'] if f else 0}</td></tr>"
        )
    regions_table = _table(
        [
            "Region",
            "Status",
            "Newest summary",
            "Summaries",
            "Verified up to",
            "Checkpoints ok / failed",
            "Waiting",
        ],
        rows,
    )
    problems = (
        [
            f'<li class="bad">Gap in {escape(g["region"])}: records {g["first_seq"]}..'
            f"{g['last_seq']} are missing centrally</li>"
            for g in gaps
        ]
        + [
            f'<li class="bad">Gap in {escape(g["region"])}/{escape(g["replica"])}: replica_seq '
            f"{g['first_replica_seq']}..{g['last_replica_seq']} has no record, no void</li>"
            for g in numbering
        ]
        + [
            f'<li class="bad">Checkpoint {escape(region)}/{f["size"]} failed verification: '
            f"{escape(str(f['reason']))}</li>"
            for region in shown
            for f in failed[region]
        ]
    )
    problem_list = (
        f'<ul class="problems">{"".join(problems)}</ul>'
        if problems
        else '<p class="ok">No gaps, no failed checkpoints.</p>'
    )
    since = (now - timedelta(hours=24)).isoformat()
    hourly = store.counts(["region"], bucket="hour", since=since)
    buckets = _hours(now)
    series: dict[str, dict[str, int]] = {r: {} for r in regions}
    for row in hourly:
        series.setdefault(row["region"], {})[row["bucket"]] = row["count"]
    by_outcome = store.counts(["region", "outcome"], since=since)
    outcome_rows = [
        f"<tr><td>{escape(str(r['region']))}</td><td>{escape(str(r['outcome']))}</td>"
        f"<td>{r['count']}</td></tr>"
        for r in by_outcome
    ]
    by_tool = [
        r
        for r in store.counts(["region", "tool_server", "tool", "outcome"], since=since)
        if r["tool_server"]
    ]
    tool_rows = [
        f"<tr><td>{escape(str(r['region']))}</td><td>{escape(str(r['tool_server']))}</td>"
        f"<td>{escape(str(r['tool']))}</td><td>{escape(str(r['outcome']))}</td>"
        f"<td>{r['count']}</td></tr>"
        for r in by_tool
    ]
    return (
        "<h2>Regions</h2>"
        + regions_table
        + "<h2>Attention</h2>"
        + problem_list
        + "<h2>Decisions per hour, last 24 hours</h2>"
        + bars(buckets, series, "Decisions per hour by region")
        + "<h2>Decisions by outcome, last 24 hours</h2>"
        + _table(["Region", "Outcome", "Decisions"], outcome_rows)
        + "<h2>Tool calls by server and tool, last 24 hours</h2>"
        + _table(["Region", "Server", "Tool", "Outcome", "Calls"], tool_rows)
        + _drill_form("", "", "")
    )


def _drill_down(
    store: ViewQueries, audit_apis: dict[str, str], pseudonym: str, since: str, until: str
) -> str:
    form = _drill_form(pseudonym, since, until)
    if pseudonym:
        found = store.person_records([p for p in pseudonym.split(",") if p], limit=500)
    elif since or until:
        found = store.decisions_between(since or None, until or None, limit=500)
    else:
        return form + "<p>Give a pseudonym or a time range.</p>"
    rows = []
    for item in found:
        api = audit_apis.get(item["region"], "<region's audit API>")
        command = (
            f"cordon audit export --api {api} --from {item['stream_seq']} "
            f"--to {item['stream_seq']} --out {item['region']}-{item['stream_seq']}.json"
        )
        rows.append(
            f"<tr><td>{escape(item['region'])}</td><td>{item['stream_seq']}</td>"
            f"<td><code>{escape(str(item['id']))}</code></td>"
            f"<td>{escape(str(item.get('ts') or ''))}</td>"
            f'<td><code class="cmd">{escape(command)}</code></td></tr>'
        )
    return (
        form + f"<p>{len(found)} records. Fetch each from its region's audit API with an "
        "auditor token for that region:</p>"
        + _table(["Region", "Seq", "Record id", "Time", "Command"], rows)
    )


# -- pieces -----------------------------------------------------------------------------


def _status(
    fresh: dict[str, Any] | None,
    failures: list[dict[str, Any]],
    holes: list[dict[str, Any]],
    now: datetime,
) -> tuple[str, str]:
    if fresh is None:
        return "no summaries yet", "warn"
    if failures or holes:
        return "verification failed" if failures else "gap", "bad"
    newest = fresh["newest_summary_ts"]
    if newest and now - datetime.fromisoformat(newest) > timedelta(minutes=10):
        return "quiet > 10 min", "warn"
    return "verified", "good"


def _newest(fresh: dict[str, Any] | None, now: datetime) -> str:
    """How long ago the region's newest summary was: "never" only without any; one
    whose record carried no time says so rather than pretend there is none."""
    if fresh is None or not fresh["summaries"]:
        return "never"
    return _ago(fresh["newest_summary_ts"], now)


def _ago(ts: str | None, now: datetime) -> str:
    if not ts:
        return "time unknown"
    seconds = max(0, int((now - datetime.fromisoformat(ts)).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def _hours(now: datetime) -> list[str]:
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    return [(start + timedelta(hours=h)).isoformat()[:13] for h in range(24)]


def _table(header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(rows) or f'<tr><td colspan="{len(header)}">Nothing yet.</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _drill_form(pseudonym: str, since: str, until: str) -> str:
    return (
        '<h2>Find records</h2><form class="drill" method="get" action="/ui/records">'
        f'<label>Person pseudonym(s) <input name="pseudonym" value="{escape(pseudonym)}" '
        'placeholder="one per region, comma-separated"></label>'
        f'<label>From <input name="since" value="{escape(since)}" '
        'placeholder="2026-12-02T10:00:00+00:00"></label>'
        f'<label>Until <input name="until" value="{escape(until)}"></label>'
        "<button>Find</button></form>"
    )


def _login_form(error: str | None) -> str:
    problem = f'<p class="bad">{escape(error)}</p>' if error else ""
    return (
        '<form class="login" method="post" action="/ui/login">'
        "<p>Sign in with an auditor or SRE token.</p>"
        f"{problem}"
        '<label>Token <input type="password" name="token" autocomplete="off" autofocus>'
        "</label><button>Sign in</button></form>"
    )


def _page(title: str, body: str, grant: Grant | None = None) -> str:
    who = (
        f'<form method="post" action="/ui/logout"><span>{escape(grant.name)}</span>'
        "<button>Sign out</button></form>"
        if grant
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<title>{escape(title)}</title><meta name="viewport" content="width=device-width">'
        f"<style>{STYLE}</style></head><body><header><h1>Cordon</h1>"
        f'<nav><a href="/ui/">Regions</a> <a href="/ui/records">Find records</a></nav>{who}'
        f"</header><main>{body}</main></body></html>"
    )


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#111827;
background:#f3f4f6}header{display:flex;align-items:center;gap:24px;padding:12px 28px;
background:#111827;color:#f9fafb}header h1{font-size:18px;margin:0;letter-spacing:.04em}
header nav a{color:#cbd5e1;margin-right:14px;text-decoration:none}header form{margin-left:auto;
display:flex;gap:10px;align-items:center}main{max-width:1080px;margin:24px auto;padding:0 24px}
h2{font-size:15px;margin:28px 0 10px;color:#374151;text-transform:uppercase;letter-spacing:.05em}
table{width:100%;border-collapse:collapse;background:#fff;border-radius:8px;overflow:hidden;
box-shadow:0 1px 2px rgba(0,0,0,.06)}th,td{padding:8px 12px;text-align:left;
border-bottom:1px solid #e5e7eb}td:first-child{white-space:nowrap}
th{background:#f9fafb;font-weight:600;color:#4b5563}
.badge{padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600}
.good{background:#dcfce7;color:#166534}.warn{background:#fef3c7;color:#92400e}
.bad{color:#b91c1c}.badge.bad{background:#fee2e2}.ok{color:#166534}
.chart{box-sizing:border-box;width:100%;height:auto;background:#fff;border-radius:8px;padding:8px;
box-shadow:0 1px 2px rgba(0,0,0,.06)}.chart .grid{stroke:#e5e7eb}.chart .axis{font-size:11px;
fill:#6b7280}form.drill,form.login{display:flex;gap:12px;flex-wrap:wrap;align-items:end;
background:#fff;padding:14px;border-radius:8px}form.login{flex-direction:column;
align-items:flex-start;max-width:360px;margin:60px auto}label{display:flex;flex-direction:column;
font-size:12px;color:#4b5563;gap:4px}input{padding:6px 8px;border:1px solid #d1d5db;
border-radius:6px;min-width:220px}button{padding:7px 14px;border:0;border-radius:6px;
background:#2563eb;color:#fff;cursor:pointer}header button{background:#374151}
code.cmd{font-size:12px;color:#374151}ul.problems{background:#fff;padding:12px 32px;
border-radius:8px}
"""
