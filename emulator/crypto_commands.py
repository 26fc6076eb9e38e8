"""The `crypto ...` commands and the certificate shows of the IOS XR personality: key pairs,
trustpoint authentication and enrollment, `show crypto ...`, and `show platform security attest
certificate` (the system trustpoint's chain, signed). Handlers for `emulator.commands`' tables;
every refusal is a PkiError whose message the session prints."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import signing
from .device import ENCRYPTION_CERTIFICATE, HARDDISK_PREFIXES
from .grammar import Match
from .nonce import parse_hex_nonce
from .tpm.model import AK_CERTIFICATE_ID
from .pki import PkiError
from .pki.certificates import build_csr, check_imported_certificate, parse_pasted_certificate
from .pki.keys import (
    DEFAULT_KEY_LABEL,
    KeyPair,
    generate_keypair,
    parse_generate_answer,
    parse_public_key_text,
)
from .pki.screens import (
    ACCEPT_CERTIFICATE_QUESTION,
    ENROLL_PASSWORD_NOTICE,
    ENTER_IP_QUESTION,
    INCLUDE_IP_QUESTION,
    INCLUDE_SERIAL_QUESTION,
    PASSWORD_PROMPT,
    REENTER_PASSWORD_PROMPT,
    REPLACE_KEYS_QUESTION,
    ZEROIZE_KEYS_QUESTION,
    format_already_have_keys,
    format_authenticate_output,
    format_ca_fingerprint_prompt,
    format_csr_output,
    format_enroll_output,
    format_enroll_preamble,
    format_generate_done,
    format_generate_prompt,
    format_mypubkey,
    format_request_fingerprint,
    format_request_heading,
    format_serial_notice,
    format_show_certificates,
)
from .pki.scep import DEFAULT_RETRY_COUNT, DEFAULT_RETRY_MINUTES, ScepClient
from .pki.trustpoints import TrustpointConfig, check_enrollment_supported

if TYPE_CHECKING:
    from .commands import Session

__all__ = [
    "ATTEST_CERTIFICATE_IDS",
    "h_attest_certificate",
    "h_ca_authenticate",
    "h_ca_enroll",
    "h_ca_import",
    "h_clear_certificates",
    "h_crypto_key_generate",
    "h_crypto_key_import",
    "h_crypto_key_zeroize",
    "h_show_certificates",
    "h_show_mypubkey",
]


# Certificate identifiers `show platform security attest certificate <id>` knows: the system
# trustpoint's chain under its own name and under the identity name the attestation RPC uses.
ATTEST_CERTIFICATE_IDS = ("system-identity", signing.SYSTEM_TRUSTPOINT, AK_CERTIFICATE_ID)


def h_attest_certificate(s: Session, m: Match) -> str:
    """`show platform security attest certificate <id> location all nonce <hex> json`: per node,
    the chain as base64 DER, signed over nonce || uint32 version || the listed DERs (the YANG
    RPC `get-certificate` of Cisco-IOS-XR-remote-attestation-act, which the NETCONF agent
    answers from the same `node_certificates`). `system-identity` is the system trustpoint's
    chain on the route processors; `aik` each node's TPM attestation key."""
    from .netconf.attestation import node_certificates

    nonce = parse_hex_nonce(m.args["nonce"])
    cert_id = m.args["cert"]
    if cert_id not in ATTEST_CERTIFICATE_IDS:
        raise PkiError(f"% Certificate identifier {cert_id!r} not found: expected one of "
                       f"{', '.join(ATTEST_CERTIFICATE_IDS)}")
    nodes = s.device.facts.nodes if cert_id == AK_CERTIFICATE_ID else s.device.facts.rp_nodes
    where = m.args["where"]
    if where != "all":
        if where not in nodes:
            raise PkiError(f"% Invalid location {where!r}: expected 'all' or one of {', '.join(nodes)}")
        nodes = [where]
    entries = [{
        "node-location": answer.node,
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "certificates": {"certificate": [
            {"name": name, "value": base64.b64encode(der).decode("ascii")} for name, der in answer.certificates
        ]},
        "signature_version": answer.signature_version,
        "signature": base64.b64encode(answer.signature or b"").decode("ascii"),
    } for answer in node_certificates(s.device, cert_id, nodes, nonce)]
    return json.dumps({"get-certificate-response": {"system-certificates": entries}}, indent=2) + "\n"


