"""Envelopes that must verify, the edges of validity, the trust store's roles in a verdict."""

from __future__ import annotations

import datetime as dt
import json

import jsonschema
import pytest

import schemas
from vbuilder import DAY, NOW, Device, dossier, make_leaf, make_root
from verifier import FindingId, Policy, TrustStore, VerifierError, verify_envelope
from verifier.chain import validate_chain

SECOND = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("root_kind", "leaf_kind", "algorithm"),
    [
        ("rsa2048", "rsa2048", "RSASSA-PKCS1-v1_5 SHA-256"),
        ("rsa2048", "rsa4096", "RSASSA-PKCS1-v1_5 SHA-256"),
        ("p256", "p256", "ECDSA SHA-256"),
        ("p384", "p384", "ECDSA SHA-384"),
        ("p521", "p521", "ECDSA SHA-512"),
        ("rsa2048", "p256", "ECDSA SHA-256"),
    ],
)
def test_every_key_type_verifies(root_kind: str, leaf_kind: str, algorithm: str) -> None:
    device = Device(root_kind, leaf_kind)
    verdict = verify_envelope(device.envelope(), roots=[device.root], expected_nonce=device.nonce, at=NOW)
    assert verdict.trusted, verdict.findings
    assert verdict.findings == []
    assert verdict.signature_algorithm == algorithm
    assert verdict.dossier["nonce"] == "1580"
    assert verdict.leaf == device.leaf and verdict.root == device.root
    assert verdict.days_to_expiry == {"leaf": 365, "root": 3650}
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))


def test_dsa_verifies_only_when_the_policy_allows_it() -> None:
    device = Device("dsa2048", "dsa2048")
    raw = device.envelope()
    strict = verify_envelope(raw, roots=[device.root], expected_nonce=device.nonce, at=NOW)
    assert FindingId.SIGNATURE_UNSUPPORTED_KEY in strict.ids()
    legacy = verify_envelope(raw, roots=[device.root], expected_nonce=device.nonce, at=NOW,
                             policy=Policy(allow_dsa=True))
    assert legacy.trusted, legacy.findings
    assert legacy.signature_algorithm == "DSA SHA-256"


def test_dossier_after_the_device_timestamp_line_is_a_dossier(device: Device) -> None:
    data = "Sun Oct 20 13:07:24.136 UTC\n\n" + json.dumps(dossier("1580"))
    verdict = verify_envelope(device.envelope(data=data), roots=[device.root], expected_nonce=device.nonce, at=NOW)
    assert verdict.trusted, verdict.findings
    assert verdict.dossier["nonce"] == "1580"


def test_raw_device_output_with_timestamp_blank_lines_and_crlf(device: Device) -> None:
    raw = b"\r\nSun Oct 20 13:07:24.136 UTC\r\n\r\n" + device.envelope(indent=2).replace(b"\n", b"\r\n") + b"\r\n"
    verdict = verify_envelope(raw, roots=[device.root], expected_nonce=device.nonce, at=NOW)
    assert verdict.trusted, verdict.findings


def test_only_one_timestamp_line_is_tolerated(device: Device) -> None:
    stamp = b"Sun Oct 20 13:07:24.136 UTC\n"
    verdict = verify_envelope(stamp * 2 + device.envelope(), roots=[device.root], expected_nonce=device.nonce, at=NOW)
    assert verdict.ids() == [FindingId.INPUT_UNEXPECTED_PREFIX]


@pytest.mark.parametrize(
    ("edge", "offset", "trusted"),
    [("not_before", -SECOND, False), ("not_before", 0 * SECOND, True),
     ("not_after", 0 * SECOND, True), ("not_after", SECOND, False),
     ("not_after", dt.timedelta(microseconds=999_999), True)],
)
def test_leaf_validity_to_the_second(device: Device, edge: str, offset: dt.timedelta, trusted: bool) -> None:
    moment = getattr(device.leaf, f"{edge.replace('not_', 'not_valid_')}_utc") + offset
    verdict = verify_envelope(device.envelope(), roots=[device.root], expected_nonce=device.nonce, at=moment)
    assert verdict.trusted is trusted, verdict.findings


