"""Webhooks: the collector's alerts (untrusted output, failed poll, degraded appraisal,
certificate expiry) POSTed as signed JSON events, from a background thread.

    config = load_webhook_config(path_or_none)          # None: no webhooks configured
    sender = WebhookSender(config, ear_for=...)          # AlertSink(..., webhooks=sender)
    sender.emit(EventType.UNTRUSTED, "r1", message, {...}, path="r1/....envelope")
    sender.close()                                       # delivers what is due, then stops

Each event is POSTed to every URL with
    X-Dossier-Event-Id: <id>         the same on every retry: receivers deduplicate on it
    X-Dossier-Timestamp: <unix s>    the time of this attempt
    X-Dossier-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
A receiver checks the signature (`check_signature`) and refuses timestamps older than
`REPLAY_WINDOW_S`. A 2xx answer delivers the event; a 5xx, 408, 429 or a connection failure
is retried with exponential backoff up to `max_attempts`; any other answer ends it. Collection
never waits: `emit` only queues (bounded), and a full queue drops the event with a log line.
Every attempt is a line of the delivery log (schemas/webhook-delivery.schema.json); the
secret and URL credentials or query strings never appear in it.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import os
import random
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

import schemas
from verifier.http_fetch import Deadline, no_redirect_opener

from .errors import CollectorError, Reason

__all__ = [
    "EVENT_FORMAT",
    "REPLAY_WINDOW_S",
    "EventType",
    "WebhookConfig",
    "WebhookConfigError",
    "WebhookSender",
    "check_signature",
    "webhook_config",
    "load_webhook_config",
    "save_webhook_config",
    "sign",
    "start_sender",
]

log = logging.getLogger("collector.webhooks")

EVENT_FORMAT = "trust-dossier/webhook-event/1"
CONFIG_FORMAT = "trust-dossier/webhooks/1"
#: Receivers refuse a timestamp older (or newer) than this: a captured request replayed later fails.
REPLAY_WINDOW_S = 300
#: Events waiting (each URL's delivery counts once): a dead receiver fills it, and then new
#: events are dropped (logged) rather than holding memory without bound.
MAX_PENDING = 1000
#: One attempt may take this long (connect + answer); the sender thread waits for nobody longer.
ATTEMPT_TIMEOUT_S = 10.0
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_RETRY_BASE_S = 2.0
#: The longest wait between two attempts.
RETRY_MAX_S = 600.0
#: A receiver's answer body is read up to this much and ignored.
MAX_ANSWER_BYTES = 4096
#: The delivery log is rotated (one old generation, `.1`) past this size.
MAX_DELIVERY_LOG_BYTES = 16 * 1024 * 1024
#: The secret an HMAC is keyed with: shorter is guessable.
MIN_SECRET_CHARS = 16
SECRET_ENV = "DOSSIER_WEBHOOK_SECRET"
URLS_ENV = "DOSSIER_WEBHOOK_URLS"
#: How long `close` keeps delivering what is due before it gives up on the rest (logged).
CLOSE_TIMEOUT_S = 5.0


class EventType(enum.StrEnum):
    """What an event reports (stable: receivers match on it)."""

    UNTRUSTED = "envelope.untrusted"
    POLL_FAILED = "poll.failed"
    DEGRADED = "appraisal.degraded"
    CERTIFICATE_EXPIRING = "certificate.expiring"


class WebhookConfigError(CollectorError):
    """The webhook configuration is missing a part, unreadable, or unsafe (a secret others can read)."""

    reason = Reason.WEBHOOKS_INVALID


@dataclass(frozen=True)
class WebhookConfig:
    """Where events go and the secret they are signed with (never shown in repr)."""

    urls: tuple[str, ...]
    secret: bytes = field(repr=False)
    events: frozenset[EventType] = frozenset(EventType)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base_s: float = DEFAULT_RETRY_BASE_S
    delivery_log: Path | None = None

    def public(self) -> dict[str, Any]:
        """The settings without the secret (for the admin API and logs)."""
        return {"urls": [redact(url) for url in self.urls], "events": sorted(self.events),
                "max_attempts": self.max_attempts, "retry_base_s": self.retry_base_s,
                "delivery_log": str(self.delivery_log) if self.delivery_log else None, "secret_set": True}


def redact(url: str) -> str:
    """`url` without credentials, query or fragment (they may hold tokens)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def load_webhook_config(path: Path | None, environ: Mapping[str, str] | None = None) -> WebhookConfig | None:
    """The configuration from `path` (YAML or JSON, schemas/webhooks.schema.json), else from
    $DOSSIER_WEBHOOK_URLS; the secret from the file (only if no one else may read it) or
    $DOSSIER_WEBHOOK_SECRET. None when neither names a URL. Raises WebhookConfigError."""
    environ = os.environ if environ is None else environ
    if path is not None:
        path = Path(path)
        try:
            document = yaml.safe_load(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise WebhookConfigError(f"webhook configuration {path}: expected a readable YAML or JSON file, "
                                     f"found {getattr(exc, 'strerror', None) or exc}") from None
        if isinstance(document, dict) and "secret" in document:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise WebhookConfigError(f"webhook configuration {path} holds the secret and is readable or writable "
                                         f"by others: expected mode 0600, found {mode:04o}; run `chmod 600 {path}` "
                                         f"or move the secret to ${SECRET_ENV}")
        return webhook_config(document, where=str(path), base=path.parent, environ=environ)
    if environ.get(URLS_ENV, "").strip():
        document = {"format": CONFIG_FORMAT, "urls": environ[URLS_ENV].replace(",", " ").split()}
        return webhook_config(document, where=f"${URLS_ENV}", base=None, environ=environ)
    return None


def webhook_config(document: Any, *, where: str, base: Path | None,
                   environ: Mapping[str, str] | None = None) -> WebhookConfig:
    """A configuration document (schemas/webhooks.schema.json) as settings, the secret from it or
    $DOSSIER_WEBHOOK_SECRET; raises WebhookConfigError naming `where`."""
    environ = os.environ if environ is None else environ
    errors = sorted(jsonschema.Draft202012Validator(schemas.load("webhooks")).iter_errors(document),
                    key=lambda error: list(error.absolute_path))
    if errors:
        shown = "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:160]}" for e in errors[:5])
        raise WebhookConfigError(f"{where} does not match schemas/webhooks.schema.json: {shown}")
    for url in document["urls"]:
        _check_url(url, where)
    secret = document.get("secret") or environ.get(SECRET_ENV, "")
    if len(secret) < MIN_SECRET_CHARS:
        raise WebhookConfigError(f"{where}: expected a webhook secret of at least {MIN_SECRET_CHARS} characters "
                                 f"(in the file, mode 0600, or ${SECRET_ENV}), found "
                                 f"{'none' if not secret else f'{len(secret)} characters'}; unsigned events "
                                 "could be forged by anyone who can reach the receiver")
    log_path = document.get("delivery_log")
    if log_path is not None and base is not None and not Path(log_path).is_absolute():
        log_path = base / log_path
    return WebhookConfig(urls=tuple(document["urls"]), secret=secret.encode("utf-8"),
                         events=frozenset(EventType(e) for e in document.get("events", list(EventType))),
                         max_attempts=int(document.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
                         retry_base_s=float(document.get("retry_base_s", DEFAULT_RETRY_BASE_S)),
                         delivery_log=Path(log_path) if log_path else None)


def save_webhook_config(path: Path, document: Mapping[str, Any]) -> None:
    """Write a configuration document to `path` atomically, mode 0600 (it may hold the secret)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(dict(document), sort_keys=False))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise


def _check_url(url: str, where: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError(f"{where}: expected http(s)://HOST/... webhook URLs, found {redact(url)!r}")


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The X-Dossier-Signature value of `body` sent at `timestamp`."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def check_signature(secret: bytes, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
                    window_s: int = REPLAY_WINDOW_S) -> bool:
    """What a receiver does: True when `signature` is the body's at `timestamp`, and `timestamp`
    is within `window_s` of now."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > window_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)


@dataclass
class _Event:
    id: str
    type: EventType
    document: dict[str, Any]
    path: str | None
    body: bytes | None = None  # fixed when first sent: every URL and retry gets the same bytes


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    event: _Event = field(compare=False)
    url: str = field(compare=False)
    attempt: int = field(compare=False, default=1)


class WebhookSender:
    """Queues events and delivers them from one background thread (see the module's docstring)."""

    def __init__(self, config: WebhookConfig, *, delivery_log: Path | None = None,
                 ear_for: Callable[[str, str], str | None] | None = None, rng: random.Random | None = None) -> None:
        self.config = config
        self.delivery_log = config.delivery_log or delivery_log
        self._ear_for = ear_for
        self._rng = rng or random.Random()
        self._pending: list[_Delivery] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False
        self._deadline: float | None = None
        self._in_flight = 0
        self._log_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dossier-webhooks", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"WebhookSender(urls={[redact(url) for url in self.config.urls]})"

    def emit(self, event_type: EventType, device: str, message: str, details: Mapping[str, Any], *,
             path: str | None = None) -> str | None:
        """Queue an event for every URL; its id, or None when it is not wanted or was dropped."""
        if event_type not in self.config.events:
            return None
        event_id = uuid.uuid4().hex
        document = {"format": EVENT_FORMAT, "id": event_id, "type": str(event_type),
                    "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "device": device,
                    "message": message, "details": dict(details)}
        event = _Event(event_id, event_type, document, path)
        with self._wake:
            if self._stopping or len(self._pending) + self._in_flight + len(self.config.urls) > MAX_PENDING:
                dropped = True
            else:
                dropped = False
                now = time.monotonic()
                for url in self.config.urls:
                    heapq.heappush(self._pending, _Delivery(now, next(self._order), event, url))
                self._wake.notify()
        if dropped:
            log.warning("webhook event %s (%s, %s) dropped: %s", event_id, event_type, device,
                        "the sender is stopping" if self._stopping else f"{MAX_PENDING} deliveries are waiting")
            for url in self.config.urls:
                self._log(event, url, 0, None, "dropped", "queue full" if not self._stopping else "stopping")
            return None
        return event_id

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is waiting or being sent; False if `timeout` passed first."""
        end = time.monotonic() + timeout
        with self._wake:
            while self._pending or self._in_flight:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Deliver what is due within `timeout`, then stop; what is left is logged as dropped."""
        with self._wake:
            self._stopping = True
            self._deadline = time.monotonic() + timeout
            self._wake.notify_all()
        self._thread.join(timeout + ATTEMPT_TIMEOUT_S)

    # --- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                delivery = self._next()
                if delivery is None:
                    break
                self._in_flight += 1
            retry: _Delivery | None = None
            try:
                retry = self._deliver(delivery)
            except Exception:  # noqa: BLE001 - a bug must not stop every later delivery; logged in full
                log.exception("webhook event %s to %s: delivery failed unexpectedly", delivery.event.id,
                              redact(delivery.url))
                self._log(delivery.event, delivery.url, delivery.attempt, None, "failed", "internal error")
            finally:
                with self._wake:  # one step: the bound never counts a delivery twice
                    if retry is not None:
                        heapq.heappush(self._pending, retry)
                    self._in_flight -= 1
                    self._wake.notify_all()
        with self._wake:
            left, self._pending = self._pending, []
        for delivery in left:
            self._log(delivery.event, delivery.url, delivery.attempt, None, "dropped", "the sender stopped")

    def _next(self) -> _Delivery | None:
        """The next delivery due (waiting for it), or None to stop. Called with `_wake` held."""
        while True:
            now = time.monotonic()
            if self._stopping and (not self._pending or now >= (self._deadline or now)
                                   or self._pending[0].due > (self._deadline or now)):
                return None
            if self._pending and self._pending[0].due <= now:
                return heapq.heappop(self._pending)
            wait = self._pending[0].due - now if self._pending else None
            if self._stopping and self._deadline is not None:
                wait = min(wait if wait is not None else self._deadline - now, self._deadline - now)
            self._wake.wait(wait)

    def _body(self, event: _Event) -> bytes:
        if event.body is None:
            if event.path is not None and self._ear_for is not None:
                try:
                    ear = self._ear_for(str(event.document["device"]), event.path)
                except CollectorError as exc:  # the event still goes out, without its EAR
                    log.warning("no EAR for webhook event %s: %s", event.id, exc)
                    ear = None
                if ear is not None:
                    event.document["ear"] = ear
            event.body = json.dumps(event.document, sort_keys=True, separators=(",", ":"), default=str).encode()
        return event.body

    def _deliver(self, delivery: _Delivery) -> _Delivery | None:
        """One attempt; the next attempt when one is due."""
        event, url = delivery.event, delivery.url
        body = self._body(event)
        timestamp = int(time.time())
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "trust-dossier-webhooks",
            "X-Dossier-Event": str(event.type), "X-Dossier-Event-Id": event.id,
            "X-Dossier-Timestamp": str(timestamp), "X-Dossier-Signature": sign(self.config.secret, timestamp, body)})
        status: int | None = None
        error: str | None = None
        deadline = Deadline(ATTEMPT_TIMEOUT_S)
        try:
            with no_redirect_opener(deadline).open(request, timeout=ATTEMPT_TIMEOUT_S) as answer:
                status = answer.status
                answer.read(MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            error = str(getattr(exc, "reason", exc))[:200]
        finally:
            deadline.cancel()
        if deadline.passed:  # what was read was cut short: not an answer (a retry repeats the id)
            status, error = None, f"no whole answer within {ATTEMPT_TIMEOUT_S:g} s"
        if status is not None and 200 <= status < 300:
            self._log(event, url, delivery.attempt, status, "delivered", None)
            return None
        retryable = status is None or status >= 500 or status in (408, 429)
        if retryable and delivery.attempt < self.config.max_attempts:
            ceiling = min(RETRY_MAX_S, self.config.retry_base_s * 2 ** (delivery.attempt - 1))
            delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # equal jitter, as the collector's polls
            self._log(event, url, delivery.attempt, status, "retry", error)
            return _Delivery(time.monotonic() + delay, next(self._order), event, url, delivery.attempt + 1)
        self._log(event, url, delivery.attempt, status, "failed", error)
        log.warning("webhook event %s to %s failed after %d attempt(s): %s", event.id, redact(url), delivery.attempt,
                    f"HTTP {status}" if status is not None else error)
        return None

    def _log(self, event: _Event, url: str, attempt: int, status: int | None, outcome: str, error: str | None) -> None:
        if self.delivery_log is None:
            return
        line = json.dumps({"event": event.id, "type": str(event.type), "device": event.document["device"],
                           "url": redact(url), "attempt": attempt, "status": status, "outcome": outcome,
                           "error": error, "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")},
                          sort_keys=True) + "\n"
        with self._log_lock:
            try:
                if self.delivery_log.exists() and self.delivery_log.stat().st_size > MAX_DELIVERY_LOG_BYTES:
                    os.replace(self.delivery_log, self.delivery_log.with_name(self.delivery_log.name + ".1"))
                with open(self.delivery_log, "a", encoding="utf-8") as handle:
                    handle.write(line)
            except OSError as exc:  # the log is for people; delivery goes on without it
                log.warning("cannot write the webhook delivery log %s: %s", self.delivery_log, exc)


def start_sender(config: WebhookConfig, store: Any, trust_store_path: Path, policy: Any,
                 ear_key: Path | None) -> WebhookSender:
    """The sender of `config` for a collector or service over `store` (a `collector.store.Store`):
    its events carry the EAR of the output they are about, signed with the EAR key (beside the
    trust store by default), and its delivery log is `<store>/state/webhook-deliveries.jsonl`
    unless the configuration names one. Raises StoreError for an unusable EAR key."""
    from .ear import EarSigner, ear_key_path, ear_source
    from .verifying import trust_store_for

    signer = EarSigner.load_or_create(ear_key or ear_key_path(trust_store_path), store_root=store.root)
    (store.root / "state").mkdir(exist_ok=True)
    return WebhookSender(config, delivery_log=store.root / "state" / "webhook-deliveries.jsonl",
                         ear_for=ear_source(store, trust_store_for(str(trust_store_path)), policy, signer))
