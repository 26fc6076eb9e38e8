"""A hostile device's output never raises out of the verifier: malformed certificates, XML, JSON
and KGV content each become a finding (issue 15, item 3).

Crafted inputs are built here with real keys; the byte-flip and type-confusion tests mutate the
real Cisco captures in ../shared/vectors/cisco-ios-xe/ (skipped, with the reason, when absent).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier.chain import load_der_certificate
from verifier.profiles import verify_output
from verifier.profiles.kgv import KGVError, parse_kgv
from verifier.profiles.signer import load_signers
from verifier.errors import VerifierError

XE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "cisco-ios-xe"
SUDI_ANCHOR_FILES = ("crca2048.pem", "ACT2SUDICA.pem", "crca2099.pem", "hasudi.pem")
AT = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)  # inside every sample certificate's window
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
NONCE = 12345
BAD_SAN = b"\x30\x03\x02\x01"  # a SEQUENCE that claims 3 bytes and holds 2: not DER
_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def _key(name: str) -> rsa.RSAPrivateKey:
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(subject: str, issuer: str, path_length: int | None) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(_key(subject).public_key()).serial_number(1)
            .not_valid_before(NOW - dt.timedelta(days=10)).not_valid_after(NOW + dt.timedelta(days=100))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .sign(_key(issuer), hashes.SHA256()))


def _device(*, san: bytes | None = BAD_SAN) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name("PID:ISR4321/K9 SN:FDO0000A000"))
               .issuer_name(_name("sub")).public_key(_key("device").public_key()).serial_number(2)
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=50))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if san is not None:  # signed by the real sub-CA: only the extension's content is hostile
        builder = builder.add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san),
                                        critical=False)
    return builder.sign(_key("sub"), hashes.SHA256())


@pytest.fixture(scope="module")
def chain() -> tuple[x509.Certificate, x509.Certificate]:
    return _ca("root", "root", None), _ca("sub", "root", 0)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _sudi_output(root: x509.Certificate, sub: x509.Certificate, device: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import padding

    ders = b"".join(c.public_bytes(serialization.Encoding.DER) for c in (root, sub, device))
    signed = NONCE.to_bytes(8, "big") + (1).to_bytes(4, "big") + ders
    signature = _key("device").sign(signed, padding.PKCS1v15(), hashes.SHA256()).hex().upper()
    return (_pem(root) + _pem(sub) + _pem(device) + f"Signature version: 1\nSignature:\n{signature}\n").encode()


def _error_ids(verdict: Any) -> set[str]:
    return {f.id for f in verdict.findings if f.severity == "error"}


# --- malformed certificates -------------------------------------------------------------------


def test_a_certificate_whose_extensions_do_not_parse_is_refused_at_load() -> None:
    """Fixed: `load_der_certificate` parses the extensions too, so every profile reading
    certificates through it reports a bad certificate instead of raising at `.extensions`."""
    der = _device().public_bytes(serialization.Encoding.DER)
    with pytest.raises(ValueError, match="not a valid DER X.509 certificate"):
        load_der_certificate(der)


def test_sudi_output_with_a_malformed_san_is_a_finding(chain: tuple[x509.Certificate, x509.Certificate]) -> None:
    root, sub = chain
    raw = _sudi_output(root, sub, _device())
    for profile in ("xe-sudi-sign", "auto"):
        verdict = verify_output(raw, profile=profile, roots=[root, sub], expected_nonce=NONCE, at=NOW)
        assert not verdict.trusted
        assert "output.bad_certificate" in _error_ids(verdict)
    good = verify_output(_sudi_output(root, sub, _device(san=None)), profile="xe-sudi-sign", roots=[root, sub],
                         expected_nonce=NONCE, at=NOW)
    assert good.trusted, good.findings  # the same chain, well formed, verifies: the test is fair


def test_a_signer_with_a_malformed_san_is_refused(chain: tuple[x509.Certificate, x509.Certificate]) -> None:
    """The integrity output's signer (the SUDI output) goes through the same loader."""
    root, sub = chain
    with pytest.raises(VerifierError, match="no usable certificate"):
        load_signers(_pem(_device()).encode())
    integrity = b"Platform: ISR4321/K9\nPCR0: " + b"00" * 32 + b"\nPCR8: " + b"00" * 32 + b"\n"
    with pytest.raises(VerifierError):  # the caller's signer: a ProfileError, never a crash
        verify_output(integrity, profile="xe-integrity-sign", roots=[root, sub], expected_nonce=NONCE,
                      signer=_sudi_output(root, sub, _device()), at=NOW)


