"""Where a store keeps its files, and the records its index holds of them.

The file names of stored envelopes and their sidecars are the verifier's rule
(`verifier.stored`): the collector writes by it, auditors read by it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from verifier.stored import (APPRAISAL_SUFFIX, ENVELOPE_SUFFIX, META_SUFFIX, METADATA_FORMAT, NAME_STAMP,
                             VERDICT_SUFFIX)

from ..errors import StoreError

__all__ = ["APPRAISAL_SUFFIX", "DEVICE_NAME_RE", "DIRTY_MARKER", "ENVELOPE_SUFFIX", "INDEX_NAME",
           "MAX_DAMAGE_WARNINGS", "MAX_METADATA_WITH_VERDICT", "META_SUFFIX", "METADATA_FORMAT", "RESERVED_NAMES",
           "VERDICT_SUFFIX", "EnvelopeRecord", "StoredVerdict", "appraisal_row", "check_device_name", "new_poll_id", "parse_iso"]

INDEX_NAME = "index.sqlite"
DIRTY_MARKER = "index.dirty"
_DIRTY_TEXT = b"a collection run is writing\n"
#: A metadata file with the verdict in it stays under this; a larger verdict (its findings quote
#: device output) goes to its own `.envelope.verdict.json`. `dossier verify` reads metadata files
#: of up to 1 MiB.
MAX_METADATA_WITH_VERDICT = 256 * 1024
#: The received time at the start of a stored envelope's name (`verifier.stored.stored_name`).
_NAME_STAMP = NAME_STAMP
#: `recover` logs this many damaged files one by one, then how many more there are: a store with
#: thousands of them must not bury the run's own output (`dossier store reindex` lists them all).
MAX_DAMAGE_WARNINGS = 20


# A device name becomes a folder of the store: the inventory's name pattern, and none of the
# names the store itself uses at its top level.
DEVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RESERVED_NAMES = frozenset({"state"})
#: The device states, one file for the fleet (a name no device can have: it starts with '_').
DEVICE_STATES_NAME = "_devices.json"
DEVICE_STATES_FORMAT = "trust-dossier/device-states/1"


def _is_device_name(device: object) -> bool:
    return isinstance(device, str) and bool(DEVICE_NAME_RE.fullmatch(device)) and device not in RESERVED_NAMES


def check_device_name(device: str) -> str:
    """Return `device` if it can name a folder of the store; raise StoreError otherwise."""
    if not _is_device_name(device):
        raise StoreError(
            f"invalid device name {device!r}: expected 1 to 63 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, and not one of {sorted(RESERVED_NAMES)}"
        )
    return device



@dataclass(frozen=True)
class StoredVerdict:
    """A verdict as the store records it: the verifier's JSON and the index's summary of it."""

    verdict_json: Mapping[str, Any]
    trusted: bool
    reasons: list[str]
    days_leaf: int | None
    days_root: int | None

    def apply_to(self, record: EnvelopeRecord) -> None:
        """Put the index's summary of this verdict on `record`."""
        record.trusted, record.reasons = self.trusted, self.reasons
        record.days_leaf, record.days_root = self.days_leaf, self.days_root


@dataclass
class EnvelopeRecord:
    """One stored envelope as the index knows it."""

    path: str
    device: str
    received: str
    bytes: int
    sha256: str
    host: str | None = None
    nonce: str | None = None
    started: str | None = None
    duration_s: float | None = None
    trusted: bool | None = None
    reasons: list[str] = field(default_factory=list)
    days_leaf: int | None = None
    days_root: int | None = None
    meta_missing: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)



def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))



@dataclass
class _Entry:
    """One envelope on its way into the store (`Store.save`, `Store.save_many`)."""

    directory: Path
    name: str
    envelope_path: Path
    output: bytes
    meta: dict[str, Any]
    record: EnvelopeRecord


def new_poll_id() -> str:
    """A fresh id shared by the outputs of one poll (metadata `poll_id`)."""
    return secrets.token_hex(8)


def appraisal_row(record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> tuple[str, str, str, str, str, int]:
    """An appraisal's row in the index's `appraisals` table (SQLite and PostgreSQL alike): path,
    device, received, status, trust vector (JSON) and the number of findings."""
    return (record.path, record.device, record.received, appraisal["status"],
            json.dumps(appraisal.get("trust_vector") or {}), len(appraisal.get("findings") or []))
