"""The trust store through the API (docs/service.md, "The trust store"): `GET /api/v1/trust`
(read scope) lists what `dossier trust list --json` lists; `PUT` and `DELETE
/api/v1/admin/trust/{device}` (admin scope) enroll and remove a device's root as `dossier enroll
--expect-fingerprint [--replace]` and `dossier trust remove` do, through the same owner functions
(`collector.enroll.enroll_root`, `verifier.TrustStore`), so the store's locking and its record of
how and when each root was enrolled are the same whichever way a change came.

An enrollment needs the root's SHA-256 given beside its PEM: the API never trusts on first use.
A body that is not as schemas/api-trust-enroll.schema.json is answered 400; a well-formed one
whose certificates cannot be enrolled (not PEM, not a CA, not the fingerprint expected, another
root enrolled) 409, with a code of its own: what the request asks conflicts with what it sent or
with the store, while its form is right.
After every change the service's cached verdicts are forgotten, so each stored output is verified
again against the trust store as it now is.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema
from cryptography import x509
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import schemas
from verifier.display import inert

from .access import ADMIN, READ, Caller, require
from .api import API_PREFIX, DeviceName, _json, _responses, known_query_only, read_body
from .errors import ApiError, ErrorCode
from .queries import StoreQueries
from .schemas import response_schema

__all__ = ["MAX_TRUST_BODY_BYTES", "router"]

log = logging.getLogger("collector.service")

TRUST_FORMAT = "trust-dossier/api-trust/1"
CHANGE_FORMAT = "trust-dossier/api-trust-change/1"
#: A root PEM is 1-2 KiB; the schema allows a root and 8 sub-CAs of 16 KiB each: a body larger
#: than that is not an enrollment, and is refused before it is read whole (DoS bound).
MAX_TRUST_BODY_BYTES = 160 * 1024

router = APIRouter(tags=["trust"], dependencies=[Depends(known_query_only)])
#: One trust-store change at a time in this process: `enroll_root` looks at the enrolled roots,
#: then writes, each step under the store's file lock but not the two together.
_changing = threading.Lock()


def _queries(request: Request) -> StoreQueries:
    return request.app.state.queries  # type: ignore[no-any-return]


def _change_responses() -> dict[int | str, dict[str, Any]]:
    responses = _responses("api-trust-change")
    responses.pop(304, None)  # see `_changed`
    responses[409] = {**responses[409], "description": "A well-formed body whose certificates cannot be enrolled: "
                      "not a CA, not the expected fingerprint, or another root enrolled (send replace: true)"}
    return responses


@router.get(API_PREFIX + "/trust", responses=_responses("api-trust"), dependencies=[Depends(require(READ))],
            summary="The trust store: enrolled devices (roots, pinned leaf, intermediates) and the trust pool")
def trust_listing(request: Request) -> Response:
    """What `dossier trust list --json` prints, each certificate checked as verification loads it;
    a damaged trust store is answered 503."""
    from verifier import VerifierError

    queries = _queries(request)
    store = queries.trust_store()
    try:
        listing = store.listing()
    except VerifierError as exc:
        raise ApiError(503, ErrorCode.TRUSTSTORE_UNAVAILABLE, queries._relative(str(exc)),
                       expected="a readable trust store", found="a damaged one") from None
    return _json(request, {"format": TRUST_FORMAT, **listing})


@router.put(API_PREFIX + "/admin/trust/{device}", responses=_change_responses(),
            summary="Enroll a root (PEM, with its expected SHA-256) for a device",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": response_schema("api-trust-enroll")}}}})
async def enroll(request: Request, device: DeviceName, caller: Caller = Depends(require(ADMIN))) -> Response:
    """Enroll the root in the body for `device` once its SHA-256 is the one expected; a device
    with a different current root needs `replace: true`, which closes that root's window now."""
    body = _enrollment(await read_body(request, MAX_TRUST_BODY_BYTES))
    return _changed(await run_in_threadpool(_enroll, _queries(request), device, body, caller))


@router.delete(API_PREFIX + "/admin/trust/{device}", responses=_change_responses(),
               summary="Remove a device from the trust store (its outputs are then untrusted)")
def remove(request: Request, device: DeviceName, caller: Caller = Depends(require(ADMIN))) -> Response:
    """Forget `device`'s roots, pinned leaf and intermediates, as `dossier trust remove`."""
    from verifier import VerifierError

    queries = _queries(request)
    store = queries.trust_store()
    with _changing:
        if device not in store:
            raise _not_enrolled(device)
        try:
            store.remove(device)
        except VerifierError as exc:
            if device not in store:  # removed meanwhile by another process
                raise _not_enrolled(device) from None
            raise _not_saved(queries, exc) from None
        finally:
            queries.forget_verdicts()
    log.warning("trust store: %s removed by API token %s", inert(device), inert(caller.name or "-"))
    return _changed({"format": CHANGE_FORMAT, "device": device, "action": "removed", "source": None,
                     "root": None, "intermediates": []})


def _changed(answer: dict[str, Any]) -> Response:
    """What a change did, as JSON without an ETag: it is never answered "not modified"."""
    return JSONResponse(answer)


@router.api_route(API_PREFIX + "/admin/trust/{device}", include_in_schema=False,
                  methods=["GET", "HEAD", "POST", "PATCH", "OPTIONS", "TRACE"])
def other_methods(device: str) -> None:
    """405 naming both methods: left to the router, the first route of the path (PUT) would
    answer alone with `Allow: PUT`."""
    raise StarletteHTTPException(405, "Method Not Allowed", headers={"Allow": "DELETE, PUT"})