def test_a_kgv_signer_with_a_malformed_san_is_a_finding(chain: tuple[x509.Certificate, x509.Certificate]) -> None:
    root, _sub = chain
    document = json.dumps({"header": {}, "bulkHash": [{"dtype": "boot0", "biv_hash": "AB" * 32}]}).encode()
    verdict = verify_output(document, profile="kgv", roots=[root], signature=b"\0" * 256,
                            signer=_pem(_device()).encode(), at=NOW)
    assert not verdict.trusted and "kgv.signer_untrusted" in _error_ids(verdict)


# --- XML, JSON, KGV structure ---------------------------------------------------------------


def _netconf(body: str) -> bytes:
    return (f'<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><system-integrity-oper-data '
            f'xmlns="http://cisco.com/ns/yang/Cisco-IOS-XE-system-integrity-oper">{body}'
            f'</system-integrity-oper-data></data>').encode()


@pytest.mark.parametrize("depth", [200, 5_000, 200_000])
def test_deeply_nested_xml_is_a_finding(depth: int) -> None:
    body = "<location>" + "<a>" * depth + "x" + "</a>" * depth + "</location>"
    verdict = verify_output(_netconf(body), profile="xe-system-integrity", roots=[_ca("root", "root", None)],
                            expected_nonce=NONCE, at=NOW)
    assert not verdict.trusted
    assert "output.malformed_field" in _error_ids(verdict), verdict.findings


def _restconf(location: Any) -> bytes:
    return json.dumps({"Cisco-IOS-XE-system-integrity-oper:system-integrity-oper-data": {
        "location": [location]}}).encode()


_KEYS_OF_LOCATION = {"fru": "fru-rp", "slot": 0, "bay": 0, "chassis": -1, "node": 0}


@pytest.mark.parametrize("integrity", [
    {"nonce": NONCE, "compliance": {"capability": "secure_boot"}},  # the AttributeError
    {"nonce": NONCE, "compliance": {"capability": [["x"], 3, None]}},
    {"nonce": NONCE, "trust-chain": {"trust-chain": ["not an object"]}},
    {"nonce": NONCE, "measurement": {"boot-loader": ["x"], "operating-system": "y", "register": [1]}},
    {"nonce": NONCE, "measurement": {"operating-system": {"package-integrity": ["z"], "version": {"a": 1}}}},
    {"nonce": NONCE, "measurement": {"platform": {"x": 1}, "signature": {"version": [], "signature": {}}}},
], ids=["capability-string", "capability-items", "trust-chain-item", "measurement-items",
        "package-item", "nested-scalars"])
def test_restconf_of_the_wrong_types_is_a_finding(integrity: dict[str, Any]) -> None:
    raw = _restconf({**_KEYS_OF_LOCATION, "integrity": [integrity]})
    verdict = verify_output(raw, profile="xe-system-integrity", roots=[_ca("root", "root", None)],
                            expected_nonce=NONCE, at=NOW)
    assert not verdict.trusted and _error_ids(verdict), verdict.findings


@pytest.mark.parametrize("document", [
    {"header": {}, "bulkHash": [{"dtype": "boot0", "biv_hash": "AB" * 32, "pkg": ["not an object"]}]},
    {"header": {}, "products": [{"product": "x", "osImageVersions": [{"entries": [{"pkg": [7]}]}]}]},
    {"header": {}, "products": ["not an object"]},
    {"header": {}, "platforms": [{"isr": ["not an object"]}]},
    {"header": {}, "products": [{"osImageVersions": [{"entries": [{"biv_hash": "AB" * 32, "pkg": "x"}]}]}]},
], ids=["bulk-package", "products-package", "product", "platform", "package-list"])
def test_kgv_of_the_wrong_types_is_kgv_malformed(document: dict[str, Any]) -> None:
    raw = json.dumps(document).encode()
    with pytest.raises(KGVError):
        parse_kgv(raw)
    verdict = verify_output(raw, profile="kgv", roots=[_ca("root", "root", None)], signature=b"\0" * 256,
                            signer=_pem(_ca("sub", "root", 0)).encode(), at=NOW)
    assert "kgv.malformed" in _error_ids(verdict)


