"""`dossier emulator ...`: run a fleet of emulated IOS XR routers."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import click

from .device import HOST_KEY_TYPES, KEY_TYPES
from .facts import DEFAULT_PLATFORM_PID, PLATFORM_PIDS
from .faults import Fault, parse_fault_spec
from .fleet import FLEET_PLATFORMS, Fleet, FleetError

__all__ = ["register", "emulator_group"]


@click.group("emulator")
def emulator_group() -> None:
    """Emulated IOS XR and IOS XE routers over real SSH (for tests, demos and CI)."""


@emulator_group.command("serve")
@click.option("--devices", "-n", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="How many devices (hostnames xr-0001, xr-0002, ...; xe-0001, ... for IOS XE).")
@click.option("--platform", type=click.Choice(FLEET_PLATFORMS), default="iosxr", show_default=True,
              help="Device personality: iosxr (dossier, utility sign, attest certificate), iosxe "
                   "(Router# prompt, SUDI and integrity signing under an emulated SUDI CA kept in "
                   "STATE_DIR/xe-sudi-ca), or mixed (xr-0001, xe-0002, xr-0003, ...).")
@click.option("--chassis", type=click.Choice(PLATFORM_PIDS), default=DEFAULT_PLATFORM_PID, show_default=True,
              help="Chassis of every IOS XR device; NCS-5504 has two route processors (0/RP0/CPU0 and "
                   "0/RP1/CPU0), so filesystem-inventory-options can name the remote node.")
@click.option("--listen", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default).")
@click.option("--base-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the first device; the others follow. 0 picks free ports.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for every device's keys, certificates, configuration and history. "
                   "Reusing it brings the same devices back.")
@click.option("--inventory-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the collector inventory (YAML) for this fleet here.")
@click.option("--provisioned", is_flag=True,
              help="Generate keys and enroll the system trustpoint, so devices can sign at once.")
@click.option("--key-type", type=click.Choice(sorted(KEY_TYPES)), default="ecdsa-p256", show_default=True,
              help="Key type of the system trustpoint when --provisioned.")
@click.option("--host-key-type", type=click.Choice(HOST_KEY_TYPES), default="ed25519", show_default=True,
              help="SSH host key type of every device.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for each device's deterministic content.")
@click.option("--files", type=click.IntRange(1, 1_000_000), default=3000, show_default=True,
              help="Files in each device's file-system inventory.")
@click.option("--username", default="admin", show_default=True, help="Administrator user of every device.")
@click.option("--fault", "faults", multiple=True, metavar="DEVICE=FAULT[:k=v,...]",
              help="Inject a fault, e.g. xr-0002=slow-output:delay=3. Faults: "
                   + ", ".join(f.value for f in Fault) + ". Repeatable.")
@click.option("--netconf", is_flag=True,
              help="Configure `netconf-yang agent ssh` on each IOS XR device and open its NETCONF port "
                   "(the inventory's netconf_port); docs/tpm-attestation.md.")
@click.option("--swtpm", "swtpm_devices", multiple=True, metavar="DEVICE",
              help="Back this device's TPMs with a real swtpm process (needs --netconf, swtpm and tpm2-tools). "
                   "Repeatable.")
def serve_command(devices: int, platform: str, chassis: str, listen: str, base_port: int, state_dir: Path, inventory_out: Path | None,
                  provisioned: bool, key_type: str, host_key_type: str, seed: int, files: int,
                  username: str, faults: tuple[str, ...], netconf: bool, swtpm_devices: tuple[str, ...]) -> None:
    """Serve N emulated IOS XR / IOS XE devices over SSH until SIGINT or SIGTERM.

    Prints `ready` on its own line once every device listens. Passwords are in
    STATE_DIR/credentials/<device>.password (mode 0600); the inventory refers to them and
    never contains them.
    """
    try:
        parsed = [parse_fault_spec(spec) for spec in faults]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    if swtpm_devices and not netconf:
        raise click.BadParameter("expected --netconf with --swtpm (the TPM answers over NETCONF)", param_hint="--swtpm")
    fleet = Fleet(state_dir=state_dir, devices=devices, host=listen, base_port=base_port,
                  provisioned=provisioned, key_type=key_type, host_key_type=host_key_type,
                  seed=seed, files=files, username=username, platform=platform, chassis=chassis,
                  netconf=netconf, swtpm=swtpm_devices)
    try:
        fleet.start()
    except FleetError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        for name, fault, params in parsed:
            fleet.set_fault(name, fault, **params)
    except KeyError as exc:
        fleet.stop()
        raise click.BadParameter(str(exc.args[0]), param_hint="--fault") from None
    if inventory_out is not None:
        fleet.write_inventory(inventory_out)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for line in _where_devices_listen(fleet, inventory_out):
        click.echo(line, err=True)
    click.echo("ready")
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    fleet.stop()
    click.echo("stopped", err=True)


def _where_devices_listen(fleet: Fleet, inventory_out: Path | None) -> list[str]:
    """Where each device listens: a range only when the ports are consecutive (--base-port);
    without --inventory-out, one `NAME HOST:PORT` line per device, since nothing else tells
    which device is on which free port."""
    ports = [device.port for device in fleet.devices]
    consecutive = ports == list(range(ports[0], ports[0] + len(ports)))
    where = f"ports {ports[0]}..{ports[-1]}" if consecutive else "ports picked by the system"
    lines = [f"{len(ports)} device(s) on {fleet.host}, {where}"]
    if inventory_out is not None:
        return lines + [f"inventory written to {inventory_out}"]
    return lines + [f"{device.name} {device.host}:{device.port}"
                    + (f" netconf {device.netconf_port}" if device.netconf_port is not None else "")
                    for device in fleet.devices]


def register(group: click.Group) -> None:
    """Add `dossier emulator ...` to the top-level group."""
    group.add_command(emulator_group)
