"""The JSON API under /api/v1/ (docs/service.md): the fleet, a device, its history, each stored
output (exact bytes, and its verdict and appraisal), drift, search, and verification of an
uploaded envelope. Each JSON response validates against `schemas/api-*.schema.json`, which the
OpenAPI document carries too (`response_schema`)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from verifier.display import inert

from .access import ADMIN, READ, require
from .errors import ApiError, ErrorCode
from .queries import MAX_PAGE, StoreQueries, filter_rows
from .schemas import response_schema

__all__ = ["API_PREFIX", "read_body", "router"]

API_PREFIX = "/api/v1"
FLEET_FORMAT = "trust-dossier/api-fleet/1"
DEFAULT_PAGE = 100
#: Path parameters are device and envelope names: the store's own patterns (anything else
#: names nothing stored, and is answered 400 before the store is asked).
_DEVICE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_ENVELOPE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$"

VerificationState = Literal["trusted", "untrusted", "unreachable", "unknown"]  # report.VERIFICATION_STATES


def known_query_only(request: Request) -> None:
    """Refuse a query parameter the operation does not take: a misspelt filter (`?stat=trusted`)
    would otherwise be ignored and answer with the whole fleet."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in _query_params(dependant)}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ApiError(400, ErrorCode.QUERY_UNKNOWN, f"unknown query parameter {inert(unknown[0])!r}",
                       expected=f"one of {', '.join(sorted(known))}" if known else "no query parameters",
                       found=inert(", ".join(unknown))[:200])


def _query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for sub in dependant.dependencies:
        params.extend(_query_params(sub))
    return params


router = APIRouter(prefix=API_PREFIX, tags=["api"], dependencies=[Depends(require(READ)), Depends(known_query_only)])


def _responses(name: str) -> dict[int | str, dict[str, Any]]:
    error = {"content": {"application/json": {"schema": response_schema("api-error")}}}
    return {200: {"content": {"application/json": {"schema": response_schema(name)}}},
            304: {"description": "Not modified (If-None-Match matched the ETag)"},
            400: {"description": "Bad request", **error}, 401: {"description": "No or unknown token", **error},
            403: {"description": "Token of the wrong scope", **error}, 404: {"description": "Not found", **error},
            409: {"description": "A stored output cannot be read", **error},
            413: {"description": "Upload too large", **error},
            503: {"description": "The store or trust store cannot be read", **error}}


def _queries(request: Request) -> StoreQueries:
    return request.app.state.queries  # type: ignore[no-any-return]


def _json(request: Request, data: Any, *, stamps: tuple[str, ...] = ()) -> Response:
    """`data` as JSON with an ETag over its bytes; 304 when the client has them. With `stamps`
    (members of `data` that say when it was made, not what it holds), the ETag is a weak one
    over the rest: the same content asked for a second later is still unchanged."""
    body = orjson.dumps(data)
    versioned = orjson.dumps({key: value for key, value in data.items() if key not in stamps}) if stamps else body
    etag = ('W/' if stamps else '') + '"' + hashlib.sha256(versioned).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    wanted = request.headers.get("if-none-match", "")
    # GET compares weakly (RFC 9110 13.1.2): a W/ prefix on either side does not matter.
    if etag.removeprefix("W/") in {tag.strip().removeprefix("W/") for tag in wanted.split(",")} or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _time_query(description: str) -> Any:
    return Query(max_length=64, description=f"{description} (RFC 3339, with an offset: 2026-12-01T00:00:00Z)",
                 json_schema_extra={"format": "date-time"})


def _time(name: str, text: str | None) -> dt.datetime | None:
    """A query parameter's RFC 3339 time (an offset required); raises ApiError (400)."""
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in text.upper():
        raise ApiError(400, ErrorCode(f"query.{name}"), f"{name} is not a time with an offset",
                       expected="an RFC 3339 time with an offset (2026-12-01T00:00:00Z)", found=inert(text))
    return moment


