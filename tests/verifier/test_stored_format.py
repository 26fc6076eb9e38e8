"""The stored format's one owner (verifier/stored.py) and the one way to verify stored output
(verifier/evidence.py): kinds, names, the sidecar reader, verify_evidence before the metadata
is written."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import schemas
from vbuilder import NOW, Device
from verifier import VerifierError
from verifier.evidence import verify_evidence, verify_stored
from verifier.stored import (KINDS, StoredFileError, kind_of, new_metadata, parse_stored_name, read_sidecar,
                             sidecar_bytes, sidecar_path, stored_name)


def test_the_schema_lists_every_kind() -> None:
    assert schemas.load("metadata")["properties"]["kind"]["enum"] == list(KINDS)


def test_a_stored_name_round_trips() -> None:
    received = dt.datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    name = stored_name(received, "ABCDEF0123456789")
    assert name == "20260601T120000.123456Z-abcdef01"
    parsed = parse_stored_name(name + ".envelope")
    assert parsed is not None and (parsed.received, parsed.nonce_prefix) == (received, "abcdef01")
    assert parse_stored_name("valid.envelope") is None
    assert sidecar_path(Path("d/x.envelope"), ".envelope.meta.json") == Path("d/x.envelope.meta.json")


def test_the_metadata_writer_and_reader_agree(tmp_path: Path) -> None:
    """The verifier writes the metadata document as it reads it: schema-valid, its kind derived
    when the poll does not say, times in UTC to the microsecond, read back unchanged."""
    import jsonschema

    started = dt.datetime(2026, 6, 1, 14, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    output = b'{"signed-envelope": {}}\n'
    meta = new_metadata(device="r1", host="192.0.2.1", nonce_hex="1580", output=output, started=started,
                        received=started + dt.timedelta(seconds=1.5), duration_s=1.5000004, writer_version="test",
                        extra={"command": "show platform security integrity dossier include packages nonce 1580 "
                                          "| utility sign nonce 1580 include-certificate"})
    jsonschema.validate(meta, schemas.load("metadata"))
    assert (meta["kind"], meta["started"], meta["received"]) == (
        "xr-dossier", "2026-06-01T12:00:00.000000Z", "2026-06-01T12:00:01.500000Z")
    assert (meta["bytes"], meta["duration_s"]) == (len(output), 1.5)
    path = tmp_path / "x.envelope.meta.json"
    path.write_bytes(sidecar_bytes(meta))
    assert read_sidecar(path) == meta
    explicit = new_metadata(device="r1", host="h", nonce_hex="1580", output=output, started=started, received=started,
                            duration_s=0, writer_version="test", extra={"kind": "xe-sudi", "output": "sudi"})
    assert explicit["kind"] == "xe-sudi"  # the poll's own kind wins


@pytest.mark.parametrize(("meta", "kind"), [
    ({"command": "show platform security integrity dossier include packages nonce 15"}, "xr-dossier"),
    ({"command": "show version | utility sign nonce 15"}, "xr-signed-output"),
    ({}, "xr-signed-output"),
    ({"verifier_profile": "xr-dossier", "command": "x integrity dossier y"}, "xr-dossier"),
    ({"platform": "iosxe", "output": "sudi"}, "xe-sudi"),
    ({"verifier_profile": "xe-integrity-sign", "output": "integrity", "platform": "iosxe"}, "xe-integrity"),
    ({"kind": "xe-sudi", "command": "integrity dossier"}, "xe-sudi"),
])
def test_the_kind_is_the_metadatas_or_derived_from_older_metadata(meta: dict, kind: str) -> None:
    assert kind_of(meta).name == kind


def test_a_kind_that_is_unknown_or_contradicted_is_refused() -> None:
    with pytest.raises(VerifierError, match="expected one of xr-dossier"):
        kind_of({"kind": "netconf"})
    with pytest.raises(VerifierError, match="contradicts itself"):
        kind_of({"kind": "xr-dossier", "verifier_profile": "xe-sudi-sign"})
    assert kind_of({"verifier_profile": "kgv"}) is None and kind_of(None) is None


@pytest.mark.parametrize(("text", "problem"), [
    (b'{"a": 1, "a": 2}', "not_json"), (b"[1]", "not_object"), (b"[" * 100 + b"]" * 100, "not_json"),
    (b"\xff{}", "not_json"), (b'{"a": NaN}', "not_json"),
])
def test_the_sidecar_reader_refuses_what_is_not_a_plain_object(tmp_path: Path, text: bytes, problem: str) -> None:
    path = tmp_path / "x.envelope.meta.json"
    path.write_bytes(text)
    with pytest.raises(StoredFileError) as caught:
        read_sidecar(path)
    assert caught.value.problem == problem
    assert read_sidecar(tmp_path / "absent.json") is None


def _meta(nonce: bytes, **extra: str) -> dict:
    return {"device": "r1", "nonce": nonce.hex(), "received": NOW.isoformat(), **extra}


def test_verify_evidence_takes_device_nonce_and_time_from_the_metadata(device: Device) -> None:
    raw = device.envelope()
    verdict = verify_evidence(raw, _meta(device.nonce, kind="xr-dossier"), roots=[device.root])
    assert verdict.trusted and verdict.dossier is not None
    with pytest.raises(VerifierError, match="differs from the metadata's nonce"):
        verify_evidence(raw, _meta(device.nonce), roots=[device.root], nonce=b"\x00\x01")
    with pytest.raises(VerifierError, match="needs the collector's metadata"):
        verify_evidence(raw, None, roots=[device.root])


def test_the_kind_decides_whether_signed_text_must_be_a_dossier(device: Device) -> None:
    raw = device.envelope(data="hello")
    text = verify_evidence(raw, _meta(device.nonce, kind="xr-signed-output"), roots=[device.root])
    assert text.trusted and "data.not_dossier" in [str(f.id) for f in text.findings]
    asked = verify_evidence(raw, _meta(device.nonce, kind="xr-dossier"), roots=[device.root])
    assert not asked.trusted and [str(f.id) for f in asked.errors] == ["dossier.missing"]


def test_verify_stored_is_verify_evidence_of_the_file_and_its_metadata(tmp_path: Path, device: Device) -> None:
    envelope = tmp_path / "r1" / "x.envelope"
    envelope.parent.mkdir()
    envelope.write_bytes(device.envelope(data="hello"))
    (tmp_path / "r1" / "x.envelope.meta.json").write_text(json.dumps(_meta(device.nonce, kind="xr-dossier")))
    stored = verify_stored(envelope, roots=[device.root])
    assert not stored.trusted and [str(f.id) for f in stored.errors] == ["dossier.missing"]
    assert "record.not_checked" in [str(f.id) for f in stored.findings]


def test_a_path_is_named_as_pathlib_writes_it() -> None:
    """The fast spelling of `str(Path(p))` agrees with pathlib on every path of up to five
    pieces from a set with empty, ".", ".." and dotted names and repeated slashes."""
    import itertools

    from verifier.inputs import _as_pathlib_writes

    pieces = ["", "/", ".", "..", "a", "b.", ".x", "//"]
    for count in range(1, 6):
        for combination in itertools.product(pieces, repeat=count):
            path = "".join(combination)
            assert _as_pathlib_writes(path) == str(Path(path)), path
