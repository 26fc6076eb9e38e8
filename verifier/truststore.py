"""The trust store: which root(s) each device is enrolled with.

A directory (schema: `schemas/truststore.schema.json`):

    <store>/truststore.json          {"format": "trust-dossier-truststore", "version": 1}
    <store>/devices/<device>.json    one file per device: roots, pinned leaf, intermediates
    <store>/pool.json                the trust pool: CA certificates imported from bundles
    <store>/.lock                    serializes writers (flock)

One file per device keeps enrolling a fleet linear (each write rewrites one small file).
Every write goes to a temporary file that replaces the old one (`os.replace`), under the lock,
so readers see the old or the new file, never half of one. Anything unreadable, inconsistent
or failing its schema raises TrustStoreError naming the file: a damaged store is never read
as an empty one. Certificates are stored as PEM beside their SHA-256, which is checked on load.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

import schemas

from ._schemacheck import ecma_validator, yes_no_check
from .chain import CERTIFICATE_ERRORS, fingerprint, format_name, is_ca, read_now
from .errors import TrustStoreError

if TYPE_CHECKING:
    import jsonschema

__all__ = ["RootEntry", "TrustStore", "parse_bundle"]

FORMAT = "trust-dossier-truststore"
VERSION = 1
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_BUNDLE_CERTIFICATES = 1000  # the Cisco trust-pool bundle has ~150; bound hostile input
#: Nodes whose attestation keys one device pins: a chassis has a few dozen cards with a TPM.
MAX_ATTESTATION_KEYS = 64


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise TrustStoreError(f"time {value.isoformat()} has no time zone; pass an aware datetime")
    return value.astimezone(dt.UTC).isoformat()


def _parse_time(value: str | None, where: Path | None = None, field: str = "time") -> dt.datetime | None:
    """An ISO-8601 time with a time zone, as the store writes them; TrustStoreError naming the
    file otherwise (the schema's `date-time` format is not enforced by the compiled check)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise TrustStoreError(
            f"{where}: {field}: expected an ISO-8601 time with a time zone (as the store writes, "
            f"e.g. 2026-01-01T00:00:00+00:00), found {value!r}; the store is damaged or was edited"
        )
    return parsed


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _pinned(cert: x509.Certificate, source: str, pinned_at: dt.datetime | None) -> dict[str, Any]:
    """A pinned certificate as the store keeps it, with how and when it was confirmed."""
    return {"sha256": fingerprint(cert), "subject": cert.subject.rfc4514_string(), "pem": _pem(cert),
            "source": source, "pinned_at": _iso(pinned_at or dt.datetime.now(dt.UTC))}


def parse_bundle(data: bytes) -> list[x509.Certificate]:
    """Certificates from a PEM bundle, or a PKCS#7 bundle in DER or PEM (as the seed's trust pool).

    Raises TrustStoreError if nothing in `data` is a certificate bundle.
    """
    from cryptography.hazmat.primitives.serialization import pkcs7  # with email: only for bundles

    if b"-----BEGIN PKCS7-----" in data:
        loaders = [pkcs7.load_pem_pkcs7_certificates]
    elif b"-----BEGIN CERTIFICATE-----" in data:
        loaders = [x509.load_pem_x509_certificates]
    else:
        loaders = [pkcs7.load_der_pkcs7_certificates]
    for loader in loaders:
        try:
            certificates = loader(data)
        except ValueError as exc:
            raise TrustStoreError(
                f"the bundle could not be read ({exc}); expected PEM certificates or a PKCS#7 "
                "bundle in DER or PEM"
            ) from None
        if not certificates:
            break
        if len(certificates) > MAX_BUNDLE_CERTIFICATES:
            raise TrustStoreError(
                f"the bundle holds {len(certificates)} certificates, over the "
                f"{MAX_BUNDLE_CERTIFICATES} limit"
            )
        return list(certificates)
    raise TrustStoreError("the bundle holds no certificates")


@dataclass(frozen=True)
class RootEntry:
    """One enrolled root (or trust-pool CA) as the store records it."""

    certificate: x509.Certificate
    sha256: str
    enrolled_at: dt.datetime
    source: str
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None

    def in_window(self, at: dt.datetime) -> bool:
        """Whether the store trusts this root for envelopes judged at `at`."""
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_until is None or at <= self.valid_until

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "subject": self.certificate.subject.rfc4514_string(),
            "enrolled_at": _iso(self.enrolled_at),
            "source": self.source,
            "valid_from": _iso(self.valid_from),
            "valid_until": _iso(self.valid_until),
            "pem": _pem(self.certificate),
        }


