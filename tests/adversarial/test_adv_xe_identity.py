"""IOS XE identity: every XE device chains to the same vendor root and SUDI sub-CA, so the
chain alone proves "some Cisco device". Each device's own SUDI certificate is pinned at
enrollment and every XE verification compares the signer with it (issue 15, item 1).

Reproduced first: xe-0002's inventory entry pointing at xe-0001 (a relay by a compromised
xe-0002) was collected as trusted, and `dossier verify --device xe-0002` said TRUSTED for
xe-0001's output, with the verdict's device null.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from collector.collect import CollectOptions, Collector
from collector.enroll import enroll_identity, fetch_sudi
from collector.errors import EnrollError
from collector.inventory import Device, load_inventory
from collector.store import ENVELOPE_SUFFIX, META_SUFFIX, Store
from dossier_cli.main import cli
from emulator.fleet import Fleet
from verifier import TrustStore
from verifier.profiles import verify_output

SMALL_FILES = 20


@dataclasses.dataclass
class XeSetup:
    fleet: Fleet
    devices: list[Device]
    inventory: Path
    trust: Path


@pytest.fixture
def xe(tmp_path: Path) -> Iterator[XeSetup]:
    """Two IOS XE devices with the vendor anchors pinned for both, identities not yet pinned."""
    with Fleet(state_dir=tmp_path / "fleet", devices=2, platform="iosxe", files=SMALL_FILES) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        devices = list(load_inventory(inventory).devices)
        trust = tmp_path / "truststore"
        store = TrustStore.open(trust, create=True)
        authority = fleet.sudi_authority()
        for device in devices:
            store.add_root(device.name, authority.root, source="manual")
            store.add_intermediate(device.name, authority.sub_ca)
        yield XeSetup(fleet, devices, inventory, trust)


def _pin_all(setup: XeSetup) -> None:
    for device in setup.devices:
        enroll_identity(setup.trust, fetch_sudi(device, trust_store_path=setup.trust), source="tofu")


def _verify(*args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(cli, ["verify", "--json", *args])
    return result.exit_code, [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_a_relay_of_another_xe_device_is_caught_at_collection_and_verification(xe: XeSetup, tmp_path: Path) -> None:
    _pin_all(xe)
    first, second = xe.devices
    relay = dataclasses.replace(first, name=second.name)  # xe-0002's entry answers with xe-0001
    store = Store.open(tmp_path / "store")
    summary = Collector(store, trust_store_path=xe.trust, options=CollectOptions(concurrency=2)).run([relay, first])
    outcomes = {o.device: o for o in summary.outcomes}
    assert outcomes[first.name].status == "trusted", outcomes[first.name]
    assert outcomes[second.name].status == "untrusted"
    assert outcomes[second.name].reason == "identity.mismatch"
    assert f"but {second.name!r} is pinned to PID:" in outcomes[second.name].message
    assert summary.exit_code == 1

    # The stored relay output, verified from its metadata alone: not trusted, for the same reason.
    relayed = sorted((tmp_path / "store" / second.name).glob("*" + ENVELOPE_SUFFIX))
    code, verdicts = _verify(*map(str, relayed), "--trust-store", str(xe.trust), "--at", "received")
    assert code == 1
    assert all(not v["trusted"] and "identity.mismatch" in [f["id"] for f in v["findings"]] for v in verdicts)

    # xe-0001's genuine SUDI output, bytes only, claimed for xe-0002: NOT TRUSTED.
    genuine = next(p for p in (tmp_path / "store" / first.name).glob("*" + ENVELOPE_SUFFIX)
                   if json.loads(p.with_name(p.name[:-len(ENVELOPE_SUFFIX)] + META_SUFFIX).read_text())["output"]
                   == "sudi")
    meta = json.loads(genuine.with_name(genuine.name[:-len(ENVELOPE_SUFFIX)] + META_SUFFIX).read_text())
    bare = tmp_path / "sudi.txt"
    shutil.copyfile(genuine, bare)
    common = ["--trust-store", str(xe.trust), "--profile", "xe-sudi-sign", "--nonce-dec", meta["nonce_decimal"]]
    code, (claimed,) = _verify(str(bare), "--device", second.name, *common)
    assert code == 1 and not claimed["trusted"]
    mismatch = next(f for f in claimed["findings"] if f["id"] == "identity.mismatch")
    assert mismatch["severity"] == "error" and mismatch["expected"] != mismatch["found"]
    code, (own,) = _verify(str(bare), "--device", first.name, *common)
    assert code == 0 and own["trusted"] and own["device"] == first.name


def test_the_verdict_names_the_device_and_stored_outputs_reverify_from_their_metadata(
        xe: XeSetup, tmp_path: Path) -> None:
    _pin_all(xe)
    device = xe.devices[0]
    store = Store.open(tmp_path / "store")
    summary = Collector(store, trust_store_path=xe.trust).run([device])
    assert summary.exit_code == 0, summary.outcomes
    stored = sorted((tmp_path / "store" / device.name).glob("*" + ENVELOPE_SUFFIX))
    assert len(stored) == 2
    # `dossier verify FILE --trust-store DIR` alone: the profile, nonce and signer from the metadata.
    code, verdicts = _verify(*map(str, stored), "--trust-store", str(xe.trust), "--at", "received")
    assert code == 0, verdicts
    assert sorted(v["profile"] for v in verdicts) == ["xe-integrity-sign", "xe-sudi-sign"]
    assert all(v["trusted"] and v["device"] == device.name for v in verdicts)
    metas = [json.loads(p.with_name(p.name[:-len(ENVELOPE_SUFFIX)] + META_SUFFIX).read_text()) for p in stored]
    sudi, integrity = sorted(metas, key=lambda m: m["output"] != "sudi")
    assert integrity["signer"] == Path(next(p for p, m in zip(stored, metas) if m is sudi)).name
    assert sudi["poll_id"] == integrity["poll_id"] and len(sudi["poll_id"]) == 16


def test_an_xe_device_without_a_pinned_identity_is_an_error_that_says_how_to_pin_it(
        xe: XeSetup, tmp_path: Path) -> None:
    """An XE entry enrolled before identities were pinned: never silently trusted."""
    device = xe.devices[0]
    summary = Collector(Store.open(tmp_path / "store"), trust_store_path=xe.trust).run([device])
    outcome = summary.outcomes[0]
    assert outcome.status == "untrusted" and outcome.reason == "identity.not_pinned"
    assert f"dossier enroll -i INVENTORY --device {device.name}" in outcome.message


def test_anchors_given_by_hand_verify_with_a_warning_that_no_identity_was_compared(xe: XeSetup) -> None:
    authority = xe.fleet.sudi_authority()
    device = xe.devices[0]
    candidate = fetch_sudi(device, trust_store_path=xe.trust)  # verified under --root-style anchors
    assert candidate.identity.startswith("PID:") and " SN:" in candidate.identity
    pem = candidate.certificate.public_bytes(Encoding.PEM)
    verdict = verify_output(pem, profile="xe-sudi-certificate", roots=[authority.root, authority.sub_ca])
    assert verdict.trusted and verdict.device is None
    assert "identity.not_checked" in verdict.ids()


def test_enroll_pins_an_xe_identity_only_once_confirmed(xe: XeSetup) -> None:
    first, second = xe.devices
    base = ["enroll", "-i", str(xe.inventory), "--trust-store", str(xe.trust), "--json"]
    wrong = CliRunner().invoke(cli, [*base, "--device", first.name, "--expect-fingerprint", "ab" * 32])
    assert wrong.exit_code == 1 and "expected SUDI certificate fingerprint" in wrong.output
    assert TrustStore.open(xe.trust).pinned_leaf(first.name) is None
    right = fetch_sudi(first, trust_store_path=xe.trust).sha256
    pinned = CliRunner().invoke(cli, [*base, "--device", first.name, "--expect-fingerprint", right])
    assert pinned.exit_code == 0, pinned.output
    entry = json.loads(pinned.output)["devices"][0]
    assert entry["action"] == "enrolled" and entry["sudi"]["sha256"] == right
    record = TrustStore.open(xe.trust).describe(first.name)["pinned_leaf"]
    assert record["sha256"] == right and record["source"] == "fingerprint"
    again = CliRunner().invoke(cli, [*base, "--device", first.name, "--expect-fingerprint", right])
    assert json.loads(again.output)["devices"][0]["action"] == "already-enrolled"
    # Another device answering as xe-0001 later: refused without --replace.
    other = fetch_sudi(dataclasses.replace(second, name=first.name), trust_store_path=xe.trust)
    with pytest.raises(EnrollError, match="Another device answers"):
        enroll_identity(xe.trust, other, source="tofu")


def test_enroll_refuses_an_xe_device_whose_vendor_anchors_are_not_pinned(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=1, platform="iosxe", files=SMALL_FILES) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        result = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(tmp_path / "t"),
                                          "--trust-on-first-use"])
    assert result.exit_code == 1
    assert "dossier trust add" in result.output and "--intermediate" in result.output


def test_a_device_claimed_without_a_trust_store_or_a_trust_store_without_a_device_is_not_trusted(
        xe: XeSetup, tmp_path: Path) -> None:
    """Found by a review: `--root ... --device xe-0001` ignored the device (anchors by hand pin no
    identity) and `--trust-store` without a device used the trust pool; both said TRUSTED for
    another device's output."""
    _pin_all(xe)
    first, second = xe.devices
    store = Store.open(tmp_path / "store")
    assert Collector(store, trust_store_path=xe.trust).run([second]).exit_code == 0
    sudi = next(p for p in (tmp_path / "store" / second.name).glob("*" + ENVELOPE_SUFFIX)
                if json.loads(p.with_name(p.name[:-len(ENVELOPE_SUFFIX)] + META_SUFFIX).read_text())["output"] == "sudi")
    meta = json.loads(sudi.with_name(sudi.name[:-len(ENVELOPE_SUFFIX)] + META_SUFFIX).read_text())
    bare = tmp_path / "b.txt"
    shutil.copyfile(sudi, bare)
    authority = xe.fleet.sudi_authority()
    vendor = tmp_path / "vendor.pem"
    vendor.write_bytes(authority.root.public_bytes(Encoding.PEM) + authority.sub_ca.public_bytes(Encoding.PEM))
    nonce = ["--profile", "xe-sudi-sign", "--nonce-dec", meta["nonce_decimal"]]
    code, (by_hand,) = _verify(str(bare), "--root", str(vendor), "--device", first.name, *nonce)
    assert code == 1 and "identity.not_pinned" in [f["id"] for f in by_hand["findings"]]
    assert CliRunner().invoke(cli, ["trust", "import-bundle", str(vendor), "--trust-store", str(xe.trust)]).exit_code == 0
    code, (no_device,) = _verify(str(bare), "--trust-store", str(xe.trust), *nonce)
    not_checked = [f for f in no_device["findings"] if f["id"] == "identity.not_checked"]
    assert code == 1 and not_checked and not_checked[0]["severity"] == "error"
    code, (named,) = _verify(str(bare), "--trust-store", str(xe.trust), "--device", second.name, *nonce)
    assert code == 0 and named["device"] == second.name