def test_a_kgv_integer_too_long_to_convert_is_kgv_malformed() -> None:
    """Python refuses to convert an integer of over 4,300 digits (ValueError, not a
    JSONDecodeError): it raised out of verify_output."""
    raw = b'{"header":{"a":' + b"1" * 5000 + b'},"bulkHash":[]}'
    with pytest.raises(KGVError, match="not JSON"):
        parse_kgv(raw)
    verdict = verify_output(raw, profile="kgv", roots=[])
    assert not verdict.trusted and "kgv.malformed" in _error_ids(verdict)


def test_a_metadata_integer_too_long_to_convert_is_an_input_error(tmp_path: Path) -> None:
    """The metadata and sidecar reader (verifier.stored.read_sidecar) turns it into an error too."""
    from verifier.errors import EnvelopeError
    from verifier.inputs import read_envelope_file
    from verifier.stored import StoredFileError, read_sidecar

    envelope = tmp_path / "x.envelope"
    envelope.write_bytes(b"output")
    meta = envelope.with_name("x.envelope.meta.json")
    meta.write_bytes(b'{"device":"r1","nonce":"ab","received":"2026-01-01T00:00:00Z","bytes":' + b"1" * 5000 + b"}")
    with pytest.raises(StoredFileError, match="4300 digits"):
        read_sidecar(meta)
    with pytest.raises(EnvelopeError, match="cannot be read as JSON metadata"):
        read_envelope_file(envelope, max_bytes=1024)


def test_deeply_nested_kgv_is_kgv_malformed() -> None:
    raw = b'{"header": {}, "bulkHash": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(KGVError, match="deep"):
        parse_kgv(raw)


def test_deeply_nested_attest_json_is_a_finding() -> None:
    raw = b'{"node-location": "0/RP0", "signature_version": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    verdict = verify_output(raw, profile="xr-attest-certificate", roots=[_ca("root", "root", None)],
                            expected_nonce=b"\x01", at=NOW)
    assert not verdict.trusted and _error_ids(verdict)


# --- the real captures, mutated ---------------------------------------------------------------


def _samples() -> list[dict[str, Any]]:
    path = XE_DIR / "expected.json"
    return json.loads(path.read_text()) if path.is_file() else []


SAMPLES = _samples()
SIGNED_TEXT = [e["file"] for e in SAMPLES if not e["file"].endswith((".signature", ".bad", ".bad_signature",
                                                                      ".pem", "kgv.json", "kgv_updated_unsigned.json"))
               and "kgv" not in e["file"]]
JSON_SAMPLES = [e["file"] for e in SAMPLES if e["file"].endswith(".json") and "signature" not in e["file"]]
XML_SAMPLES = [e["file"] for e in SAMPLES if e["file"].endswith(".xml")]
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{40,}")  # PEM lines, base64 DER in XML/JSON, hex signatures
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.fixture(scope="module")
def xe_dir() -> Path:
    if not XE_DIR.is_dir():
        pytest.skip(f"IOS XE samples not found at {XE_DIR}")
    return XE_DIR


@pytest.fixture(scope="module")
def anchors(xe_dir: Path) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate((xe_dir / "certs" / name).read_bytes()) for name in SUDI_ANCHOR_FILES]


def _nonce(name: str) -> int | None:
    entry = next(e for e in SAMPLES if e["file"] == name)
    return int(entry["nonce"]) if entry["nonce"] else None


def _verify_every_way(raw: bytes, name: str, anchors: list[x509.Certificate], signer: bytes) -> None:
    """Auto-detected, and as each profile that takes a signer; only the caller's own mistakes
    (a signer that holds no certificate) may raise, as VerifierError."""
    for profile in ("auto", "xe-sudi-sign", "xe-integrity-sign", "xe-system-integrity"):
        for use_signer in (None, signer):
            try:
                verdict = verify_output(raw, profile=profile, roots=anchors, expected_nonce=_nonce(name),
                                        signer=use_signer, at=AT)
            except VerifierError:
                continue
            verdict.to_json()  # what the collector stores: must serialise too
    try:  # the mutated output as the signer of a genuine integrity output
        verify_output((XE_DIR / "isr4k_show_plat_int_sign_nonce.txt").read_bytes(), profile="xe-integrity-sign",
                      roots=anchors, expected_nonce=_nonce("isr4k_show_plat_int_sign_nonce.txt"), signer=raw, at=AT)
    except VerifierError:
        pass