@cache
def _validator() -> jsonschema.Draft202012Validator:
    """jsonschema's validator: it explains what the yes/no check refused, and checks writes."""
    return ecma_validator(schemas.load("truststore"))


@cache
def _is_valid() -> Any:
    """The yes/no schema check (jsonschema then explains a failure)."""
    return yes_no_check(schemas.load("truststore"))


_CERT_CACHE_SIZE = 4096  # one root (and maybe a leaf) per device
_cert_cache: dict[tuple[str, str], x509.Certificate] = {}


def _load_cert(record: dict[str, Any], where: Path) -> x509.Certificate:
    key = (record["pem"], record["sha256"])
    cert = _cert_cache.get(key)
    if cert is None:
        cert = _load_cert_uncached(record, where)
        if len(_cert_cache) >= _CERT_CACHE_SIZE:
            _cert_cache.clear()
        _cert_cache[key] = cert
    return cert


def _load_cert_uncached(record: dict[str, Any], where: Path) -> x509.Certificate:
    try:
        # Names and dates read now: a malformed one is damage reported here, not a crash later.
        cert = read_now(x509.load_pem_x509_certificate(record["pem"].encode("ascii")))
    except CERTIFICATE_ERRORS as exc:
        raise TrustStoreError(f"{where}: a stored certificate is not valid PEM ({exc})") from None
    actual = fingerprint(cert)
    if actual != record["sha256"]:
        raise TrustStoreError(
            f"{where}: stored certificate's SHA-256 is {actual}, but the store records "
            f"{record['sha256']}; the store is damaged or was edited: re-enroll the device"
        )
    return cert


def _root_entry(record: dict[str, Any], where: Path) -> RootEntry:
    return RootEntry(
        certificate=_load_cert(record, where),
        sha256=record["sha256"],
        enrolled_at=_parse_time(record["enrolled_at"], where, "enrolled_at"),
        source=record["source"],
        valid_from=_parse_time(record.get("valid_from"), where, "valid_from"),
        valid_until=_parse_time(record.get("valid_until"), where, "valid_until"),
    )