def test_validity_checked_at_the_chosen_time_for_auditors(device: Device) -> None:
    expired_leaf = make_leaf("p256", "p256", device.root, not_before=NOW - 100 * DAY, not_after=NOW - DAY)
    old = Device("p256", "p256", root=device.root, leaf=expired_leaf)
    raw = old.envelope()
    today = verify_envelope(raw, roots=[device.root], expected_nonce=old.nonce, at=NOW)
    assert FindingId.CHAIN_LEAF_EXPIRED in today.ids()
    when_received = verify_envelope(raw, roots=[device.root], expected_nonce=old.nonce, at=NOW - 20 * DAY)
    assert when_received.trusted, when_received.findings


def test_pinned_leaf_verifies_envelope_without_certificates(tmp_path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root)
    store.pin_leaf("r1", device.leaf)
    raw = device.envelope(include_certificate=False)
    verdict = verify_envelope(raw, trust_store=store, device="r1", expected_nonce=device.nonce, at=NOW)
    assert verdict.trusted, verdict.findings
    assert FindingId.CHAIN_LEAF_ROTATED not in verdict.ids()


def test_rekeyed_leaf_under_same_root_verifies_a_new_root_never(tmp_path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", device.root)
    rekeyed = Device("p256", "p384", root=device.root, leaf=make_leaf("p384", "p256", device.root, serial=0x0B63))
    assert verify_envelope(rekeyed.envelope(), trust_store=store, device="r1", expected_nonce=device.nonce, at=NOW).trusted
    new_root = Device("p256#9", "p256")
    verdict = verify_envelope(new_root.envelope(), trust_store=store, device="r1", expected_nonce=device.nonce, at=NOW)
    assert not verdict.trusted and FindingId.CHAIN_ROOT_NOT_ENROLLED in verdict.ids()
    # and a new root's leaf presented under the enrolled root still does not chain
    mixed = new_root.envelope(certs=[device.root, new_root.leaf])
    verdict = verify_envelope(mixed, trust_store=store, device="r1", expected_nonce=device.nonce, at=NOW)
    assert FindingId.CHAIN_NOT_ISSUED_BY_ROOT in verdict.ids()


def test_root_rotation_window_keeps_old_dossiers_verifiable(tmp_path, device: Device) -> None:
    store = TrustStore.open(tmp_path / "s", create=True)
    rotated_at = NOW - 10 * DAY
    store.add_root("r1", device.root, valid_until=rotated_at)
    new = Device("p384", "p256")
    store.add_root("r1", new.root, valid_from=rotated_at)
    old_raw, new_raw = device.envelope(), new.envelope()
    args = {"trust_store": store, "device": "r1", "expected_nonce": device.nonce}
    assert verify_envelope(old_raw, at=rotated_at - DAY, **args).trusted
    assert FindingId.CHAIN_ROOT_NOT_ENROLLED in verify_envelope(old_raw, at=NOW, **args).ids()
    assert verify_envelope(new_raw, at=NOW, **args).trusted
    assert not verify_envelope(new_raw, at=rotated_at - DAY, **args).trusted


def test_enterprise_ca_with_sub_ca_from_the_store(tmp_path) -> None:
    enterprise = make_root("rsa2048", name="Example Enterprise Root CA")
    sub = make_leaf("p384", "rsa2048", enterprise, name="Example Issuing CA", ca=True,
                    key_usage=None, serial=7)
    leaf = make_leaf("p256", "p384", sub)
    device = Device("rsa2048", "p256", root=enterprise, leaf=leaf)
    store = TrustStore.open(tmp_path / "s", create=True)
    store.add_root("r1", enterprise)
    store.add_intermediate("r1", sub)
    raw = device.envelope(certs=[sub, leaf])  # the device's trustpoint CA is the sub-CA
    verdict = verify_envelope(raw, trust_store=store, device="r1", expected_nonce=device.nonce, at=NOW)
    assert verdict.trusted, verdict.findings
    assert verdict.root == enterprise
    # the same sub-CA carried but not enrolled is not trusted
    bare = TrustStore.open(tmp_path / "bare", create=True)
    bare.add_root("r1", enterprise)
    assert not verify_envelope(raw, trust_store=bare, device="r1", expected_nonce=device.nonce, at=NOW).trusted
    assert validate_chain(leaf, [enterprise], [sub], NOW) == [leaf, sub, enterprise]


def test_trust_pool_is_used_only_for_opted_in_devices(tmp_path, device: Device) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    store = TrustStore.open(tmp_path / "s", create=True)
    store.import_bundle(device.root.public_bytes(Encoding.PEM))
    store.use_trust_pool("r2", enabled=False)
    args = {"trust_store": store, "expected_nonce": device.nonce, "at": NOW}
    assert FindingId.TRUST_NO_ROOTS in verify_envelope(device.envelope(), device="r2", **args).ids()
    store.use_trust_pool("r2")
    assert verify_envelope(device.envelope(), device="r2", **args).trusted


def test_caller_mistakes_raise_the_one_root(device: Device) -> None:
    raw = device.envelope()
    with pytest.raises(VerifierError, match="no trust anchor"):
        verify_envelope(raw, expected_nonce=device.nonce)
    with pytest.raises(VerifierError, match="no time zone"):
        verify_envelope(raw, roots=[device.root], at=dt.datetime(2026, 1, 1))
    with pytest.raises(VerifierError, match="65 bytes"):
        verify_envelope(raw, roots=[device.root], expected_nonce=b"x" * 65)


@pytest.mark.parametrize("nonce", ["1580", "\x15\x80", 0x1580, [0x15, 0x80]], ids=["hex-str", "str", "int", "list"])
def test_expected_nonce_that_is_not_bytes_raises_the_one_root(device: Device, nonce: object) -> None:
    """A nonce of the wrong type is the caller's mistake: a VerifierError that says what was
    expected and what was found, never a bare TypeError from deep inside."""
    with pytest.raises(VerifierError) as raised:
        verify_envelope(device.envelope(), roots=[device.root], expected_nonce=nonce, at=NOW)
    message = str(raised.value)
    assert "expected_nonce must be bytes" in message and "bytes.fromhex" in message
    assert message.endswith(f"found {type(nonce).__name__}")
    assert not isinstance(raised.value, TypeError)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_expected_nonce_may_be_any_bytes_like(device: Device, kind: type) -> None:
    verdict = verify_envelope(device.envelope(), roots=[device.root], expected_nonce=kind(device.nonce), at=NOW)
    assert verdict.trusted, verdict.ids()
    other = verify_envelope(device.envelope(), roots=[device.root], expected_nonce=kind(b"\x15\x81"), at=NOW)
    assert FindingId.NONCE_MISMATCH in other.ids() and not other.trusted


def test_dossier_with_every_item_and_a_large_inventory_verifies(rsa_device: Device) -> None:
    document = dossier("1580", files=200)
    verdict = verify_envelope(rsa_device.envelope(document=document), roots=[rsa_device.root],
                              expected_nonce=rsa_device.nonce, at=NOW)
    assert verdict.trusted, verdict.findings
    assert len(verdict.dossier["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"][0]["files"]) == 200


def test_verdict_to_json_is_json(device: Device) -> None:
    verdict = verify_envelope(device.envelope(), roots=[device.root], expected_nonce=device.nonce, at=NOW)
    text = json.dumps(verdict.to_json())
    assert json.loads(text)["trusted"] is True


def test_validate_chain_contract(device: Device) -> None:
    from verifier import ChainError

    assert validate_chain(device.leaf, [device.root], at=NOW) == [device.leaf, device.root]
    # a cached chain still has its validity checked at every call, to the second
    after = device.leaf.not_valid_after_utc + SECOND
    with pytest.raises(ChainError, match="expired|not valid"):
        validate_chain(device.leaf, [device.root], at=after)
    assert validate_chain(device.leaf, [device.root], at=after - SECOND) == [device.leaf, device.root]
    with pytest.raises(ChainError, match="no trust anchor"):
        validate_chain(device.leaf, [], at=NOW)
    with pytest.raises(ChainError, match="no time zone"):
        validate_chain(device.leaf, [device.root], at=dt.datetime(2026, 1, 1))
    other = Device("p256#7", "p256")
    with pytest.raises(ChainError):
        validate_chain(device.leaf, [other.root], at=NOW)


def test_per_certificate_memoizes_by_identity_and_never_confuses_certificates() -> None:
    """The certificate caches key on the object (hashing a Certificate hashes its DER): the same
    object is computed once; an equal certificate parsed again, or another certificate, gets its
    own correct answer."""
    from cryptography import x509

    from verifier.chain import per_certificate
    from vbuilder import der, make_root

    calls: list[x509.Certificate] = []

    @per_certificate
    def serial(cert: x509.Certificate) -> int:
        calls.append(cert)
        return cert.serial_number

    first, second = make_root("p256"), make_root("rsa2048")
    again = x509.load_der_x509_certificate(der(first))  # equal, another object
    assert [serial(first), serial(first), serial(second), serial(again)] == [
        first.serial_number, first.serial_number, second.serial_number, first.serial_number]
    assert calls == [first, second, again]


def test_read_now_reads_a_certificate_once_by_its_der() -> None:
    """A certificate read before (same DER, from PEM or DER) comes back as the object read then,
    so the trust store's root and the envelope's copy of it share one reading; another
    certificate, or one that differs in a single byte, is read on its own."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from verifier.chain import read_now
    from vbuilder import der, make_root

    first, second = make_root("p256"), make_root("p256")
    kept = read_now(x509.load_pem_x509_certificate(first.public_bytes(Encoding.PEM)))
    assert read_now(x509.load_der_x509_certificate(der(first))) is kept
    assert read_now(first) is kept
    other = read_now(second)
    assert other is not kept and other.public_bytes(Encoding.DER) == der(second)
    changed = bytearray(der(first))
    changed[-1] ^= 1  # the signature's last byte: still parses, another certificate
    read = read_now(x509.load_der_x509_certificate(bytes(changed)))
    assert read is not kept and read.public_bytes(Encoding.DER) == bytes(changed)


def test_load_der_certificate_reports_a_malformed_name_as_a_value_error() -> None:
    """The loader the signed-output profiles use: the BIT STRING name attribute that made
    cryptography raise TypeError on first use is a ValueError at load time."""
    import warnings

    from verifier.chain import load_der_certificate
    from vbuilder import der, make_root

    broken = bytearray(der(make_root("p256")))
    broken[73] ^= 1 << 4  # the issuer's attribute type (offsets are fixed: names, serial, dates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="not a valid DER X.509 certificate"):
            load_der_certificate(bytes(broken))
    assert load_der_certificate(der(make_root("p256"))).subject is not None


def test_metadata_that_cannot_be_looked_at_is_an_error_not_a_bare_envelope(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata beside an envelope that the system will not let us look at (a name too long, an
    I/O error, a security module's EACCES) must not be passed over: the envelope would be
    verified without the checks its metadata asks for. A metadata file that is not there is."""
    import errno
    import os

    from verifier.errors import EnvelopeError
    from verifier.inputs import read_envelope_file

    envelope = tmp_path / "x.envelope"
    envelope.write_bytes(b"{}")
    assert read_envelope_file(envelope, max_bytes=100).meta is None  # none there: a bare envelope
    real_open = os.open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith(".meta.json"):
            raise OSError(errno.EIO, "Input/output error")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("verifier.stored.os.open", failing_open)
    with pytest.raises(EnvelopeError, match="cannot be read as JSON metadata"):
        read_envelope_file(envelope, max_bytes=100)
