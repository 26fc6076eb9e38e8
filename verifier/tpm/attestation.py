"""Verify IOS XR TPM attestation (Cisco-IOS-XR-remote-attestation-act replies), node by node.

A quote (`attest-platform-config-registers`) is trusted only when, for every node:
  (1) the node's attestation certificate (`get-certificate`, same poll) chains through the CAs
      listed to a pinned TPM vendor root (`check_ca_path`: signatures, CA flags, validity)
      and, against a trust store, is the attestation key pinned for the device's node (1b);
  (2) `pcr-quote` is a TPMS_ATTEST the TPM made (`TPM_GENERATED_VALUE`) of a quote
      (`TPM_ST_ATTEST_QUOTE`), and `pcr-quote-signature` verifies over it with the certificate's key;
  (3) its `extraData` is the nonce sent;
  (4) it selects one PCR bank covering every PCR asked for;
  (5) the PCR values the reply lists hash (in selection order) to the quote's `pcrDigest`;
  (6) `up-time` is not below the previous quote's of the node unless the TPM's signed
      `resetCount` says it rebooted.
An event log is trusted when its quote (same poll) is, and replays to the quoted PCRs:
  (7) boot log: every event (but EV_NO_ACTION) extends its PCR in the quoted bank from zero;
  (8) IMA log (ima-ng): each entry's template hash is recomputed from its file hash and name,
      and the entries extend PCR 10 from the value the previous stored log ended at (zero for
      the first); the quoted value must be reached (entries logged after the quote are not
      covered by it: reported, not trusted).
Every failure is a finding (verifier/findings.py `tpm.*`, `signature.*`, `nonce.*`); no input raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ..chain import fingerprint, is_ca, load_der_certificate
from ..findings import FindingId, Severity
from ..policy import Policy
from ..profiles._common import Anchors, ProfileVerdict, certificate_summary, check_ca_path, check_nonce_given
from ..signature import KeyPolicyError, algorithm_name, check_key_policy
from .replies import (
    BootEvent,
    ImaEvent,
    QuoteNode,
    ReplyError,
    parse_boot_log,
    parse_certificates,
    parse_ima_log,
    parse_quote,
)
from .structures import (
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    TPMFormatError,
    extend,
    parse_attest,
    parse_signature,
    pcr_digest,
    verify_quote_signature,
)

__all__ = ["IMA_PCR", "EV_NO_ACTION", "QuotedNode", "TPMInputs", "attestation_certificates", "verify_tpm_output"]

#: The PCR Linux IMA extends (CONFIG_IMA_MEASURE_PCR_IDX).
IMA_PCR = 10
#: TCG PC Client: an event that is logged but never extended.
EV_NO_ACTION = 0x00000003
_DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
_KIND_PROFILE = {"xr-tpm-certificate": "certificate", "xr-tpm-quote": "quote",
                 "xr-tpm-boot-log": "boot-log", "xr-tpm-ima-log": "ima-log"}


@dataclass(frozen=True)
class TPMInputs:
    """What verifying one TPM output needs beside its own bytes (all from the same poll, as
    the collector stored them): the `get-certificate` reply, the quote reply (for a log), the
    PCRs asked for, the device's previous quote or its values (for `up-time`), and where the last stored IMA
    log of each node ended (`{node: {"event": n, "pcr": hex}}`)."""

    certificate: bytes | None = None
    quote: bytes | None = None
    requested_pcrs: tuple[int, ...] = ()
    previous_quote: bytes | None = None
    ima_start: Mapping[str, Any] | None = None
    #: The previous verified quote's (up-time, resetCount) by node, as the collector recorded
    #: it (the metadata's `tpm_previous`); when given, `previous_quote` is not read.
    previous: Mapping[str, tuple[int, int]] | None = None


@dataclass(frozen=True)
class QuotedNode:
    """A node whose quote verified: the PCR values it binds (one bank)."""

    location: str
    bank: str
    pcrs: dict[int, bytes]
    reset_count: int
    up_time: int | None
    certificate: x509.Certificate


def verify_tpm_output(kind: str, raw: bytes, inputs: TPMInputs, *, anchors: Anchors, nonce: bytes | None,
                      when: dt.datetime, policy: Policy) -> ProfileVerdict:
    """The verdict on one stored TPM output of `kind` (verifier/stored.py KINDS: xr-tpm-*)."""
    verdict = ProfileVerdict(profile=f"xr-tpm-{_KIND_PROFILE.get(kind, kind)}", verified_at=when)
    certificates = _certificates(verdict, raw if kind == "xr-tpm-certificate" else inputs.certificate,
                                 anchors, when, policy)
    if kind == "xr-tpm-certificate":
        if certificates:
            verdict.signed = True
            verdict.authenticated = {"nodes": [{"node": n, "certificate": certificate_summary(c)}
                                               for n, c in sorted(certificates.items())]}
        return verdict
    quote_raw = raw if kind == "xr-tpm-quote" else inputs.quote
    if quote_raw is None:
        verdict.add(FindingId.TPM_NODE_MISSING, Severity.ERROR,
                    "the log has no quote of the same poll to replay to, so nothing binds it to the TPM",
                    "the poll's attest-platform-config-registers reply", "none")
        return verdict
    quote_nonce = nonce if kind == "xr-tpm-quote" else None
    quoted = _verify_quote(verdict, quote_raw, certificates, inputs, quote_nonce, policy,
                           check_nonce=kind == "xr-tpm-quote")
    if kind == "xr-tpm-quote":
        verdict.signed = True
        if quoted is not None and not verdict.errors:
            verdict.authenticated = {"nodes": [_summary(node) for node in quoted]}
        return verdict
    if quoted is None:
        return verdict
    by_node = {node.location: node for node in quoted}
    try:
        logs = parse_boot_log(raw) if kind == "xr-tpm-boot-log" else parse_ima_log(raw)
    except ReplyError as exc:
        verdict.add(FindingId.TPM_REPLY_MALFORMED, Severity.ERROR, str(exc), exc.expected, exc.found)
        return verdict
    verdict.signed = True
    results = []
    for log in logs:
        node = by_node.get(log.location)
        if node is None:
            verdict.add(FindingId.TPM_NODE_MISSING, Severity.ERROR,
                        f"node {log.location}: its log has no verified quote in the same poll",
                        f"one of {', '.join(sorted(by_node)) or 'none'}", log.location)
            continue
        if kind == "xr-tpm-boot-log":
            result = _replay_boot(verdict, node, log.events)
        else:
            result = _replay_ima(verdict, node, log.events, (inputs.ima_start or {}).get(log.location))
        if result is not None:
            results.append(result)
    if len(results) == len(logs) and not verdict.errors:
        verdict.authenticated = {"nodes": results}
    return verdict


def attestation_certificates(raw: bytes, *, roots: Sequence[x509.Certificate], when: dt.datetime,
                             policy: Policy) -> tuple[ProfileVerdict, dict[str, x509.Certificate]]:
    """A `get-certificate` reply verified under `roots` (roots and sub-CAs; step 1): its verdict
    and each node's attestation certificate whose chain holds, by node location (what
    enrollment shows and pins)."""
    verdict = ProfileVerdict(profile="xr-tpm-certificate", verified_at=when)
    certificates = _certificates(verdict, raw, Anchors(tuple(roots)), when, policy)
    verdict.signed = bool(certificates)
    return verdict, certificates


def _certificates(verdict: ProfileVerdict, raw: bytes | None, anchors: Anchors, when: dt.datetime,
                  policy: Policy) -> dict[str, x509.Certificate]:
    """(1) Each node's attestation certificate whose chain holds, by node location."""
    if not anchors:
        verdict.add(FindingId.TRUST_NO_ROOTS, Severity.ERROR,
                    "no anchor: none configured, the device is not enrolled, or no root is inside its trust window",
                    "a pinned TPM vendor root", "none")
        return {}
    if raw is None:
        verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                    "no get-certificate reply of the same poll: the quote's key is not certified",
                    "the poll's get-certificate reply", "none")
        return {}
    try:
        nodes = parse_certificates(raw)
    except ReplyError as exc:
        verdict.add(FindingId.TPM_REPLY_MALFORMED, Severity.ERROR, str(exc), exc.expected, exc.found)
        return {}
    result = {}
    for node in nodes:
        try:
            certs = [load_der_certificate(der) for der in node.certificates]
        except ValueError as exc:
            verdict.add(FindingId.OUTPUT_BAD_CERTIFICATE, Severity.ERROR, f"node {node.location}: {exc}",
                        "DER X.509 certificates", str(exc)[:80])
            continue
        leaves = [c for c in certs if not is_ca(c)]
        if len(leaves) != 1:
            verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                        f"node {node.location}: expected one attestation (non-CA) certificate",
                        "1", str(len(leaves)))
            continue
        leaf = leaves[0]
        verdict.leaf = verdict.leaf or leaf
        # The vendor root is pinned; the sub-CA listed need not be (it is checked as issued by it).
        ok = check_ca_path(verdict, leaf, [c for c in certs if c is not leaf], anchors, when)
        try:
            check_key_policy(leaf.public_key(), policy)
        except KeyPolicyError as exc:
            verdict.add(exc.finding_id, Severity.ERROR, f"node {node.location}: {exc}", exc.expected, exc.found)
            ok = False
        if ok and anchors.attestation_keys is not None:
            ok = _check_pinned_key(verdict, node.location, leaf, anchors)
        if ok:
            result[node.location] = leaf
    return result


