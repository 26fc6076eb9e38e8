"""The web dashboard (docs/dashboard.md): server-side pages over the service's read-only queries.

Pages are Jinja2 templates rendered on the server with autoescape on and every value made inert
first (`verifier.display.inert`: controls, bidi overrides and zero widths shown as escapes), so
device text is only ever text. Reading needs no JavaScript; `dashboard.js` only adds sorting by
a click. CSS and script are package data served by this router; the pages reference nothing
else, and the Content-Security-Policy forbids the browser to fetch anything else.

Sign-in: the page reads a read token from the `dossier_token` cookie, or from `?token=` once,
which is answered with a redirect that sets the cookie and drops the token from the address.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from verifier.display import inert

from ..insights.report import VERIFICATION_STATES
from .access import PAGE_COOKIE, page_token_problem
from .api import API_PREFIX, DeviceName
from .errors import ErrorCode
from ..store import parse_iso
from .queries import QueryError, StoreQueries, device_content, device_findings, device_timeline, fleet_consensus_of

__all__ = ["DASHBOARD_PREFIX", "router"]

DASHBOARD_PREFIX = "/dashboard"
#: Files listed on a device page (a file inventory can be tens of thousands of entries); the
#: `file` filter narrows the list to the ones wanted.
MAX_FILES_SHOWN = 500
#: The longest text a query parameter of the pages may hold (a device name, a date, a filter).
MAX_PARAMETER = 200
#: Devices the fleet page shows at once (the API's default page): a page of a thousand rows is
#: too long to read and costs its whole rendering on every request; the rest are a link away.
ROWS_PER_PAGE = 100
#: No script, style or image from anywhere but this service; no inline script; no framing.
_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_SECURITY_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                     "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_ASSETS = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}

APPRAISAL_STATUSES = ("contraindicated", "warning", "none", "affirming")
#: Sort orders the fleet page offers; "worst first" is the ascending order of state and status.
_STATE_RANK = {"untrusted": 0, "unreachable": 1, "unknown": 2, "trusted": 3}
_STATUS_RANK = {status: rank for rank, status in enumerate(APPRAISAL_STATUSES)}
SORT_KEYS: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {  # (row, fleet consensus) -> key
    "device": lambda row, _: row["device"],
    "state": lambda row, _: (_STATE_RANK.get(row["verification"]["state"], 9), row["device"]),
    "status": lambda row, _: (_STATUS_RANK.get(row["status"], 9), row["device"]),
    "consensus": lambda row, consensus: (-len(consensus.of(row["device"])), row["device"]),
    "last_collection": lambda row, _: (row["last_collection"] or "", row["device"]),
    "last_trusted": lambda row, _: (row["last_trusted"] or "", row["device"]),
    "expiry": lambda row, _: (_soonest(row["days_to_expiry"]), row["device"]),
}
_STATE_SYMBOL = {"trusted": "\u2714", "untrusted": "\u2718", "unreachable": "\u2298", "unknown": "?"}
_STATUS_SYMBOL = {"affirming": "\u2714", "warning": "\u25b2", "contraindicated": "\u2718", "none": "\u2013"}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PAGE_NUMBER = re.compile(r"^[0-9]{1,9}$")

router = APIRouter(prefix=DASHBOARD_PREFIX, include_in_schema=False)


def _soonest(days: Mapping[str, Any] | None) -> float:
    values = [v for v in (days or {}).values() if isinstance(v, int)]
    return min(values) if values else float("inf")


# --- rendering ---------------------------------------------------------------------------------


def _page_text(value: Any) -> Any:
    """Every `{{ value }}` of a template: None shows as nothing, text as `inert` text (then
    autoescaped), markup the template built itself as it is."""
    from markupsafe import Markup

    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return inert(value) if isinstance(value, str) else value


@functools.cache
def _templates() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(loader=PackageLoader("collector.service", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True),
                              finalize=_page_text, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters["when"] = _when
    environment.globals.update(state_symbol=_STATE_SYMBOL, status_symbol=_STATUS_SYMBOL, state_rank=_STATE_RANK,
                               status_rank=_STATUS_RANK, prefix=DASHBOARD_PREFIX,
                               api_prefix=API_PREFIX)
    return environment


def _when(iso: Any) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM:SS UTC`; anything else as it is."""
    if not iso:
        return "never"
    try:
        moment = parse_iso(str(iso))
    except ValueError:
        return str(iso)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    body = _templates().get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers=_SECURITY_HEADERS)