@router.get("/fleet", responses=_responses("api-fleet"), summary="The fleet: one row per device")
def fleet(request: Request,
          state: Annotated[VerificationState | None, Query(description="Only devices in this verification "
                                                                        "state")] = None,
          platform: Annotated[str | None, Query(max_length=64)] = None,
          group: Annotated[str | None, Query(max_length=64)] = None,
          limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
          after: Annotated[str | None, Query(max_length=64, description="Cursor: the `next` of the previous page")] = None,
          as_of: Annotated[str | None, _time_query("The fleet as stored at this time")] = None,
          ) -> Response:
    """Devices sorted by name; a page holds `limit` of them from after the cursor `after`."""
    now = _now()
    moment = _time("as_of", as_of)
    rows = filter_rows(_queries(request).fleet(now=now, as_of=moment), state=state, platform=platform, group=group)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verification"]["state"]] = counts.get(row["verification"]["state"], 0) + 1
    start = 0 if after is None else next((i for i, row in enumerate(rows) if row["device"] > after), len(rows))
    page = rows[start:start + limit]
    more = start + limit < len(rows)
    return _json(request, {"format": FLEET_FORMAT, "generated": now.isoformat(timespec="seconds"),
                           "as_of": moment.isoformat() if moment is not None else None, "total": len(rows),
                           "counts": counts, "devices": page,
                           "next": page[-1]["device"] if more and page else None}, stamps=("generated",))


DeviceName = Annotated[str, Path(pattern=_DEVICE, description="A device name, as the fleet lists it")]
EnvelopeName = Annotated[str, Path(pattern=_ENVELOPE, description="An envelope name, as the history lists it")]


@router.get("/devices/{name}", responses=_responses("api-device"), summary="One device and its newest collections")
def device(request: Request, name: DeviceName,
           limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20) -> Response:
    """The device's fleet row and its newest `limit` collections."""
    queries = _queries(request)
    return _json(request, {"device": queries.device(name, now=_now()), "history": queries.history(name, limit=limit)})


@router.get("/devices/{name}/history", responses=_responses("api-history"), summary="A device's collections")
def history(request: Request, name: DeviceName,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
            before: Annotated[str | None, Query(pattern=_ENVELOPE, description="Cursor: the `next` of the previous "
                                                                                "page")] = None) -> Response:
    """Newest first; a page holds `limit` collections older than the envelope `before`."""
    entries = _queries(request).history(name, limit=limit + 1, before=before)
    page = entries[:limit]
    return _json(request, {"device": name, "collections": page,
                           "next": page[-1]["envelope"] if len(entries) > limit else None})


@router.get("/devices/{name}/outputs/{envelope}", responses=_responses("api-output"),
            summary="One stored output: its verdict and appraisal")
def output(request: Request, name: DeviceName, envelope: EnvelopeName) -> Response:
    """The output's record, its verdict (verified again, at the time it was received) and its
    stored appraisal (null when it was not appraised); the bytes are at `.../raw`."""
    queries = _queries(request)
    return _json(request, queries.output(queries.record(name, envelope)))


