"""The trust store: enrollment, windows, pins, bundles, atomic writes, damage reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

import schemas
from vbuilder import DAY, NOW, Device, make_leaf, make_root
from verifier import TrustStore, TrustStoreError


def test_open_missing_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrustStoreError, match="no trust store"):
        TrustStore.open(tmp_path / "absent")


def test_create_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(TrustStoreError, match="not empty"):
        TrustStore.open(tmp_path, create=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_add_list_remove(tmp_path: Path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    entry = store.add_root("r1", device.root, enrolled_at=NOW, source="collector")
    again = store.add_root("r1", device.root)
    assert again.sha256 == entry.sha256 and again.enrolled_at == NOW
    store.add_root("weird/name with space", device.root)
    assert store.devices() == ["r1", "weird/name with space"]
    assert TrustStore.open(tmp_path / "s").roots_for("r1", NOW) == [device.root]
    store.remove("r1")
    assert store.devices() == ["weird/name with space"]
    with pytest.raises(TrustStoreError, match="not in the trust store"):
        store.remove("r1")


def test_every_file_matches_the_schema(tmp_path: Path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root, valid_from=NOW - DAY, valid_until=NOW + DAY)
    store.pin_leaf("r1", device.leaf)
    store.import_bundle(device.root.public_bytes(Encoding.PEM))
    files = [tmp_path / "s/truststore.json", tmp_path / "s/pool.json", *(tmp_path / "s/devices").glob("*.json")]
    for file in files:
        jsonschema.validate(json.loads(file.read_text()), schemas.load("truststore"))
    assert not list((tmp_path / "s").rglob("*.tmp")), "no temporary file is left behind"


def test_a_leaf_is_not_a_root(tmp_path: Path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    with pytest.raises(TrustStoreError, match="not a CA"):
        store.add_root("r1", device.leaf)


def test_root_window(tmp_path: Path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root, valid_from=NOW - DAY, valid_until=NOW + DAY)
    assert store.roots_for("r1", NOW) == [device.root]
    assert store.roots_for("r1", NOW + 2 * DAY) == []
    assert store.roots_for("r1", NOW - 2 * DAY) == []
    with pytest.raises(TrustStoreError, match="empty validity window"):
        store.add_root("r2", device.root, valid_from=NOW, valid_until=NOW - DAY)


@pytest.mark.parametrize("damage", ["not json", "schema", "fingerprint", "device name", "marker"])
def test_damage_is_reported_never_ignored(tmp_path: Path, device: Device, damage: str) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root)
    file = tmp_path / "s/devices/r1.json"
    record = json.loads(file.read_text())
    if damage == "not json":
        file.write_text(file.read_text()[:-20])
    elif damage == "schema":
        record["roots"][0]["sha256"] = "xyz"
        file.write_text(json.dumps(record))
    elif damage == "fingerprint":
        record["roots"][0]["sha256"] = "0" * 64
        file.write_text(json.dumps(record))
    elif damage == "device name":
        record["device"] = "r2"
        file.write_text(json.dumps(record))
    else:
        (tmp_path / "s/truststore.json").write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(TrustStoreError, match="damaged|does not match|expected format"):
        TrustStore.open(tmp_path / "s").roots_for("r1", NOW)


@pytest.mark.parametrize("form", ["pem", "pkcs7-der", "pkcs7-pem"])
def test_import_bundle_forms(tmp_path: Path, form: str) -> None:
    roots = [make_root("p256", name="CA one"), make_root("p384", name="CA two")]
    if form == "pem":
        data = b"".join(root.public_bytes(Encoding.PEM) for root in roots)
    else:
        data = pkcs7.serialize_certificates(roots, Encoding.DER if form == "pkcs7-der" else Encoding.PEM)
    store = TrustStore.open(tmp_path / "s", create=True)
    added = store.import_bundle(data)
    assert [entry.certificate for entry in added] == roots
    assert store.import_bundle(data) == []  # idempotent
    assert [entry.certificate for entry in store.pool_entries()] == roots


def test_import_bundle_refuses_garbage_and_leaves(tmp_path: Path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    with pytest.raises(TrustStoreError, match="could not be read"):
        store.import_bundle(b"\x30\x03garbage")
    with pytest.raises(TrustStoreError, match="not a CA"):
        store.import_bundle(device.leaf.public_bytes(Encoding.PEM))
    assert store.pool_entries() == []


def test_pin_and_intermediates_need_an_enrolled_device(tmp_path: Path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    with pytest.raises(TrustStoreError, match="enroll it first"):
        store.pin_leaf("r1", device.leaf)
    store.add_root("r1", device.root)
    store.pin_leaf("r1", device.leaf)
    assert store.pinned_leaf("r1") == device.leaf
    sub = make_leaf("p384", "p256", device.root, name="sub", ca=True, key_usage=None)
    store.add_intermediate("r1", sub)
    store.add_intermediate("r1", sub)
    assert store.intermediates_for("r1") == [sub]


def test_writes_are_atomic_replacements(tmp_path: Path, device: Device, monkeypatch) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root)
    before = (tmp_path / "s/devices/r1.json").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        store.pin_leaf("r1", device.leaf)
    assert (tmp_path / "s/devices/r1.json").read_bytes() == before
    assert not list((tmp_path / "s").rglob("*.tmp"))


def test_a_frozen_view_reads_each_file_once_and_is_read_only(tmp_path: Path, device: Device) -> None:
    """What a collection run verifies against: the store as it was when the run began."""
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root, enrolled_at=NOW)
    view = store.frozen()
    assert view.roots_for("r1", NOW) == [device.root] and "r1" in view and "r2" not in view
    store.add_root("r2", device.root)  # changes made meanwhile apply to the next view
    store.remove("r1")
    assert store.roots_for("r2", NOW) == [device.root] and store.roots_for("r1", NOW) == []
    assert view.roots_for("r1", NOW) == [device.root] and "r2" not in view
    assert store.frozen().roots_for("r1", NOW) == [] and "r2" in store.frozen()
    with pytest.raises(TrustStoreError, match="frozen"):
        view.add_root("r3", device.root)


def test_a_stored_root_with_a_malformed_name_is_reported_as_damage(tmp_path: Path) -> None:
    """A root whose name attribute is a BIT STRING under another OID parses lazily and made
    cryptography raise TypeError on first use: it is damage, reported with the file."""
    import base64
    import hashlib
    import warnings

    from cryptography import x509

    device = Device("p256", "p256")  # the root of test_verify_properties, where the flip was found
    store = TrustStore.open(tmp_path / "ts", create=True)
    store.add_root("r1", device.root, enrolled_at=NOW, source="collector")
    broken = bytearray(device.root.public_bytes(Encoding.DER))
    broken[73] ^= 1 << 4  # the flip the envelope property test found (name attribute type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError):
            parsed = x509.load_der_x509_certificate(bytes(broken))
            parsed.subject, parsed.issuer  # noqa: B018 - what used to escape
    pem = "-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(bytes(broken)).decode() + "-----END CERTIFICATE-----\n"
    file = tmp_path / "ts" / "devices" / "r1.json"
    record = json.loads(file.read_text())
    record["roots"][0].update(pem=pem, sha256=hashlib.sha256(bytes(broken)).hexdigest())
    file.write_text(json.dumps(record))
    fresh = TrustStore.open(tmp_path / "ts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TrustStoreError, match=f"{file}: a stored certificate is not valid PEM"):
            fresh.check("r1")
