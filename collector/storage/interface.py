"""The store as its callers see it: the one interface the collector, insights and the CLI use.

`collector.store.Store` implements it on local files with an SQLite index. Another
implementation (a shared index such as PostgreSQL, shared object storage) for collectors on
several machines implements the same methods with the same meaning, and callers do not change.
What is stored is the verifier's stored format (`verifier.stored`): exact envelope bytes, their
metadata, the verdict at collection, an appraisal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from ..errors import StoreError
from ..sidecars import DamagedFile
from .layout import EnvelopeRecord, StoredVerdict

__all__ = ["EnvelopeStore"]


@runtime_checkable
class EnvelopeStore(Protocol):
    """Envelopes stored byte for byte with their metadata and verdicts, indexed per device.

    Paths in records (`EnvelopeRecord.path`) are '<device>/<file name>' relative to the store.
    Every method raises StoreError (DiskFullError when space ran out) for what the store cannot
    do; a damaged stored file is reported as a DamagedFile, never raised.
    """

    # --- a run ---------------------------------------------------------------------------
    def mark_dirty(self) -> None:
        """Before a run writes: the index may lag the files until `mark_clean`."""

    def mark_clean(self) -> bool:
        """After a run: the index is complete (False: it missed writes, and stays marked)."""

    def recover(self, *, on_damage: Callable[[DamagedFile], None] | None = None) -> int | None:
        """Bring the index up to date with the files if a run was cut short."""

    def batched_index(self, rows: int = 64) -> AbstractContextManager[None]:
        """Within the block, index rows may be written in batches."""

    def sync(self) -> None:
        """Return once everything saved so far survives a power cut."""

    def close(self) -> None: ...

    # --- saving a poll's outputs -----------------------------------------------------------
    def save(self, *, device: str, host: str, nonce_hex: str, output: bytes, started: datetime,
             received: datetime, duration_s: float, extra: Mapping[str, Any] | None = None, index: bool = True,
             check: Callable[[EnvelopeRecord], StoredVerdict | None] | None = None) -> EnvelopeRecord:
        """Store one output and its metadata (with the verdict `check` returns); its record."""

    def save_many(self, entries: Sequence[Mapping[str, Any]], *, index: bool = True,
                  check: Callable[[list[EnvelopeRecord | None]], list[StoredVerdict | None]] | None = None,
                  ) -> list[EnvelopeRecord | StoreError]:
        """`save` for several outputs (each entry: `save`'s keyword arguments), per entry its
        record or the StoreError that kept it."""

    def save_verdict(self, record: EnvelopeRecord, verdict_json: Mapping[str, Any], *, trusted: bool,
                     reasons: list[str], days_leaf: int | None, days_root: int | None) -> EnvelopeRecord:
        """Record a verdict reached after the output was saved."""

    def index(self, record: EnvelopeRecord) -> None:
        """Index `record` (after `save(index=False)`)."""

    def save_appraisal(self, record: EnvelopeRecord, appraisal: Mapping[str, Any]) -> None:
        """Store (or replace) the appraisal of `record`."""

    # --- reading ---------------------------------------------------------------------------
    def envelope_bytes(self, record: EnvelopeRecord) -> bytes:
        """The output exactly as the device printed it."""

    def verdict(self, record: EnvelopeRecord) -> dict[str, Any] | None:
        """The verdict recorded at collection, None if none was."""

    def appraisal(self, record: EnvelopeRecord) -> dict[str, Any] | None:
        """The stored appraisal of `record`, None if it was not appraised."""

    # --- listing ---------------------------------------------------------------------------
    def latest(self) -> dict[str, EnvelopeRecord]:
        """The newest record of every device."""

    def latest_trusted(self) -> dict[str, EnvelopeRecord]:
        """The newest trusted record of every device that has one."""

    def history(self, device: str, limit: int | None = None) -> list[EnvelopeRecord]:
        """A device's records, newest first."""

    def appraisal_statuses(self, device: str | None = None) -> list[tuple[str, str, str, str]]:
        """(device, received, path, status) of every appraisal, oldest first."""

    # --- device states ---------------------------------------------------------------------
    def states(self, *, on_damage: Callable[[StoreError], None] | None = None) -> dict[str, dict[str, Any]]:
        """Every device's state (last poll, increments, alerts sent)."""

    def readable_states(self) -> dict[str, dict[str, Any]]:
        """`states`, a damaged state logged and skipped."""

    def read_state(self, device: str) -> dict[str, Any]:
        """One device's state ({} when it has none)."""

    def write_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace every device's state."""

    # --- upkeep ----------------------------------------------------------------------------
    def prune(self, *, keep_days: float | None, keep_last: int | None, now: datetime | None = None,
              dry_run: bool = False) -> list[EnvelopeRecord]:
        """Delete old outputs (never a device's newest trusted one; a poll's outputs together)."""

    def reindex(self, *, on_damage: Callable[[DamagedFile], None] | None = None) -> int:
        """Rebuild the index from the stored files; how many outputs it holds."""
