"""`dossier demo`: the main job on an embedded emulator fleet.

Starts an in-process fleet (mixed signing key types), enrolls every device's root, makes one
device alter its data after signing and another answer with a stale nonce, collects a signed
dossier from each over real SSH, verifies them, and shows the fleet and where the files went.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rich.console import Console
from rich.table import Table

from collector.alerts import AlertSink, write_metrics
from collector.collect import CollectOptions, Collector, RunSummary
from collector.enroll import enroll_root, fetch_root
from collector.inventory import load_inventory
from collector.lock import RunLock
from collector.store import Store
from emulator.device import SYSTEM_TRUSTPOINT
from emulator.faults import Fault
from emulator.fleet import Fleet

__all__ = ["demo_command", "register", "run_demo"]

#: Signing key types the demo devices cycle through (RSA 3072/4096 only slow the start).
KEY_TYPES = ("ecdsa-p256", "rsa2048", "ecdsa-p384", "ecdsa-p521", "rsa2048")
#: Files per device in the file-system inventory: enough to look real, quick to build.
DEMO_FILES = 200
DEMO_SEED = 7
#: Which device gets which fault, and the verdict the demo expects for it.
FAULTS = {3: (Fault.DATA_CHANGED, "signature.invalid"), 4: (Fault.WRONG_NONCE, "nonce.mismatch")}


def _key_label(certificate: Any) -> str:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ECDSA P-256", "secp384r1": "ECDSA P-384",
                "secp521r1": "ECDSA P-521"}.get(key.curve.name, key.curve.name)
    return type(key).__name__


def run_demo(out: Path, devices: int = 5, *, say: Any = print) -> tuple[RunSummary, dict[str, Any]]:
    """Run the whole demo under `out`; returns the collection summary and a description."""
    out.mkdir(parents=True, exist_ok=True)
    inventory_path = out / "inventory.yaml"
    trust_path, store_path, metrics_path = out / "truststore", out / "store", out / "metrics.prom"
    say(f"starting {devices} emulated IOS XR devices (state in {out / 'fleet'}) ...")
    with Fleet(state_dir=out / "fleet", devices=devices, provisioned=False, files=DEMO_FILES,
               seed=DEMO_SEED) as fleet:
        for index, entry in enumerate(fleet.devices):
            if entry.device.certificates(SYSTEM_TRUSTPOINT)[1] is None:
                key_type = KEY_TYPES[index % len(KEY_TYPES)]
                say(f"  {entry.name}: provisioning the system trustpoint ({key_type}) as the seed's "
                    "'How to Integrate' section does")
                entry.device.provision(key_type)
            fleet.clear_faults(entry.name)
        fleet.write_inventory(inventory_path)
        inventory = load_inventory(inventory_path)

        say("enrolling each device's root (trust on first use: fine for a demo, never for a real "
            "fleet; there use --expect-fingerprint) ...")
        enroll_log = logging.getLogger("collector.enroll")
        previous_level = enroll_log.level
        enroll_log.setLevel(logging.ERROR)  # the per-device TOFU warning is the demo's premise
        keys: dict[str, str] = {}
        try:
            for device in inventory.devices:
                candidate = fetch_root(device)
                result = enroll_root(trust_path, candidate, source="tofu")
                keys[device.name] = _key_label(candidate.root)
                say(f"  {device.name}: {result.action}, root SHA-256 {candidate.sha256[:16]}..., "
                    f"SHA-1 {candidate.sha1}")
        finally:
            enroll_log.setLevel(previous_level)

        expected: dict[str, str | None] = {d.name: None for d in inventory.devices}
        for index, (fault, reason) in FAULTS.items():
            if index < len(fleet.devices):
                name = fleet.devices[index].name
                fleet.set_fault(name, fault)
                expected[name] = reason
                say(f"  {name}: now answers with fault {fault.value}")

        say("collecting a fresh signed dossier from every device over SSH ...")
        store = Store.open(store_path)
        alerts = AlertSink()
        try:
            with RunLock(store.root / "collect.lock"):
                summary = Collector(store, trust_store_path=trust_path, alerts=alerts,
                                    options=CollectOptions(concurrency=8)).run(inventory.devices)
            write_metrics(metrics_path, store.readable_states())
        finally:
            store.close()
    as_expected = all(
        (o.status == "trusted") if expected[o.device] is None
        else (o.status == "untrusted" and o.reason == expected[o.device])
        for o in summary.outcomes
    )
    description = {
        "out": str(out), "inventory": str(inventory_path), "trust_store": str(trust_path),
        "store": str(store_path), "metrics": str(metrics_path), "key_types": keys,
        "expected": expected, "as_expected": as_expected,
        "alerts": [a.message for a in alerts.sent],
    }
    return summary, description


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo-out"),
              show_default=True, help="Folder for the emulated fleet, trust store, envelopes and metrics.")
@click.option("--devices", type=click.IntRange(5, 50), default=5, show_default=True,
              help="How many emulated devices.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
def demo_command(out: Path, devices: int, as_json: bool) -> None:
    """Start an in-process emulator fleet, collect a signed dossier from each device and verify it.

    Mixed signing key types; one device alters its data after signing and one answers with a
    stale nonce, so the verifier must catch both while trusting the rest. Running it again
    reuses the same devices and adds a new collection.

    \b
    Exit codes:
      0  the demo ran and every verdict is the one expected
      1  a verdict differed from the expected one
      2  usage error
    """
    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False
    console = Console(stderr=True)
    summary, description = run_demo(
        out, devices, say=(lambda _text: None) if as_json else (lambda text: console.print(text, soft_wrap=True)))
    if as_json:
        click.echo(json.dumps({"summary": summary.to_json(), **description}, indent=2))
    else:
        _show(summary, description)
    raise SystemExit(0 if description["as_expected"] else 1)


def _show(summary: RunSummary, description: dict[str, Any]) -> None:
    console = Console(soft_wrap=True)
    table = Table(title="Fleet after one collection")
    for column in ("device", "signing key", "verdict", "reason", "expected", "expiry days leaf/root", "bytes"):
        table.add_column(column, overflow="fold", no_wrap=column in ("device", "verdict"))
    for outcome in summary.outcomes:
        style = "green" if outcome.status == "trusted" else "bold red"
        expected = description["expected"].get(outcome.device) or "trusted"
        days = outcome.days_to_expiry
        table.add_row(outcome.device, description["key_types"].get(outcome.device, "?"),
                      f"[{style}]{outcome.status}[/]", outcome.reason or "", expected,
                      f"{days.get('leaf', '')}/{days.get('root', '')}" if days else "",
                      str(outcome.bytes or ""))
    console.print(table)
    verdict = ("[green]every verdict is the expected one[/]" if description["as_expected"]
               else "[bold red]some verdict differs from the expected one[/]")
    console.print(verdict)
    first = next((o for o in summary.outcomes if o.path), None)
    console.print("\nWhere the files went:")
    console.print(f"  envelopes (byte for byte) : {description['store']}/<device>/*.envelope")
    console.print("  beside each              : .meta.json (nonce, times, sha256, the verdict)")
    console.print(f"  trust store (roots)      : {description['trust_store']}")
    console.print(f"  inventory                : {description['inventory']}")
    console.print(f"  metrics (Prometheus)     : {description['metrics']}")
    console.print(f"  alerts raised            : {len(description['alerts'])}")
    if first is not None:
        console.print("\nCheck one yourself:")
        console.print(f"  dossier verify {description['store']}/{first.path} --trust-store {description['trust_store']}")
        console.print(f"  dossier status --store {description['store']} --trust-store {description['trust_store']}")


def register(group: click.Group) -> None:
    group.add_command(demo_command)