@pytest.mark.skipif(not SIGNED_TEXT, reason=f"IOS XE samples not found at {XE_DIR}")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SIGNED_TEXT or ["none"]), st.data())
def test_byte_flips_in_the_captures_base64_never_raise(xe_dir: Path, anchors: list[x509.Certificate], name: str,
                                                        data: st.DataObject) -> None:
    """Fixed: a flip in a certificate's base64 could leave a certificate that loads but whose
    extensions do not parse, and `.extensions` raised ValueError in the profiles."""
    raw = (xe_dir / name).read_bytes()
    runs = [m.span() for m in _BASE64_RUN.finditer(raw)]
    if not runs:
        return
    start, end = data.draw(st.sampled_from(runs))
    flips = data.draw(st.lists(st.tuples(st.integers(start, end - 1), st.sampled_from(_ALPHABET)),
                               min_size=1, max_size=3))
    mutated = bytearray(raw)
    for position, value in flips:
        mutated[position] = value
    signer = (xe_dir / "isr4k_show_plat_sudi_sign_nonce.txt").read_bytes()
    _verify_every_way(bytes(mutated), name, anchors, signer)


def test_every_flip_in_the_device_certificate_of_a_real_capture_is_a_verdict(
        xe_dir: Path, anchors: list[x509.Certificate]) -> None:
    """Exhaustive, one character at a time, over the device certificate of a real SUDI output:
    121 of these flips leave a certificate that loads but whose extensions do not parse (the
    issue's crash); each is now `output.bad_certificate`, and no flip raises."""
    name = "isr4k_show_plat_sudi_sign_nonce.txt"
    raw = (xe_dir / name).read_bytes()
    bodies = [m.span(1) for m in re.finditer(rb"-----BEGIN CERTIFICATE-----\r?\n(.*?)-----END", raw, re.S)]
    start, end = bodies[-1]  # the device's certificate is printed last
    refused = 0
    for position in range(start, end):
        for value in b"Qg":
            if raw[position] in b"\r\n" or raw[position] == value:
                continue
            mutated = raw[:position] + bytes([value]) + raw[position + 1:]
            verdict = verify_output(mutated, profile="xe-sudi-sign", roots=anchors, expected_nonce=_nonce(name),
                                    at=AT)
            assert not verdict.trusted
            refused += "output.bad_certificate" in _error_ids(verdict)
    assert refused > 121  # the extension cases and the certificates that do not load at all