def _check_pinned_key(verdict: ProfileVerdict, location: str, leaf: x509.Certificate, anchors: Anchors) -> bool:
    """(1b) The node's (chain-verified) attestation certificate is the one pinned for the device's
    node: every device's key chains to the same vendor root, so the chain alone proves "some
    TPM", not this device's."""
    pinned = dict(anchors.attestation_keys or ()).get(location)
    if pinned is None:
        verdict.add(FindingId.IDENTITY_NOT_PINNED, Severity.ERROR,
                    f"node {location}: device {anchors.device!r} has no attestation key pinned for this node, so a "
                    "quote relayed from any device under the same TPM vendor root would verify as its own; pin it "
                    f"with `dossier enroll -i INVENTORY --device {anchors.device}` (shows the key's certificate "
                    "to confirm)", f"an attestation key pinned for {anchors.device} {location}",
                    f"none (the reply's is SHA-256 {fingerprint(leaf)})")
        return False
    if fingerprint(pinned) != fingerprint(leaf):
        verdict.add(FindingId.IDENTITY_MISMATCH, Severity.ERROR,
                    f"node {location}: the attestation key is another TPM's than the one pinned for "
                    f"{anchors.device!r} (a quote relayed from another device, or an inventory entry that points "
                    "at the wrong device)", f"pinned certificate SHA-256 {fingerprint(pinned)}",
                    f"SHA-256 {fingerprint(leaf)} ({leaf.subject.rfc4514_string()[:120]})")
        return False
    return True


