"""Emulator PKI: keys, persistence, mypubkey layout, trustpoint config, the system chain,
show/authenticate/enroll layouts against the seed, cut-and-paste enrollment."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from _pki_helpers import SEED, cached_keypair, seed_trustpoint, system_chain
from emulator.pki import PkiError
from emulator.pki.certificates import (
    build_csr,
    check_imported_certificate,
    fqdn_for,
    make_leaf_certificate,
    make_root_certificate,
    parse_pasted_certificate,
)
from emulator.pki.keys import (
    DEFAULT_KEY_LABEL,
    KeyPair,
    delete_keypair,
    generate_keypair,
    import_public_key,
    load_keypairs,
    parse_generate_answer,
    parse_public_key_text,
    save_keypair,
)
from emulator.pki.screens import (
    ACCEPT_CERTIFICATE_QUESTION,
    INCLUDE_IP_QUESTION,
    INCLUDE_SERIAL_QUESTION,
    format_authenticate_output,
    format_ca_fingerprint_prompt,
    format_csr_output,
    format_dn,
    format_enroll_output,
    format_enroll_preamble,
    format_generate_done,
    format_generate_prompt,
    format_ios_time,
    format_mypubkey,
    format_request_fingerprint,
    format_serial,
    format_serial_notice,
    format_show_certificates,
    sha1_fingerprint_hex,
)
from emulator.pki.trustpoints import (
    TrustpointConfig,
    apply_trustpoint_command,
    check_enrollment_supported,
    parse_dn,
    resolve_trustpoint_keys,
)

SEED_NOW = datetime(2019, 10, 20, 13, 7, 26, tzinfo=timezone.utc)
SEED_DN = "CN=lab1-ads,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR"
SEED_CA_DN = "CN=lab1-ca,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR"
OPENSSL = shutil.which("openssl")


def seed_text() -> str:
    if not SEED.is_file():
        pytest.skip(f"seed document not found at {SEED}")
    return SEED.read_text("utf-8")


def seed_chain() -> tuple[TrustpointConfig, KeyPair, KeyPair, x509.Certificate, x509.Certificate]:
    """The seed's "Generate Root and Leaf Certificates" example, on the seed's clock."""
    tp = seed_trustpoint("rsa")
    root_key = cached_keypair("rsa2048", "root")
    leaf_key = cached_keypair("rsa2048", "leaf")
    root = make_root_certificate(
        tp, root_key, chassis_serial="c44a11fc", fqdn="ios.cisco.com", serial_number=0x0B62, now=SEED_NOW
    )
    leaf = make_leaf_certificate(
        tp, leaf_key, root_cert=root, root_key=root_key, chassis_serial="c44a11fc",
        fqdn="ios.cisco.com", ip_address=None, serial_number=0x0B63,
        now=datetime(2019, 10, 20, 13, 7, 47, tzinfo=timezone.utc),
    )
    return tp, root_key, leaf_key, root, leaf


# --- key generation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "options", "size", "curve"),
    [
        ("rsa", {}, 2048, None),
        ("rsa", {"modulus": 512}, 512, None),
        ("rsa", {"modulus": 1000}, 1000, None),
        ("dsa", {"modulus": 1024}, 1024, None),
        ("ecdsa", {}, 256, "nistp256"),
        ("ecdsa", {"curve": "nistp521"}, 521, "nistp521"),
    ],
)
def test_generate_keypair_sizes(kind: str, options: dict, size: int, curve: str | None) -> None:
    keypair = generate_keypair(kind, "k1", now=SEED_NOW, **options)
    assert (keypair.kind, keypair.label, keypair.usage) == (kind, "k1", "general")
    assert keypair.size == size and keypair.curve == curve
    assert keypair.public_der() == keypair.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_dsa_keys_share_domain_parameters_not_keys() -> None:
    first = generate_keypair("dsa", "a", modulus=1024, now=SEED_NOW)
    second = generate_keypair("dsa", "b", modulus=1024, now=SEED_NOW)
    assert first.private_key.parameters().parameter_numbers() == second.private_key.parameters().parameter_numbers()
    assert first.public_der() != second.public_der()


def test_default_label_is_the_default() -> None:
    assert generate_keypair("ecdsa", None, now=SEED_NOW).label == DEFAULT_KEY_LABEL == "the_default"


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("rsa", {"modulus": 511}, "% Invalid modulus size 511: choose a key modulus in the range of 512 to 4096"),
        ("rsa", {"modulus": 4097}, "range of 512 to 4096"),
        ("dsa", {"modulus": 3072}, "DSA keys are 1024 or 2048 bits"),
        ("ecdsa", {"curve": "secp256k1"}, "expected one of nistp256, nistp384, nistp521"),
        ("ed25519", {}, "expected rsa, dsa or ecdsa"),
    ],
)
def test_generate_keypair_refuses(kind: str, options: dict, message: str) -> None:
    with pytest.raises(PkiError) as caught:
        generate_keypair(kind, "k1", now=SEED_NOW, **options)
    assert message in caught.value.message and caught.value.message.startswith("% ")


@pytest.mark.parametrize("label", ["bad label", "../x", "-x", "x" * 65])
def test_bad_labels_are_refused(label: str) -> None:
    with pytest.raises(PkiError, match="Invalid key label"):
        generate_keypair("ecdsa", label, now=SEED_NOW)


def test_generate_dialogue_matches_the_seed() -> None:
    text = seed_text()
    prompt = format_generate_prompt("rsa", "system-root-key")
    done = format_generate_done("rsa")
    transcript = prompt + "\n" + done
    # The seed's "Key pair generation for root" example, line by line.
    start = text.index("The name for the keys will be: system-root-key")
    seed_lines = text[start:].splitlines()[:7]
    assert [line.rstrip() for line in transcript.splitlines()] == [line.rstrip() for line in seed_lines]
    assert parse_generate_answer("rsa", "") == {"modulus": 2048}
    assert parse_generate_answer("rsa", "3072") == {"modulus": 3072}
    assert parse_generate_answer("dsa", "") == {"modulus": 2048}
    assert parse_generate_answer("ecdsa", "nistp384") == {"curve": "nistp384"}
    for kind, answer in [("rsa", "100"), ("rsa", "big"), ("dsa", "512"), ("ecdsa", "p256")]:
        with pytest.raises(PkiError, match="^% Invalid"):
            parse_generate_answer(kind, answer)


# --- persistence ----------------------------------------------------------------------------


def test_save_load_round_trip_with_private_files_0600(tmp_path: Path) -> None:
    keys = [
        cached_keypair("rsa2048", "root"),
        cached_keypair("ecdsa-p384", "leaf"),
        generate_keypair("rsa", "usage-key", modulus=1024, usage="usage", now=SEED_NOW),
    ]
    for keypair in keys:
        save_keypair(keypair, tmp_path)
    loaded = load_keypairs(tmp_path)
    assert set(loaded) == {(keypair.kind, keypair.label) for keypair in keys}
    for keypair in keys:
        again = loaded[(keypair.kind, keypair.label)]
        assert again.public_der() == keypair.public_der()
        assert (again.usage, again.created) == (keypair.usage, keypair.created)
        assert not again.is_imported
    private_files = sorted(tmp_path.glob("*.key.pem"))
    assert len(private_files) == 3
    for path in private_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_save_replaces_a_key_atomically(tmp_path: Path) -> None:
    first = generate_keypair("ecdsa", "mykey", now=SEED_NOW)
    second = generate_keypair("ecdsa", "mykey", now=SEED_NOW + timedelta(days=1))
    save_keypair(first, tmp_path)
    save_keypair(second, tmp_path)
    loaded = load_keypairs(tmp_path)
    assert list(loaded) == [("ecdsa", "mykey")]
    assert loaded[("ecdsa", "mykey")].public_der() == second.public_der()


def test_imported_public_key_round_trip(tmp_path: Path) -> None:
    pem = cached_keypair("rsa2048", "root").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    imported = import_public_key(pem, "peer", now=SEED_NOW)
    save_keypair(imported, tmp_path)
    again = load_keypairs(tmp_path)[("rsa", "peer")]
    assert again.is_imported and again.private_key is None
    assert again.public_der() == imported.public_der()
    assert "Key label: peer" in format_mypubkey([again], "rsa")


def test_zeroize_one_label_or_all(tmp_path: Path) -> None:
    for label in ("a", "b"):
        save_keypair(generate_keypair("ecdsa", label, now=SEED_NOW), tmp_path)
    save_keypair(generate_keypair("rsa", "c", modulus=1024, now=SEED_NOW), tmp_path)
    with pytest.raises(PkiError, match="No DSA keys"):  # "dsa-" must not match "ecdsa-" files
        delete_keypair(tmp_path, "dsa")
    assert delete_keypair(tmp_path, "ecdsa", "a") == ["a"]
    assert set(load_keypairs(tmp_path)) == {("ecdsa", "b"), ("rsa", "c")}
    with pytest.raises(PkiError, match="ECDSA keypair a does not exist"):
        delete_keypair(tmp_path, "ecdsa", "a")
    assert delete_keypair(tmp_path, "ecdsa") == ["b"]
    assert set(load_keypairs(tmp_path)) == {("rsa", "c")}
    with pytest.raises(PkiError, match="No ECDSA keys"):
        delete_keypair(tmp_path, "ecdsa")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rsa-c.key.pem", "rsa-c.meta.json"]


def test_damaged_key_store_is_reported(tmp_path: Path) -> None:
    assert load_keypairs(tmp_path / "missing") == {}
    save_keypair(generate_keypair("ecdsa", "k", now=SEED_NOW), tmp_path)
    (tmp_path / "ecdsa-k.key.pem").write_text("not a key")
    with pytest.raises(PkiError, match="Key store damaged: cannot read .*ecdsa-k.key.pem"):
        load_keypairs(tmp_path)
    (tmp_path / "ecdsa-k.meta.json").write_text("{")
    with pytest.raises(PkiError, match="Key store damaged: .*ecdsa-k.meta.json"):
        load_keypairs(tmp_path)
    # A damaged key can still be zeroized, and then the store loads again.
    assert delete_keypair(tmp_path, "ecdsa", "k") == ["k"]
    assert load_keypairs(tmp_path) == {}


# --- show crypto key mypubkey ---------------------------------------------------------------


def _shape(line: str) -> str:
    return re.sub(r"[0-9A-F]", "X", line)


def test_mypubkey_matches_the_seed_layout() -> None:
    text = seed_text()
    start = text.index("Key label: system-root-key")
    seed_block = text[start : text.index("\n\n", start)].splitlines()
    keypair = cached_keypair("rsa2048", "root")
    # The seed's clock shows IST; 01:13:10 IST Thu Feb 06 2020 is 19:43:10 UTC the day before.
    keypair = KeyPair(
        label=keypair.label, kind="rsa", usage="general", private_key=keypair.private_key,
        created=datetime(2020, 2, 5, 19, 43, 10, tzinfo=timezone.utc),
    )
    ours = format_mypubkey([keypair], "rsa", tz_name="Asia/Kolkata").splitlines()
    assert ours[:5] == seed_block[:5]  # label, type, size, created, "Data      :"
    assert [_shape(line) for line in ours[5:]] == [_shape(line) for line in seed_block[5:]]
    assert bytes.fromhex("".join(ours[5:]).replace(" ", "")) == keypair.public_der()


def test_mypubkey_lists_only_the_kind_asked_for_oldest_first() -> None:
    older = generate_keypair("ecdsa", "zzz", curve="nistp384", now=SEED_NOW)
    newer = generate_keypair("ecdsa", "aaa", now=SEED_NOW + timedelta(seconds=1))
    rsa_key = cached_keypair("rsa2048", "root")
    output = format_mypubkey([newer, rsa_key, older], "ecdsa")
    blocks = output.split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == ["Key label: zzz", "Key label: aaa"]
    assert "Type      : ECDSA General Curve Nistp384" in blocks[0]
    assert "Size      : 384" in blocks[0]
    assert "Created   : 13:07:26 UTC Sun Oct 20 2019" in blocks[0]
    for line in blocks[1].splitlines()[5:]:
        assert re.fullmatch(r"[0-9A-F]{1,8}( [0-9A-F]{1,8}){0,7}", line)
    assert format_mypubkey([rsa_key], "dsa") == ""


# --- crypto key import authentication rsa ---------------------------------------------------


def test_public_key_text_in_every_accepted_form() -> None:
    keypair = cached_keypair("rsa2048", "root")
    der = keypair.public_der()
    pem = keypair.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    pkcs1 = keypair.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    ).decode()
    openssh = keypair.public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode() + " admin@host"
    b64 = base64.encodebytes(der).decode()  # wrapped at 76 columns
    mypubkey_hex = "\n".join(format_mypubkey([keypair], "rsa").splitlines()[5:])
    for text in (pem, pkcs1, openssh, b64, mypubkey_hex):
        key = parse_public_key_text(text)
        assert key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == der


@pytest.mark.parametrize("text", ["", "hello world", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "ssh-rsa AAAA"])
def test_bad_public_key_text(text: str) -> None:
    with pytest.raises(PkiError) as caught:
        parse_public_key_text(text)
    assert caught.value.message.startswith("% Invalid public key: expected a PEM public key")


def test_public_key_of_the_wrong_type() -> None:
    pem = cached_keypair("ecdsa-p256", "root").public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    with pytest.raises(PkiError, match="expected an RSA key; found an ECDSA key"):
        parse_public_key_text(pem)


# --- trustpoint configuration ---------------------------------------------------------------

SEED_TRUSTPOINT_LINES = [
    "keypair rsa system-enroll-key",
    "ca-keypair rsa system-root-key",
    "subject-name " + SEED_DN,
    "subject-name ca-certificate " + SEED_CA_DN,
    "enrollment url self",
    "key-usage certificate digitalsignature keyagreement dataencipherment",
    "lifetime certificate 300",
    "message-digest sha256",
    "key-usage ca-certificate digitalsignature keycertsign crlsign",
    "lifetime ca-certificate 367",
]


def _configured(lines: list[str], name: str = "system-trustpoint") -> TrustpointConfig:
    tp = TrustpointConfig(name=name)
    for line in lines:
        tp = apply_trustpoint_command(tp, line.split())
    return tp


def test_running_config_matches_the_seed() -> None:
    tp = _configured(SEED_TRUSTPOINT_LINES)
    assert tp.running_config_lines() == [
        "crypto ca trustpoint system-trustpoint",
        *(" " + line for line in SEED_TRUSTPOINT_LINES),
        "!",
    ]
    assert tp.keypair == ("rsa", "system-enroll-key") and tp.enrollment == "self"
    assert tp.lifetime_certificate == 300 and tp.key_usage_ca_certificate == [
        "digitalsignature", "keycertsign", "crlsign"
    ]


def test_every_trustpoint_subcommand_and_its_negation() -> None:
    lines = [
        "vrf mgmt",
        "enrollment url http://xyz-ultra5",
        "enrollment retry count 25",
        "enrollment retry period 2",
        "query url ldap://my-ldap.domain.com",
        "rsakeypair mykey",
    ]
    tp = _configured(lines, "myca")
    assert tp.running_config_lines() == ["crypto ca trustpoint myca", *(" " + line for line in lines), "!"]
    assert tp.leaf_key_ref() == ("rsa", "mykey")
    tp = apply_trustpoint_command(tp, ["enrollment", "terminal"])
    assert " enrollment terminal" in tp.running_config_lines()
    tp = apply_trustpoint_command(tp, ["rsakeypair"], negate=True)
    tp = apply_trustpoint_command(tp, ["vrf"], negate=True)
    assert tp.rsakeypair is None and tp.vrf is None
    assert tp.leaf_key_ref() == ("rsa", "the_default")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("message-digest md5", "% Invalid message-digest 'md5': expected sha256, sha384, sha512"),
        ("lifetime certificate 0", "% Invalid lifetime 0: expected 1 to 3650"),
        ("lifetime ca-certificate many", "% Invalid lifetime 'many'"),
        ("enrollment retry period 61", "% Invalid retry period 61: expected 1 to 60"),
        ("enrollment retry count 101", "% Invalid retry count 101: expected 1 to 100"),
        ("key-usage certificate digitalsignature signing", "% Invalid key usage 'signing'"),
        ("key-usage certificate", "% Incomplete key-usage"),
        ("keypair rsa", "% Incomplete command"),
        ("keypair ed25519 k", "expected rsa, dsa or ecdsa"),
        ("subject-name CN=x,XX=y", "unknown attribute 'XX'"),
        ("frobnicate 1", "% Invalid trustpoint command"),
    ],
)
def test_bad_trustpoint_subcommands(line: str, message: str) -> None:
    with pytest.raises(PkiError) as caught:
        apply_trustpoint_command(TrustpointConfig(name="tp"), line.split())
    assert message in caught.value.message


def test_trustpoint_dict_round_trip() -> None:
    tp = _configured(SEED_TRUSTPOINT_LINES + ["vrf mgmt", "enrollment retry count 3"])
    data = json.loads(json.dumps(tp.to_dict()))
    assert TrustpointConfig.from_dict(data) == tp
    with pytest.raises(PkiError, match="unknown \\['colour'\\]"):
        TrustpointConfig.from_dict({**data, "colour": "blue"})


def test_parse_dn_keeps_the_typed_order() -> None:
    name = parse_dn(SEED_DN)
    assert [(attribute.oid, attribute.value) for attribute in name] == [
        (NameOID.COMMON_NAME, "lab1-ads"),
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        (NameOID.LOCALITY_NAME, "San Jose"),
        (NameOID.ORGANIZATION_NAME, "cisco systems"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "ASR"),
    ]
    assert parse_dn("cn=a, o=b") == x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "a"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "b")]
    )


@pytest.mark.parametrize(
    ("text", "found"),
    [("", "found nothing"), ("CN", "found 'CN'"), ("CN=a,,O=b", "found ''"), ("C=USA", "found 'USA'"), ("Q=1", "unknown attribute 'Q'")],
)
def test_parse_dn_errors(text: str, found: str) -> None:
    with pytest.raises(PkiError) as caught:
        parse_dn(text)
    assert caught.value.message.startswith("% Invalid subject name") and found in caught.value.message


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["CN", "O", "OU", "L", "ST"]),
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-. ", min_size=1, max_size=12).map(str.strip).filter(bool),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_parse_dn_round_trips_through_the_display_form(pairs: list[tuple[str, str]]) -> None:
    text = ",".join(f"{key}={value}" for key, value in pairs)
    name = parse_dn(text)
    # IOS XR prints the last RDN first; reversing the display gives what was typed.
    displayed = ",".join(reversed(format_dn(name).split(",")))
    assert parse_dn(displayed) == name


# --- the system chain -------------------------------------------------------------------------


def test_root_and_leaf_follow_envelope_section_4() -> None:
    tp, root_key, leaf_key, root, leaf = seed_chain()
    assert root.subject == root.issuer == leaf.issuer
    root.verify_directly_issued_by(root)
    leaf.verify_directly_issued_by(root)
    assert format_dn(root.subject) == (
        "serialNumber=c44a11fc,unstructuredName=ios.cisco.com,OU=ASR,O=cisco systems,"
        "L=San Jose,ST=CA,C=US,CN=lab1-ca"
    )
    assert format_dn(leaf.subject) == (
        "serialNumber=c44a11fc,unstructuredName=ios.cisco.com,OU=ASR,O=cisco systems,"
        "L=San Jose,ST=CA,C=US,CN=lab1-ads"
    )
    root_bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    leaf_bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert root_bc.critical and root_bc.value.ca and not leaf_bc.value.ca
    root_ku = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert (root_ku.digital_signature, root_ku.key_cert_sign, root_ku.crl_sign) == (True, True, True)
    leaf_ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert leaf_ku.critical
    # Configured: digitalsignature keyagreement dataencipherment.
    assert (leaf_ku.value.digital_signature, leaf_ku.value.key_agreement, leaf_ku.value.data_encipherment,
            leaf_ku.value.key_encipherment) == (True, True, True, False)
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf_aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert leaf_aki.key_identifier == root_ski.digest
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key)
    )
    assert isinstance(root.signature_hash_algorithm, hashes.SHA256)
    # Seed: lifetime ca-certificate 367 / certificate 300.
    assert format_ios_time(root.not_valid_after_utc) == "13:07:26 UTC Wed Oct 21 2020"
    assert format_ios_time(leaf.not_valid_after_utc) == "13:07:47 UTC Sat Aug 15 2020"
    assert (root.serial_number, leaf.serial_number) == (0x0B62, 0x0B63)


def test_default_key_usage_lifetime_and_the_ip_address() -> None:
    # Seed's second example: no lifetime (365 days), DN typed C first, an IP address included.
    tp = TrustpointConfig(
        name="system-trustpoint", subject_name="C=NL,ST=Zuid Holland,L=Rotterdam,O=Spark Network,OU=IT,CN=Anetwork"
    )
    now = datetime(2020, 2, 21, 12, 30, 17, tzinfo=timezone.utc)
    root_key, leaf_key = cached_keypair("ecdsa-p256", "root"), cached_keypair("ecdsa-p256", "leaf")
    root = make_root_certificate(tp, root_key, chassis_serial="7b20faa4", fqdn="test-secl.cisco.com",
                                 serial_number=0x10B5, now=now)
    leaf = make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=root_key, chassis_serial="7b20faa4",
                                 fqdn="test-secl.cisco.com", ip_address="10.1.1.1", serial_number=0x10B6, now=now)
    assert format_dn(root.subject) == "serialNumber=7b20faa4,unstructuredName=test-secl.cisco.com"
    assert format_dn(leaf.subject) == (
        "serialNumber=7b20faa4,unstructuredAddress=10.1.1.1,unstructuredName=test-secl.cisco.com,"
        "CN=Anetwork,OU=IT,O=Spark Network,L=Rotterdam,ST=Zuid Holland,C=NL"
    )
    assert format_ios_time(root.not_valid_after_utc) == "12:30:17 UTC Sat Feb 20 2021"
    assert format_ios_time(leaf.not_valid_after_utc) == "12:30:17 UTC Sat Feb 20 2021"
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and (ku.value.digital_signature, ku.value.key_encipherment, ku.value.key_agreement) == (
        True, True, True
    )


def test_leaf_without_the_router_serial() -> None:
    tp, root_key, leaf_key, root, _ = seed_chain()
    leaf = make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=root_key, chassis_serial=None,
                                 fqdn="ios.cisco.com", ip_address=None, serial_number=0x0B64, now=SEED_NOW)
    assert not leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    with pytest.raises(PkiError, match="Invalid IP address 'ten'"):
        make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=root_key, chassis_serial=None,
                              fqdn="ios.cisco.com", ip_address="ten", serial_number=1, now=SEED_NOW)


@pytest.mark.parametrize(("digest", "expected"), [("sha384", hashes.SHA384), ("sha512", hashes.SHA512)])
def test_message_digest_is_honoured_except_for_dsa(digest: str, expected: type) -> None:
    tp = apply_trustpoint_command(seed_trustpoint("rsa"), ["message-digest", digest])
    root = make_root_certificate(tp, cached_keypair("rsa2048", "root"), chassis_serial="1", fqdn="a.b",
                                 serial_number=1, now=SEED_NOW)
    assert isinstance(root.signature_hash_algorithm, expected)
    dsa_root = make_root_certificate(tp, cached_keypair("dsa2048", "root"), chassis_serial="1", fqdn="a.b",
                                     serial_number=1, now=SEED_NOW)
    assert isinstance(dsa_root.signature_hash_algorithm, hashes.SHA256)


def test_a_key_too_small_for_the_digest_is_a_clear_error() -> None:
    tp = apply_trustpoint_command(seed_trustpoint("rsa"), ["message-digest", "sha512"])
    small = generate_keypair("rsa", "tiny", modulus=512, now=SEED_NOW)
    with pytest.raises(PkiError, match="Certificate generation failed with RSA key tiny \\(512 bits\\)"):
        make_root_certificate(tp, small, chassis_serial="1", fqdn="a.b", serial_number=1, now=SEED_NOW)


def test_validity_overrides_make_an_expired_leaf() -> None:
    tp, root_key, leaf_key, root, _ = seed_chain()
    leaf = make_leaf_certificate(
        tp, leaf_key, root_cert=root, root_key=root_key, chassis_serial="c44a11fc", fqdn="ios.cisco.com",
        ip_address=None, serial_number=2, now=SEED_NOW,
        not_before=SEED_NOW - timedelta(days=10), not_after=SEED_NOW - timedelta(seconds=1),
    )
    assert leaf.not_valid_after_utc == SEED_NOW - timedelta(seconds=1)
    with pytest.raises(PkiError, match="validity is empty"):
        make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=root_key, chassis_serial=None,
                              fqdn="x.y", ip_address=None, serial_number=3, now=SEED_NOW,
                              not_after=SEED_NOW - timedelta(days=1))


def test_rekeyed_leaf_verifies_under_the_same_root() -> None:
    tp, root_key, _, root, _ = seed_chain()
    new_key = cached_keypair("rsa2048", "rekey")
    leaf = make_leaf_certificate(tp, new_key, root_cert=root, root_key=root_key, chassis_serial="c44a11fc",
                                 fqdn="ios.cisco.com", ip_address=None, serial_number=0x0B64, now=SEED_NOW)
    leaf.verify_directly_issued_by(root)


def test_leaf_refuses_a_root_key_that_is_not_the_roots() -> None:
    tp, _, leaf_key, root, _ = seed_chain()
    with pytest.raises(PkiError, match="does not match the CA certificate"):
        make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=cached_keypair("rsa2048", "other"),
                              chassis_serial=None, fqdn="x.y", ip_address=None, serial_number=1, now=SEED_NOW)


@pytest.mark.skipif(OPENSSL is None, reason="openssl command line not found")
def test_openssl_accepts_the_chain_and_reads_the_extensions(tmp_path: Path) -> None:
    chain = system_chain("rsa2048")
    (tmp_path / "root.pem").write_bytes(chain.root.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(chain.leaf.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run([OPENSSL, "verify", "-CAfile", "root.pem", "leaf.pem"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    shown = subprocess.run([OPENSSL, "x509", "-in", "leaf.pem", "-noout", "-text"], cwd=tmp_path,
                           capture_output=True, text=True, check=True).stdout
    assert "CA:FALSE" in shown and "Digital Signature, Data Encipherment, Key Agreement" in shown
    assert "unstructuredName" in shown and "serialNumber" in shown


def test_resolve_keys_and_enrollment_checks() -> None:
    tp = seed_trustpoint("rsa")
    keys = {("rsa", "system-root-key"): cached_keypair("rsa2048", "root")}
    with pytest.raises(PkiError) as caught:
        resolve_trustpoint_keys(tp, keys)
    assert "certificate key pair rsa system-enroll-key not found" in caught.value.message
    assert "crypto key generate rsa system-enroll-key" in caught.value.message
    keys[("rsa", "system-enroll-key")] = cached_keypair("rsa2048", "leaf")
    root, leaf = resolve_trustpoint_keys(tp, keys)
    assert (root.label, leaf.label) == ("system-root-key", "system-enroll-key")
    check_enrollment_supported(tp)
    check_enrollment_supported(apply_trustpoint_command(tp, "enrollment url http://ca.example/scep".split()))
    with pytest.raises(PkiError, match="Invalid enrollment URL 'ftp://ca.example'"):
        check_enrollment_supported(apply_trustpoint_command(tp, "enrollment url ftp://ca.example".split()))
    with pytest.raises(PkiError, match="no enrollment method"):
        check_enrollment_supported(TrustpointConfig(name="x"))
    with pytest.raises(PkiError, match="no ca-keypair"):
        TrustpointConfig(name="x").root_key_ref()
    assert fqdn_for("ios", "cisco.com") == "ios.cisco.com"
    with pytest.raises(PkiError, match="domain name"):
        fqdn_for("ios", None)


# --- what the shell prints -------------------------------------------------------------------


def _seed_example(heading: str, end_marker: str) -> list[str]:
    """A seed example with the PDF's line wrapping undone (a wrapped line continues the last)."""
    text = seed_text()
    start = text.index(heading)
    block = text[start : text.index(end_marker, start)].strip().splitlines()
    lines: list[str] = []
    starts = ("%", "Serial", "Subject", "Issued", "Validity", "SHA1", "Certificate", "serialNumber")
    for line in block:
        line = line.strip()
        if not line or line.startswith("```"):
            continue
        if lines and not line.startswith(starts) and not re.fullmatch(r"[0-9A-F]{40}", line):
            # The PDF broke "CN=lab1-ca" at its hyphen and dropped it; elsewhere at a space.
            lines[-1] += ("-" if lines[-1].endswith("lab1") else " ") + line
        else:
            lines.append(line)
    return lines