def h_crypto_key_generate(s: Session, m: Match) -> str:
    kind = m.args["kind"]
    label = m.args.get("label") or DEFAULT_KEY_LABEL
    usage = "usage" if m.args.get("usage") == "usage-keys" or m.row.meta.get("usage") else "general"
    device = s.device
    prompt = format_generate_prompt(kind, label, usage)
    head, _, question = prompt.partition("\n")
    s.term.write(head + "\n")
    device.boot_rsa_key()
    replacing = (kind, label) in device.keys
    if replacing:
        s.term.write(format_already_have_keys(label))
        answer = s.term.ask(REPLACE_KEYS_QUESTION, default="no").lower()
        if answer not in ("yes", "y"):
            return ""
    if m.args.get("curve"):
        size = {"curve": m.args["curve"]}
    else:
        explanation, _, ask = question.rpartition("\n")
        if replacing:
            # The seed's re-generation example indents the explanation after the replace
            # question and leaves a blank line before the size question.
            explanation = "\n".join("  " + line for line in explanation.splitlines()) + "\n"
        s.term.write(explanation + "\n")
        size = parse_generate_answer(kind, s.term.ask(ask, default=""))
    keypair = generate_keypair(kind, label, usage=usage, now=device.clock.now(), **size)
    device.store_key(keypair)
    return format_generate_done(kind)


def h_crypto_key_zeroize(s: Session, m: Match) -> str:
    kind, label = m.args["kind"], m.args.get("label")
    s.device.boot_rsa_key()
    targets = [key for key in s.device.keys if key[0] == kind and (label is None or key[1] == label)]
    if not targets:
        what = f"{kind.upper()} key pair {label}" if label else f"{kind.upper()} keys"
        raise PkiError(f"% No {what} found")
    answer = s.term.ask(ZEROIZE_KEYS_QUESTION, default="no").lower()
    if answer not in ("yes", "y"):
        return ""
    for kind_, label_ in targets:
        s.device.delete_key(kind_, label_)
    return "[OK]\n"


def h_crypto_key_import(s: Session, m: Match) -> str:
    answer = s.term.ask("Enter the public key file path (harddisk:...) or paste the key: ")
    if answer.startswith(HARDDISK_PREFIXES):
        path = s.device.harddisk_path(answer)
        if not path.exists():
            raise PkiError(f"% File {answer} does not exist")
        text = path.read_text("utf-8", errors="replace")
    elif answer.startswith("-----BEGIN"):
        text = answer + "\n" + s.term.read_block("")
    else:
        text = answer
    public_key = parse_public_key_text(text)
    openssh = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    s.device.add_authorized_key(s.username, openssh.split()[1])
    return "[OK]\n"


def h_show_mypubkey(s: Session, m: Match) -> str:
    kind = m.args["kind"]
    s.device.boot_rsa_key()
    keys = [kp for (k, _), kp in sorted(s.device.keys.items()) if k == kind]
    return format_mypubkey(keys, kind)


def h_ca_authenticate(s: Session, m: Match) -> str:
    name = m.args["tp"]
    device = s.device
    tp = device.trustpoint_config(name)
    ca_cert, _ = device.certificates(name)
    if ca_cert is not None:
        raise PkiError(
            f"% CA certificate already exists for trustpoint {name}: clear it first with "
            f"'clear crypto ca certificates {name}'"
        )
    check_enrollment_supported(tp)
    if tp.enrollment == "self":
        cert = device.issue_root(name)
        return format_authenticate_output(tp, cert, device.fqdn)
    if tp.enrollment == "terminal":
        text = s.term.read_block(
            "Enter the base 64 encoded CA certificate.\nEnd with a blank line or the word \"quit\" on a line by itself\n"
        )
        cert = parse_pasted_certificate(text)
    else:  # SCEP: GetCACaps, GetCACert
        cert = ScepClient(tp.enrollment, identifier=name).get_ca().ca_cert
    # The seed: the CA certificate's fingerprint, then the operator accepts it or nothing is kept.
    s.term.write(format_ca_fingerprint_prompt(cert).removesuffix(ACCEPT_CERTIFICATE_QUESTION))
    answer = s.term.ask(ACCEPT_CERTIFICATE_QUESTION, default="no").lower()
    if answer not in ("yes", "y"):
        return "% Certificate not accepted.\n"
    device.store_certificate(name, "ca", cert)
    return ""


