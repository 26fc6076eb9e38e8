"""Adversarial tests of the verifier: inputs where "trusted" would be wrong, and robustness.

Envelopes are built with tests/verifier/vbuilder.py (signing written from the spec, independent
of `verifier/`). A test that exposes a bug is `xfail(strict=True)` with the bug in its reason;
bugs fixed since are regular tests with a comment naming the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vbuilder as vb
from dossier_cli.main import cli
from verifier.errors import VerifierError
from verifier.truststore import TrustStore
from verifier.verify import verify_envelope

NONCE = b"\x15\x80"


@pytest.fixture(scope="module")
def dev() -> vb.Device:
    return vb.Device("p256", "p256")


@pytest.fixture(scope="module")
def signed(dev: vb.Device) -> bytes:
    return dev.envelope()


def verdict(dev: vb.Device, raw: bytes, nonce: bytes = NONCE, **kwargs):
    return verify_envelope(raw, roots=[dev.root], expected_nonce=nonce, at=vb.NOW, **kwargs)


def sub_ca(dev: vb.Device, kind: str = "p256#adv-sub") -> x509.Certificate:
    """A CA certificate issued by the device's (enrolled) root key."""
    builder = (x509.CertificateBuilder().subject_name(vb._name("adv sub-CA"))
               .issuer_name(dev.root.subject).public_key(vb.key(kind).public_key()).serial_number(0x77)
               .not_valid_before(vb.NOW - 10 * vb.DAY).not_valid_after(vb.NOW + 100 * vb.DAY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(vb.ROOT_KU, critical=False))
    return builder.sign(vb.key(dev.root_kind), hashes.SHA256())


# --- properties that hold ---------------------------------------------------------------------


def test_baseline_envelope_is_trusted(dev: vb.Device) -> None:
    assert verdict(dev, dev.envelope()).trusted


def test_signature_over_other_bytes_is_refused(dev: vb.Device) -> None:
    good = json.loads(dev.envelope())
    other = json.loads(dev.envelope(data=json.dumps(vb.dossier("1580", extra={"x": 1}))))
    good["signed-envelope"]["signature"] = other["signed-envelope"]["signature"]
    result = verdict(dev, json.dumps(good).encode())
    assert not result.trusted and "signature.invalid" in result.ids()


@pytest.mark.parametrize("order", ["leaf_root", "leaf_only_is_root", "root_only", "root_root"])
def test_reordered_or_ca_leaf_is_refused(dev: vb.Device, order: str) -> None:
    certs = {"leaf_root": [dev.leaf, dev.root], "leaf_only_is_root": [dev.root],
             "root_only": [dev.root], "root_root": [dev.root, dev.root]}[order]
    signer = dev.root_kind if certs[-1] is dev.root else dev.leaf_kind
    result = verdict(dev, dev.envelope(certs=certs, signer=signer))
    assert not result.trusted, result.ids()


def test_root_not_enrolled_is_refused(dev: vb.Device) -> None:
    other = vb.Device("p256#adv-o", "p256#adv-ol")
    result = verdict(dev, other.envelope())
    assert not result.trusted


@pytest.mark.parametrize("nonce", [b"\x15\x80\x00", b"\x15", b"\x00\x15\x80", b"\x15\x81"])
def test_envelope_nonce_tricks_are_refused(dev: vb.Device, nonce: bytes) -> None:
    result = verdict(dev, dev.envelope(nonce=nonce, dossier_nonce=nonce.hex()))
    assert not result.trusted and "nonce.mismatch" in result.ids()


def test_over_long_nonce_is_refused(dev: vb.Device) -> None:
    nonce = bytes(range(1, 66))  # 65 bytes
    result = verify_envelope(dev.envelope(nonce=nonce, dossier_nonce=nonce.hex()), roots=[dev.root],
                             expected_nonce=nonce[:64], at=vb.NOW)
    assert not result.trusted
    with pytest.raises(VerifierError):
        verify_envelope(dev.envelope(), roots=[dev.root], expected_nonce=nonce, at=vb.NOW)


@pytest.mark.parametrize("dossier_nonce", ["1581", "158000", "001580", "", "15", "0x1580"])
def test_dossier_nonce_that_differs_is_refused(dev: vb.Device, dossier_nonce: str) -> None:
    result = verdict(dev, dev.envelope(dossier_nonce=dossier_nonce))
    assert not result.trusted


def test_dossier_nonce_is_case_insensitive(dev: vb.Device) -> None:
    nonce = b"\xab\xcd"
    assert verdict(dev, dev.envelope(nonce=nonce, dossier_nonce="ABCD"), nonce=nonce).trusted


def _dup(text: str, where: str) -> str:
    """Repeat one member of the envelope JSON text, same value (duplicates must fail regardless)."""
    body = json.loads(text)["signed-envelope"]
    if where == "top":
        inner = json.dumps(body)
        return '{"signed-envelope": %s, "signed-envelope": %s}' % (inner, inner)
    if where == "body":
        member = '"nonce": %s' % json.dumps(body["nonce"])
        out = text.replace(member, member + ", " + member, 1)
    elif where == "certificates":
        listed = '"certificate": %s' % json.dumps(body["certificates"]["certificate"])
        out = text.replace(listed, listed + ", " + listed, 1)
    else:
        entry = json.dumps(body["certificates"]["certificate"][0])
        out = text.replace(entry, entry[:-1] + ', "name": %s}' % json.dumps(body["certificates"]["certificate"][0]["name"]), 1)
    assert out != text
    return out


@pytest.mark.parametrize("where", ["body", "certificates", "entry"])
def test_duplicate_keys_in_the_envelope_are_refused(dev: vb.Device, where: str) -> None:
    result = verdict(dev, _dup(dev.envelope().decode(), where).encode())
    assert not result.trusted and "envelope.duplicate_key" in result.ids(), result.ids()


def test_duplicate_top_level_key_is_refused(dev: vb.Device) -> None:
    result = verdict(dev, _dup(dev.envelope().decode(), "top").encode())
    assert not result.trusted and "envelope.duplicate_key" in result.ids()


@pytest.mark.parametrize("prefix", [
    b"Sun Oct 20 13:07:24.136 UTC {\n",
    b"Sun Oct 20 13:07:24.136 UTC\nSun Oct 20 13:07:24.136 UTC\n",
    b"Sun Oct 20 13:07:24.136 UTC junk\n",
    b"RP/0/RP0/CPU0:r1#\n",
    b"\x00\n",
    b"Sun Oct 20 13:07:24.136 UTC\r\r\n",
])
def test_timestamp_prefix_cannot_smuggle_content(dev: vb.Device, prefix: bytes) -> None:
    result = verdict(dev, prefix + dev.envelope())
    assert not result.trusted


def test_trailing_data_is_refused(dev: vb.Device) -> None:
    for tail in (b"\n{}", b"\x00", b"\nSun Oct 20 13:07:24.136 UTC\n"):
        assert not verdict(dev, dev.envelope() + tail).trusted


# Found by this pass, fixed in 4ecd449: the dossier was parsed with duplicate keys allowed (last
# wins), so a stale nonce followed by the expected one was trusted.
def test_dossier_with_two_nonces_is_not_trusted(dev: vb.Device) -> None:
    text = json.dumps(vb.dossier("1580"))
    tampered = text.replace('"nonce": "1580"', '"nonce": "ffff", "nonce": "1580"')
    assert tampered != text
    result = verdict(dev, dev.envelope(data=tampered))
    assert not result.trusted, result.ids()


# Found by this pass, fixed in 4ecd449: intermediates carried in the envelope (not enrolled)
# were used for path building, so a leaf under a sub-CA of the enrolled root was trusted.
def test_leaf_via_carried_unenrolled_intermediate_is_not_trusted(dev: vb.Device) -> None:
    intermediate = sub_ca(dev)
    leaf = vb.make_leaf("p256#adv-l2", "p256#adv-sub", intermediate)
    result = verdict(dev, dev.envelope(certs=[dev.root, intermediate, leaf], signer="p256#adv-l2"))
    assert not result.trusted, result.ids()


# Found by this pass, fixed in 4ecd449: certificate lists other than [root, leaf] (an unrelated
# CA in the middle, the root or the leaf twice) were trusted.
@pytest.mark.parametrize("shape", ["unrelated_middle", "leaf_twice", "root_twice"])
def test_extra_or_duplicated_certificates_are_not_trusted(dev: vb.Device, shape: str) -> None:
    other = vb.make_root("p256#adv-unrelated")
    certs = {"unrelated_middle": [dev.root, other, dev.leaf], "leaf_twice": [dev.root, dev.leaf, dev.leaf],
             "root_twice": [dev.root, dev.root, dev.leaf]}[shape]
    result = verdict(dev, dev.envelope(certs=certs))
    assert not result.trusted, result.ids()


# Found by this pass, fixed in 4ecd449: a dossier after a BOM or the timestamp line was taken
# as plain text (data.not_dossier, info) and its differing nonce was never checked.
@pytest.mark.parametrize("prefix", ["\ufeff", "Sun Oct 20 13:07:24.136 UTC\n"])
def test_prefixed_dossier_with_other_nonce_is_not_trusted(dev: vb.Device, prefix: str) -> None:
    result = verdict(dev, dev.envelope(data=prefix + json.dumps(vb.dossier("ffff"))))
    assert not result.trusted, result.ids()


# --- random input ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bytes_only_produce_findings(dev: vb.Device, raw: bytes) -> None:
    try:
        result = verify_envelope(raw, roots=[dev.root], expected_nonce=NONCE, at=vb.NOW)
    except VerifierError:
        return
    assert not result.trusted


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_envelopes_are_never_trusted_unless_equivalent(dev: vb.Device, signed: bytes,
                                                               data: st.DataObject) -> None:
    original = signed  # one envelope: ECDSA signatures vary in length from one signing to the next
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.binary(min_size=1, max_size=3))
    mutated = original[:position] + replacement + original[position + 1 :]
    try:
        result = verify_envelope(mutated, roots=[dev.root], expected_nonce=NONCE, at=vb.NOW)
    except VerifierError:
        return
    if result.trusted:  # only whitespace or a certificate's (unsigned, informational) name may change
        assert _without_names(json.loads(mutated)) == _without_names(json.loads(original))