def _query_string(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


# --- sign-in -------------------------------------------------------------------------------------

#: A sign-in form is one token and one path back; anything longer is not one.
MAX_SIGN_IN_BYTES = 4096


def _sign_in(request: Request, token: str | None) -> Response | None:
    """None when the request may read; otherwise the answer instead of the page: with `?token=`,
    a redirect to the same page without it that sets the cookie; else the sign-in form (401)."""
    if token is not None:
        problem = page_token_problem(request, token)
        if problem is not None:
            return _sign_in_page(_back(request), problem)
        url = request.url.remove_query_params("token")
        return _signed_in(request, url.path + (f"?{url.query}" if url.query else ""), token)
    problem = page_token_problem(request, request.cookies.get(PAGE_COOKIE))
    return None if problem is None else _sign_in_page(_back(request), problem)


def _back(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _signed_in(request: Request, back: str, token: str) -> Response:
    response = RedirectResponse(back, status_code=303, headers=_SECURITY_HEADERS)
    response.set_cookie(PAGE_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path="/")
    return response


def _sign_in_page(back: str, problem: str | None) -> HTMLResponse:
    return _html("sign_in.html", status=401, next=back, problem=problem)


def _safe_back(back: str | None) -> str:
    """Only a page of this dashboard: a sign-in never sends the browser elsewhere."""
    if back and back.startswith(DASHBOARD_PREFIX) and not back.startswith("//") and "\\" not in back:
        return back
    return DASHBOARD_PREFIX


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """The sign-in form: a read token kept in the `dossier_token` cookie, then back to the page."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_SIGN_IN_BYTES:
            return _sign_in_page(DASHBOARD_PREFIX, f"the form is over {MAX_SIGN_IN_BYTES} bytes; expected a token")
    form = parse_qs(body.decode("utf-8", "replace"))
    token, back = (form.get("token") or [""])[0], _safe_back((form.get("next") or [""])[0])
    problem = page_token_problem(request, token)
    if problem is not None:
        return _sign_in_page(back, problem)
    return _signed_in(request, back, token)


@router.get("/static/{asset}")
def asset(asset: Annotated[str, Path(pattern=r"^[a-z]+\.(css|js)$")]) -> Response:
    """The dashboard's CSS and script (package data), the same for everyone: no token needed."""
    if asset not in _ASSETS:
        return Response("not found", status_code=404, media_type="text/plain")
    body = resources.files("collector.service").joinpath("static", asset).read_bytes()
    return Response(body, media_type=_ASSETS[asset],
                    headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


# --- the fleet -------------------------------------------------------------------------------------


def parse_as_of(text: str | None) -> dt.datetime | None:
    """`2026-12-01` (the end of that day, UTC) or `2026-12-01T10:30[:15]` (UTC) from the date
    input; raises QueryError (400) naming the expected form."""
    if not text:
        return None
    try:
        if _DATE_ONLY.match(text):
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or not re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$", text):
        raise QueryError(400, ErrorCode.QUERY_AS_OF, "the date is not one the page reads",
                         expected="YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (UTC)", found=text)
    return moment.replace(tzinfo=dt.UTC)


def _fleet_page(queries: StoreQueries, *, as_of: str | None, state: str | None, status: str | None,
                q: str | None, sort: str, order: str, page: str = "1") -> dict[str, Any]:
    if state and state not in VERIFICATION_STATES:
        raise QueryError(400, ErrorCode.FILTER_STATE, f"unknown state {state!r}",
                         expected=f"one of {', '.join(VERIFICATION_STATES)}", found=state)
    if status and status not in APPRAISAL_STATUSES:
        raise QueryError(400, ErrorCode.REQUEST_INVALID, f"unknown appraisal status {status!r}",
                         expected=f"one of {', '.join(APPRAISAL_STATUSES)}", found=status)
    if sort not in SORT_KEYS or order not in ("asc", "desc"):
        raise QueryError(400, ErrorCode.REQUEST_INVALID, f"cannot sort by {sort!r} {order!r}",
                         expected=f"sort one of {', '.join(SORT_KEYS)}, order asc or desc", found=f"{sort} {order}")
    moment = parse_as_of(as_of)
    now = dt.datetime.now(dt.UTC)
    if moment is not None and moment > now:
        moment = None  # the future is now: the newest of everything
    rows = queries.fleet(as_of=moment)  # shared between callers: the page's additions go to copies
    consensus = fleet_consensus_of(queries, as_of=moment)
    counts = dict.fromkeys(VERIFICATION_STATES, 0)
    for row in rows:
        counts[row["verification"]["state"]] += 1
    shown = [row for row in rows
             if (not state or row["verification"]["state"] == state) and (not status or row["status"] == status)
             and (not q or q.lower() in row["device"].lower())]
    shown.sort(key=lambda row: SORT_KEYS[sort](row, consensus), reverse=order == "desc")
    pages = max(1, -(-len(shown) // ROWS_PER_PAGE))
    if not _PAGE_NUMBER.match(page) or not 1 <= int(page) <= pages:
        raise QueryError(400, ErrorCode.REQUEST_INVALID, f"there is no page {page!r} of these devices",
                         expected=f"a page number from 1 to {pages}", found=page)
    first = (int(page) - 1) * ROWS_PER_PAGE
    page_rows = []
    for row in shown[first:first + ROWS_PER_PAGE]:  # only the rows shown get what only the page needs
        soonest = _soonest(row["days_to_expiry"])
        page_rows.append({**row, "consensus": [finding.to_json() for finding in consensus.of(row["device"])],
                          "expiry_sort": soonest if soonest != float("inf") else ""})
    return {"rows": page_rows, "matching": len(shown), "first": first + 1,
            "page": int(page), "pages": pages, "total": len(rows), "counts": counts, "consensus": consensus,
            "as_of": moment, "as_of_input": moment.strftime("%Y-%m-%dT%H:%M:%S") if moment else "",
            "generated": now, "filters": {"state": state or "", "status": status or "", "q": q or ""},
            "sort": sort, "order": order, "states": VERIFICATION_STATES, "statuses": APPRAISAL_STATUSES,
            "sort_keys": list(SORT_KEYS)}


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def fleet(request: Request, token: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None,
                as_of: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None,
                state: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None,
                status: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None,
                q: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None,
                sort: Annotated[str, Query(max_length=MAX_PARAMETER)] = "device",
                order: Annotated[str, Query(max_length=MAX_PARAMETER)] = "asc",
                page: Annotated[str, Query(max_length=MAX_PARAMETER)] = "1") -> Response:
    """The fleet: every device's state in colour and words, sortable and filterable, as of now
    or a past moment, with the devices fleet consensus flags; `ROWS_PER_PAGE` rows a page."""
    refused = _sign_in(request, token)
    if refused is not None:
        return refused
    queries: StoreQueries = request.app.state.queries
    try:
        page = await run_in_threadpool(_fleet_page, queries, as_of=as_of, state=state, status=status, q=q,
                                       sort=sort, order=order, page=page)
    except QueryError as exc:
        return _error_page(exc)

    def link(**change: Any) -> str:
        params = {**page["filters"], "as_of": page["as_of_input"], "sort": sort, "order": order, **change}
        return f"{DASHBOARD_PREFIX}?{_query_string(**params)}"

    return _html("fleet.html", **page, link=link)


# --- one device ------------------------------------------------------------------------------------


def _device_page(queries: StoreQueries, name: str, file_filter: str | None) -> dict[str, Any]:
    row = queries.device(name)
    consensus = fleet_consensus_of(queries)
    problems = []  # a damaged stored output hides its part of the page, never the page
    try:
        timeline = device_timeline(queries, name)
    except QueryError as exc:
        if exc.code != ErrorCode.STORE_UNREADABLE:
            raise
        timeline, problems = [], [f"the collections cannot all be read: {exc.message}"]
    try:
        content = device_content(queries, name)
    except QueryError as exc:
        if exc.code != ErrorCode.STORE_UNREADABLE:
            raise
        content = None
        problems.append(f"the newest trusted collection cannot be read: {exc.message}")
    files, files_total = [], 0
    if content is not None:
        matching = [f for f in content["files"] if not file_filter or file_filter in f["path"]]
        files_total, files = len(matching), matching[:MAX_FILES_SHOWN]
    return {"row": row, "now": device_findings(queries, name), "timeline": timeline, "problems": problems,
            "consensus": [finding.to_json() for finding in consensus.of(name)], "group": consensus.group_of(name),
            "not_compared": consensus.not_compared.get(name), "min_agreeing": consensus.min_agreeing,
            "content": content, "files": files, "files_total": files_total, "file_filter": file_filter or "",
            "max_files": MAX_FILES_SHOWN, "generated": dt.datetime.now(dt.UTC)}


@router.get("/devices/{name}", response_class=HTMLResponse)
async def device(request: Request, name: DeviceName,
                 file: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None,
                 token: Annotated[str | None, Query(max_length=MAX_PARAMETER)] = None) -> Response:
    """One device: its state and findings, its collections and changes, packages and files."""
    refused = _sign_in(request, token)
    if refused is not None:
        return refused
    queries: StoreQueries = request.app.state.queries
    try:
        page = await run_in_threadpool(_device_page, queries, name, file)
    except QueryError as exc:
        return _error_page(exc)
    return _html("device.html", **page)


def _error_page(exc: QueryError) -> HTMLResponse:
    return _html("error.html", status=exc.status, code=exc.code, message=exc.message, expected=exc.expected,
                 found=exc.found)