def _ask_subject_extras(s: Session, tp: TrustpointConfig) -> tuple[bool, str | None]:
    device = s.device
    s.term.write(format_enroll_preamble(tp, device.fqdn))
    include = s.term.ask(INCLUDE_SERIAL_QUESTION, default="yes").lower() in ("yes", "y")
    if include:
        s.term.write(format_serial_notice(device.facts.chassis_serial))
    ip = None
    if s.term.ask(INCLUDE_IP_QUESTION, default="no").lower() in ("yes", "y"):
        ip = s.term.ask(ENTER_IP_QUESTION, default="")
        if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", ip or ""):
            raise PkiError(f"% Invalid IP address: expected dotted IPv4 like 10.1.1.1, found {ip!r}")
    return include, ip


def _authenticated_trustpoint(s: Session, name: str) -> tuple[TrustpointConfig, Any]:
    """The trustpoint's settings and CA certificate; refuses one not yet authenticated."""
    tp = s.device.trustpoint_config(name)
    ca_cert, _ = s.device.certificates(name)
    if ca_cert is None:
        raise PkiError(f"% Trustpoint {name} is not authenticated: run 'crypto ca authenticate {name}' first")
    return tp, ca_cert


def _trustpoint_key(s: Session, tp: TrustpointConfig) -> KeyPair:
    """The key pair the trustpoint's router certificate certifies (keypair, rsakeypair, default)."""
    kind, label = tp.leaf_key_ref()
    s.device.boot_rsa_key()  # the default RSA key a trustpoint without keypair uses
    key = s.device.keys.get((kind, label))
    if key is None:
        raise PkiError(f"% Key pair {label} ({kind}) does not exist: generate it first")
    return key


def _ask_challenge_password(s: Session) -> str:
    """The seed's challenge password, asked twice without echo; never stored."""
    s.term.write(ENROLL_PASSWORD_NOTICE)
    password = s.term.ask(PASSWORD_PROMPT, secret=True)
    again = s.term.ask(REENTER_PASSWORD_PROMPT, secret=True)
    if not password:
        raise PkiError("% A challenge password is required: expected one, found an empty answer; "
                       "enter the command again")
    if password != again:
        raise PkiError("% Passwords do not match: expected the same password twice; enter the command again")
    return password


def _enroll_over_scep(s: Session, tp: TrustpointConfig, ca_cert: Any, key: KeyPair, csr_pem: str) -> Any:
    """PKCSReq to the trustpoint's SCEP CA (retrying while pending); the certificate it issued."""
    if key.kind != "rsa":
        # RFC 8894 3.3.2: the CA encrypts its answer to the requester's key; only RSA can receive it.
        raise PkiError(
            f"% SCEP enrollment needs an RSA key pair: the CA encrypts the certificate to the router's "
            f"key; found {key.kind} key {key.label}; configure 'keypair rsa <label>' or 'rsakeypair <label>'"
        )
    client = ScepClient(tp.enrollment or "", identifier=tp.name)
    ca = client.get_ca()
    if ca.ca_cert != ca_cert:
        raise PkiError(
            f"% The CA at {tp.enrollment} now serves a certificate other than the one authenticated for "
            f"trustpoint {tp.name}: clear it with 'clear crypto ca certificates {tp.name}' and authenticate again"
        )
    s.term.write("% Certificate request sent to Certificate Authority\n" + format_request_fingerprint(csr_pem))
    cert = client.enroll(
        ca, x509.load_pem_x509_csr(csr_pem.encode()), key.private_key, clock=s.device.clock.timestamp,
        retry_minutes=tp.enrollment_retry_period or DEFAULT_RETRY_MINUTES,
        retry_count=tp.enrollment_retry_count or DEFAULT_RETRY_COUNT, notify=s.term.write,
    )
    check_imported_certificate(cert, ca_cert, key, trustpoint=tp.name)
    return cert