def _verify_quote(verdict: ProfileVerdict, raw: bytes, certificates: Mapping[str, x509.Certificate],
                  inputs: TPMInputs, nonce: bytes | None, policy: Policy, *,
                  check_nonce: bool) -> list[QuotedNode] | None:
    """Steps (2)-(6) for every node; the nodes whose quote verified, None when the reply is unusable."""
    try:
        nodes = parse_quote(raw)
    except ReplyError as exc:
        verdict.add(FindingId.TPM_REPLY_MALFORMED, Severity.ERROR, str(exc), exc.expected, exc.found)
        return None
    if check_nonce:
        if nonce is None:
            check_nonce_given(verdict, None, policy)
        else:
            verdict.nonce = nonce
    previous = (dict(inputs.previous) if inputs.previous is not None
                else _previous_quotes(inputs.previous_quote, certificates))
    quoted = []
    for node in nodes:
        leaf = certificates.get(node.location)
        if leaf is None:
            verdict.add(FindingId.TPM_NODE_MISSING, Severity.ERROR,
                        f"node {node.location}: no verified attestation certificate for it, so its quote proves nothing",
                        f"a certificate for {node.location}", f"certificates for {', '.join(sorted(certificates)) or 'none'}")
            continue
        result = _verify_node(verdict, node, leaf, nonce if check_nonce else None, inputs.requested_pcrs)
        if result is None:
            continue
        _check_up_time(verdict, result, previous.get(node.location))
        quoted.append(result)
    return quoted


