"""Signed results and webhooks in the service: `/.well-known/jwks.json`, a device's EAR under
/api/v1/, and the admin API for the webhook settings (GET /api/v1/admin/webhooks, PUT
/api/v1/admin/webhooks/settings). Users: docs/ear.md, docs/webhooks.md.

What this part is told comes in `ServiceSettings.extra` (set by `dossier serve`):
`ear_key` (the signing key's path; default beside the trust store), `policy` (an
`AppraisalPolicy`; default identity only), `webhooks` (a `WebhookConfig` or None) and
`webhooks_file` (where the admin API keeps the settings; None: they cannot be changed here).
`EarService.of(app)` holds the signer and the `AlertSink` whose webhooks the collector's loop
uses, so one sender serves both.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from verifier.display import inert

from ..alerts import AlertSink
from ..errors import CollectorError, StoreError
from .access import ADMIN, READ, require
from .api import API_PREFIX, DeviceName, _json, _responses, read_body
from .errors import ApiError, ErrorCode
from .schemas import response_schema

__all__ = ["EarService", "router"]

EAR_FORMAT = "trust-dossier/api-ear/1"
#: A webhook configuration is at most 16 URLs and a secret: a few KB. DoS bound on the body.
MAX_WEBHOOK_SETTINGS_BYTES = 64 * 1024

log = logging.getLogger("collector.service")
router = APIRouter(tags=["ear"])
_creating = threading.Lock()


class EarService:
    """The service's EAR signer and webhook sender (one per app, made on first use)."""

    def __init__(self, app: Any) -> None:
        from ..ear import EarSigner, ear_key_path

        settings = app.state.settings
        self.store = app.state.queries.store
        self.trust_store = settings.trust_store
        self.policy = settings.extra.get("policy")
        key = settings.extra.get("ear_key")
        if key is None and self.trust_store is not None:
            key = ear_key_path(Path(self.trust_store))
        # Without a usable key the service still serves and sends webhooks, without EARs; the
        # EAR endpoints then answer 503 with this reason.
        self.signer: EarSigner | None = None
        self.key_problem = "no --ear-key, and no trust store to keep the key beside"
        if key is not None:
            try:
                self.signer = EarSigner.load_or_create(Path(key), store_root=self.store.root)
            except StoreError as exc:  # the message names paths: the log gets it, answers do not
                self.key_problem = "a key file that cannot be used"
                log.warning("EARs are not issued: %s", exc)
        self.webhooks_file: Path | None = settings.extra.get("webhooks_file")
        self.alerts = AlertSink()
        self._changing = threading.Lock()
        config = settings.extra.get("webhooks")
        if config is not None:
            self.alerts.webhooks = self._sender(config)

    @classmethod
    def of(cls, app: Any) -> EarService:
        """The app's EarService (made on first use)."""
        service = getattr(app.state, "ear_service", None)
        if service is None:
            with _creating:
                service = getattr(app.state, "ear_service", None)
                if service is None:
                    service = app.state.ear_service = cls(app)
        return service  # type: ignore[no-any-return]

    def signing(self) -> Any:
        """The signer; raises ApiError (503) when the service has none."""
        if self.signer is None:
            raise ApiError(503, ErrorCode.EAR_NO_KEY, "the service cannot sign EARs (its log says why)",
                           expected="a usable EAR signing key", found=self.key_problem)
        return self.signer

    def _sender(self, config: Any) -> Any:
        from ..ear import ear_source
        from ..webhooks import WebhookSender

        (self.store.root / "state").mkdir(exist_ok=True)
        ear_for = (ear_source(self.store, self.trust_store, self.policy, self.signer)
                   if self.signer is not None else None)
        return WebhookSender(config, delivery_log=self.store.root / "state" / "webhook-deliveries.jsonl",
                             ear_for=ear_for)

    def replace_webhooks(self, config: Any) -> None:
        """Send events with `config` from now on (what the old sender still holds is delivered)."""
        with self._changing:
            old, self.alerts.webhooks = self.alerts.webhooks, self._sender(config)
        if old is not None:
            old.close()

    def settings_json(self) -> dict[str, Any]:
        sender = self.alerts.webhooks
        settings = None
        if sender is not None:
            settings = sender.config.public()
            settings["delivery_log"] = str(sender.delivery_log) if sender.delivery_log else None
        return {"configured": sender is not None, "file": str(self.webhooks_file) if self.webhooks_file else None,
                "settings": settings}

    def close(self) -> None:
        self.alerts.close()


def close_ear_service(app: Any) -> None:
    """Deliver what the webhook sender holds and stop it (before the app's store closes)."""
    service = getattr(app.state, "ear_service", None)
    if service is not None:
        service.close()


@router.get("/.well-known/jwks.json", summary="The public key the service signs EARs with (a JWK Set)",
            responses={200: {"content": {"application/json": {"schema": response_schema("jwks")}}},
                       304: _responses("jwks")[304], 503: _responses("jwks")[503]})
def jwks(request: Request) -> Response:
    """Public: auditors fetch it to check EARs offline (`dossier ear verify --jwks URL`)."""
    return _json(request, EarService.of(request.app).signing().jwks())


@router.get(API_PREFIX + "/devices/{name}/ear", responses=_responses("api-ear"), dependencies=[Depends(require(READ))],
            summary="A signed EAR (IETF RATS attestation result) of one of the device's outputs, appraised now")
