"""The profiles' rules beyond the real samples: the emulator's own SUDI chain, nonce handling,
downgrade, unauthenticated labels, shape detection, trust store anchors, KGV appraisal and the
XR attest certificate output of the real emulator."""

from __future__ import annotations

import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from click.testing import CliRunner
from cryptography import x509

import schemas
from dossier_cli.main import cli
from emulator import iosxe
from verifier.findings import FindingId
from verifier.profiles import (
    KGVError,
    ProfileError,
    appraise_integrity,
    detect_profiles,
    load_kgv,
    verify_output,
)
from verifier.truststore import TrustStore
from vp_helpers import AT, SUDI_ANCHOR_FILES

NOW = dt.datetime.now(dt.UTC)


def errors(verdict: Any) -> set[str]:
    return {str(f.id) for f in verdict.errors}


# -- the emulator's IOS XE output, verified with its own anchors --------------------------------
@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> iosxe.SudiAuthority:
    return iosxe.load_authority(tmp_path_factory.mktemp("xe-authority"))


@pytest.fixture(scope="module")
def identities(authority: iosxe.SudiAuthority, tmp_path_factory: pytest.TempPathFactory) -> list[iosxe.XeIdentity]:
    """One emulated device per platform layout (ISR4321, ISR4451-X list form, C1111, Cat3K order)."""
    base = tmp_path_factory.mktemp("xe-devices")
    found = []
    for seed in range(4):
        folder = base / f"xe-{seed}"
        (folder / "sudi").mkdir(parents=True)
        found.append(iosxe.XeIdentity(folder, authority, iosxe.xe_facts(f"xe-{seed}", seed), now=NOW))
    return found


@pytest.fixture(scope="module")
def emulated_roots(authority: iosxe.SudiAuthority) -> list[x509.Certificate]:
    return [authority.root, authority.sub_ca]


def _echo(host: str, command: str, body: str) -> bytes:
    return f"{host}#{command}\n{body}{host}#".encode()


@pytest.mark.parametrize("index", range(4))
def test_emulated_outputs_verify_with_the_emulated_anchors(
    index: int, identities: list[iosxe.XeIdentity], emulated_roots: list[x509.Certificate],
) -> None:
    identity = identities[index]
    host, nonce = identity.facts.hostname, 18446744073709551615 - index  # the largest u64 values
    sudi = _echo(host, f"show platform sudi certificate sign nonce {nonce}",
                 iosxe.render_sudi(identity, sign=True, nonce=nonce))
    verdict = verify_output(sudi, roots=emulated_roots, expected_nonce=nonce)
    assert (verdict.profile, verdict.trusted) == ("xe-sudi-sign", True), verdict.ids()
    integrity = _echo(host, f"show platform integrity sign nonce {nonce}",
                      iosxe.render_integrity(identity, sign=True, nonce=nonce))
    verdict = verify_output(integrity, roots=emulated_roots, expected_nonce=nonce, signer=sudi)
    assert (verdict.profile, verdict.trusted) == ("xe-integrity-sign", True), verdict.ids()
    assert verdict.measurements[0].bound
    assert verdict.to_json()["profile_data"]["unauthenticated"]["Platform"] == identity.facts.pid
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))
    trust_chain = iosxe.render_system_integrity(identity, "trust_chain", nonce, NOW).encode()
    for part in ("trust_chain", "compliance", "measurement"):
        raw = iosxe.render_system_integrity(identity, part, nonce, NOW).encode()
        verdict = verify_output(raw, roots=emulated_roots, expected_nonce=nonce, signer=trust_chain)
        assert (verdict.profile, verdict.trusted) == ("xe-system-integrity", True), (part, verdict.ids())


def test_emulated_chain_needs_both_pinned_anchors(
    identities: list[iosxe.XeIdentity], authority: iosxe.SudiAuthority, sudi_anchors: list[x509.Certificate],
) -> None:
    sudi = iosxe.render_sudi(identities[0], sign=True, nonce=7).encode()
    only_root = verify_output(sudi, roots=[authority.root], expected_nonce=7)
    assert errors(only_root) == {"chain.subca_not_pinned"}
    cisco = verify_output(sudi, roots=sudi_anchors, expected_nonce=7)
    assert "chain.subca_not_pinned" in errors(cisco) and not cisco.trusted
    with pytest.raises(ProfileError, match="no trust anchor"):
        verify_output(sudi, expected_nonce=7)