def _verify_node(verdict: ProfileVerdict, node: QuoteNode, leaf: x509.Certificate, nonce: bytes | None,
                 requested: Sequence[int]) -> QuotedNode | None:
    where = f"node {node.location}"
    try:
        attest = parse_attest(node.quote)
        signature = parse_signature(node.signature)
    except TPMFormatError as exc:
        verdict.add(FindingId.TPM_QUOTE_MALFORMED, Severity.ERROR, f"{where}: {exc}", exc.expected, exc.found)
        return None
    # (2) made by a TPM, a quote, signed by the certified key
    if attest.magic != TPM_GENERATED_VALUE:
        verdict.add(FindingId.TPM_NOT_GENERATED, Severity.ERROR,
                    f"{where}: pcr-quote was not generated by a TPM (its magic is not TPM_GENERATED_VALUE)",
                    f"0x{TPM_GENERATED_VALUE:08x}", f"0x{attest.magic:08x}")
        return None
    if attest.type != TPM_ST_ATTEST_QUOTE:
        verdict.add(FindingId.TPM_NOT_A_QUOTE, Severity.ERROR, f"{where}: pcr-quote attests something else than PCRs",
                    f"TPM_ST_ATTEST_QUOTE (0x{TPM_ST_ATTEST_QUOTE:04x})", f"0x{attest.type:04x}")
        return None
    key = leaf.public_key()
    verdict.signature_algorithm = algorithm_name(key)
    try:
        verify_quote_signature(key, node.quote, signature)
    except InvalidSignature:
        verdict.add(FindingId.SIGNATURE_INVALID, Severity.ERROR,
                    f"{where}: pcr-quote-signature does not verify with the attestation certificate's key: the quote "
                    "was signed by another key, or changed", "a signature by the certified attestation key",
                    "a signature that does not verify")
        return None
    ok = True
    # (3) the nonce sent
    if nonce is not None and not hmac.compare_digest(attest.extra_data, nonce):
        verdict.add(FindingId.NONCE_MISMATCH, Severity.ERROR,
                    f"{where}: the quote's extraData is not the nonce sent: a replayed or relayed quote",
                    nonce.hex(), attest.extra_data.hex())
        ok = False
    # (4) one bank, covering what was asked
    if len(attest.selections) != 1:
        verdict.add(FindingId.TPM_PCR_SELECTION, Severity.ERROR,
                    f"{where}: the quote must select one PCR bank (the reply lists one value per PCR)",
                    "1 bank", f"{len(attest.selections)} banks")
        return None
    selection = attest.selections[0]
    missing = sorted(set(requested) - set(selection.indexes))
    if missing:
        verdict.add(FindingId.TPM_PCR_SELECTION, Severity.ERROR,
                    f"{where}: the quote does not cover every PCR asked for",
                    f"PCRs {_pcr_list(requested)}", f"PCRs {_pcr_list(selection.indexes)} (missing {_pcr_list(missing)})")
        ok = False
    # (5) the listed values are the quoted ones
    size = _DIGEST_SIZES[selection.bank]
    absent = [i for i in selection.indexes if len(node.pcrs.get(i, b"")) != size]
    if absent:
        verdict.add(FindingId.TPM_PCR_DIGEST_MISMATCH, Severity.ERROR,
                    f"{where}: the reply does not list a {selection.bank} value for every quoted PCR",
                    f"{size}-byte values for PCRs {_pcr_list(selection.indexes)}", f"none or another size for {_pcr_list(absent)}")
        return None
    values = [node.pcrs[i] for i in selection.indexes]
    computed = pcr_digest(signature.hash, values)
    if not hmac.compare_digest(computed, attest.pcr_digest):
        verdict.add(FindingId.TPM_PCR_DIGEST_MISMATCH, Severity.ERROR,
                    f"{where}: the PCR values listed are not the ones the TPM quoted (their digest differs)",
                    attest.pcr_digest.hex(), computed.hex())
        return None
    if not ok:
        return None
    return QuotedNode(node.location, selection.bank, {i: node.pcrs[i] for i in selection.indexes},
                      attest.reset_count, node.up_time, leaf)


def _pcr_list(indexes: Sequence[int]) -> str:
    return ",".join(str(i) for i in indexes) or "none"


def _previous_quotes(raw: bytes | None, certificates: Mapping[str, x509.Certificate]) -> dict[str, tuple[int, int]]:
    """The previous stored quote's (up-time, resetCount) by node, for nodes whose previous quote
    verifies with the same certified key (an unverifiable one says nothing)."""
    if raw is None:
        return {}
    try:
        nodes = parse_quote(raw)
    except ReplyError:
        return {}
    result = {}
    for node in nodes:
        leaf = certificates.get(node.location)
        if leaf is None or node.up_time is None:
            continue
        try:
            attest = parse_attest(node.quote)
            verify_quote_signature(leaf.public_key(), node.quote, parse_signature(node.signature))
        except (TPMFormatError, InvalidSignature):
            continue
        result[node.location] = (node.up_time, attest.reset_count)
    return result