def device_ear(request: Request, name: DeviceName,
               envelope: Annotated[str, Query(max_length=200, description="-1 (the newest), an envelope name, or "
                                                                          "the start of a received time")] = "-1",
               ) -> Response:
    """The output is verified and appraised when asked (the service's policy; identity only
    without one), and its result signed with the key at /.well-known/jwks.json."""
    from ..ear import issue_ear
    from ..insights.errors import InsightsError
    from ..insights.history import StoredVerdicts, comparable_history, pick_record

    service = EarService.of(request.app)
    signer = service.signing()
    queries = request.app.state.queries
    try:
        newest = next(iter(service.store.history(name, limit=1)), None)
        record = pick_record(comparable_history(service.store, newest) if newest is not None else [], envelope, name)
        token = issue_ear(service.store, StoredVerdicts(service.store, queries.trust_store()), record,
                          service.policy, signer)
    except InsightsError as exc:
        raise ApiError(404, ErrorCode.EAR_NO_OUTPUT, queries._relative(str(exc)),
                       expected="a stored output of the device that can be verified", found=envelope) from None
    except CollectorError as exc:
        raise ApiError(409, ErrorCode.STORE_UNREADABLE, queries._relative(str(exc)), expected="a readable stored output",
                       found=envelope) from None
    return _json(request, {"format": EAR_FORMAT, "device": name, "envelope": record.path,
                           "kid": signer.key_id, "ear": token})


_ADMIN = [Depends(require(ADMIN))]


@router.get(API_PREFIX + "/admin/webhooks", responses=_responses("api-webhooks"), dependencies=_ADMIN,
            summary="The webhook settings (never the secret)")
def get_webhooks(request: Request) -> Response:
    return _json(request, EarService.of(request.app).settings_json())


# PUT has a path of its own: a path with two methods answers OPTIONS with only the first's `Allow`.
@router.put(API_PREFIX + "/admin/webhooks/settings", responses=_responses("api-webhooks"), dependencies=_ADMIN,
            summary="Replace the webhook settings (kept in the service's webhooks file, mode 0600)",
            openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                "schema": response_schema("webhooks")}}}})
async def put_webhooks(request: Request) -> Response:
    """The body is a configuration as schemas/webhooks.schema.json; without `secret`, the secret
    the file holds is kept (else $DOSSIER_WEBHOOK_SECRET is used)."""
    from ..webhooks import WebhookConfigError, save_webhook_config, webhook_config

    service = EarService.of(request.app)
    if service.webhooks_file is None:
        raise ApiError(409, ErrorCode.WEBHOOKS_NOT_EDITABLE, "the webhook settings cannot be changed through the API",
                       expected="a service started with --webhooks FILE (where the settings are kept)",
                       found="no webhooks file")
    try:
        document = json.loads(await read_body(request, MAX_WEBHOOK_SETTINGS_BYTES))
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise ApiError(400, ErrorCode.WEBHOOKS_INVALID, "the request body is not a JSON object",
                       expected="a configuration as schemas/webhooks.schema.json", found="other content")
    _check_delivery_log(document, service)
    if "secret" not in document:
        kept = _file_secret(service.webhooks_file)
        if kept is not None:
            document["secret"] = kept
    try:
        config = webhook_config(document, where="the request body", base=service.webhooks_file.parent)
    except WebhookConfigError as exc:
        raise ApiError(400, ErrorCode.WEBHOOKS_INVALID, str(exc), expected="a configuration as schemas/webhooks.schema.json",
                       found="see the message") from None
    try:
        save_webhook_config(service.webhooks_file, document)
    except OSError as exc:
        log.warning("cannot write the webhooks file %s: %s", service.webhooks_file, exc)
        raise ApiError(503, ErrorCode.WEBHOOKS_NOT_SAVED, "the webhooks file cannot be written (the service's log "
                       "says where)", expected="a writable webhooks file", found=str(exc.strerror or exc)) from None
    await run_in_threadpool(service.replace_webhooks, config)  # the old sender delivers what it holds
    return _json(request, service.settings_json())


def _check_delivery_log(document: dict[str, Any], service: EarService) -> None:
    """Refuse a `delivery_log` other than the one in use: through the API it would let a token
    make the service append to (and rotate away) any file it can write, stored evidence and
    the tokens file among them. It is set in the webhooks file, by whoever runs the service."""
    if "delivery_log" not in document:
        return
    sender = service.alerts.webhooks
    current = str(sender.delivery_log) if sender is not None and sender.delivery_log else None
    if document["delivery_log"] != current:
        shown = document["delivery_log"]
        raise ApiError(400, ErrorCode.WEBHOOKS_INVALID, "delivery_log cannot be changed through the API",
                       expected=f"no delivery_log, or the one in use ({current})" if current else "no delivery_log",
                       found=inert(shown)[:200] if isinstance(shown, str) else type(shown).__name__)
    # The file keeps what its owner wrote there (a path relative to the file, or none).
    written = _file_value(service.webhooks_file, "delivery_log") if service.webhooks_file else None
    if written is None:
        document.pop("delivery_log")
    else:
        document["delivery_log"] = written


def _file_secret(path: Path) -> str | None:
    """The secret the webhooks file holds, if any."""
    return _file_value(path, "secret")


def _file_value(path: Path, name: str) -> str | None:
    """The string `name` of the webhooks file, if it holds one."""
    import yaml

    try:
        document = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None