def _without_names(document: dict) -> dict:
    body = dict(document["signed-envelope"])
    body["certificates"] = [entry["value"] for entry in body["certificates"]["certificate"]]
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=20))
def test_random_json_in_the_envelope_slots(dev: vb.Device, signed: bytes, value) -> None:
    body = json.loads(signed)["signed-envelope"]
    for slot in ("nonce", "data", "signature", "certificates", "signature_version"):
        changed = dict(body, **{slot: value})
        raw = json.dumps({"signed-envelope": changed}).encode()
        try:
            result = verify_envelope(raw, roots=[dev.root], expected_nonce=NONCE, at=vb.NOW)
        except VerifierError:
            continue
        assert not result.trusted or changed[slot] == body[slot]


# --- trust store and stored envelopes ----------------------------------------------------------


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_symlinked_device_record_for_another_device_is_refused(dev: vb.Device, tmp_path: Path) -> None:
    store = TrustStore.open(tmp_path / "ts", create=True)
    store.add_root("r1", dev.root)
    other = vb.Device("p256#adv-s", "p256#adv-sl")
    store.add_root("r2", other.root)
    r2 = tmp_path / "ts" / "devices" / "r2.json"
    r2.unlink()
    os.symlink(tmp_path / "ts" / "devices" / "r1.json", r2)
    fresh = TrustStore.open(tmp_path / "ts")
    try:
        result = verify_envelope(dev.envelope(), trust_store=fresh, device="r2", expected_nonce=NONCE, at=vb.NOW)
    except VerifierError:
        return
    assert not result.trusted