def test_the_nonce_is_the_callers_never_the_echoed_one(
    identities: list[iosxe.XeIdentity], emulated_roots: list[x509.Certificate],
) -> None:
    identity = identities[0]
    body = iosxe.render_integrity(identity, sign=True, nonce=5)
    sudi = iosxe.render_sudi(identity, sign=False, nonce=None).encode()
    lying_echo = _echo("r", "show platform integrity sign nonce 99", body)  # echo says 99, signed 5
    assert verify_output(lying_echo, roots=emulated_roots, expected_nonce=5, signer=sudi).trusted
    replay = verify_output(lying_echo, roots=emulated_roots, expected_nonce=99, signer=sudi)
    assert errors(replay) == {"signature.invalid"}
    forgot = verify_output(_echo("r", "show platform integrity sign nonce 5", body), roots=emulated_roots,
                           signer=sudi)
    assert errors(forgot) == {"signature.invalid", "nonce.not_checked"}
    assert "pass the nonce you sent" in forgot.errors[0].message
    with pytest.raises(ProfileError, match="64-bit"):
        verify_output(lying_echo, roots=emulated_roots, expected_nonce=2**64, signer=sudi)
    with pytest.raises(ProfileError, match="8 bytes"):
        verify_output(lying_echo, roots=emulated_roots, expected_nonce=bytes(9), signer=sudi)


def test_a_stripped_signature_is_unsigned_never_trusted(
    identities: list[iosxe.XeIdentity], emulated_roots: list[x509.Certificate],
) -> None:
    identity = identities[1]
    signed = iosxe.render_integrity(identity, sign=True, nonce=42)
    stripped = signed.split("Signature version:")[0]
    sudi = iosxe.render_sudi(identity, sign=True, nonce=1).encode()
    verdict = verify_output(_echo("r", "show platform integrity sign nonce 42", stripped),
                            roots=emulated_roots, expected_nonce=42, signer=sudi)
    assert errors(verdict) == {"output.unsigned"}
    assert "stripped" in verdict.errors[0].message
    assert verdict.to_json()["profile_data"] == {"signed": False, "authenticated": {},
                                                 "unauthenticated": verdict.unauthenticated}


def test_labels_nothing_signs_are_reported_not_verified(
    identities: list[iosxe.XeIdentity], emulated_roots: list[x509.Certificate],
) -> None:
    identity = identities[0]
    text = iosxe.render_integrity(identity, sign=True, nonce=3)
    forged = text.replace(f"Platform: {identity.facts.pid}", "Platform: ISR9999/K9")
    verdict = verify_output(forged.encode(), roots=emulated_roots, expected_nonce=3,
                            signer=identity.certificate)
    assert verdict.trusted  # nothing signed changed ...
    info = [f for f in verdict.findings if f.id == FindingId.OUTPUT_UNAUTHENTICATED]
    assert info and info[0].severity == "info" and "ISR9999/K9" in (info[0].found or "")
    data = verdict.to_json()["profile_data"]
    assert data["unauthenticated"]["Platform"] == "ISR9999/K9"  # ... and the label is not vouched for
    assert "Platform" not in data["authenticated"]


def test_a_tampered_hash_breaks_the_pcr(identities: list[iosxe.XeIdentity], emulated_roots: list) -> None:
    identity = identities[1]  # the OS Hashes list form
    text = iosxe.render_integrity(identity, sign=True, nonce=3)
    name, digest = identity.facts.os_files[-1]
    tampered = text.replace(f"{name}: {digest}", f"{name}: {'0' * 128}")
    verdict = verify_output(tampered.encode(), roots=emulated_roots, expected_nonce=3, signer=identity.certificate)
    assert errors(verdict) == {"measurement.pcr_mismatch"}


def test_shape_detection_never_guesses() -> None:
    unknown = verify_output(b"hello\n", roots=[_any_cert()])
    assert (unknown.profile, errors(unknown)) == ("auto", {"profile.unknown"})
    both = b"-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nPCR0: 00\n"
    assert detect_profiles(both) == ["xe-sudi-sign", "xe-integrity-sign"]
    assert errors(verify_output(both, roots=[_any_cert()])) == {"profile.ambiguous"}
    mismatch = verify_output(b"Boot 0 Hash: 00\nPCR0: 00\n", profile="xe-sudi-sign", roots=[_any_cert()])
    assert errors(mismatch) == {"profile.shape_mismatch"}
    with pytest.raises(ProfileError, match="unknown profile"):
        verify_output(b"x", profile="ios-classic", roots=[_any_cert()])
    assert errors(verify_output(b"\xff\xfe", profile="xe-integrity-sign", roots=[_any_cert()])) == {"input.not_utf8"}


