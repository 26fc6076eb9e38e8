"""Reading the files the store keeps beside each envelope, and checking them: the one place.

A metadata file (schemas/metadata.schema.json), a verdict (in the metadata or in its own
`.envelope.verdict.json`) and an appraisal are written by the collector, but anyone who can
write the store can edit, truncate or replace them, and a crash or a full disk can leave them
short. The store reads them only through here: what is usable comes back, and every problem as
a `DamagedFile` (which file, what was expected, what was found), never an exception. Nothing
here changes a file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from verifier import stored
from verifier.display import inert

__all__ = ["DAMAGE_INVALID", "DAMAGE_UNREADABLE", "MAX_SIDECAR_BYTES", "DamagedFile", "VerdictSummary",
           "collected_verdict", "read_appraisal", "read_metadata", "read_sidecar"]

#: Metadata and verdict files are small; anything larger is not ours.
MAX_SIDECAR_BYTES = stored.MAX_SIDECAR_BYTES
#: What is reported about a stored file that cannot be used as it is (stable ids: scripts read
#: them from `dossier store reindex --json`).
DAMAGE_UNREADABLE = "store.file_unreadable"  # cannot be read, too large, not JSON, not an object
DAMAGE_INVALID = "store.sidecar_invalid"  # a JSON object with a field missing or of the wrong kind
APPRAISAL_STATUSES = frozenset({"affirming", "warning", "contraindicated"})  # appraisal.schema.json
_SHOWN_CHARS = 80  # of a wrong value in a report: enough to recognise it, not a page of it
_ABSENT = object()


@dataclass(frozen=True)
class DamagedFile:
    """A stored file that could not be used as it is: which file, what was expected of it and
    what was found. Nothing is changed on disk because of it."""

    id: str  # DAMAGE_UNREADABLE or DAMAGE_INVALID
    path: str
    expected: str
    found: str

    def __str__(self) -> str:
        # A file's name and content are anyone's who can write the store: printed inert.
        return inert(f"{self.path}: expected {self.expected}, found {self.found}")

    def to_json(self) -> dict[str, str]:
        return asdict(self)


class VerdictSummary(NamedTuple):
    """What the index records of a stored verdict (the fields of `store.StoredVerdict`)."""

    verdict_json: dict[str, Any]
    trusted: bool
    reasons: list[str]
    days_leaf: int | None
    days_root: int | None


def read_sidecar(path: Path, what: str) -> tuple[dict[str, Any] | None, DamagedFile | None]:
    """The JSON object in the `what` ("metadata") file `path`: (object, None), (None, None) when
    there is no such file, or (None, what is wrong with it). Read by the verifier's one reader
    of the stored format (`verifier.stored.read_sidecar`: size cap, strict JSON, depth)."""
    try:
        return stored.read_sidecar(path, what, max_bytes=MAX_SIDECAR_BYTES), None
    except stored.StoredFileError as exc:
        return None, DamagedFile(DAMAGE_UNREADABLE, str(path), exc.expected, exc.found)


def read_metadata(path: Path) -> tuple[dict[str, Any] | None, list[DamagedFile]]:
    """The fields of metadata file `path` that match schemas/metadata.schema.json (each other
    one left out and reported; `received` and `started` also parse as times with a zone), or
    None when there is no such file or it cannot be read. The verdict in it is left to
    `collected_verdict`, which checks it as one in its own file."""
    meta, damage = read_sidecar(path, "metadata")
    if meta is None:
        return None, [damage] if damage is not None else []
    from .inventory import _expected  # the twin that explains the inventory's schema errors

    problems: list[DamagedFile] = []
    wrong: set[Any] = set()
    for error in _metadata_validator().iter_errors(meta):
        field = error.absolute_path[0] if error.absolute_path else None
        if field == "verdict":
            continue
        wrong.add(field)
        where = ".".join(map(str, error.absolute_path)) or "the metadata"
        found = "nothing" if error.validator == "required" else _shown(error.instance)
        problems.append(DamagedFile(DAMAGE_INVALID, str(path), f"{where}: {_expected(error)}", found))
    fields = {name: value for name, value in meta.items() if name not in wrong}
    for name in ("received", "started"):
        if isinstance(fields.get(name), str) and not _is_zoned_time(fields[name]):
            problems.append(DamagedFile(DAMAGE_INVALID, str(path), f"{name}: an ISO-8601 time with a time zone",
                                        _shown(fields.pop(name))))
    return fields, problems


def collected_verdict(meta_path: Path, meta: dict[str, Any] | None,
                      verdict_path: Path) -> tuple[VerdictSummary | None, list[DamagedFile]]:
    """The verdict at collection: in the metadata (`meta`, as `read_metadata` read it from
    `meta_path`), else in the separate verdict file; None when neither holds a usable one."""
    problems: list[DamagedFile] = []
    if meta is not None and "verdict" in meta:
        verdict, problems = _verdict_summary(meta["verdict"], meta_path, "verdict.")
        if verdict is not None:
            return verdict, problems
    document, damage = read_sidecar(verdict_path, "verdict")
    if damage is not None:
        problems.append(damage)
    if document is None:
        return None, problems
    verdict, more = _verdict_summary(document, verdict_path, "")
    return verdict, problems + more


def read_appraisal(path: Path) -> tuple[dict[str, Any] | None, list[DamagedFile]]:
    """The appraisal in `path` as far as the index and the report read it (status, trust
    vector, findings; a wrong vector or findings left out), or None when there is none or
    its status is not one of APPRAISAL_STATUSES."""
    appraisal, damage = read_sidecar(path, "appraisal")
    if appraisal is None:
        return None, [damage] if damage is not None else []
    problems: list[DamagedFile] = []

    def wrong(field: str, expected: str, found: Any) -> None:
        problems.append(DamagedFile(DAMAGE_INVALID, str(path), f"{field}: {expected}", _shown(found)))

    status = appraisal.get("status", _ABSENT)
    if status not in APPRAISAL_STATUSES:
        wrong("status", "one of " + ", ".join(sorted(APPRAISAL_STATUSES)), status)
        return None, problems
    if not isinstance(appraisal.get("trust_vector", {}), dict):
        wrong("trust_vector", "an object", appraisal.pop("trust_vector"))
    findings = appraisal.get("findings", [])
    if not isinstance(findings, list) or not all(isinstance(finding, dict) for finding in findings):
        wrong("findings", "a list of objects", appraisal.pop("findings"))
    return appraisal, problems


def _verdict_summary(verdict: Any, path: Path, prefix: str) -> tuple[VerdictSummary | None, list[DamagedFile]]:
    """What the index records of a verdict (found in `path`, its fields under `prefix`), as far
    as it can be read; None when `trusted` is not true or false (then nothing is known)."""
    problems: list[DamagedFile] = []

    def wrong(field: str, expected: str, found: Any) -> None:
        problems.append(DamagedFile(DAMAGE_INVALID, str(path), f"{prefix}{field}: {expected}", _shown(found)))

    if not isinstance(verdict, dict):
        problems.append(DamagedFile(DAMAGE_INVALID, str(path), f"{prefix.rstrip('.') or 'the verdict'}: an object",
                                    _shown(verdict)))
        return None, problems
    trusted = verdict.get("trusted", _ABSENT)
    if not isinstance(trusted, bool):
        wrong("trusted", "true or false", trusted)
        return None, problems
    findings = verdict.get("findings", [])
    reasons: list[str] = []
    if not isinstance(findings, list):
        wrong("findings", "a list", findings)
    else:
        for position, finding in enumerate(findings):
            if not (isinstance(finding, dict) and isinstance(finding.get("id"), str)
                    and isinstance(finding.get("severity"), str)):
                wrong(f"findings[{position}]", "an object with a text id and severity", finding)
            elif finding["severity"] == "error":
                reasons.append(finding["id"])
    days: dict[str, int | None] = {"leaf": None, "root": None}
    expiry = verdict.get("days_to_expiry")
    if isinstance(expiry, dict):
        for role in days:
            value = expiry.get(role)
            if isinstance(value, int) and not isinstance(value, bool):
                days[role] = value
            elif value is not None:
                wrong(f"days_to_expiry.{role}", "a whole number or null", value)
    elif expiry is not None:
        wrong("days_to_expiry", "an object with leaf and root", expiry)
    return VerdictSummary(verdict, trusted, reasons, days["leaf"], days["root"]), problems


@lru_cache(maxsize=1)
def _metadata_validator() -> Any:
    import jsonschema  # only once a metadata file is read

    import schemas

    return jsonschema.Draft202012Validator(schemas.load("metadata"))


def _is_zoned_time(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _shown(value: Any) -> str:
    """`value` (from a JSON file) as a report shows it: JSON, cut short."""
    if value is _ABSENT:
        return "nothing"
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."