def _check_up_time(verdict: ProfileVerdict, node: QuotedNode, previous: tuple[int, int] | None) -> None:
    """(6) `up-time` going backwards is a reboot; the TPM's signed resetCount must say so."""
    if previous is None or node.up_time is None:
        return
    up_time, resets = previous
    if node.reset_count > resets:
        verdict.add(FindingId.TPM_REBOOTED, Severity.INFO,
                    f"node {node.location} rebooted since the previous quote (the TPM's resetCount rose)",
                    f"resetCount {resets}", f"resetCount {node.reset_count}, up-time {node.up_time} s")
    elif node.up_time < up_time:
        verdict.add(FindingId.TPM_UPTIME_DECREASED, Severity.ERROR,
                    f"node {node.location}: up-time went backwards without a reboot the TPM recorded (its resetCount "
                    "did not rise): an unreported reboot, or a replayed or forged up-time",
                    f"up-time of at least {up_time} s (resetCount {resets})",
                    f"{node.up_time} s (resetCount {node.reset_count})")


def _replay_boot(verdict: ProfileVerdict, node: QuotedNode, events: Sequence[BootEvent]) -> dict[str, Any] | None:
    """(7) Replay the boot log into the quoted bank and compare every PCR it extends."""
    bank, size = node.bank, _DIGEST_SIZES[node.bank]
    replayed: dict[int, bytes] = {}
    measurements = []
    for event in events:
        if event.event_type == EV_NO_ACTION:
            continue
        digest = event.digests.get(bank)
        if digest is None or len(digest) != size:
            verdict.add(FindingId.TPM_BOOT_LOG_MISMATCH, Severity.ERROR,
                        f"node {node.location}: boot event {event.number} has no {bank} digest, so it cannot be replayed",
                        f"a {size}-byte {bank} digest", "none" if digest is None else f"{len(digest)} bytes")
            return None
        replayed[event.pcr_index] = extend(bank, replayed.get(event.pcr_index, bytes(size)), digest)
        measurements.append({"event": event.number, "pcr": event.pcr_index, "type": event.event_type,
                             "digest": digest.hex(), "data": _event_text(event.data)})
    ok = True
    for index, value in sorted(replayed.items()):
        quoted = node.pcrs.get(index)
        if quoted is None:
            verdict.add(FindingId.TPM_BOOT_LOG_MISMATCH, Severity.ERROR,
                        f"node {node.location}: the boot log extends PCR {index}, which the quote does not cover",
                        f"PCR {index} among the quoted PCRs {_pcr_list(sorted(node.pcrs))}", "not quoted")
            ok = False
        elif not hmac.compare_digest(quoted, value):
            verdict.add(FindingId.TPM_BOOT_LOG_MISMATCH, Severity.ERROR,
                        f"node {node.location}: the boot log does not replay to the quoted PCR {index}",
                        quoted.hex(), value.hex())
            ok = False
    if not ok:
        return None
    return {"node": node.location, "bank": bank, "events": measurements}


def _event_text(data: bytes) -> str:
    """Event data as shown to people: printable ASCII as text, else hex (bounded)."""
    head = data[:256]
    if head.isascii() and all(32 <= b < 127 or b == 0 for b in head):
        return head.rstrip(b"\0").decode("ascii")
    return head.hex()


def ima_ng_template(filedata_hash: str, filename: str) -> bytes:
    """The ima-ng template data: the `d-ng` field (`<alg>:\\0` + digest) then `n-ng` (the
    name, NUL-terminated), each led by its little-endian u32 length, as Linux hashes it.
    Raises ValueError for a file hash that is not `alg:hex`."""
    algorithm, _, digest_hex = filedata_hash.partition(":")
    digest = bytes.fromhex(digest_hex)
    if algorithm not in _DIGEST_SIZES or len(digest) != _DIGEST_SIZES[algorithm]:
        raise ValueError(f"expected 'sha1|sha256|sha384|sha512:<hex digest>', found {filedata_hash[:80]!r}")
    d_ng = algorithm.encode() + b":\0" + digest
    n_ng = filename.encode("utf-8", "surrogatepass") + b"\0"
    return struct.pack("<I", len(d_ng)) + d_ng + struct.pack("<I", len(n_ng)) + n_ng


