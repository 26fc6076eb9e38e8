"""Adversarial tests of the collector and its store: nothing stored is lost or overwritten,
device names cannot leave the store, secrets stay out of every output, host keys are pinned."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from click.testing import CliRunner

from collector.errors import StoreError
from collector.store import Store
from dossier_cli.main import cli
from verifier import TrustStore
from emulator.faults import Fault
from emulator.fleet import Fleet

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def save(store: Store, device: str = "r1", nonce: str = "aabbccdd", output: bytes = b"x",
         received: dt.datetime = T0):
    return store.save(device=device, host="h", nonce_hex=nonce, output=output, started=received,
                      received=received, duration_s=0.1)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith("index.")}


# --- store: nothing lost or overwritten -------------------------------------------------------


def test_same_received_time_and_nonce_prefix_never_overwrites(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    first = save(store, nonce="aabbccdd11", output=b"first")
    with pytest.raises(StoreError):
        save(store, nonce="aabbccdd22", output=b"second")
    assert (tmp_path / "s" / first.path).read_bytes() == b"first"
    meta = json.loads((tmp_path / "s" / (first.path + ".meta.json")).read_text())
    assert meta["nonce"] == "aabbccdd11"
    assert [r.path for r in store.history("r1")] == [first.path]


def test_same_received_time_other_nonce_keeps_both(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    a, b = save(store, nonce="11", output=b"a"), save(store, nonce="22", output=b"b")
    assert a.path != b.path
    assert {(tmp_path / "s" / r.path).read_bytes() for r in (a, b)} == {b"a", b"b"}


def test_nonce_case_does_not_collide_silently(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    save(store, nonce="ABCD", output=b"upper")
    with pytest.raises(StoreError):
        save(store, nonce="abcd", output=b"lower")
    assert b"upper" in tree(tmp_path / "s").values()


def test_reindex_after_crash_leftovers_keeps_every_envelope(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    for i in range(3):
        save(store, nonce=f"{i:02x}", output=b"e%d" % i, received=T0 + dt.timedelta(hours=i))
    before = tree(tmp_path / "s")
    (tmp_path / "s" / "r1" / ".20260101T000000.000000Z-00.envelope.abc.tmp").write_bytes(b"partial")
    (tmp_path / "s" / "r1" / "20260101T000000.000000Z-00.envelope.meta.json").write_text("{not json")
    store.reindex()
    after = tree(tmp_path / "s")
    for name, content in before.items():
        if name.endswith(".envelope"):
            assert after[name] == content
    assert len(store.history("r1")) == 3


def _trusted(store: Store, record) -> None:
    store.save_verdict(record, {"trusted": True, "findings": []}, trusted=True, reasons=[],
                       days_leaf=100, days_root=1000)


@pytest.mark.parametrize("keep_days,keep_last", [(0, None), (None, 0), (0, 0), (0.0001, 1)])
def test_prune_never_deletes_the_newest_trusted(tmp_path: Path, keep_days, keep_last) -> None:
    store = Store.open(tmp_path / "s")
    records = [save(store, nonce=f"{i:02x}", output=b"e%d" % i, received=T0 + dt.timedelta(days=i))
               for i in range(4)]
    _trusted(store, records[1])
    store.prune(keep_days=keep_days, keep_last=keep_last, now=T0 + dt.timedelta(days=30))
    assert (tmp_path / "s" / records[1].path).read_bytes() == b"e1"
    assert (tmp_path / "s" / (records[1].path + ".meta.json")).exists()


def test_prune_dry_run_deletes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    for i in range(3):
        record = save(store, nonce=f"{i:02x}", received=T0 + dt.timedelta(days=i))
        # verified and untrusted: prunable (an unverified one may be the newest trusted, so is kept)
        store.save_verdict(record, {"trusted": False}, trusted=False, reasons=["signature.invalid"],
                           days_leaf=None, days_root=None)
    before = tree(tmp_path / "s")
    doomed = store.prune(keep_days=0, keep_last=0, now=T0 + dt.timedelta(days=30), dry_run=True)
    assert doomed and tree(tmp_path / "s") == before


def test_prune_cli_refuses_negative_and_missing_limits(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    save(store)
    store.close()
    before = tree(tmp_path / "s")
    for args in ([], ["--keep-days", "-1"], ["--keep-last", "-1"]):
        result = CliRunner().invoke(cli, ["store", "prune", "--store", str(tmp_path / "s"), *args])
        assert result.exit_code == 2, (args, result.output)
    assert tree(tmp_path / "s") == before


def test_prune_keeps_files_the_index_does_not_know(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    save(store, nonce="01", output=b"indexed")
    stray = tmp_path / "s" / "r1" / "20200101T000000.000000Z-ff.envelope"
    stray.write_bytes(b"not indexed")
    store.prune(keep_days=0, keep_last=0, now=T0 + dt.timedelta(days=30))
    assert stray.read_bytes() == b"not indexed"


# --- store: device names cannot escape ----------------------------------------------------------


@pytest.mark.parametrize("device", ["../escaped", "/tmp/adv-abs-escape", "state"])
def test_store_refuses_device_names_that_leave_the_root(tmp_path: Path, device: str) -> None:
    root = tmp_path / "store"
    store = Store.open(root)
    try:
        record = save(store, device=device)
    except StoreError:
        return
    finally:
        escaped = [p for p in tmp_path.rglob("*.envelope") if root not in p.parents]
        outside = Path("/tmp/adv-abs-escape")
        if outside.is_dir():
            for child in outside.iterdir():
                child.unlink()
            outside.rmdir()
    assert not escaped and (root / record.path).resolve().is_relative_to(root.resolve())


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", ".hidden", "x" * 64, "a b", "é", "-lead", ""])
def test_inventory_refuses_names_that_could_escape(tmp_path: Path, name: str) -> None:
    from collector.inventory import load_inventory
    from collector.errors import CollectorError
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(yaml.safe_dump({"devices": [{
        "name": name, "host": "127.0.0.1", "username": "u", "credential": {"password_env": "X"},
        "host_key": "[127.0.0.1]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJndnZwn7TuAPmQSKt0adt4c801rBtX2JCjAcr/1EFsD"}]}))
    with pytest.raises(CollectorError):
        load_inventory(inventory)


# --- collect over SSH: secrets and host keys ------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("advcoll"), devices=2, provisioned=True,
               key_type="ecdsa-p256", files=20, seed=21) as running:
        yield running


class _All(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_secrets_never_appear_in_output_logs_or_store(fleet: Fleet, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    fleet.write_inventory(inventory)
    secrets = [d.password for d in fleet.devices]
    bad, good = fleet.devices
    fleet.set_fault(bad.name, Fault.AUTH_FAILURE)
    handler = _All()
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)
    try:
        enrolled = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(tmp_path / "t"),
                                            "--trust-on-first-use", "--json"])
        collected = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                             "--trust-store", str(tmp_path / "t"), "--json"])
        status = CliRunner().invoke(cli, ["status", "--store", str(tmp_path / "s"), "--json"])
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
        fleet.clear_faults(bad.name)
    assert collected.exit_code in (0, 1), collected.output
    assert any(p.suffix == ".envelope" for p in (tmp_path / "s").rglob("*")), collected.output
    texts = [enrolled.output, collected.output, status.output, *handler.lines]
    texts += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()
              and p.name != "inventory.yaml"]
    for secret in secrets:
        assert not [t[:200] for t in texts if secret in t]


def test_wrong_host_key_stores_nothing(fleet: Fleet, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    fleet.write_inventory(inventory)
    first, second = fleet.devices
    document = yaml.safe_load(inventory.read_text())
    for entry in document["devices"]:  # swap the two pins: each device offers the other's key
        entry["host_key"] = (second if entry["name"] == first.name else first).host_key_line.replace(
            f":{(second if entry['name'] == first.name else first).port}]", f":{entry['port']}]")
        where, kind, blob = entry["host_key"].split()
        entry["host_key"] = f"[127.0.0.1]:{entry['port']} {kind} {blob}"
    inventory.write_text(yaml.safe_dump(document))
    TrustStore.open(tmp_path / "t", create=True)
    result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                      "--trust-store", str(tmp_path / "t"), "--json"])
    assert result.exit_code == 1, result.output
    outcomes = json.loads(result.stdout)["devices"]
    assert {o["reason"] for o in outcomes} == {"ssh.host_key"}
    assert not list((tmp_path / "s").rglob("*.envelope"))


def test_unpinned_host_key_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    fleet.write_inventory(inventory)
    document = yaml.safe_load(inventory.read_text())
    for entry in document["devices"]:
        entry.pop("host_key", None)
    if isinstance(document.get("defaults"), dict):
        document["defaults"].pop("host_key", None)
    inventory.write_text(yaml.safe_dump(document))
    result = CliRunner().invoke(cli, ["collect", "-i", str(inventory), "--store", str(tmp_path / "s"),
                                      "--trust-store", str(tmp_path / "t"), "--json"])
    assert result.exit_code != 0
    assert not list((tmp_path / "s").rglob("*.envelope"))


def test_prune_keeps_the_newest_trusted_even_when_its_verdict_file_was_lost(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    records = [save(store, nonce=f"{i:02x}", output=b"e%d" % i, received=T0 + dt.timedelta(days=i))
               for i in range(3)]
    _trusted(store, records[1])
    verdict_file = tmp_path / "s" / records[1].path.replace(".envelope", ".envelope.verdict.json")
    assert verdict_file.exists()
    verdict_file.unlink()  # what a power cut can do to a file written without fsync
    store.reindex()
    store.prune(keep_days=None, keep_last=0, now=T0 + dt.timedelta(days=30))
    assert (tmp_path / "s" / records[1].path).exists()


# Found by this pass, fixed in 7cdd771: verify_bytes (now verify_polled) used the default Policy (require_dossier
# False), so a signed envelope that was not a dossier was recorded as trusted.
def test_collector_does_not_trust_a_signed_envelope_that_is_not_a_dossier(tmp_path: Path) -> None:
    import vbuilder as vb
    from collector.verifying import verify_polled
    from verifier.truststore import TrustStore
    device = vb.Device("p256#adv-c", "p256#adv-cl")
    TrustStore.open(tmp_path / "ts", create=True).add_root("r1", device.root)
    nonce = bytes.fromhex("00112233445566778899aabbccddeeff")
    raw = device.envelope(data="Cisco IOS XR Software, Version 7.3.2\n", nonce=nonce)
    checked = verify_polled(raw, "xr-dossier", str(tmp_path / "ts"), "r1", nonce, vb.NOW)
    assert not checked.trusted, [f["id"] for f in checked.findings]