def test_store_file_whose_meta_names_another_nonce_is_refused(dev: vb.Device, tmp_path: Path) -> None:
    folder = tmp_path / "r1"
    folder.mkdir()
    raw = dev.envelope()
    envelope = folder / "20260601T120000.000000Z-aaaa.envelope"
    envelope.write_bytes(raw)
    import hashlib
    meta = {"device": "r1", "nonce": "aaaa", "received": "2026-06-01T12:00:00Z", "host": "h",
            "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (folder / (envelope.name + ".meta.json")).write_text(json.dumps(meta))
    root_pem = _pem(dev.root, tmp_path / "root.pem")
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root_pem), "--at", "received", "--json"])
    assert result.exit_code == 1, result.output


# Found by this pass, fixed in 4ecd449: `dossier verify` trusted the .meta.json nonce without
# cross-checking the collector's file name (<received>-<nonce[:8]>.envelope).
def test_meta_that_contradicts_the_file_name_is_not_trusted(dev: vb.Device, tmp_path: Path) -> None:
    import hashlib
    folder = tmp_path / "r1"
    folder.mkdir()
    raw = dev.envelope()  # signed over nonce 1580 (an old envelope)
    envelope = folder / "20260601T120000.000000Z-deadbeef.envelope"  # the collector sent deadbeef...
    envelope.write_bytes(raw)
    meta = {"device": "r1", "nonce": NONCE.hex(), "received": "2026-06-01T12:00:00Z", "host": "h",
            "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (folder / (envelope.name + ".meta.json")).write_text(json.dumps(meta))
    root_pem = _pem(dev.root, tmp_path / "root.pem")
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root_pem), "--at", "received", "--json"])
    assert result.exit_code != 0, result.output