# --- reading the body ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Enrollment:
    """A checked request body: the root and intermediates parsed, none of them yet trusted."""

    root: x509.Certificate
    expected_sha256: str
    intermediates: list[x509.Certificate]
    replace: bool


def _enrollment(raw: bytes) -> _Enrollment:
    """The body as schemas/api-trust-enroll.schema.json, its certificates parsed, each a CA;
    raises ApiError naming what is wrong (400 for the form, 409 for the certificates)."""
    from verifier.chain import is_ca

    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise _invalid("the request body is not JSON", found=f"{len(raw)} bytes that are not JSON") from None
    problem = next(iter(sorted(_body_validator().iter_errors(document), key=lambda error: list(error.path))), None)
    if problem is not None:
        where = "/" + "/".join(map(str, problem.path))
        raise _invalid(f"the request body does not match schemas/api-trust-enroll.schema.json at {where}",
                       found=inert(problem.message)[:200])
    root = _certificate(document["root_pem"], "root_pem")
    intermediates = [_certificate(pem, f"intermediates/{index}")
                     for index, pem in enumerate(document.get("intermediates", []))]
    for where, cert in [("root_pem", root), *((f"intermediates/{i}", c) for i, c in enumerate(intermediates))]:
        # Checked before anything is written: a refused sub-CA must not leave a root half-enrolled.
        if not is_ca(cert):
            raise ApiError(409, ErrorCode.TRUST_CERTIFICATE_INVALID, f"{where} is not a CA certificate",
                           expected="a CA certificate (basicConstraints CA:TRUE): the device's root or a sub-CA",
                           found=inert(cert.subject.rfc4514_string())[:200])
    return _Enrollment(root, document["expected_sha256"], intermediates, bool(document.get("replace", False)))


@cache
def _body_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas.load("api-trust-enroll"))


def _certificate(pem: str, where: str) -> x509.Certificate:
    from verifier.chain import CERTIFICATE_ERRORS, read_now

    try:
        # Names and dates read now: a malformed one is refused here, not a crash when listed.
        return read_now(x509.load_pem_x509_certificate(pem.encode("utf-8")))
    except (*CERTIFICATE_ERRORS, UnicodeEncodeError) as exc:
        raise ApiError(409, ErrorCode.TRUST_CERTIFICATE_INVALID, f"{where} is not a PEM certificate",
                       expected="one PEM certificate (-----BEGIN CERTIFICATE-----)",
                       found=inert(f"{type(exc).__name__}: {exc}")[:200]) from None


# --- changing the trust store -------------------------------------------------------------------

def _enroll(queries: StoreQueries, device: str, body: _Enrollment, caller: Caller) -> dict[str, Any]:
    from verifier import VerifierError
    from verifier.chain import fingerprint

    from ..enroll import RootCandidate, enroll_root, normalise_fingerprint
    from ..errors import EnrollError

    store = queries.trust_store()
    candidate = RootCandidate(device=device, root=body.root, leaf=None)
    try:
        wanted = normalise_fingerprint(body.expected_sha256)
    except EnrollError as exc:
        raise _invalid(str(exc), found=inert(body.expected_sha256)[:200]) from None
    if wanted != candidate.sha256:
        # (enroll_root checks it too; checked first here to answer with a code of its own)
        raise ApiError(409, ErrorCode.TRUST_FINGERPRINT_MISMATCH,
                       f"{device}: the root's SHA-256 is not the one expected; nothing was enrolled",
                       expected=f"SHA-256 {wanted}", found=f"SHA-256 {candidate.sha256}")
    with _changing:
        try:
            result = enroll_root(store.path, candidate, source="fingerprint", expect_fingerprint=wanted,
                                 replace=body.replace)
            for cert in body.intermediates:
                store.add_intermediate(device, cert)
        except EnrollError as exc:
            # The fingerprint matched and the root is a CA: what enroll_root still refuses is a
            # device whose current root is another one, without `replace`.
            raise ApiError(409, ErrorCode.TRUST_REPLACE_REQUIRED, str(exc),
                           expected="replace: true to replace the enrolled root",
                           found=f"replace: {str(body.replace).lower()}") from None
        except VerifierError as exc:
            raise _not_saved(queries, exc) from None
        finally:
            queries.forget_verdicts()
    log.warning("trust store: %s root %s %s by API token %s", inert(device), candidate.sha256, result.action,
                inert(caller.name or "-"))
    return {"format": CHANGE_FORMAT, **result.to_json(),
            "intermediates": [fingerprint(cert) for cert in body.intermediates]}


def _invalid(message: str, *, found: str) -> ApiError:
    return ApiError(400, ErrorCode.TRUST_BODY_INVALID, message,
                    expected="a JSON object as schemas/api-trust-enroll.schema.json", found=found)


def _not_enrolled(device: str) -> ApiError:
    return ApiError(404, ErrorCode.TRUST_NOT_ENROLLED, f"{device} is not in the trust store",
                    expected="a device the trust store lists (GET /api/v1/trust)", found=device)


def _not_saved(queries: StoreQueries, exc: Exception) -> ApiError:
    log.warning("the trust store could not be changed: %s", exc)
    return ApiError(503, ErrorCode.TRUST_NOT_SAVED, "the trust store could not be changed (the service's log says why)",
                    expected="a writable, undamaged trust store", found=queries._relative(str(exc))[:300])