def _mask(line: str) -> str:
    return re.sub(r"\b[0-9A-F]{40}\b", "<SHA1>", line)


def test_authenticate_output_matches_the_seed() -> None:
    tp, _, _, root, _ = seed_chain()
    seed_lines = _seed_example("% The subject name in the certificate will include: CN=lab1", "Example of Generating Leaf")
    ours = format_authenticate_output(tp, root, "ios.cisco.com").splitlines()
    assert [_mask(line) for line in ours] == [_mask(line) for line in seed_lines]
    assert ours[-1] == hashlib.sha1(root.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def test_enroll_output_matches_the_seed() -> None:
    tp, _, leaf_key, root, leaf = seed_chain()
    transcript = (
        format_enroll_preamble(tp, "ios.cisco.com")
        + INCLUDE_SERIAL_QUESTION + "yes\n"
        + format_serial_notice("c44a11fc")
        + INCLUDE_IP_QUESTION + "no\n"
        + format_enroll_output(tp, leaf, leaf_key)
    )
    seed_lines = _seed_example("% The subject name in the certificate will include: CN=lab1-ads", "Verification")
    # The seed's example prints the default key usage although it configured another one;
    # we print what the certificate holds.
    ours = [
        line.replace("critical,digitalSignature,dataEncipherment,keyAgreement",
                     "critical,digitalSignature,keyEncipherment,keyAgreement")
        for line in transcript.splitlines()
    ]
    assert [_mask(line) for line in ours] == [_mask(line) for line in seed_lines]


def test_show_certificates_layout() -> None:
    tp, _, _, root, leaf = seed_chain()
    lines = format_show_certificates([("system-trustpoint", root, leaf)], detail=False).splitlines()
    assert lines[:4] == ["", "Trustpoint : system-trustpoint", "=====", "CA certificate"]
    assert lines[4] == "  Serial Number  : 0B:62"
    assert lines[5:7] == ["  Subject:", "    " + format_dn(root.subject)]
    assert lines[7:9] == ["  Issued By      :", "    " + format_dn(root.subject)]
    assert lines[9] == "  Validity Start : 13:07:26 UTC Sun Oct 20 2019"
    assert lines[11:13] == ["  SHA1 Fingerprint:", "    " + sha1_fingerprint_hex(root)]
    assert lines[13:17] == ["Router certificate", "  Key usage      : General Purpose",
                            "  Status         : Available", "  Serial Number  : 0B:63"]
    assert lines[-1] == "  Associated Trustpoint: system-trustpoint"
    detail = format_show_certificates([("system-trustpoint", root, leaf)], detail=True)
    assert "  Signature Algorithm : sha256WithRSAEncryption" in detail
    assert "    Basic Constraints (critical): CA:TRUE" in detail
    assert "    Key Usage (critical): digitalSignature,dataEncipherment,keyAgreement" in detail
    assert "  Public Key     : RSA (2048 bits)" in detail
    only_header = format_show_certificates([("myca", None, None)])
    assert only_header == "\nTrustpoint : myca\n=====\n"
    assert format_show_certificates([]) == ""


@pytest.mark.parametrize(("number", "text"), [(1, "01"), (0x0B62, "0B:62"), (0x10B6, "10:B6"), (0x1FFFF, "01:FF:FF")])
def test_format_serial(number: int, text: str) -> None:
    assert format_serial(number) == text


@given(st.integers(min_value=1, max_value=2**159))
def test_format_serial_round_trips(number: int) -> None:
    assert int(format_serial(number).replace(":", ""), 16) == number


def test_sha1_fingerprint_is_upper_hex_of_the_der() -> None:
    root = system_chain("ecdsa-p256").root
    assert sha1_fingerprint_hex(root) == hashlib.sha1(root.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


# --- cut-and-paste ------------------------------------------------------------------------------


def _outside_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Root coax-u10 Certificate Manager"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cisco Systems")])
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, cert


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, public_key: object, subject: x509.Name,
           days: int = 30) -> x509.Certificate:
    now = datetime.now(timezone.utc) - timedelta(minutes=1)
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject).public_key(public_key)
        .serial_number(0x6E).not_valid_before(now).not_valid_after(now + timedelta(days=days))
        .sign(ca_key, hashes.SHA256())
    )