def test_meta_with_malformed_nonce_is_an_input_error(dev: vb.Device, tmp_path: Path) -> None:
    import hashlib
    raw = dev.envelope()
    envelope = tmp_path / "x.envelope"
    envelope.write_bytes(raw)
    for nonce in ("", "zz", "1" * 200):
        meta = {"device": "r1", "nonce": nonce, "received": "2026-06-01T12:00:00Z",
                "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        (tmp_path / "x.envelope.meta.json").write_text(json.dumps(meta))
        root_pem = _pem(dev.root, tmp_path / "root.pem")
        result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root_pem), "--json"])
        assert result.exit_code != 0 and '"trusted": true' not in result.output, (nonce, result.output)


# Found by this pass, fixed in 040f671: after 4ecd449 a dossier behind a BOM whose key was
# written '"model\\u002dname"' escaped the raw-substring check and passed as plain text.
def test_prefixed_dossier_with_escaped_marker_is_not_trusted(dev: vb.Device) -> None:
    text = json.dumps(vb.dossier("ffff")).replace('"model-name"', '"model\\u002dname"')
    assert json.loads(text)["model-name"]
    result = verdict(dev, dev.envelope(data="\ufeff" + text))
    assert not result.trusted, result.ids()


def _store_like(tmp_path: Path, raw: bytes, name: str, meta: dict) -> Path:
    import hashlib
    folder = tmp_path / "r1"
    folder.mkdir(exist_ok=True)
    envelope = folder / name
    envelope.write_bytes(raw)
    meta = {"host": "h", "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), **meta}
    (folder / (name + ".meta.json")).write_text(json.dumps(meta))
    return envelope


def test_meta_that_names_another_device_than_its_folder_is_refused(dev: vb.Device, tmp_path: Path) -> None:
    envelope = _store_like(tmp_path, dev.envelope(), "20260601T120000.000000Z-1580.envelope",
                           {"device": "r2", "nonce": "1580", "received": "2026-06-01T12:00:00Z"})
    root_pem = _pem(dev.root, tmp_path / "root.pem")
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root_pem), "--json"])
    assert result.exit_code != 0 and '"trusted": true' not in result.output, result.output


def test_nested_duplicate_key_in_the_dossier_is_refused(dev: vb.Device) -> None:
    text = json.dumps(vb.dossier("1580"))
    tampered = text.replace('"arch": "x86_64"', '"arch": "x86_64", "arch": "x86_64"')
    assert tampered != text
    assert not verdict(dev, dev.envelope(data=tampered)).trusted


# Found by this pass, fixed in 040f671: metadata 'received' was not cross-checked with the file
# name's timestamp, so `--at received` could judge an expired leaf at an edited, earlier time.
def test_meta_received_that_contradicts_the_file_name_is_not_trusted(tmp_path: Path) -> None:
    root = vb.make_root("p256#adv-er")
    leaf = vb.make_leaf("p256#adv-el", "p256#adv-er", root, not_before=vb.NOW - 60 * vb.DAY,
                        not_after=vb.NOW - vb.DAY)
    old = vb.Device("p256#adv-er", "p256#adv-el", root=root, leaf=leaf)
    envelope = _store_like(tmp_path, old.envelope(), "20260601T120000.000000Z-1580.envelope",
                           {"device": "r1", "nonce": "1580", "received": "2026-05-20T12:00:00Z"})
    root_pem = _pem(root, tmp_path / "root.pem")
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root_pem), "--at", "received",
                                      "--json"])
    assert result.exit_code != 0 and '"trusted": true' not in result.output, result.output


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=300))
def test_dossier_verify_cli_never_trusts_random_bytes(dev: vb.Device, tmp_path: Path, raw: bytes) -> None:
    envelope = tmp_path / "random.envelope"
    envelope.write_bytes(raw)
    root_pem = _pem(dev.root, tmp_path / "root.pem")
    result = CliRunner().invoke(cli, ["verify", str(envelope), "--root", str(root_pem), "--nonce", "1580", "--json"])
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.mark.parametrize("name", ["../../adv-evil", "/abs/adv", "..", ".", "a/b", "%72%31", "r1\x00x", "R1"])
def test_trust_store_device_names_stay_inside_devices(dev: vb.Device, tmp_path: Path, name: str) -> None:
    store = TrustStore.open(tmp_path / "ts", create=True)
    store.add_root("r1", dev.root)
    try:
        store.add_root(name, vb.make_root("p256#adv-tsn"))
    except VerifierError:
        pass
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert all((tmp_path / "ts") in p.parents for p in files), files
    assert store.roots_for("r1") == [dev.root]  # the other name never lands on r1's record
    assert "r1" in store.devices()


