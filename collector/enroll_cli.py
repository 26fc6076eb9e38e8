"""`dossier enroll` (registered by collector.cli): fetch each device's root (and, for IOS XE, its
SUDI identity; with TPM evidence, its nodes' attestation keys) and enroll it once confirmed."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from verifier.display import inert

from . import cli
from .cli import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, _apply, _errors_to_exit_codes, _Exit, _inventory_option,
                  _json_option, _select_options, _trust_option)
from .enroll import (
    AttestationKeyCandidate,
    Candidate,
    EnrollResult,
    SudiCandidate,
    enroll_candidate,
    fetch_attestation_keys,
    fetch_candidate,
    normalise_fingerprint,
)
from .errors import CollectorError, EnrollError, InventoryError, StoreError
from .inventory import Device, load_inventory
from .provision import PROVISION_KEY_TYPES, provision_device

__all__ = ["enroll_command"]


@click.command("enroll")
@_inventory_option
@_trust_option
@_apply(_select_options)
@click.option("--expect-fingerprint", default=None, metavar="HEX",
              help="Enroll only if the root's SHA-256 or SHA-1 fingerprint is this (colons and "
                   "case ignored; SHA-1 is what `show crypto ca certificates` prints).")
@click.option("--expect-ak-fingerprint", "expect_ak_fingerprints", multiple=True, metavar="HEX",
              help="For a device whose evidence includes tpm: pin a node's attestation key only if its "
                   "SHA-256 or SHA-1 fingerprint is one of these (repeat it once per node).")
@click.option("--trust-on-first-use", "tofu", is_flag=True,
              help="DANGEROUS: enroll whatever root (and attestation keys) the device presents, without "
                   "checking fingerprints. Logged as trust-on-first-use in the trust store.")
@click.option("--replace", is_flag=True,
              help="Allow enrolling a root that differs from the one already enrolled (closes "
                   "the old root's window at now, so older envelopes stay verifiable).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Devices fetched at the same time (not with interactive confirmation).")
@click.option("--provision", is_flag=True,
              help="First set the device up as the seed's 'How to Integrate' section does (keys, "
                   "system trustpoint, authenticate, enroll) when it is not set up yet.")
@click.option("--provision-key-type", type=click.Choice(sorted(PROVISION_KEY_TYPES)), default="ecdsa-p256",
              show_default=True, help="Key type --provision generates for the system trustpoint.")
@_json_option
def enroll_command(inventory_path: Path, trust_store_path: Path, devices: tuple[str, ...],
                   groups: tuple[str, ...], expect_fingerprint: str | None,
                   expect_ak_fingerprints: tuple[str, ...], tofu: bool,
                   replace: bool, concurrency: int, provision: bool, provision_key_type: str,
                   as_json: bool) -> None:
    """Fetch each device's root certificate and enroll it in the trust store once confirmed.

    Like `crypto ca authenticate`: the root is shown with its subject, validity and SHA-256 and
    SHA-1 fingerprints, and stored only after you confirm it interactively, or it matches
    --expect-fingerprint, or you pass --trust-on-first-use.

    IOS XE devices (platform: iosxe) all chain to the vendor's SUDI root and sub-CA, which you
    pin first (`dossier trust add DEVICE ROOT.pem --intermediate SUB-CA.pem`); enrolling one
    then pins its own SUDI certificate (its PID and serial number), confirmed the same way, so
    that another device's outputs are never taken for its own.

    IOS XR devices whose evidence includes tpm all chain their TPM attestation keys to the TPM
    vendor root (pinned first with `dossier trust add`); enrolling one then fetches each node's
    attestation-key certificate over NETCONF and pins it, confirmed interactively, by
    --expect-ak-fingerprint or --trust-on-first-use, so that another device's quote is never
    taken for its own.

    \b
    Exit codes:
      0  every selected device enrolled
      1  a device could not be reached or verified, or was declined
      2  usage or configuration error; a device whose credential cannot be read fails alone
         (the others are enrolled) and makes the exit code 2
    """
    with _errors_to_exit_codes():
        if (expect_fingerprint or expect_ak_fingerprints) and tofu:
            raise click.UsageError("--expect-fingerprint / --expect-ak-fingerprint and --trust-on-first-use "
                                   "contradict each other")
        for given, hint in [(expect_fingerprint, "--expect-fingerprint"),
                            *((one, "--expect-ak-fingerprint") for one in expect_ak_fingerprints)]:
            if not given:
                continue
            try:  # before any connection: a typo must not provision a device and then fail
                normalise_fingerprint(given)
            except EnrollError as exc:
                raise click.BadParameter(str(exc), param_hint=hint) from exc
        inventory = load_inventory(inventory_path)
        selected = inventory.select(devices, groups)
        if expect_fingerprint and len(selected) != 1:
            raise click.UsageError(
                f"--expect-fingerprint names one root, but {len(selected)} devices are selected; "
                "add --device NAME")
        interactive = not expect_fingerprint and not tofu
        if interactive and not cli._stdin_is_terminal():  # looked up when run (tests stand in a terminal)
            raise click.UsageError(
                "no confirmation possible: stdin is not a terminal. Pass --expect-fingerprint "
                "HEX (checked out of band) or, knowingly, --trust-on-first-use")
        results: list[dict[str, Any]] = []
        failed = misconfigured = False

        def fetch(device: Device) -> tuple[Device, list[str] | None, list[Candidate], CollectorError | None]:
            try:
                changes = None
                if provision:
                    changes = provision_device(device, key_type=provision_key_type)
                candidates: list[Candidate] = [fetch_candidate(device, trust_store_path=trust_store_path)]
                if "tpm" in device.evidence:
                    candidates.extend(fetch_attestation_keys(device, trust_store_path=trust_store_path))
                return device, changes, candidates, None
            except StoreError:
                raise
            except CollectorError as exc:  # incl. this device's unreadable credential
                return device, None, [], exc

        # Fetching is the slow part and needs no operator: do it in parallel unless each
        # device waits for an interactive answer (then one at a time, as they are confirmed).
        pool = ThreadPoolExecutor(max_workers=1 if interactive else concurrency)
        try:
            fetched = map(fetch, selected) if interactive else pool.map(fetch, selected)
            for device, changes, candidates, problem in fetched:
                try:
                    if problem is not None:
                        raise problem
                    if changes is not None and not as_json:
                        click.echo(inert(f"{device.name}: provisioning: "
                                         + ("; ".join(changes) if changes else "already set up, nothing changed")))
                    for candidate in candidates:
                        if not as_json:
                            _show_candidate(candidate)
                        source, expected = _confirmation(candidate, interactive=interactive, tofu=tofu,
                                                         expect_fingerprint=expect_fingerprint,
                                                         expect_ak_fingerprints=expect_ak_fingerprints)
                        if source == "interactive" and not click.confirm(
                                f"Do you accept this certificate for {inert(device.name)}?", default=False):
                            click.echo(f"{inert(device.name)}: not enrolled")
                            results.append({"device": device.name, "action": "declined"})
                            failed = True
                            break
                        result = enroll_candidate(trust_store_path, candidate, source=source,
                                                  expect_fingerprint=expected, replace=replace)
                        entry = result.to_json()
                        if changes is not None:
                            entry["provisioned"] = changes
                        results.append(entry)
                        if not as_json:
                            click.echo(_enrolled_line(result))
                except StoreError:
                    raise
                except CollectorError as exc:
                    failed = True
                    misconfigured = misconfigured or isinstance(exc, InventoryError)
                    results.append({"device": device.name, "action": "failed", "reason": exc.reason,
                                    "message": str(exc)})
                    if not as_json:
                        message = str(exc)
                        named = message if message.startswith(f"{device.name}:") else f"{device.name}: {message}"
                        click.echo(f"error: {inert(named)}", err=True)
        finally:
            pool.shutdown(cancel_futures=True)
        if as_json:
            click.echo(json.dumps({"trust_store": str(trust_store_path), "devices": results}, indent=2))
        raise _Exit(EXIT_USAGE if misconfigured else EXIT_FAILED if failed else EXIT_OK)


def _confirmation(candidate: Candidate, *, interactive: bool, tofu: bool, expect_fingerprint: str | None,
                  expect_ak_fingerprints: tuple[str, ...]) -> tuple[str, str | None]:
    """How `candidate` is confirmed: its source and the fingerprint it must match. An
    attestation key is confirmed by the --expect-ak-fingerprint naming it (the first given when
    none does: confirming then fails, naming both), else as the root is; never by the root's
    fingerprint."""
    if isinstance(candidate, AttestationKeyCandidate):
        if expect_ak_fingerprints:
            named = [one for one in expect_ak_fingerprints
                     if normalise_fingerprint(one) in (candidate.sha256, candidate.sha1.lower())]
            return "fingerprint", (named or list(expect_ak_fingerprints))[0]
        if interactive or tofu:
            return ("interactive" if interactive else "tofu"), None
        raise EnrollError(f"{candidate.device}: node {candidate.location} presents attestation key {candidate.sha256}, "
                          "and no --expect-ak-fingerprint confirms it (pass each node's key fingerprint, confirm "
                          "interactively, or knowingly --trust-on-first-use); not pinned")
    if interactive:
        return "interactive", None
    return ("fingerprint", expect_fingerprint) if expect_fingerprint else ("tofu", None)


def _show_candidate(candidate: Candidate) -> None:
    # Subject and issuer are the device's words: inert, each on its one line, so nothing they
    # hold can print a fingerprint line or hide the real one and the question after it.
    info = {key: inert(value) for key, value in candidate.describe().items()}
    if isinstance(candidate, SudiCandidate):
        click.echo(f"\n{info['device']}: SUDI certificate (the device's identity) presented by the device")
        click.echo(f"  Identity       : {info['identity']}")
    elif isinstance(candidate, AttestationKeyCandidate):
        click.echo(f"\n{info['device']}: TPM attestation-key certificate of node {info['location']} presented by "
                   "the device (verified under the TPM vendor root enrolled for it)")
    else:
        click.echo(f"\n{info['device']}: root certificate presented by the device")
    click.echo(f"  Serial Number  : {info['serial']}")
    click.echo(f"  Subject        : {info['subject']}")
    click.echo(f"  Issued By      : {info['issuer']}")
    click.echo(f"  Validity Start : {info['not_before']}")
    click.echo(f"  Validity End   : {info['not_after']}")
    click.echo(f"  SHA256 Fingerprint: {info['sha256']}")
    click.echo(f"  SHA1 Fingerprint  : {info['sha1']}")


def _enrolled_line(result: EnrollResult) -> str:
    if isinstance(result.candidate, AttestationKeyCandidate):
        node = inert(result.candidate.location)
        what = {"enrolled": f"attestation key of node {node} pinned",
                "already-enrolled": f"attestation key of node {node} already pinned, nothing changed",
                "replaced": f"attestation key of node {node} pinned in place of the old one"}[result.action]
        return f"{inert(result.device)}: {what} ({result.source}, SHA-256 {result.candidate.sha256})"
    if isinstance(result.candidate, SudiCandidate):
        what = {"enrolled": f"SUDI identity {result.candidate.identity} pinned",
                "already-enrolled": "already pinned (same SUDI certificate), nothing changed",
                "replaced": f"SUDI identity {result.candidate.identity} pinned in place of the old one"}[result.action]
        return f"{result.device}: {what} ({result.source}, SHA-256 {result.candidate.sha256})"
    what = {"enrolled": "enrolled", "already-enrolled": "already enrolled (same root), nothing changed",
            "replaced": "enrolled the new root; the old root is kept for envelopes up to now"}[result.action]
    return f"{inert(result.device)}: {what} ({result.source}, SHA-256 {result.candidate.sha256})"


# --- dossier status ---------------------------------------------------------------------------
