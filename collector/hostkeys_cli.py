"""`dossier hostkeys` (registered by collector.cli): pin SSH host keys into the inventory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from verifier.display import inert

from .cli import _apply, _inventory_option, _select_options
from .errors import CollectorError, InventoryError
from .hostkeys import Pin, keys_from_known_hosts, normalise_ssh_fingerprint, pin_host_keys
from .inventory import Device, HostKey, load_inventory

__all__ = ["hostkeys_command"]

log = logging.getLogger("collector.hostkeys")


@click.command("hostkeys")
@_inventory_option
@_apply(_select_options)
@click.option("--known-hosts", "known_hosts", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Take each device's key from this OpenSSH known_hosts file (hashed entries too) "
                   "instead of asking the device.")
@click.option("--expect-fingerprint", default=None, metavar="SHA256:...",
              help="Pin the key the device offers only if its fingerprint is this (`ssh-keygen -lf`, or "
                   "`show crypto key mypubkey` on the console); one device at a time.")
@click.option("--trust-on-first-use", "tofu", is_flag=True,
              help="DANGEROUS: pin whatever key each device offers, unchecked. Logged, and recorded in "
                   "the pin as pinned-by=trust-on-first-use.")
@click.option("--replace", is_flag=True,
              help="Allow replacing a pinned key that differs (after a device was re-imaged and you checked "
                   "the new key).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
def hostkeys_command(inventory_path: Path, devices: tuple[str, ...], groups: tuple[str, ...],
                     known_hosts: Path | None, expect_fingerprint: str | None, tofu: bool, replace: bool,
                     as_json: bool) -> None:
    """Pin each device's SSH host key in the inventory (its `host_key:` entry).

    From --known-hosts FILE, or from the key the device offers, pinned only once you confirm
    its SHA-256 fingerprint interactively, or it matches --expect-fingerprint, or you pass
    --trust-on-first-use. Only the `host_key:` entries of the file change (comments and the
    rest stay as written); each records how it was pinned.

    \b
    Exit codes:
      0  every selected device is pinned
      1  a device could not be reached, was declined, has no key in the known_hosts file, or
         offers a key other than the pinned one (without --replace)
      2  usage or configuration error; nothing is changed
    """
    from .cli import _errors_to_exit_codes, _Exit, _stdin_is_terminal

    with _errors_to_exit_codes():
        chosen = [option for option, given in (("--known-hosts", known_hosts is not None),
                                              ("--expect-fingerprint", expect_fingerprint is not None),
                                              ("--trust-on-first-use", tofu)) if given]
        if len(chosen) > 1:
            raise click.UsageError(f"{' and '.join(chosen)} contradict each other: give one way to check the keys")
        expected = None
        if expect_fingerprint is not None:
            try:
                expected = normalise_ssh_fingerprint(expect_fingerprint)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--expect-fingerprint") from exc
        selected = load_inventory(inventory_path).select(devices, groups)
        if expected is not None and len(selected) != 1:
            raise click.UsageError(f"--expect-fingerprint names one key, but {len(selected)} devices are selected; "
                                   "add --device NAME")
        interactive = known_hosts is None and expected is None and not tofu
        if interactive and not _stdin_is_terminal():
            raise click.UsageError("no confirmation possible: stdin is not a terminal. Pass --known-hosts FILE, "
                                   "--expect-fingerprint SHA256:... (checked out of band) or, knowingly, "
                                   "--trust-on-first-use")
        results: list[dict[str, Any]] = []
        pins: dict[str, Pin] = {}
        if known_hosts is not None:
            found, missing = keys_from_known_hosts(known_hosts, selected)
            for name in missing:
                results.append({"device": name, "action": "failed",
                                "message": f"{name}: no key for it in {known_hosts}"})
            offered = [(device, found[device.name], None) for device in selected if device.name in found]
        else:
            offered = [_offered(device) for device in selected]
        for device, key, problem in offered:
            if problem is not None or key is None:
                results.append({"device": device.name, "action": "failed", "reason": problem.reason,  # type: ignore[union-attr]
                                "message": str(problem)})
                continue
            result = _decide(device, key, known_hosts=known_hosts, expected=expected, tofu=tofu, replace=replace,
                             as_json=as_json)
            results.append(result)
            if result["action"] in ("pinned", "replaced"):
                pins[device.name] = Pin(device.name, key, result["pinned_by"])
        if pins:
            pin_host_keys(inventory_path, pins)
        if as_json:
            click.echo(json.dumps({"inventory": str(inventory_path), "devices": results}, indent=2))
        else:
            for result in results:
                line = f"{result['device']}: {result['action']}"
                line += f" ({result['pinned_by']}, {result['fingerprint']})" if "pinned_by" in result else ""
                line += f": {result['message']}" if "message" in result else ""
                click.echo(inert(line), err=result["action"] in ("failed", "declined", "mismatch"))
        ok = all(result["action"] in ("pinned", "replaced", "already-pinned") for result in results)
        raise _Exit(0 if ok else 1)


def _offered(device: Device) -> tuple[Device, HostKey | None, CollectorError | None]:
    from .ssh import offered_host_key

    try:
        return device, offered_host_key(device), None
    except InventoryError:
        raise
    except CollectorError as exc:
        return device, None, exc


def _decide(device: Device, key: HostKey, *, known_hosts: Path | None, expected: str | None, tofu: bool,
            replace: bool, as_json: bool) -> dict[str, Any]:
    """Whether `key` gets pinned for `device`, and how it was confirmed."""
    result: dict[str, Any] = {"device": device.name, "key_type": key.key_type, "fingerprint": key.fingerprint}
    pinned = device.host_key
    if pinned is not None and pinned.blob == key.blob:
        return {**result, "action": "already-pinned"}
    if pinned is not None and not replace:
        return {**result, "action": "mismatch",
                "message": f"expected the pinned {pinned.key_type} {pinned.fingerprint}, found {key.key_type} "
                           f"{key.fingerprint}; check it on the console, then pass --replace"}
    action = "replaced" if pinned is not None else "pinned"
    if known_hosts is not None:
        return {**result, "action": action, "pinned_by": "known-hosts"}
    if expected is not None:
        if key.fingerprint != expected:
            return {**result, "action": "mismatch",
                    "message": f"expected fingerprint {expected} (--expect-fingerprint), found {key.fingerprint}"}
        return {**result, "action": action, "pinned_by": "fingerprint"}
    if tofu:
        log.warning("TRUST ON FIRST USE: pinning %s host key %s %s without checking it", device.name, key.key_type,
                    key.fingerprint)
        return {**result, "action": action, "pinned_by": "trust-on-first-use"}
    # On stderr, with --json too: the operator sees the fingerprint before answering, and the
    # JSON document on stdout stays whole.
    click.echo(inert(f"\n{device.name} ({device.known_hosts_name}) offers host key {key.key_type}"), err=True)
    click.echo(f"  SHA256 Fingerprint: {key.fingerprint}", err=True)
    if not click.confirm(inert(f"Is this {device.name}'s host key (compare with its console)?"), default=False,
                         err=True):
        return {**result, "action": "declined"}
    return {**result, "action": action, "pinned_by": "interactive"}
