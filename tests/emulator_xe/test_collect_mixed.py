"""A mixed XR/XE emulated fleet collected end to end: real SSH, real stores, every output
verified by the verifier (XR dossier envelopes, XE `xe-sudi-sign` and `xe-integrity-sign`)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import schemas

from collector.collect import CollectOptions, Collector
from collector.inventory import Device, load_inventory
from verifier.nonce import XE_NONCE_MAX
from collector.store import ENVELOPE_SUFFIX, META_SUFFIX, Store
from emulator.fleet import Fleet
from mixed_fleet import trust_mixed_fleet
from verifier import TrustStore


SMALL_FILES = 20


def _devices(fleet: Fleet, folder: Path) -> list[Device]:
    """The fleet's inventory through the collector's own loader (platform iosxr or iosxe)."""
    inventory = folder / "inventory.yaml"
    fleet.write_inventory(inventory)
    return list(load_inventory(inventory).devices)


def test_mixed_fleet_collected_end_to_end(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=4, platform="mixed", provisioned=True,
               key_type="ecdsa-p256", files=SMALL_FILES) as fleet:
        devices = _devices(fleet, tmp_path)
        assert [(d.name, d.platform) for d in devices] == [
            ("xr-0001", "iosxr"), ("xe-0002", "iosxe"), ("xr-0003", "iosxr"), ("xe-0004", "iosxe")]
        trust = tmp_path / "truststore"
        trust_mixed_fleet(fleet, devices, trust)
        store = Store.open(tmp_path / "store")
        summary = Collector(store, trust_store_path=trust, options=CollectOptions(concurrency=4)).run(devices)
        second = Collector(store, trust_store_path=trust, options=CollectOptions(concurrency=4)).run(devices)
    outcomes = {o.device: o for o in summary.outcomes}
    assert {name: o.status for name, o in outcomes.items()} == dict.fromkeys(outcomes, "trusted"), \
        {name: (o.reason, o.message) for name, o in outcomes.items()}
    assert summary.exit_code == 0 and second.exit_code == 0

    for name in ("xe-0002", "xe-0004"):
        metas = sorted((tmp_path / "store" / name).glob("*" + META_SUFFIX))
        records = [json.loads(p.read_text()) for p in metas]
        assert len(records) == 4  # two polls x (SUDI, integrity)
        assert sorted(r["output"] for r in records) == ["integrity", "integrity", "sudi", "sudi"]
        nonces = [int(r["nonce_decimal"]) for r in records]
        assert [bytes.fromhex(r["nonce"]) for r in records] == [n.to_bytes(8, "big") for n in nonces]
        assert len(set(nonces)) == 4 and all(1 <= n <= XE_NONCE_MAX for n in nonces)  # one fresh nonce each
        for record in records:
            assert record["platform"] == "iosxe"
            assert record["command"].endswith(f"nonce {record['nonce_decimal']}")
            jsonschema.validate(record, schemas.load("metadata"))
        # One storage path for every strategy: as an XR dossier, each output carries its kind and
        # the verdict in its metadata (no .verdict.json beside it), and the outputs of one poll
        # share a poll id.
        assert sorted(r["kind"] for r in records) == ["xe-integrity", "xe-integrity", "xe-sudi", "xe-sudi"]
        assert all(r["verdict"]["trusted"] is True for r in records)
        assert not list((tmp_path / "store" / name).glob("*.verdict.json"))
        polls: dict[str, list[str]] = {}
        for record in records:
            polls.setdefault(record["poll_id"], []).append(record["output"])
        assert sorted(sorted(outputs) for outputs in polls.values()) == [["integrity", "sudi"]] * 2
        assert outcomes[name].nonce.startswith("sudi=") and " integrity=" in outcomes[name].nonce
    # Stored byte for byte: the stored SUDI output is what the device prints (same chain).
    envelope = next(p for p in (tmp_path / "store" / "xe-0002").glob("*" + ENVELOPE_SUFFIX)
                    if b"BEGIN CERTIFICATE" in p.read_bytes())
    assert envelope.read_bytes().count(b"-----BEGIN CERTIFICATE-----") == 3


def test_xe_device_without_pinned_anchors_is_never_trusted(tmp_path: Path) -> None:
    """Anchors pinned for another fleet's SUDI authority: the chain does not verify."""
    with Fleet(state_dir=tmp_path / "other", devices=1, platform="iosxe", files=SMALL_FILES) as other:
        foreign = other.sudi_authority()
    with Fleet(state_dir=tmp_path / "fleet", devices=1, platform="iosxe", files=SMALL_FILES) as fleet:
        devices = _devices(fleet, tmp_path)
        trust = tmp_path / "truststore"
        store_of_trust = TrustStore.open(trust, create=True)
        store_of_trust.add_root(devices[0].name, foreign.root, source="manual")
        store_of_trust.add_intermediate(devices[0].name, foreign.sub_ca)
        summary = Collector(Store.open(tmp_path / "store"), trust_store_path=trust).run(devices)
        no_trust = Collector(Store.open(tmp_path / "store2"), trust_store_path=None).run(devices)
    outcome = summary.outcomes[0]
    assert outcome.status == "untrusted" and outcome.reason, outcome
    assert outcome.message.startswith("sudi: ")
    assert no_trust.outcomes[0].status == "untrusted" and summary.exit_code == 1


def test_xe_signing_faults_end_untrusted_and_the_rest_trusted(tmp_path: Path) -> None:
    from emulator.faults import Fault

    faults = {"xe-0002": Fault.WRONG_NONCE, "xe-0003": Fault.DATA_CHANGED, "xe-0004": Fault.OTHER_KEY,
              "xe-0005": Fault.EXPIRED_LEAF}
    with Fleet(state_dir=tmp_path / "fleet", devices=5, platform="iosxe", files=SMALL_FILES) as fleet:
        devices = _devices(fleet, tmp_path)
        trust = tmp_path / "truststore"
        trust_mixed_fleet(fleet, devices, trust)  # all XE: the SUDI anchors pinned
        for name, fault in faults.items():
            fleet.set_fault(name, fault)
        summary = Collector(Store.open(tmp_path / "store"), trust_store_path=trust,
                            options=CollectOptions(concurrency=4)).run(devices)
    outcomes = {o.device: o for o in summary.outcomes}
    assert outcomes["xe-0001"].status == "trusted", outcomes["xe-0001"]
    for name in faults:
        outcome = outcomes[name]
        assert outcome.status == "untrusted" and outcome.reason, (name, outcome)
        # The first output the device signs (SUDI) already fails; the verdict is stored.
        assert outcome.message.startswith("sudi: ")
    assert summary.exit_code == 1
