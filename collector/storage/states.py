"""Every device's state (last poll, increments, alerts sent): advisory, not derived from the
envelopes, so it survives a reindex."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from verifier.stored import StoredFileError, read_stored_bytes

from ..errors import StoreError
from .durable import write_file_atomically
from .layout import _is_device_name, check_device_name

log = logging.getLogger("collector.store")  # one logger for the store, whichever module logs

__all__ = ["DEVICE_STATES_FORMAT", "DEVICE_STATES_NAME", "DeviceStates"]

#: The device states, one file for the fleet (a name no device can have: it starts with '_').
DEVICE_STATES_NAME = "_devices.json"
DEVICE_STATES_FORMAT = "trust-dossier/device-states/1"
#: A device's state is a few hundred bytes; 64 MiB is a fleet of ~100,000 (DoS bound).
MAX_STATES_BYTES = 64 * 1024 * 1024


class DeviceStates:
    """The device states of a store (a mixin of `collector.store.Store`)."""

    root: Path

    def _directory(self, path: Path) -> Path:
        raise NotImplementedError

    def states(self, *, on_damage: Callable[[StoreError], None] | None = None) -> dict[str, dict[str, Any]]:
        """Every device's state: `state/_devices.json`, and for devices it does not hold, the
        one-file-per-device states (`state/<device>.json`) that stores written before it may
        have. A state file that cannot be read raises StoreError naming it, or with
        `on_damage`, is reported to it and skipped (its devices start afresh)."""
        directory = self.root / "state"
        if not directory.is_dir():
            return {}
        states: dict[str, dict[str, Any]] = {}

        def damaged(problem: StoreError) -> None:
            if on_damage is None:
                raise problem
            on_damage(problem)

        combined = directory / DEVICE_STATES_NAME
        try:
            if combined.exists():
                document = _read_state_file(combined)
                if document.get("format") != DEVICE_STATES_FORMAT or not isinstance(document.get("devices"), dict):
                    raise StoreError(
                        f"state file {combined}: expected a {DEVICE_STATES_FORMAT} document with a "
                        f"'devices' object, found format {document.get('format')!r} and devices of type "
                        f"{type(document.get('devices')).__name__}; delete it to start the increments "
                        "and alert schedules afresh")
                for device, state in document["devices"].items():
                    if isinstance(state, dict) and _is_device_name(device):
                        states[device] = state
                    else:
                        damaged(StoreError(
                            f"state file {combined}: expected each entry of 'devices' to be a device "
                            f"name with an object, found {device!r} with {type(state).__name__}; that "
                            "entry is ignored (the file is rewritten without it)"))
        except StoreError as exc:
            damaged(exc)
        for path in sorted(directory.glob("*.json")):
            if path.stem in states or not _is_device_name(path.stem):
                continue  # superseded by the combined file, or not a device's
            try:
                states[path.stem] = _read_state_file(path)
            except StoreError as exc:
                damaged(exc)
        return states

    def readable_states(self) -> dict[str, dict[str, Any]]:
        """`states`, with a damaged state file logged as a warning and skipped (its devices
        start afresh, or show no state) rather than stopping the caller: states are advisory."""
        return self.states(on_damage=lambda exc: log.warning("%s", exc))

    def read_state(self, device: str) -> dict[str, Any]:
        """One device's state ({} when it has none); see `states`."""
        check_device_name(device)
        return self.states().get(device, {})

    def write_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the device states with `states` (every device's, in one file: one file
        written per batch of polls, not one per poll). Advisory (increments, alert schedule):
        atomic but not fsynced. Losing the newest states to a power cut costs at most a
        repeated block or alert, never an envelope."""
        for device in states:
            check_device_name(device)
        directory = self._directory(self.root / "state")
        document = {"format": DEVICE_STATES_FORMAT, "devices": states}
        path = directory / DEVICE_STATES_NAME
        try:
            write_file_atomically(path, orjson.dumps(document, option=orjson.OPT_SORT_KEYS, default=str),
                                  replace=True, sync=False)
        except OSError as exc:
            raise StoreError(f"cannot write the device states to {path}: {exc.strerror or exc}") from exc



def _read_state_file(path: Path) -> dict[str, Any]:
    try:
        data = read_stored_bytes(path, MAX_STATES_BYTES, "device states")  # never waits on a named pipe
        if len(data) > MAX_STATES_BYTES:
            raise ValueError(f"over {MAX_STATES_BYTES} bytes")
        value = json.loads(data.decode("utf-8"))
    except (StoredFileError, ValueError) as exc:
        raise StoreError(f"state file {path} is unreadable ({exc}); delete it to start the "
                         "increments and alert schedules afresh") from exc
    if not isinstance(value, dict):
        raise StoreError(f"state file {path}: expected a JSON object, found {type(value).__name__}; "
                         "delete it to start the increments and alert schedules afresh")
    return value