@functools.cache
def _any_cert() -> x509.Certificate:
    """A CA certificate no output here is signed under (made here: these tests need no vectors)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unrelated root")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def test_anchors_from_a_trust_store_bundle(tmp_path: Path, xe_dir: Path) -> None:
    """An operator imports Cisco's bundle into the trust pool and enrolls a device with it (its
    SUDI certificate pinned); the profiles use the pool for that device. Without a device named
    the pool proves only "some Cisco device": not trusted (issue 15, XE identity)."""
    bundle = b"".join((xe_dir / "certs" / name).read_bytes() + b"\n" for name in SUDI_ANCHOR_FILES)
    (tmp_path / "cisco.pem").write_bytes(bundle)
    store = TrustStore.open(tmp_path / "store", create=True)
    store.import_bundle(bundle, source="bundle:cisco.pem")
    sample = (xe_dir / "isr1k_show_plat_sudi_sign_nonce.txt").read_bytes()
    device_certificate = x509.load_pem_x509_certificates(sample[sample.index(b"-----BEGIN"):])[2]
    store.use_trust_pool("c1111")
    store.pin_leaf("c1111", device_certificate)
    assert verify_output(sample, trust_store=store, device="c1111", expected_nonce=79213556, at=AT).trusted
    unnamed = verify_output(sample, trust_store=store, expected_nonce=79213556, at=AT)
    assert not unnamed.trusted and "identity.not_checked" in unnamed.ids()
    result = CliRunner().invoke(cli, ["verify", "--profile", "auto", "--trust-store", str(tmp_path / "store"),
                                      "--device", "c1111", "--nonce-dec", "79213556",
                                      str(xe_dir / "isr1k_show_plat_sudi_sign_nonce.txt")])
    assert result.exit_code == 0, result.output  # the C1111's certificate is valid to 2099


def test_legacy_act2_path_is_flagged(xe_dir: Path, sudi_anchors: list[x509.Certificate]) -> None:
    verdict = verify_output((xe_dir / "38_show_sudi_sign_nonce.txt").read_bytes(), roots=sudi_anchors,
                            expected_nonce=10, at=AT)
    legacy = [f for f in verdict.findings if f.id == FindingId.CHAIN_LEGACY_PINNED_ANCHOR]
    assert verdict.trusted and legacy and legacy[0].severity == "warning"
    assert "SHA-1" in legacy[0].message and "e=3" in legacy[0].message and "pinned" in legacy[0].message


# -- KGV ------------------------------------------------------------------------------------------
def test_load_kgv_and_appraise(xe_dir: Path, root_m2: x509.Certificate, kgv_signer: bytes,
                               sudi_anchors: list[x509.Certificate]) -> None:
    kgv = load_kgv(xe_dir / "old_kgv_signed.json", [root_m2], signer=kgv_signer, at=AT)
    assert kgv.authenticated and kgv.layout == "platforms"
    clean = verify_output((xe_dir / "isr4k_show_plat_int.txt").read_bytes(), roots=sudi_anchors, at=AT)
    assert appraise_integrity(clean, kgv) == []
    for name, what in (("isr4k_show_plat_int_bad_boot_0_version.txt", "boot 0"),
                       ("isr4k_show_plat_int_bad_boot_loader_version.txt", "boot loader"),
                       ("isr4k_show_plat_int_bad_os_version.txt", "OS image")):
        verdict = verify_output((xe_dir / name).read_bytes(), roots=sudi_anchors, at=AT)
        found = appraise_integrity(verdict.measurements[0], kgv)
        assert [f.id for f in found] == ["kgv.hash_unknown"] and what in found[0].message
    sandbox = load_kgv(xe_dir / "v2" / "sandbox.kgv.json", [root_m2], allow_unsigned=True)
    assert not sandbox.authenticated
    v2 = verify_output((xe_dir / "v2" / "netconf_valid_multiple_locations.xml").read_bytes(), roots=sudi_anchors,
                       expected_nonce=12345, at=AT)
    assert {f.id for f in appraise_integrity(v2, sandbox)} == {"kgv.unauthenticated"}  # every hash known


def test_load_kgv_refuses_what_it_cannot_prove(xe_dir: Path, root_m2: x509.Certificate, kgv_signer: bytes,
                                               sudi_anchors: list[x509.Certificate], tmp_path: Path) -> None:
    with pytest.raises(KGVError, match="not authentic"):
        load_kgv(xe_dir / "old_kgv_signed.json", [root_m2], signer=kgv_signer,
                 signature=xe_dir / "old_kgv_signed.json.signature.bad")
    with pytest.raises(KGVError, match="not authentic"):  # a SUDI root is no KGV anchor
        load_kgv(xe_dir / "old_kgv_signed.json", sudi_anchors, signer=kgv_signer)
    with pytest.raises(KGVError, match="no detached signature"):
        load_kgv(xe_dir / "v2" / "sandbox.kgv.json", [root_m2], signer=kgv_signer)
    (tmp_path / "x.json").write_text('{"header": {}, "bulkHash": [{"dtype": "boot0", "biv_hash": "XYZ"}]}')
    with pytest.raises(KGVError, match="malformed biv_hash"):
        load_kgv(tmp_path / "x.json", [root_m2], allow_unsigned=True)


def test_cli_appraises_against_a_kgv(xe_dir: Path) -> None:
    certs = xe_dir / "certs"
    base = ["verify", "--json", "--profile", "auto", "--at", "2022-01-01T00:00:00Z",
            "--root", str(certs / "crca2048.pem"), "--root", str(certs / "ACT2SUDICA.pem"),
            "--kgv", str(xe_dir / "examples" / "example_kgv.json"),
            "--kgv-signer", str(certs / "Known_Good_Values_PROD.pem"), "--kgv-signer", str(certs / "innerspace.cer")]
    result = CliRunner().invoke(cli, [*base, "--kgv-root", str(certs / "crcam2.pem"),
                                      str(xe_dir / "isr4k_show_plat_int_bad_boot_0_version.txt")])
    assert result.exit_code == 1
    ids = {f["id"] for f in json.loads(result.stdout)["findings"]}
    assert {"kgv.hash_unknown", "measurement.pcr_mismatch", "output.unsigned"} <= ids
    missing_root = CliRunner().invoke(cli, [*base, str(xe_dir / "isr4k_show_plat_int.txt")])
    assert missing_root.exit_code == 2 and "--kgv-root" in missing_root.output


# -- XR attest certificate, from the real emulator over SSH ---------------------------------------
@pytest.fixture(scope="module")
def xr_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from emulator.fleet import Fleet

    with Fleet(state_dir=tmp_path_factory.mktemp("xr-attest"), devices=1, provisioned=True,
               key_type="ecdsa-p256", files=20) as running:
        yield running


def test_xr_attest_certificate_from_the_emulator(xr_fleet: Any) -> None:
    from emu_ssh import run

    device = xr_fleet.devices[0]
    _, chain = device.device.signing_credentials()
    root = chain[0][1]
    raw = run(device, "show platform security attest certificate system-identity location all nonce 1580ab json")
    verdict = verify_output(raw.encode(), roots=[root], expected_nonce=bytes.fromhex("1580ab"))
    assert (verdict.profile, verdict.trusted) == ("xr-attest-certificate", True), verdict.ids()
    assert [n["node"] for n in verdict.to_json()["profile_data"]["authenticated"]["nodes"]] == \
        list(device.device.facts.rp_nodes)
    stale = verify_output(raw.encode(), roots=[root], expected_nonce=bytes.fromhex("1580ac"))
    assert {"nonce.mismatch", "signature.invalid"} <= errors(stale)
    document = json.loads(raw[raw.index("{"):])
    node = document["get-certificate-response"]["system-certificates"][0]
    node["signature_version"] = 2
    assert "output.unsupported_version" in errors(verify_output(json.dumps(document).encode(), roots=[root],
                                                                expected_nonce=bytes.fromhex("1580ab")))
    other_root = _any_cert()  # a root this device was never enrolled with
    assert "chain.root_not_enrolled" in errors(verify_output(raw.encode(), roots=[other_root],
                                                             expected_nonce=bytes.fromhex("1580ab")))


def test_unenrolled_device_and_ambiguous_json_are_refused(tmp_path: Path, xe_dir: Path,
                                                          sudi_anchors: list[x509.Certificate]) -> None:
    store = TrustStore.open(tmp_path / "store", create=True)
    sample = (xe_dir / "isr1k_show_plat_sudi_sign_nonce.txt").read_bytes()
    verdict = verify_output(sample, trust_store=store, device="nobody", expected_nonce=79213556, at=AT)
    assert errors(verdict) == {"trust.no_roots"}
    text = (xe_dir / "v2" / "restconf_valid_compliance.json").read_text()
    twice = text.replace('"nonce": "12345",', '"nonce": "12345", "nonce": "99",', 1)
    assert twice != text
    verdict = verify_output(twice.encode(), roots=sudi_anchors, expected_nonce=12345, at=AT,
                            signer=(xe_dir / "v2" / "cli_valid_trust_chain.txt").read_bytes())
    assert "output.malformed_field" in errors(verdict) and "more than once" in verdict.errors[0].message


def test_auto_gives_the_xr_envelopes_their_usual_verdicts() -> None:
    """`--profile auto` on the project's XR envelope samples = the default xr-dossier path."""
    samples = Path(__file__).resolve().parents[2] / "samples"
    files = sorted(str(p) for p in (samples / "envelopes").glob("*.envelope"))
    assert files
    runs = {}
    for profile in ("xr-dossier", "auto"):
        result = CliRunner().invoke(cli, ["verify", "--json", "--profile", profile, "--trust-store",
                                          str(samples / "trust-store"), "--at", "received", *files])
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        runs[profile] = [(r["file"], r.get("profile"), r.get("trusted"), r.get("error")) for r in lines]
    assert runs["auto"] == runs["xr-dossier"]
    assert {profile for _, profile, _, _ in runs["auto"]} == {"xr-dossier"}
