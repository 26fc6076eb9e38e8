"""TPM attestation verification against a real software TPM (swtpm + tpm2-tools): every good
quote is accepted by our verifier and by `tpm2_checkquote`, each faulty one rejected by both,
and every `tpm.*` finding id has a case here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from verifier.findings import FindingId, Severity
from verifier.policy import Policy
from verifier.profiles._common import Anchors
from verifier.tpm.attestation import TPMInputs, verify_tpm_output
from verifier.tpm.replies import ReplyError, parse_boot_log, parse_certificates, parse_ima_log, parse_quote
from verifier.tpm.structures import TPMFormatError, parse_attest, parse_signature

from tpm_swtpm import (
    Event,
    SoftTPM,
    VendorCA,
    boot_log_reply,
    certificate_reply,
    ima_entry,
    ima_log_reply,
    missing_tools,
    quote_reply,
)

pytestmark = pytest.mark.skipif(bool(missing_tools()) and not os.environ.get("DOSSIER_REQUIRE_TPM_TOOLS"),
                                reason=f"software TPM tools missing: {', '.join(missing_tools())}")

NODE = "0/RP0/CPU0"
PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 10)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
BOOT = [Event(1, 0, hashlib.sha256(b"rommon 7.1").digest(), b"ROMMON"),
        Event(2, 4, hashlib.sha256(b"grub").digest(), b"boot loader"),
        Event(3, 5, hashlib.sha256(b"kernel 5.10").digest(), b"kernel"),
        Event(4, 7, hashlib.sha256(b"xr-os-mbb 24.2.1").digest(), b"package xr-os-mbb")]
FILES = [("/usr/bin/bash", b"bash"), ("/opt/cisco/bin/sysmgr", b"sysmgr"), ("/usr/lib/libc.so.6", b"libc")]
LATE = ("/tmp/late.sh", b"after the quote")


@dataclasses.dataclass
class Device:
    tpm: SoftTPM
    ca: VendorCA
    certificate_xml: bytes
    ima: list


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    tpm = SoftTPM(tmp_path_factory.mktemp("swtpm"))
    try:
        ca = VendorCA()
        ak = ca.attestation_certificate(tpm.ak_pem, "xr-1")
        for event in BOOT:
            tpm.extend(event.pcr, event.digest)
        ima = [ima_entry(n + 1, name, content) for n, (name, content) in enumerate(FILES)]
        for entry in ima:
            tpm.extend(10, entry.template_hash())
        yield Device(tpm, ca, certificate_reply({NODE: [ca.root, ca.sub, ak]}), ima)
    finally:
        tpm.close()


def _anchors(device: Device) -> Anchors:
    return Anchors((device.ca.root,))  # the vendor root alone: the sub-CA is checked as issued by it


def _verify(device: Device, kind: str, raw: bytes, nonce: bytes | None = None, **inputs: Any):
    inputs.setdefault("certificate", device.certificate_xml)
    inputs.setdefault("requested_pcrs", PCRS)
    verdict = verify_tpm_output(kind, raw, TPMInputs(**inputs), anchors=_anchors(device), nonce=nonce, when=NOW,
                                policy=Policy())
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))
    return verdict


def _quote(device: Device, nonce: bytes, up_time: int = 1000, pcrs=PCRS):
    quote = device.tpm.quote(nonce, pcrs)
    return quote, quote_reply({NODE: (quote, up_time)})


def _ids(verdict) -> set[str]:
    return {str(f.id) for f in verdict.findings}


# --- quotes: our verifier beside tpm2_checkquote -----------------------------------------------

def test_a_good_quote_is_accepted_by_both(device: Device) -> None:
    nonce = os.urandom(16)
    quote, xml = _quote(device, nonce)
    verdict = _verify(device, "xr-tpm-quote", xml, nonce)
    assert verdict.trusted, [f.message for f in verdict.findings]
    assert device.tpm.checkquote(quote, nonce, quote.pcrs)
    node = verdict.authenticated["nodes"][0]
    assert node["node"] == NODE and node["bank"] == "sha256" and set(node["pcrs"]) == {str(p) for p in PCRS}


def test_a_quote_listing_pcrs_as_one_base64_value_is_read_alike(device: Device) -> None:
    nonce = os.urandom(16)
    quote = device.tpm.quote(nonce, PCRS)
    assert _verify(device, "xr-tpm-quote", quote_reply({NODE: (quote, 5)}, byte_list=False), nonce).trusted


def test_a_quote_signed_by_another_key_is_rejected_by_both(device: Device, tmp_path: Path) -> None:
    nonce = os.urandom(16)
    quote, xml = _quote(device, nonce)
    other = rsa.generate_private_key(65537, 2048).public_key()
    other_pem = other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    other_cert = device.ca.attestation_certificate(other_pem, "xr-1")
    verdict = _verify(device, "xr-tpm-quote", xml, nonce,
                      certificate=certificate_reply({NODE: [device.ca.root, device.ca.sub, other_cert]}))
    assert not verdict.trusted and FindingId.SIGNATURE_INVALID in _ids(verdict)
    (tmp_path / "other.pem").write_bytes(other_pem)
    (tmp_path / "q.msg").write_bytes(quote.message)
    (tmp_path / "q.sig").write_bytes(quote.signature)
    done = subprocess.run(["tpm2_checkquote", "-u", "other.pem", "-m", "q.msg", "-s", "q.sig", "-g", "sha256",
                           "-q", nonce.hex()], cwd=tmp_path, capture_output=True, env=device.tpm.env)
    assert done.returncode != 0


def test_a_quote_of_another_nonce_is_rejected_by_both(device: Device) -> None:
    sent, answered = os.urandom(16), os.urandom(16)
    quote, xml = _quote(device, answered)
    verdict = _verify(device, "xr-tpm-quote", xml, sent)
    finding = next(f for f in verdict.findings if f.id == FindingId.NONCE_MISMATCH)
    assert finding.expected == sent.hex() and finding.found == answered.hex()
    assert not device.tpm.checkquote(quote, sent, quote.pcrs)


def test_a_pcr_value_the_quote_does_not_bind_is_rejected_by_both(device: Device) -> None:
    nonce = os.urandom(16)
    quote = device.tpm.quote(nonce, PCRS)
    forged = dataclasses.replace(quote, pcrs={**quote.pcrs, 7: hashlib.sha256(b"forged").digest()})
    verdict = _verify(device, "xr-tpm-quote", quote_reply({NODE: (forged, 9)}), nonce)
    assert FindingId.TPM_PCR_DIGEST_MISMATCH in _ids(verdict) and not verdict.trusted
    assert not device.tpm.checkquote(quote, nonce, forged.pcrs)


def test_a_quote_not_covering_the_pcrs_asked_for_is_rejected(device: Device) -> None:
    nonce = os.urandom(16)
    _, xml = _quote(device, nonce, pcrs=(0, 1))
    verdict = _verify(device, "xr-tpm-quote", xml, nonce)
    finding = next(f for f in verdict.findings if f.id == FindingId.TPM_PCR_SELECTION)
    assert "missing 2,3,4,5,6,7,10" in (finding.found or "")


@pytest.mark.parametrize(("offset", "value", "finding_id"), [
    (0, b"\x00", FindingId.TPM_NOT_GENERATED),  # magic
    (5, b"\x17", FindingId.TPM_NOT_A_QUOTE),  # type 0x8017 (TPM_ST_ATTEST_CERTIFY)
])
def test_an_attestation_that_is_not_a_tpm_quote_is_rejected(device: Device, offset: int, value: bytes,
                                                           finding_id: str) -> None:
    nonce = os.urandom(16)
    quote = device.tpm.quote(nonce, PCRS)
    changed = quote.message[:offset] + value + quote.message[offset + 1:]
    verdict = _verify(device, "xr-tpm-quote", quote_reply({NODE: (dataclasses.replace(quote, message=changed), 1)}),
                      nonce)
    assert finding_id in _ids(verdict) and not verdict.trusted
    assert not device.tpm.checkquote(dataclasses.replace(quote, message=changed), nonce, quote.pcrs)


def test_a_truncated_quote_is_a_finding(device: Device) -> None:
    nonce = os.urandom(16)
    quote = device.tpm.quote(nonce, PCRS)
    cut = dataclasses.replace(quote, message=quote.message[:40])
    verdict = _verify(device, "xr-tpm-quote", quote_reply({NODE: (cut, 1)}), nonce)
    finding = next(f for f in verdict.findings if f.id == FindingId.TPM_QUOTE_MALFORMED)
    assert "left" in (finding.found or "")


def test_a_node_without_a_certificate_proves_nothing(device: Device) -> None:
    nonce = os.urandom(16)
    _, xml = _quote(device, nonce)
    certificate = device.certificate_xml.replace(NODE.encode(), b"0/RP1/CPU0")
    verdict = _verify(device, "xr-tpm-quote", xml, nonce, certificate=certificate)
    assert FindingId.TPM_NODE_MISSING in _ids(verdict) and not verdict.trusted


def test_a_reply_with_a_dtd_is_refused_unparsed(device: Device) -> None:
    hostile = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
               b"<rpc-reply>&b;</rpc-reply>")
    verdict = _verify(device, "xr-tpm-quote", hostile, os.urandom(16))
    assert FindingId.TPM_REPLY_MALFORMED in _ids(verdict)


def test_an_rpc_error_is_a_finding_naming_it(device: Device) -> None:
    error = (b'<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><rpc-error><error-type>application'
             b"</error-type><error-message>TPM not ready</error-message></rpc-error></rpc-reply>")
    verdict = _verify(device, "xr-tpm-quote", error, os.urandom(16))
    assert any("TPM not ready" in (f.found or "") for f in verdict.findings)


# --- up-time ---------------------------------------------------------------------------------

def test_up_time_going_backwards_without_a_tpm_reset_is_an_unreported_reboot(device: Device) -> None:
    _, earlier = _quote(device, os.urandom(16), up_time=5000)
    nonce = os.urandom(16)
    _, later = _quote(device, nonce, up_time=40)
    verdict = _verify(device, "xr-tpm-quote", later, nonce, previous_quote=earlier)
    finding = next(f for f in verdict.findings if f.id == FindingId.TPM_UPTIME_DECREASED)
    assert "5000" in (finding.expected or "") and "40 s" in (finding.found or "")
    _, onwards = _quote(device, nonce, up_time=6000)
    assert _verify(device, "xr-tpm-quote", onwards, nonce, previous_quote=earlier).trusted


def test_a_previous_quote_of_another_key_says_nothing(device: Device) -> None:
    nonce = os.urandom(16)
    quote, later = _quote(device, nonce, up_time=40)
    forged = dataclasses.replace(quote, signature=quote.signature[:-1] + bytes([quote.signature[-1] ^ 1]))
    verdict = _verify(device, "xr-tpm-quote", later, nonce, previous_quote=quote_reply({NODE: (forged, 99999)}))
    assert verdict.trusted


# --- boot log --------------------------------------------------------------------------------

def test_a_boot_log_that_replays_to_the_quote_is_trusted(device: Device) -> None:
    nonce = os.urandom(16)
    _, quote_xml = _quote(device, nonce)
    verdict = _verify(device, "xr-tpm-boot-log", boot_log_reply({NODE: (BOOT, 1000)}), quote=quote_xml)
    assert verdict.trusted, [f.message for f in verdict.findings]
    events = verdict.authenticated["nodes"][0]["events"]
    assert [e["data"] for e in events] == ["ROMMON", "boot loader", "kernel", "package xr-os-mbb"]


def test_a_boot_log_that_does_not_replay_is_rejected(device: Device) -> None:
    nonce = os.urandom(16)
    _, quote_xml = _quote(device, nonce)
    changed = BOOT[:3] + [dataclasses.replace(BOOT[3], digest=hashlib.sha256(b"xr-os-mbb 24.2.2").digest())]
    verdict = _verify(device, "xr-tpm-boot-log", boot_log_reply({NODE: (changed, 1000)}), quote=quote_xml)
    finding = next(f for f in verdict.findings if f.id == FindingId.TPM_BOOT_LOG_MISMATCH)
    assert "PCR 7" in finding.message and not verdict.trusted


def test_a_log_without_its_quote_is_not_trusted(device: Device) -> None:
    verdict = _verify(device, "xr-tpm-boot-log", boot_log_reply({NODE: (BOOT, 1000)}))
    assert FindingId.TPM_NODE_MISSING in _ids(verdict) and not verdict.trusted


# --- IMA log ---------------------------------------------------------------------------------

def test_an_ima_log_that_replays_to_pcr_10_is_trusted(device: Device) -> None:
    _, quote_xml = _quote(device, os.urandom(16))
    verdict = _verify(device, "xr-tpm-ima-log", ima_log_reply({NODE: (device.ima, 1000)}), quote=quote_xml)
    assert verdict.trusted, [f.message for f in verdict.findings]
    node = verdict.authenticated["nodes"][0]
    assert [f["file"] for f in node["files"]] == [name for name, _ in FILES]
    assert node["end"]["event"] == len(FILES)


def test_an_incremental_ima_log_replays_from_where_the_last_one_ended(device: Device) -> None:
    quote = device.tpm.quote(os.urandom(16), PCRS)
    first = _verify(device, "xr-tpm-ima-log", ima_log_reply({NODE: (device.ima[:1], 1)}),
                    quote=quote_reply({NODE: (quote, 1)}))
    assert not first.trusted  # one entry of three does not reach the quoted PCR 10
    start = {"event": 1, "pcr": _pcr_after(device.ima[:1]).hex()}
    rest = _verify(device, "xr-tpm-ima-log", ima_log_reply({NODE: (device.ima[1:], 1)}),
                   quote=quote_reply({NODE: (quote, 1)}), ima_start={NODE: start})
    assert rest.trusted, [f.message for f in rest.findings]


def _pcr_after(entries) -> bytes:
    value = bytes(32)
    for entry in entries:
        value = hashlib.sha256(value + entry.template_hash()).digest()
    return value


def test_an_edited_ima_entry_is_rejected(device: Device) -> None:
    _, quote_xml = _quote(device, os.urandom(16))
    renamed = [device.ima[0], dataclasses.replace(device.ima[1], filename="/opt/cisco/bin/innocent"), device.ima[2]]
    verdict = _verify(device, "xr-tpm-ima-log",
                      ima_log_reply({NODE: (renamed, 1)}, template_hashes={2: device.ima[1].template_hash()}),
                      quote=quote_xml)
    assert FindingId.TPM_IMA_TEMPLATE_MISMATCH in _ids(verdict) and not verdict.trusted


def test_a_removed_ima_entry_is_rejected(device: Device) -> None:
    _, quote_xml = _quote(device, os.urandom(16))
    kept = [device.ima[0], dataclasses.replace(device.ima[2], number=2)]
    verdict = _verify(device, "xr-tpm-ima-log", ima_log_reply({NODE: (kept, 1)}), quote=quote_xml)
    assert FindingId.TPM_IMA_LOG_MISMATCH in _ids(verdict) and not verdict.trusted


def test_ima_entries_logged_after_the_quote_are_not_covered(device: Device) -> None:
    _, quote_xml = _quote(device, os.urandom(16))
    late = ima_entry(len(FILES) + 1, *LATE)
    verdict = _verify(device, "xr-tpm-ima-log", ima_log_reply({NODE: ([*device.ima, late], 1)}), quote=quote_xml)
    finding = next(f for f in verdict.findings if f.id == FindingId.TPM_IMA_NOT_QUOTED)
    assert finding.severity == Severity.WARNING and verdict.trusted
    assert verdict.authenticated["nodes"][0]["end"]["event"] == len(FILES)


def test_an_ima_template_it_cannot_recompute_is_a_finding(device: Device) -> None:
    _, quote_xml = _quote(device, os.urandom(16))
    xml = ima_log_reply({NODE: (device.ima, 1)}).replace(b"<ima-template>ima-ng<", b"<ima-template>ima-sig<")
    verdict = _verify(device, "xr-tpm-ima-log", xml, quote=quote_xml)
    assert FindingId.TPM_IMA_UNSUPPORTED in _ids(verdict)


def test_a_tpm_reset_is_reported_as_a_reboot(device: Device) -> None:
    """A real TPM reset (swtpm's _TPM_Init, then Startup(CLEAR)) raises the signed resetCount:
    up-time going back is then a reboot, not a fault. Runs last: it clears the PCRs."""
    _, before = _quote(device, os.urandom(16), up_time=9000)
    subprocess.run(["swtpm_ioctl", "--tcp", f"127.0.0.1:{device.tpm.ctrl_port}", "-i"], check=True,
                   capture_output=True)
    device.tpm.run("tpm2_startup", "-c")
    nonce = os.urandom(16)
    _, after = _quote(device, nonce, up_time=3)
    verdict = _verify(device, "xr-tpm-quote", after, nonce, previous_quote=before)
    assert FindingId.TPM_REBOOTED in _ids(verdict) and verdict.trusted


# --- parsers never raise past their own error --------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_tpm_structures_parse_or_say_why(data: bytes) -> None:
    for parse in (parse_attest, parse_signature):
        try:
            parse(data)
        except TPMFormatError as exc:
            assert exc.expected and exc.found is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_replies_parse_or_say_why(data: bytes) -> None:
    for parse in (parse_quote, parse_certificates, parse_boot_log, parse_ima_log):
        try:
            parse(data)
        except ReplyError as exc:
            assert exc.expected