@router.get("/devices/{name}/outputs/{envelope}/raw", summary="One stored output: the exact bytes received",
            responses={**_responses("api-error"), 200: {"content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}}})
def output_raw(request: Request, name: DeviceName, envelope: EnvelopeName) -> Response:
    """Exactly what the device printed, as a download (never rendered: it is device text)."""
    queries = _queries(request)
    record = queries.record(name, envelope)
    body = queries.output_bytes(record)
    # The names match the store's patterns (letters, digits, '.', '_', '-'): safe in a header.
    return Response(body, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}_{envelope}"',
                             "X-Content-Type-Options": "nosniff", "ETag": f'"{record.sha256[:32]}"',
                             "X-Envelope-SHA256": record.sha256})


@router.get("/devices/{name}/drift", responses=_responses("api-drift"),
            summary="What changed on a device between two collections")
def drift(request: Request, name: DeviceName,
          before: Annotated[str, Query(max_length=200, description="-2 (the one before the newest), an envelope "
                                                                   "name, or the start of a received time")] = "-2",
          after: Annotated[str, Query(max_length=200)] = "-1") -> Response:
    """Drift findings from `before` to `after` (files applied block by block in between)."""
    return _json(request, _queries(request).drift(name, before, after))


@router.get("/search/packages", responses=_responses("api-search"), summary="Devices running a package")
def search_packages(request: Request, name: Annotated[str, Query(min_length=1, max_length=200)],
                    version: Annotated[str | None, Query(min_length=1, max_length=200)] = None) -> Response:
    """Devices whose newest trusted collection lists package `name` (at `version` when given)."""
    unreadable: list[str] = []
    matches = _queries(request).search(package=name, version=version, unreadable=unreadable)
    return _json(request, {"query": {"package": name, "version": version, "file": None, "digest": None},
                           "matches": matches, "unreadable": unreadable})


@router.get("/search/files", responses=_responses("api-search"), summary="Devices holding a file")
def search_files(request: Request, path: Annotated[str, Query(min_length=1, max_length=4096)],
                 digest: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9+/=]{8,128}$",
                                                     description="As the dossier spells it (base64), or in "
                                                                 "hex")] = None) -> Response:
    """Devices whose files as of their newest trusted collection include `path` (with `digest`
    when given) on some node."""
    unreadable: list[str] = []
    matches = _queries(request).search(file=path, digest=digest, unreadable=unreadable)
    return _json(request, {"query": {"package": None, "version": None, "file": path, "digest": digest},
                           "matches": matches, "unreadable": unreadable})


@router.post("/verify", responses=_responses("api-verification"), dependencies=[Depends(require(ADMIN))],
             summary="Verify an uploaded envelope against the service's trust store (stores nothing)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1,
                                                         "description": "The envelope exactly as a device "
                                                                        "printed it"}}}}})
async def verify_upload(request: Request,
                        device: Annotated[str | None, Query(pattern=_DEVICE)] = None,
                        nonce: Annotated[str | None, Query(pattern=r"^(?:[0-9A-Fa-f]{2}){1,64}$",
                                                           description="The nonce sent, in hex")] = None,
                        at: Annotated[str | None, _time_query("Judge validity at this time (default: now)")] = None,
                        ) -> Response:
    """The verdict of the request body (an envelope exactly as a device printed it) for `device`
    with `nonce`; nothing is stored."""
    raw = await read_body(request, request.app.state.settings.max_upload_bytes)
    if not raw:
        raise ApiError(400, ErrorCode.UPLOAD_EMPTY, "the request body is empty", expected="an envelope's bytes",
                       found="0 bytes")
    verdict = await run_in_threadpool(_verify, _queries(request), raw, device, nonce, _time("at", at))
    return _json(request, {"stored": False, "device": device, "bytes": len(raw),
                           "sha256": hashlib.sha256(raw).hexdigest(), "verdict": verdict})


def _verify(queries: StoreQueries, raw: bytes, device: str | None, nonce_hex: str | None,
            at: dt.datetime | None) -> dict[str, Any]:
    from verifier import VerifierError
    from verifier.evidence import verify_evidence
    from verifier.nonce import Nonce

    try:
        nonce = bytes(Nonce.from_hex(nonce_hex)) if nonce_hex is not None else None
    except VerifierError as exc:
        raise ApiError(400, ErrorCode.QUERY_NONCE, str(exc), expected="1 to 64 bytes in hex", found=inert(nonce_hex)) from None
    try:
        verdict = verify_evidence(raw, None, trust_store=queries.trust_store(), device=device, nonce=nonce,
                                  at=at or "now", where="upload")
    except VerifierError as exc:
        raise ApiError(400, ErrorCode.UPLOAD_UNUSABLE, str(exc), expected="an envelope a device printed",
                       found="input the verifier cannot use") from None
    return verdict.to_json()  # type: ignore[no-any-return]


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; raises ApiError (413) past `limit` bytes, before keeping more."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"{declared} bytes (Content-Length)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, f"more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int, found: str) -> ApiError:
    return ApiError(413, ErrorCode.UPLOAD_TOO_LARGE, "the upload is larger than the service accepts",
                    expected=f"at most {limit} bytes", found=found)