def _certificate_slot(purpose: str) -> str:
    """The file a router certificate for a key of this purpose is kept in."""
    return ENCRYPTION_CERTIFICATE if purpose == "encryption" else "router"


def h_ca_enroll(s: Session, m: Match) -> str:
    name = m.args["tp"]
    device = s.device
    tp, ca_cert = _authenticated_trustpoint(s, name)
    check_enrollment_supported(tp)
    if tp.enrollment == "self":
        include, ip = _ask_subject_extras(s, tp)
        output = []
        for purpose, half in _trustpoint_key(s, tp).halves():
            cert = device.issue_leaf(name, include_serial=include, ip_address=ip,
                                     encryption=purpose == "encryption")
            output.append(format_enroll_output(tp, cert, half))
        return "".join(output)
    # A CA enrollment (cut-and-paste or SCEP): the seed asks a challenge password first.
    password = _ask_challenge_password(s)
    include, ip = _ask_subject_extras(s, tp)
    key = _trustpoint_key(s, tp)
    # The seed: "request as many certificates as there are RSA key pairs" (usage keys: two).
    halves = key.halves()
    output = []
    for purpose, half in halves:
        csr = build_csr(
            tp, half, chassis_serial=device.facts.chassis_serial, fqdn=device.fqdn,
            ip_address=ip, include_serial=include, challenge_password=password,
        )
        heading = format_request_heading(purpose) if len(halves) > 1 else ""
        if tp.enrollment == "terminal":
            output.append(heading + format_csr_output(csr) + format_request_fingerprint(csr))
            continue
        s.term.write(heading)
        cert = _enroll_over_scep(s, tp, ca_cert, half, csr)
        device.store_certificate(name, _certificate_slot(purpose), cert)
        output.append(format_enroll_output(tp, cert, half))
    return "".join(output)


def h_ca_import(s: Session, m: Match) -> str:
    name = m.args["tp"]
    tp, ca_cert = _authenticated_trustpoint(s, name)
    text = s.term.read_block(
        "Enter the base 64 encoded certificate.\nEnd with a blank line or the word \"quit\" on a line by itself\n"
    )
    cert = parse_pasted_certificate(text)
    key = _trustpoint_key(s, tp)
    # Usage keys need two imports, either certificate first (the seed): its key says its slot.
    purpose = check_imported_certificate(cert, ca_cert, key, trustpoint=name)
    s.device.store_certificate(name, _certificate_slot(purpose), cert)
    return "% Certificate successfully imported.\n"


def h_clear_certificates(s: Session, m: Match) -> str:
    name = m.args["tp"]
    s.device.store_certificate(name, "ca", None)
    s.device.store_certificate(name, "router", None)
    s.device.store_certificate(name, ENCRYPTION_CERTIFICATE, None)
    return ""


def h_show_certificates(s: Session, m: Match) -> str:
    device = s.device
    names = [m.args["tp"]] if m.args.get("tp") else device.trustpoint_names_with_certs()
    entries = []
    for name in names:
        ca, router = device.certificates(name)
        encryption = device.encryption_certificate(name)
        if ca is None and router is None and encryption is None:
            continue
        if encryption is None and not _has_usage_keys(s, name):
            entries.append((name, ca, router))
            continue
        pairs = [("signature", router), ("encryption", encryption)]
        entries.append((name, ca, [(purpose, cert) for purpose, cert in pairs if cert is not None]))
    return format_show_certificates(entries, bool(m.args.get("detail")))


def _has_usage_keys(s: Session, name: str) -> bool:
    """True when the trustpoint's key pair is RSA usage keys (its router.pem is the signature
    key's certificate); False for general keys or a trustpoint no longer configured."""
    node = s.device.running.find(f"crypto ca trustpoint {name}")
    if node is None:
        return False
    key = s.device.keys.get(s.device.trustpoint_config(name).leaf_key_ref())
    return key is not None and key.encryption_key is not None