class TrustStore:
    """A directory mapping device names to enrolled roots; see the module docstring."""

    def __init__(self, path: Path) -> None:
        """Use `TrustStore.open`."""
        self.path = Path(path)
        # file -> (identity of the version read, parsed content). Writes replace files (a new
        # inode), so a changed identity means re-read: verifying a batch reads each file once.
        self._files: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._device_files: dict[str, Path] = {}
        self._frozen = False  # see `frozen`
        self._seen: dict[Path, Any] = {}  # what a frozen view found at its first look at each file

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | str, *, create: bool = False) -> TrustStore:
        """Open the store at `path`; with `create`, make it if absent.

        Raises TrustStoreError if it is absent (and not `create`), not a trust store, or damaged.
        """
        store = cls(Path(path))
        marker = store.path / "truststore.json"
        if not marker.exists():
            if not create:
                raise TrustStoreError(
                    f"no trust store at {store.path} (no truststore.json); create one with "
                    "`dossier trust add DEVICE ROOT.pem --trust-store DIR`"
                )
            if store.path.exists() and any(store.path.iterdir()):
                raise TrustStoreError(
                    f"{store.path} exists, is not empty, and is not a trust store; refusing to "
                    "write into it"
                )
            (store.path / "devices").mkdir(parents=True, exist_ok=True)
            with store._locked():
                store._write(marker, {"format": FORMAT, "version": VERSION})
        content = store._read(marker)
        if content.get("format") != FORMAT or content.get("version") != VERSION:
            raise TrustStoreError(
                f"{marker}: expected format {FORMAT!r} version {VERSION}, found "
                f"{content.get('format')!r} version {content.get('version')!r}"
            )
        if not (store.path / "devices").is_dir():
            raise TrustStoreError(f"{store.path}: the devices/ folder is missing; the store is damaged")
        return store

    def frozen(self) -> TrustStore:
        """A read-only view that looks at each file once (a stat, and a read only if the file
        changed since this store last read it) and never again: one consistent trust store for
        a whole collection run (changes made meanwhile apply from the next run), without a
        file-system call per envelope verified. It shares this store's cache of parsed files,
        so a collector that runs again and again reads only what changed."""
        view = TrustStore(self.path)
        view._files = self._files
        view._frozen = True
        return view

    # -- files -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self, file: Path, *, shared: bool = False, missing_ok: bool = False) -> Any:
        """The file's content, read once per version of the file. A copy the caller may change,
        or with `shared`, the cached object itself (for readers that only look). With
        `missing_ok`, None for a file that does not exist."""
        if self._frozen:
            if file not in self._seen:  # first look: as an unfrozen store reads it
                self._seen[file] = self._read_current(file)
            content = self._seen[file]
        else:
            content = self._read_current(file)
        if content is None:
            if missing_ok:
                return None
            raise TrustStoreError(f"{file}: cannot be read (it does not exist); the store is damaged")
        return content if shared else copy.deepcopy(content)

    def _read_current(self, file: Path) -> Any:
        """The file's content now (shared, not a copy; None if it does not exist), re-read only
        if it changed."""
        try:
            status = file.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TrustStoreError(f"{file}: cannot be read ({exc.strerror or exc}); the store is damaged") from None
        identity = (status.st_ino, status.st_mtime_ns, status.st_size)
        cached = self._files.get(file)
        if cached is None or cached[0] != identity:
            cached = self._files[file] = (identity, self._read_uncached(file))
        return cached[1]

    def _read_uncached(self, file: Path) -> dict[str, Any]:
        try:
            content = json.loads(file.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrustStoreError(f"{file}: cannot be read as JSON ({exc}); the store is damaged") from None
        if _is_valid()(content):
            return content
        errors = sorted(_validator().iter_errors(content), key=lambda error: error.path)
        if errors:
            raise TrustStoreError(
                f"{file}: does not match schemas/truststore.schema.json "
                f"({errors[0].message} at /{'/'.join(map(str, errors[0].path))}); the store is damaged"
            )
        return content

    def _write(self, file: Path, content: dict[str, Any]) -> None:
        if self._frozen:
            raise TrustStoreError(f"{self.path}: a frozen view (one collection run's) cannot be changed")
        _validator().validate(content)
        file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(content, out, indent=2, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, file)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def _device_file(self, device: str) -> Path:
        file = self._device_files.get(device)
        if file is None:
            if not device or len(device) > 255:
                raise TrustStoreError(f"device name {device!r} must be 1 to 255 characters")
            name = device if _SAFE_NAME.fullmatch(device) else "%" + urllib.parse.quote(device, safe="")
            file = self._device_files[device] = self.path / "devices" / f"{name}.json"
        return file

    def _device_record(self, device: str, *, shared: bool = False) -> dict[str, Any] | None:
        file = self._device_file(device)
        record = self._read(file, shared=shared, missing_ok=True)
        if record is None:
            return None
        if record["device"] != device:
            raise TrustStoreError(
                f"{file}: holds device {record['device']!r}, expected {device!r}; the store is damaged"
            )
        return record

    def _new_record(self, device: str) -> dict[str, Any]:
        return {"device": device, "roots": [], "pinned_leaf": None, "intermediates": [], "trust_pool": False}

    def _update(self, device: str, change: Any) -> dict[str, Any]:
        with self._locked():
            record = self._device_record(device) or self._new_record(device)
            change(record)
            self._write(self._device_file(device), record)
            return record

    # -- reading ---------------------------------------------------------------------------
    def devices(self) -> list[str]:
        """Every enrolled device name, sorted."""
        names = []
        for file in sorted((self.path / "devices").glob("*.json")):
            names.append(self._read(file, shared=True)["device"])
        return sorted(names)

    def __contains__(self, device: str) -> bool:
        if self._frozen:
            return self._read(self._device_file(device), shared=True, missing_ok=True) is not None
        return self._device_file(device).exists()

    def root_entries(self, device: str) -> list[RootEntry]:
        """Every root enrolled for `device` (any window); [] if the device is unknown."""
        record = self._device_record(device, shared=True)
        if record is None:
            return []
        file = self._device_file(device)
        entries = [_root_entry(item, file) for item in record["roots"]]
        if record["trust_pool"]:
            entries.extend(self.pool_entries())
        return entries

    def roots_for(self, device: str, at: dt.datetime | None = None) -> list[x509.Certificate]:
        """Roots trusted for `device` at time `at` (default now): enrolled roots whose window holds it."""
        when = at or dt.datetime.now(dt.UTC)
        return [entry.certificate for entry in self.root_entries(device) if entry.in_window(when)]

    def pinned_leaf(self, device: str) -> x509.Certificate | None:
        """The pinned leaf of `device`, if any (for envelopes signed without include-certificate)."""
        record = self._device_record(device, shared=True)
        if record is None or record["pinned_leaf"] is None:
            return None
        return _load_cert(record["pinned_leaf"], self._device_file(device))

    def pinned_attestation_keys(self, device: str) -> dict[str, x509.Certificate]:
        """The TPM attestation-key certificates pinned for `device`, by node location ({} when
        none is: every TPM output of the device then fails `identity.not_pinned`)."""
        record = self._device_record(device, shared=True)
        if record is None:
            return {}
        file = self._device_file(device)
        return {location: _load_cert(item, file) for location, item in record.get("attestation_keys", {}).items()}

    def intermediates_for(self, device: str) -> list[x509.Certificate]:
        """Intermediates enrolled for `device` (an enterprise CA's sub-CAs)."""
        record = self._device_record(device, shared=True)
        if record is None:
            return []
        return [_load_cert(item, self._device_file(device)) for item in record["intermediates"]]

    def pool_entries(self) -> list[RootEntry]:
        """The trust pool (CA certificates imported from bundles)."""
        file = self.path / "pool.json"
        content = self._read(file, shared=True, missing_ok=True)
        if content is None:
            return []
        return [_root_entry(item, file) for item in content["certificates"]]

    def devices_for_root(self, sha256: str) -> list[str]:
        """Devices that have the root with this SHA-256 enrolled directly."""
        found = []
        for file in sorted((self.path / "devices").glob("*.json")):
            record = self._read(file, shared=True)
            if any(item["sha256"] == sha256 for item in record["roots"]):
                found.append(record["device"])
        return found

    def describe(self, device: str) -> dict[str, Any]:
        """The device's record as stored (JSON-ready), or raise TrustStoreError if unknown."""
        record = self._device_record(device)
        if record is None:
            raise TrustStoreError(f"device {device!r} is not in the trust store at {self.path}")
        return record

    def listing(self) -> dict[str, Any]:
        """Every enrolled device's record and the trust pool, as `dossier trust list --json` and
        `GET /api/v1/trust` give them: certificates by SHA-256 and subject (no PEM), each loaded
        and checked as verification would first (`check`). Raises TrustStoreError as `check`."""
        records = []
        for name in self.devices():
            self.check(name)  # what is listed is what verification would load
            record = self.describe(name)
            for item in [*record["roots"], *record["intermediates"], *filter(None, [record["pinned_leaf"]]),
                         *record.get("attestation_keys", {}).values()]:
                item.pop("pem", None)
            records.append(record)
        pool = [entry.to_json() for entry in self.pool_entries()]
        for item in pool:
            item.pop("pem", None)
        return {"devices": records, "pool": pool}

    def check(self, device: str) -> None:
        """Load every certificate enrolled for `device` (roots, pinned leaf, intermediates) as
        verification does, each checked against its recorded SHA-256. Raises TrustStoreError
        naming the file if one is damaged, or if the device is unknown."""
        record = self._device_record(device, shared=True)
        if record is None:
            raise TrustStoreError(f"device {device!r} is not in the trust store at {self.path}")
        file = self._device_file(device)
        for item in record["roots"]:
            _root_entry(item, file)  # its certificate and its times
        pinned = [record["pinned_leaf"]] if record["pinned_leaf"] is not None else []
        for item in [*record["intermediates"], *pinned, *record.get("attestation_keys", {}).values()]:
            _load_cert(item, file)

    # -- writing ---------------------------------------------------------------------------
    def add_root(
        self,
        device: str,
        root: x509.Certificate,
        *,
        enrolled_at: dt.datetime | None = None,
        source: str = "manual",
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
    ) -> RootEntry:
        """Enroll `root` for `device`. Adding a root already enrolled returns its existing entry.

        Raises TrustStoreError if `root` is not a CA certificate or the window is empty.
        """
        if not is_ca(root):
            raise TrustStoreError(
                f"the certificate {format_name(root.subject)} is not a CA (basicConstraints "
                "CA:TRUE); enroll the device's root (`system-trustpoint ca-certificate`), not its leaf"
            )
        if valid_from and valid_until and valid_until < valid_from:
            raise TrustStoreError(
                f"empty validity window: valid_until {valid_until.isoformat()} is before "
                f"valid_from {valid_from.isoformat()}"
            )
        entry = RootEntry(
            certificate=root,
            sha256=fingerprint(root),
            enrolled_at=enrolled_at or dt.datetime.now(dt.UTC),
            source=source,
            valid_from=valid_from,
            valid_until=valid_until,
        )
        result: list[RootEntry] = []

        def change(record: dict[str, Any]) -> None:
            for item in record["roots"]:
                if item["sha256"] == entry.sha256:
                    result.append(_root_entry(item, self._device_file(device)))
                    return
            record["roots"].append(entry.to_json())
            result.append(entry)

        self._update(device, change)
        return result[0]

    def set_root_window(
        self, device: str, sha256: str, *, valid_from: dt.datetime | None, valid_until: dt.datetime | None
    ) -> None:
        """Set the window in which a root is trusted (e.g. close it when the device's root rotates)."""

        def change(record: dict[str, Any]) -> None:
            for item in record["roots"]:
                if item["sha256"] == sha256:
                    item["valid_from"], item["valid_until"] = _iso(valid_from), _iso(valid_until)
                    return
            raise TrustStoreError(f"device {device!r} has no root with SHA-256 {sha256}")

        self._require(device)
        self._update(device, change)

    def pin_leaf(self, device: str, leaf: x509.Certificate, *, source: str = "manual",
                 pinned_at: dt.datetime | None = None) -> None:
        """Pin the device's leaf: for IOS XR, used for envelopes without certificates and to report
        rotation; for IOS XE, the SUDI certificate that is the device's identity. `source` says
        how it was confirmed (fingerprint, interactive, tofu, manual)."""

        def change(record: dict[str, Any]) -> None:
            record["pinned_leaf"] = _pinned(leaf, source, pinned_at)

        self._require(device)
        self._update(device, change)

    def pin_attestation_key(self, device: str, location: str, certificate: x509.Certificate, *,
                            source: str = "manual", pinned_at: dt.datetime | None = None) -> None:
        """Pin the TPM attestation-key certificate of `device`'s node `location` (each node has
        its own TPM): TPM outputs are then trusted only when signed by that key. `source` as for
        `pin_leaf`."""
        if not location or len(location) > 255:
            raise TrustStoreError(f"node location {location!r} must be 1 to 255 characters")

        def change(record: dict[str, Any]) -> None:
            keys = record.setdefault("attestation_keys", {})
            if location not in keys and len(keys) >= MAX_ATTESTATION_KEYS:
                raise TrustStoreError(f"device {device!r}: expected at most {MAX_ATTESTATION_KEYS} nodes with a pinned "
                                      f"attestation key, found {len(keys)} already; not pinning {location!r}")
            keys[location] = _pinned(certificate, source, pinned_at)

        self._require(device)
        self._update(device, change)

    def add_intermediate(self, device: str, cert: x509.Certificate) -> None:
        """Enroll a sub-CA for `device` (an enterprise CA enrolled with its sub-CA)."""
        if not is_ca(cert):
            raise TrustStoreError(f"the intermediate {format_name(cert.subject)} is not a CA")

        def change(record: dict[str, Any]) -> None:
            sha = fingerprint(cert)
            if all(item["sha256"] != sha for item in record["intermediates"]):
                record["intermediates"].append(
                    {"sha256": sha, "subject": cert.subject.rfc4514_string(), "pem": _pem(cert)}
                )

        self._require(device)
        self._update(device, change)

    def use_trust_pool(self, device: str, enabled: bool = True) -> None:
        """Trust the pool's CAs as roots for `device` (off by default: fail closed)."""

        def change(record: dict[str, Any]) -> None:
            record["trust_pool"] = enabled

        self._update(device, change)

    def import_bundle(self, data: bytes, *, source: str = "bundle") -> list[RootEntry]:
        """Add the CA certificates of a PEM or PKCS#7 bundle to the trust pool; returns those added.

        Raises TrustStoreError if the bundle cannot be read or holds a certificate that is not a CA.
        """
        certificates = parse_bundle(data)
        for cert in certificates:
            if not is_ca(cert):
                raise TrustStoreError(
                    f"the bundle holds {format_name(cert.subject)}, which is not a CA; "
                    "a trust pool holds CA certificates only"
                )
        file = self.path / "pool.json"
        added: list[RootEntry] = []
        now = dt.datetime.now(dt.UTC)
        with self._locked():
            content = self._read(file) if file.exists() else {"certificates": []}
            known = {item["sha256"] for item in content["certificates"]}
            for cert in certificates:
                entry = RootEntry(cert, fingerprint(cert), now, source)
                if entry.sha256 not in known:
                    known.add(entry.sha256)
                    content["certificates"].append(entry.to_json())
                    added.append(entry)
            self._write(file, content)
        return added

    def remove(self, device: str) -> None:
        """Forget `device`. Raises TrustStoreError if it is not enrolled."""
        with self._locked():
            self._require(device)
            self._device_file(device).unlink()

    def _require(self, device: str) -> None:
        if not self._device_file(device).exists():
            raise TrustStoreError(
                f"device {device!r} is not in the trust store at {self.path}; enroll it first "
                "with `dossier trust add DEVICE ROOT.pem`"
            )