def _replay_ima(verdict: ProfileVerdict, node: QuotedNode, events: Sequence[ImaEvent],
                start: Any) -> dict[str, Any] | None:
    """(8) Recompute each ima-ng template hash and replay PCR 10 up to the quoted value."""
    where = f"node {node.location}"
    bank, size = node.bank, _DIGEST_SIZES[node.bank]
    quoted = node.pcrs.get(IMA_PCR)
    if quoted is None:
        verdict.add(FindingId.TPM_PCR_SELECTION, Severity.ERROR, f"{where}: the quote does not cover the IMA PCR",
                    f"PCR {IMA_PCR}", f"PCRs {_pcr_list(sorted(node.pcrs))}")
        return None
    value, first = bytes(size), 1
    if isinstance(start, Mapping):
        try:
            value = bytes.fromhex(str(start.get("pcr")))
            first = int(start.get("event")) + 1
        except (TypeError, ValueError):
            value = b""
        if len(value) != size:
            verdict.add(FindingId.TPM_IMA_LOG_MISMATCH, Severity.ERROR,
                        f"{where}: the recorded start of this incremental IMA log is unusable",
                        f"a {size}-byte PCR {IMA_PCR} value and an event number", repr(dict(start))[:120])
            return None
    # One RPC serves every node from the lowest node's start: what this node verified before is skipped.
    events = [event for event in events if event.number >= first]
    reached = hmac.compare_digest(value, quoted)  # the quote may precede every new entry
    files, covered = [], 0
    for position, event in enumerate(events):
        if event.number != first + position:
            verdict.add(FindingId.TPM_IMA_LOG_MISMATCH, Severity.ERROR,
                        f"{where}: IMA events must follow each other from the last one stored",
                        f"event {first + position}", f"event {event.number}")
            return None
        if event.template != "ima-ng" or event.template_hash_algorithm not in ("", bank):
            verdict.add(FindingId.TPM_IMA_UNSUPPORTED, Severity.ERROR,
                        f"{where}: IMA event {event.number} uses a template this verifier cannot recompute",
                        f"ima-ng with a {bank} template hash",
                        f"{event.template[:40]} with {event.template_hash_algorithm[:20] or 'no'} template hash")
            return None
        try:
            template = hashlib.new(bank, ima_ng_template(event.filedata_hash, event.filename)).digest()
        except ValueError as exc:
            verdict.add(FindingId.TPM_IMA_TEMPLATE_MISMATCH, Severity.ERROR,
                        f"{where}: IMA event {event.number}: file hash {exc}", "alg:hex", event.filedata_hash[:80])
            return None
        if not hmac.compare_digest(template, event.template_hash):
            verdict.add(FindingId.TPM_IMA_TEMPLATE_MISMATCH, Severity.ERROR,
                        f"{where}: IMA event {event.number} ({event.filename[:200]}): its template hash is not the hash "
                        "of its file hash and name (an edited entry)", template.hex(), event.template_hash.hex())
            return None
        if event.pcr_index != IMA_PCR:
            verdict.add(FindingId.TPM_IMA_LOG_MISMATCH, Severity.ERROR,
                        f"{where}: IMA event {event.number} extends PCR {event.pcr_index}", f"PCR {IMA_PCR}",
                        f"PCR {event.pcr_index}")
            return None
        value = extend(bank, value, template)
        files.append({"event": event.number, "file": event.filename, "hash": event.filedata_hash})
        if hmac.compare_digest(value, quoted):
            reached, covered = True, position + 1
    if not reached:
        verdict.add(FindingId.TPM_IMA_LOG_MISMATCH, Severity.ERROR,
                    f"{where}: the IMA log does not replay to the quoted PCR {IMA_PCR} (an entry removed, changed "
                    "or reordered, or a file measured but not logged)", quoted.hex(), value.hex())
        return None
    if covered < len(events):
        verdict.add(FindingId.TPM_IMA_NOT_QUOTED, Severity.WARNING,
                    f"{where}: {len(events) - covered} IMA entries were logged after the quote; they are not "
                    "covered by it and are appraised at the next poll", f"{len(events)} entries quoted",
                    f"{covered} quoted")
        files = files[:covered]
    last = files[-1]["event"] if files else first - 1
    return {"node": node.location, "bank": bank, "files": files,
            "end": {"event": last, "pcr": quoted.hex()}}


def _summary(node: QuotedNode) -> dict[str, Any]:
    return {"node": node.location, "bank": node.bank, "pcrs": {str(i): v.hex() for i, v in sorted(node.pcrs.items())},
            "reset_count": node.reset_count, "up_time": node.up_time,
            "certificate": certificate_summary(node.certificate)}