def _swap_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path in a JSON tree, one per shape (list indices past the first are skipped)."""
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _swap_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:1]):
            yield from _swap_paths(child, (*path, index))


def _replaced(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(document))
    holder = copy
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = new
    return copy


_OTHER_TYPES = ("text", 7, None, [], {}, ["text"], [{"a": 1}], {"a": [1]})


@pytest.mark.parametrize("name", JSON_SAMPLES or ["(samples absent)"])
def test_every_json_member_of_another_type_is_a_finding(xe_dir: Path, anchors: list[x509.Certificate],
                                                        name: str) -> None:
    """Each member of the real RESTCONF and KGV captures replaced by a value of each other
    JSON type: the verdict comes back (the issue's `capability` as a string was one)."""
    document = json.loads((xe_dir / name).read_bytes())
    paths = list(_swap_paths(document))[:400]  # KGV files: the first shapes cover every layout
    profile = "kgv" if "kgv" in name else "xe-system-integrity"
    signer = (xe_dir / "v2" / "cli_valid_trust_chain.txt").read_bytes()
    for path in paths:
        for new in _OTHER_TYPES:
            raw = json.dumps(_replaced(document, path, new)).encode()
            if profile == "kgv":
                try:
                    parse_kgv(raw)
                except KGVError:
                    pass  # the finding (kgv.malformed) verify_kgv_file reports
                continue
            verdict = verify_output(raw, profile=profile, roots=anchors, expected_nonce=_nonce(name),
                                    signer=signer, at=AT)
            verdict.to_json()


@pytest.mark.parametrize("name", XML_SAMPLES or ["(samples absent)"])
def test_every_xml_element_turned_inside_out_is_a_finding(xe_dir: Path, anchors: list[x509.Certificate],
                                                          name: str) -> None:
    """Each element of the real NETCONF captures given a child instead of its text, or its
    children replaced by text: the verdict comes back."""
    text = (xe_dir / name).read_text()
    signer = (xe_dir / "v2" / "cli_valid_trust_chain.txt").read_bytes()
    leaves = set(re.findall(r"<([\w-]+)>[^<]*</\1>", text))
    containers = set(re.findall(r"<([\w-]+)>\s*<", text))
    variants = [re.sub(rf"<{tag}>[^<]*</{tag}>", f"<{tag}><{tag}>x</{tag}></{tag}>", text, count=1) for tag in leaves]
    variants += [re.sub(rf"<{tag}>\s*<", f"<{tag}>text<", text, count=1) for tag in containers]
    variants += [re.sub(rf"<{tag}>", f"<{tag}><{tag}/>", text) for tag in containers | leaves]
    for variant in variants:
        verdict = verify_output(variant.encode(), profile="xe-system-integrity", roots=anchors,
                                expected_nonce=_nonce(name), signer=signer, at=AT)
        verdict.to_json()


# --- `dossier verify` with several files ----------------------------------------------------


def _cli_files(folder: Path, chain: tuple[x509.Certificate, x509.Certificate]) -> tuple[list[str], list[str]]:
    """A genuine SUDI output among hostile files of each kind; and the --root options."""
    root, sub = chain
    files = {
        "good.txt": _sudi_output(root, sub, _device(san=None)),
        "malformed-san.txt": _sudi_output(root, sub, _device()),
        "deep.xml": _netconf("<location>" + "<a>" * 5_000 + "</a>" * 5_000 + "</location>"),
        "capability.json": _restconf({**_KEYS_OF_LOCATION, "integrity": [
            {"nonce": NONCE, "compliance": {"capability": "secure_boot"}}]}),
        "kgv.json": json.dumps({"header": {}, "bulkHash": [{"dtype": "boot0", "biv_hash": "AB" * 32,
                                                             "pkg": ["not an object"]}]}).encode(),
    }
    for name, content in files.items():
        (folder / name).write_bytes(content)
    (folder / "root.pem").write_text(_pem(root))
    (folder / "sub.pem").write_text(_pem(sub))
    return [str(folder / name) for name in files], ["--root", str(folder / "root.pem"), "--root",
                                                    str(folder / "sub.pem")]


def _cli_verify(files: list[str], roots: list[str]) -> Any:
    from click.testing import CliRunner

    from dossier_cli.main import cli

    with pytest.MonkeyPatch.context() as patch:  # judge at NOW, inside the crafted chain's window
        patch.setattr("verifier.profiles.utc_moment", lambda at, *_: NOW)
        return CliRunner().invoke(cli, ["verify", *files, *roots, "--profile", "auto", "--nonce-dec", str(NONCE),
                                        "--json"])


def test_dossier_verify_gives_every_hostile_file_its_verdict(tmp_path: Path,
                                                             chain: tuple[x509.Certificate, x509.Certificate]) -> None:
    files, roots = _cli_files(tmp_path, chain)
    result = _cli_verify(files, roots)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert lines[0]["trusted"] is True, lines[0]
    assert all(line.get("trusted") is False or "error" in line for line in lines[1:]), lines
    assert result.exit_code in (1, 2)


def test_dossier_verify_contains_a_verifier_bug_to_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            chain: tuple[x509.Certificate, x509.Certificate]) -> None:
    """An exception the verifier should never raise, on one file: that file's error line, and
    the files after it are still verified."""
    import verifier.profiles.clisupport as clisupport

    files, roots = _cli_files(tmp_path, chain)
    real = clisupport.verify_file

    def verify_file(options: Any, raw: bytes, *, path: str, **kwargs: Any) -> Any:
        if path.endswith("malformed-san.txt"):
            raise RecursionError("maximum recursion depth exceeded")
        return real(options, raw, path=path, **kwargs)

    monkeypatch.setattr(clisupport, "verify_file", verify_file)
    result = _cli_verify(files, roots)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files
    assert "RecursionError" in lines[1]["error"] and "verifier bug" in lines[1]["error"]
    assert lines[0]["trusted"] is True and all("trusted" in line for line in lines[2:])
    assert result.exit_code == 2  # an error line, as for unreadable input