def test_envelope_root_enrolled_for_two_devices_needs_a_device_name(dev: vb.Device, tmp_path: Path) -> None:
    store = TrustStore.open(tmp_path / "ts", create=True)
    store.add_root("r1", dev.root)
    store.add_root("r2", dev.root)
    result = verify_envelope(dev.envelope(), trust_store=store, expected_nonce=NONCE, at=vb.NOW)
    assert not result.trusted and "trust.device_ambiguous" in result.ids(), result.ids()


# Closed: _embedded_dossier used to look only at the first '{' of text that is not a dossier,
# so a decoy '{}' (or a stray '{') hid a dossier whose 'model-name' key is spelled with an
# escape, and it passed as plain text with its nonce unchecked. Every '{' is tried now.
@pytest.mark.parametrize("lead", ["x {}\n", "x { y\n", '{"a": 1} {"b": [1, {"c": 2}]} {\n', "}{" * 50])
def test_dossier_behind_a_decoy_object_is_not_trusted(dev: vb.Device, lead: str) -> None:
    text = json.dumps(vb.dossier("ffff")).replace('"model-name"', '"model\\u002dname"')
    result = verdict(dev, dev.envelope(data=lead + text))
    assert not result.trusted, result.ids()


def test_dossier_nested_in_another_object_is_not_trusted(dev: vb.Device) -> None:
    inner = json.dumps(vb.dossier("ffff")).replace('"model-name"', '"model\\u002dname"')
    result = verdict(dev, dev.envelope(data='x {"wrapper": [1, ' + inner + "]}\n"))
    assert not result.trusted, result.ids()


@pytest.mark.parametrize("text", [
    "Cisco IOS XR Software {v7.3.2} {a} {b: c}\n" * 200,
    'interfaces:\n{"interfaces": [' + ", ".join(['{"name": "Gi0/0/0/%d"}' % i for i in range(500)]) + "]}\n",
], ids=["braces-in-text", "json-after-a-line"])
def test_plain_text_with_braces_is_still_plain_text(dev: vb.Device, text: str) -> None:
    result = verdict(dev, dev.envelope(data=text))
    assert result.trusted, result.ids()
    assert "data.not_dossier" in result.ids()


def test_text_too_costly_to_look_into_is_refused(dev: vb.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    # 15 nested starts (within the depth limit), each parsing the whole unterminated list
    # before it fails: looking into all would read the text 15 times, over the budget of 8
    import verifier.verify as verify_module

    text = "x " + '{"a": [' * 15 + "1, " * 20000 + "x\n"
    reads: list[int] = []
    real = verify_module._FIRST_OBJECT.raw_decode
    monkeypatch.setattr(verify_module, "_FIRST_OBJECT", type("Spy", (), {
        "raw_decode": staticmethod(lambda t, p: reads.append(p) or real(t, p))}))
    result = verdict(dev, dev.envelope(data=text))
    assert not result.trusted and "dossier.invalid_json" in result.ids(), result.ids()
    assert len(reads) < 15  # stopped by the budget, not by running out of starts


# The dossier's duplicate keys are ruled out by counting colons (loads_strict's `vouch`): an
# escaped colon must not make up for the member a duplicate key drops.
def test_duplicate_key_hidden_by_an_escaped_colon_is_refused(dev: vb.Device) -> None:
    text = json.dumps(vb.dossier("1580"))
    tampered = text.replace('"arch": "x86_64"', '"arch": "x86_64", "arch": "x86\\u003a64"')
    assert tampered != text
    result = verdict(dev, dev.envelope(data=tampered))
    assert not result.trusted and "dossier.invalid_json" in result.ids(), result.ids()
    assert any("more than once" in finding.message for finding in result.findings)


# orjson reads integers past 64 bits as floats: such a dossier is outside the schema's uint64
# bounds, so it is read by json (exact integers) and reported, never trusted with a rounded value.
def test_integer_past_64_bits_in_the_dossier_is_a_schema_finding(dev: vb.Device) -> None:
    text = json.dumps(vb.dossier("1580", files=2))
    tampered = text.replace('"inode": 100001', '"inode": 123456789012345678901234567890', 1)
    assert tampered != text
    result = verdict(dev, dev.envelope(data=tampered))
    assert not result.trusted and "dossier.schema" in result.ids(), result.ids()