def test_pasted_certificate_forms() -> None:
    _, ca_cert = _outside_ca()
    pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    body = "".join(pem.splitlines()[1:-1])
    assert parse_pasted_certificate(pem) == ca_cert
    assert parse_pasted_certificate("\n" + pem + "quit\n") == ca_cert
    assert parse_pasted_certificate("\n".join(pem.splitlines()[1:-1]) + "\n\n") == ca_cert
    assert parse_pasted_certificate(body) == ca_cert


@pytest.mark.parametrize(
    ("text", "found"),
    [("", "found nothing"), ("quit", "found nothing"), ("not base64 !!", "not base64"),
     (base64.b64encode(b"hello").decode(), "not a DER X.509 certificate")],
)
def test_pasted_garbage_is_refused(text: str, found: str) -> None:
    with pytest.raises(PkiError) as caught:
        parse_pasted_certificate(text)
    assert caught.value.message.startswith("% Invalid certificate: expected a PEM certificate")
    assert found in caught.value.message


def test_ca_fingerprint_prompt_follows_the_seed() -> None:
    _, ca_cert = _outside_ca()
    prompt = format_ca_fingerprint_prompt(ca_cert)
    lines = prompt.splitlines()
    assert lines[0] == "Serial Number :01"
    assert lines[1:5] == ["Subject Name :", format_dn(ca_cert.subject), "Issued By :", format_dn(ca_cert.issuer)]
    assert lines[5].startswith("Validity Start :") and lines[6].startswith("Validity End :")
    md5 = hashlib.md5(ca_cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324
    assert lines[7] == "Fingerprint:" + " ".join(md5[i : i + 2] for i in range(0, 32, 2))
    assert prompt.endswith("\n" + ACCEPT_CERTIFICATE_QUESTION)


def test_csr_import_accepted_and_rejected() -> None:
    ca_key, ca_cert = _outside_ca()
    tp = TrustpointConfig(name="myca", enrollment="terminal", subject_name="O=Cisco Systems",
                          rsakeypair="mykey")
    key = cached_keypair("rsa2048", "leaf")
    csr_pem = build_csr(tp, key, chassis_serial="c44a11fc", fqdn="myrouter.mydomain.com", ip_address="10.0.0.1",
                        include_serial=False, challenge_password="s3cret")
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert format_dn(csr.subject) == "unstructuredAddress=10.0.0.1,unstructuredName=myrouter.mydomain.com,O=Cisco Systems"
    assert csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value == b"s3cret"
    assert csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_der()
    shown = format_csr_output(csr_pem)
    assert shown.startswith("Certificate Request follows:\n\n-----BEGIN CERTIFICATE REQUEST-----")
    assert shown.endswith("---End - This line not part of the certificate request---\n")
    assert re.fullmatch(r"Fingerprint: [0-9A-F]{8} [0-9A-F]{8} [0-9A-F]{8} [0-9A-F]{8}\n",
                        format_request_fingerprint(csr_pem))

    good = _issue(ca_key, ca_cert, csr.public_key(), csr.subject)
    check_imported_certificate(good, ca_cert, key, trustpoint="myca", now=datetime.now(timezone.utc))

    other_key = cached_keypair("rsa2048", "other")
    wrong_key = _issue(ca_key, ca_cert, other_key.public_key, csr.subject)
    with pytest.raises(PkiError, match="does not match key pair rsa system-enroll-key of trustpoint myca"):
        check_imported_certificate(wrong_key, ca_cert, key, trustpoint="myca")

    stranger_key, stranger_ca = _outside_ca()
    same_name_other_ca = _issue(stranger_key, stranger_ca, csr.public_key(), csr.subject)
    with pytest.raises(PkiError, match="signature does not verify"):
        check_imported_certificate(same_name_other_ca, ca_cert, key)

    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else")])
    other_issuer = (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(other_name).public_key(csr.public_key())
        .serial_number(5).not_valid_before(datetime.now(timezone.utc)).not_valid_after(datetime.now(timezone.utc) + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    with pytest.raises(PkiError, match="expected a certificate issued by the CA"):
        check_imported_certificate(other_issuer, ca_cert, key)

    with pytest.raises(PkiError, match="is valid from"):
        check_imported_certificate(good, ca_cert, key, now=datetime.now(timezone.utc) + timedelta(days=60))
