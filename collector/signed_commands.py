"""Poll a platform that signs its own commands (IOS XE): SUDI and integrity, one nonce each.

For each `SignedCommand` of the device's platform profile (`collector.platforms.IOSXE`):
  (1) draw a fresh decimal nonce (1 .. 2**64-1) from the OS CSPRNG: XE signs it as a uint64,
      and 0 is what upstream tools read as "no nonce", so it is never sent;
  (2) run the commands over one SSH connection (one exec channel each), retrying transient
      failures with new nonces, as the dossier poll does;
  (3) store each output byte for byte with its metadata (`platform`, `output`,
      `verifier_profile`, `nonce_decimal`, the poll's shared `poll_id`, and for an output
      signed by an earlier one, `signer`: that output's file name); `nonce` is the same value
      as 16 hex digits (the 8 bytes XE signs), so `dossier verify FILE` re-checks any stored
      output from its metadata alone, and pruning keeps or deletes a poll's outputs together;
  (4) verify each with its verifier profile (`verifier.profiles.verify_output`) against the
      trust store and the nonce sent, at the time it was received; the integrity output's
      signer is the SUDI output of the same poll. The device is trusted only when every
      output is.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import StoreError
from .inventory import Device
from .store import new_poll_id
from .platforms import PlatformProfile, SignedCommand
from .ssh import DeviceSession
from .verifying import stored_verdict, verify_signed_output

if TYPE_CHECKING:
    from .collect import Collector, DeviceOutcome
    from .store import EnvelopeRecord

__all__ = ["XE_NONCE_MAX", "new_decimal_nonce", "poll_signed_commands", "verify_signed_output"]

#: IOS XE signs the nonce as an 8-byte big-endian unsigned integer.
XE_NONCE_MAX = 2**64 - 1


def new_decimal_nonce() -> int:
    """A fresh nonce in 1 .. 2**64-1 from the OS CSPRNG (never 0: upstream reads 0 as none)."""
    return secrets.randbelow(XE_NONCE_MAX) + 1


@dataclass
class _Run:
    step: SignedCommand
    nonce: int
    command: str
    output: bytes
    exit_status: int | None
    started: datetime
    received: datetime
    duration_s: float


def _run_all(device: Device, profile: PlatformProfile, deadline: float) -> list[_Run]:
    runs: list[_Run] = []
    with DeviceSession(device, run_deadline=deadline) as session:
        for step in profile.signed_commands:
            nonce = new_decimal_nonce()
            command = step.template.format(nonce=nonce)
            started, begin = datetime.now(UTC), time.monotonic()
            output, exit_status = session.exec(command)
            received = datetime.now(UTC)
            profile.check_output(output)
            runs.append(_Run(step, nonce, command, output, exit_status, started, received,
                             time.monotonic() - begin))
    return runs


def poll_signed_commands(collector: Collector, device: Device, profile: PlatformProfile, *,
                         begin: float, deadline: float, state: dict[str, Any],
                         stop: threading.Event | None, connect_as: Device) -> DeviceOutcome:
    """Collect, store and verify every signed command of one device; returns its outcome.
    `connect_as`: the device with its credentials loaded for this poll
    (`Device.with_credentials_loaded`)."""
    from .collect import FAILED, TRUSTED, UNTRUSTED, DeviceOutcome

    outcome = DeviceOutcome(device=device.name, host=device.host, status=FAILED)
    runs = collector.with_retries(lambda: _run_all(connect_as, profile, deadline), device=device, outcome=outcome,
                                  state=state, begin=begin, deadline=deadline, stop=stop)
    if runs is None:
        return outcome
    attempt = outcome.attempts
    poll_id = new_poll_id()
    records = []
    stored_as: dict[str, str] = {}  # output name -> its file name, for the outputs it signs
    for run in runs:
        extra = {"port": device.port, "command": run.command, "platform": profile.name, "poll_id": poll_id,
                 "output": run.step.name, "verifier_profile": run.step.verifier_profile,
                 "nonce_decimal": str(run.nonce), "attempts": attempt, "exit_status": run.exit_status}
        if run.step.signer_from:
            extra["signer"] = stored_as[run.step.signer_from]
        record = collector.store.save(
            device=device.name, host=device.host, nonce_hex=f"{run.nonce:016x}", output=run.output,
            started=run.started, received=run.received, duration_s=run.duration_s, extra=extra)
        stored_as[run.step.name] = PurePosixPath(record.path).name
        records.append(record)
    outcome.bytes = sum(record.bytes for record in records)
    outcome.path = records[0].path
    outcome.nonce = " ".join(f"{run.step.name}={run.nonce}" for run in runs)
    outcome.received = records[-1].received
    outcome.duration_s = time.monotonic() - begin
    if not collector.options.verify:
        _append_records(collector, records)
        outcome.status = UNTRUSTED
        outcome.reason, outcome.message = "verify.skipped", "verification was turned off (--no-verify)"
        collector._write_poll_state(device, outcome, state, trusted=False)
        return outcome
    outputs = {run.step.name: run.output for run in runs}
    all_trusted = True
    for run, record in zip(runs, records):
        signer = outputs.get(run.step.signer_from) if run.step.signer_from else None
        args = (run.output, run.step.verifier_profile, collector.trust_store_arg, device.name, run.nonce,
                run.received, signer)
        checked = collector.verify_call(verify_signed_output, args)
        if checked.refused is not None:
            # The verifier refused to judge (no anchors, unreadable signer): never "trusted".
            failure = ("verify.error", f"{run.step.name}: {checked.refused}", ["verify.error"])
        else:
            verdict = stored_verdict(checked)
            reasons, days = verdict.reasons, checked.days_to_expiry
            collector.store.save_verdict(record, verdict.verdict_json, trusted=verdict.trusted, reasons=reasons,
                                         days_leaf=verdict.days_leaf, days_root=verdict.days_root)
            outcome.findings += [{**finding, "output": run.step.name} for finding in checked.findings]
            outcome.days_to_expiry = outcome.days_to_expiry or days
            if checked.trusted:
                continue
            failure = (reasons[0] if reasons else "verify.untrusted",
                       f"{run.step.name}: " + (checked.errors[0]["message"] if checked.errors
                                               else "the verifier did not trust the output"), reasons)
        if all_trusted:  # the first output that fails explains the device's status
            all_trusted = False
            outcome.reason, outcome.message = failure[0], failure[1]
            collector.alerts.untrusted(device.name, failure[2], record.path)
    unrecorded = _append_records(collector, records)
    if unrecorded is not None and all_trusted:
        all_trusted = False
        outcome.reason, outcome.message = unrecorded.reason, str(unrecorded)
    outcome.status = TRUSTED if all_trusted else UNTRUSTED
    collector._write_poll_state(device, outcome, state, trusted=all_trusted)
    return outcome


def _append_records(collector: Collector, records: list[EnvelopeRecord]) -> StoreError | None:
    """The poll's signed records, once their verdicts are known (`Collector.append_records`);
    returns the StoreError if they could not be appended."""
    failed = [one for one in collector.append_records(list(records)) if isinstance(one, StoreError)]
    return failed[0] if failed else None
