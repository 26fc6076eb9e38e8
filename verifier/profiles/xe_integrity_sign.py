"""Profile `xe-integrity-sign`: IOS XE `show platform integrity [sign [nonce N]]`.

Only `header || PCR0 || PCR8` is signed (RSA PKCS#1 v1.5 SHA-256, SUDI key). The printed
hashes are bound only by recomputing the PCRs from them:

    E(p, m) = SHA-256(p || SHA-256(hexdecode(m)))
    PCR0 = E(E(0^32, Boot 0 Hash), Boot Loader Hash)      (boot 0 first, whatever the print order)
    PCR8 = E(...E(0^32, os_1)..., os_n)                   (OS hashes in printed order)

`Platform` and every `* Version` label are covered by nothing: they are reported as
unauthenticated, never as verified. Output without the signature lines is `output.unsigned`
(never trusted), whatever the caller asked for: a stripped signature is a downgrade.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..findings import FindingId, Severity
from ..policy import Policy
from ._common import (
    MAX_U32,
    Anchors,
    Measurements,
    ProfileVerdict,
    check_nonce_given,
    check_sudi_chain,
    decode_text,
    fold,
    parse_hex_signature,
    rsa_sha256_ok,
    xe_header,
)
from .signer import Signer

__all__ = ["IntegrityOutput", "parse_integrity_output", "verify_integrity_sign"]

PROFILE = "xe-integrity-sign"
DEVICE_ERROR = "% Error retrieving integrity data"
UNSIGNED_LABELS = ("Platform", "Boot 0 Version", "Boot Loader Version", "OS Version")
_HASH_LABELS = {  # label -> accepted lengths in hex digits (upstream: 64 or 128 only)
    "Boot 0 Hash": (64,),
    "Boot Loader Hash": (64, 128),  # 64 on the C1111
    "OS Hash": (64, 128),
}
_PCR_LABELS = ("PCR0", "PCR8")
_KNOWN = (*UNSIGNED_LABELS, *_HASH_LABELS, "OS Hashes", *_PCR_LABELS, "Signature version", "Signature")
_LABEL_LINE = re.compile(r"(?P<label>[A-Za-z0-9 ]+?):(?:[ \t]+(?P<value>.*?))?[ \t]*")
_FILE_HASH = re.compile(r"(?P<name>[^\s:]+):[ \t]+(?P<value>[0-9A-Fa-f]+)[ \t]*")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_NONCE_ECHO = re.compile(r"\bsign\s+nonce\s+\d+")  # only for a hint, never the expected value


@dataclass
class IntegrityOutput:
    """The labelled values as printed (empty string for a label printed with no value)."""

    values: dict[str, str] = field(default_factory=dict)
    os_hashes: list[tuple[str, str]] = field(default_factory=list)
    signature: bytes | None = None
    version: int | None = None
    device_error: bool = False
    echoes_nonce: bool = False


def parse_integrity_output(text: str, verdict: ProfileVerdict) -> IntegrityOutput:
    """Parse `Label: value` lines. Lines before the first label (echoed command, prompt) and
    after the signature (prompt) are ignored; any other unknown line is malformed output."""
    out = IntegrityOutput()
    lines = text.split("\n")
    labelled = [i for i, line in enumerate(lines) if _label(line) is not None]
    if not labelled:
        return out
    out.echoes_nonce = any(_NONCE_ECHO.search(line) for line in lines[: labelled[0] + 1])
    index = labelled[0]
    in_os_list = False
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        index += 1
        if stripped == DEVICE_ERROR:
            out.device_error = True
            continue
        found = _label(line)
        if found is None:
            file_hash = _FILE_HASH.fullmatch(stripped) if in_os_list else None
            if file_hash:
                out.os_hashes.append((file_hash.group("name"), file_hash.group("value")))
            elif stripped and index - 1 < labelled[-1]:
                verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR,
                            f"line {index} is not a 'Label: value' line (a wrapped hash?)",
                            "one label per line", stripped[:80])
            continue
        label, value = found
        in_os_list = label == "OS Hashes"
        if label in out.values:
            verdict.add(FindingId.OUTPUT_DUPLICATE_FIELD, Severity.ERROR, f"'{label}' is printed twice",
                        "each label once", label)
            continue
        out.values[label] = value
        if label == "Signature":
            while index < len(lines) and not lines[index].strip():
                index += 1
            hex_line = lines[index].strip() if index < len(lines) else ""
            index += 1
            out.signature = parse_hex_signature(hex_line)
            if out.signature is None:
                verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR,
                            "the signature is not 512 upper-case hex digits",
                            "512 hex digits [0-9A-F]", f"{len(hex_line)} characters")
            break  # what follows is the prompt
    return out


def _label(line: str) -> tuple[str, str] | None:
    match = _LABEL_LINE.fullmatch(line.strip())
    if match is None or match.group("label") not in _KNOWN:
        return None
    return match.group("label"), match.group("value") or ""


def _check_fields(out: IntegrityOutput, verdict: ProfileVerdict) -> bool:
    """Every required label present and well formed; returns whether PCRs can be recomputed."""
    ok = True
    for label in (*UNSIGNED_LABELS, *_PCR_LABELS, "Boot 0 Hash", "Boot Loader Hash"):
        if not out.values.get(label):
            verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR,
                        f"'{label}' is {'empty' if label in out.values else 'missing'}",
                        f"a '{label}:' line with a value", "empty" if label in out.values else "absent")
            ok = False
    has_single = "OS Hash" in out.values
    has_list = "OS Hashes" in out.values
    if has_single == has_list:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD if not has_single else FindingId.OUTPUT_DUPLICATE_FIELD, Severity.ERROR,
                    "expected exactly one of 'OS Hash' or 'OS Hashes'", "one of them",
                    "both" if has_single else "neither")
        ok = False
    elif has_single and not out.values["OS Hash"]:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, "'OS Hash' is empty",
                    "an 'OS Hash:' line with a value", "empty")
        ok = False
    elif has_list and not out.os_hashes:
        verdict.add(FindingId.OUTPUT_MISSING_FIELD, Severity.ERROR, "'OS Hashes' lists no file",
                    "'<file>: <hash>' lines", "none")
        ok = False
    for label, lengths in _HASH_LABELS.items():
        value = out.values.get(label)
        if value and (len(value) not in lengths or not _HEX.fullmatch(value)):
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"'{label}' is not a hash",
                        f"{' or '.join(map(str, lengths))} hex digits", f"{len(value)} characters")
            ok = False
    for name, value in out.os_hashes:
        if len(value) not in (64, 128):
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"the hash of {name} is not a hash",
                        "64 or 128 hex digits", f"{len(value)} characters")
            ok = False
    for label in _PCR_LABELS:
        value = out.values.get(label)
        if value and (len(value) != 64 or not _HEX.fullmatch(value)):
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, f"'{label}' is not a SHA-256 PCR value",
                        "64 hex digits", f"{len(value)} characters")
            ok = False
    return ok


def _os_list(out: IntegrityOutput) -> list[tuple[str | None, str]]:
    if "OS Hash" in out.values:
        return [(None, out.values["OS Hash"])]
    return [(name, value) for name, value in out.os_hashes]


def verify_integrity_sign(
    raw: bytes,
    *,
    anchors: Anchors,
    signers: Sequence[Signer],
    nonce: int | None,
    when: dt.datetime,
    policy: Policy,
) -> ProfileVerdict:
    """Verify an integrity output: fields, PCRs recomputed from the hashes, the signature over
    header || PCR0 || PCR8 by the device's SUDI key (from `signers`), its chain, the nonce."""
    verdict = ProfileVerdict(profile=PROFILE, verified_at=when)
    text = decode_text(raw, verdict)
    if text is None:
        return verdict
    out = parse_integrity_output(text, verdict)
    if not out.values:
        verdict.add(FindingId.PROFILE_SHAPE_MISMATCH, Severity.ERROR, "no integrity labels found in the output",
                    "'Boot 0 Hash:', 'PCR0:', ... lines", "none")
        return verdict
    if out.device_error:
        verdict.add(FindingId.OUTPUT_DEVICE_ERROR, Severity.ERROR, "the device reported an error reading its measurements",
                    "complete measurements", DEVICE_ERROR)
    fields_ok = _check_fields(out, verdict)
    verdict.unauthenticated = {label: out.values[label] for label in UNSIGNED_LABELS if label in out.values}
    verdict.add(FindingId.OUTPUT_UNAUTHENTICATED, Severity.INFO,
                "not covered by the signature or the PCRs, so not verified: " + ", ".join(UNSIGNED_LABELS),
                None, "; ".join(f"{k}={v}" for k, v in verdict.unauthenticated.items()) or None)
    pcrs_ok = False
    if fields_ok:
        pcrs_ok = True
        pcr0 = fold([out.values["Boot 0 Hash"], out.values["Boot Loader Hash"]])
        pcr8 = fold(value for _, value in _os_list(out))
        for label, computed in (("PCR0", pcr0), ("PCR8", pcr8)):
            if computed.hex().upper() != out.values[label].upper():
                pcrs_ok = False
                verdict.add(FindingId.MEASUREMENT_PCR_MISMATCH, Severity.ERROR,
                            f"{label} does not recompute from the printed hashes: a hash was changed"
                            + (" (PCR0 extends Boot 0, then Boot Loader)" if label == "PCR0" else
                               " (PCR8 extends the OS hashes in printed order)"),
                            computed.hex().upper(), out.values[label].upper())
    signature_ok = False
    if "Signature version" not in out.values and "Signature" not in out.values:
        verdict.add(FindingId.OUTPUT_UNSIGNED, Severity.ERROR,
                    "the output carries no signature, so nothing in it is proven"
                    + (" (the echoed command asked for one: the signature was stripped)" if out.echoes_nonce else "")
                    + "; ask with 'show platform integrity sign nonce N'",
                    "Signature version: / Signature: lines", "none")
    else:
        verdict.signed = True
        signature_ok = _check_signature(verdict, out, anchors, signers, nonce, when, fields_ok)
        check_nonce_given(verdict, nonce, policy)
    bound = signature_ok and pcrs_ok
    if bound:
        verdict.authenticated = {
            "pcr0": out.values["PCR0"].upper(), "pcr8": out.values["PCR8"].upper(),
            "boot0_hash": out.values["Boot 0 Hash"].upper(),
            "boot_loader_hash": out.values["Boot Loader Hash"].upper(),
            "os_hashes": [{"file": name, "hash": value.upper()} for name, value in _os_list(out)],
        }
        if nonce is not None:
            verdict.authenticated["nonce"] = str(nonce)
    if fields_ok:
        verdict.measurements = [Measurements(
            location=None, platform=out.values.get("Platform"),
            boot_stages=((0, out.values.get("Boot 0 Version"), out.values["Boot 0 Hash"].upper()),
                         (1, out.values.get("Boot Loader Version"), out.values["Boot Loader Hash"].upper())),
            os_version=out.values.get("OS Version"),
            os_hashes=tuple((name, value.upper()) for name, value in _os_list(out)),
            bound=bound,
        )]
    return verdict


def _check_signature(
    verdict: ProfileVerdict, out: IntegrityOutput, anchors: Anchors, signers: Sequence[Signer],
    nonce: int | None, when: dt.datetime, fields_ok: bool,
) -> bool:
    version_text = out.values.get("Signature version", "")
    if not version_text.isdigit() or int(version_text) > MAX_U32 or out.signature is None:
        if "Signature" not in out.values or not version_text:
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "the signature lines are incomplete",
                        "Signature version: V, Signature:, hex", version_text or "no version")
        elif not version_text.isdigit():
            verdict.add(FindingId.OUTPUT_MALFORMED_FIELD, Severity.ERROR, "the signature version is not a number",
                        "Signature version: <u32>", version_text[:40])
        return False
    version = int(version_text)
    if version != 1:
        verdict.add(FindingId.OUTPUT_UNSUPPORTED_VERSION, Severity.ERROR,
                    "this signature version is not known; the signed layout could differ", "1", str(version))
        return False
    if not fields_ok or not out.values.get("PCR0") or not out.values.get("PCR8"):
        return False  # the PCRs are the signed bytes: malformed ones were reported above
    if not signers:
        verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                    "the signature cannot be checked without the device's SUDI certificate: pass the "
                    "same device's 'show platform sudi certificate sign' output (--signer) or pin its "
                    "leaf in the trust store", "the device's SUDI certificate", "none")
        return False
    if len(signers) > 1:
        verdict.add(FindingId.CHAIN_NO_CERTIFICATE, Severity.ERROR,
                    "several signing certificates were given for a single-location output; give one",
                    "one SUDI certificate", f"{len(signers)}")
        return False
    signer = signers[0]
    chain_ok = check_sudi_chain(verdict, signer.leaf, anchors, when,
                                printed_root=signer.root, printed_sub_ca=signer.sub_ca)
    signed = xe_header(nonce, version) + bytes.fromhex(out.values["PCR0"]) + bytes.fromhex(out.values["PCR8"])
    verdict.signature_algorithm = "RSASSA-PKCS1-v1_5 SHA-256"
    ok, problem = rsa_sha256_ok(signer.leaf, out.signature, signed)
    if not ok:
        hint = ""
        if problem is None and nonce is None and out.echoes_nonce:
            hint = "; the echoed command shows a nonce, but none was given: pass the nonce you sent"
        verdict.add(FindingId.SIGNATURE_INVALID if problem is None else FindingId.SIGNATURE_UNSUPPORTED_KEY,
                    Severity.ERROR,
                    problem or ("the signature over the PCRs does not verify under the device's SUDI key: "
                                "the PCRs or signature were changed, another device signed, or the nonce "
                                f"differs (checked with {'nonce ' + str(nonce) if nonce is not None else 'no nonce'})"
                                + hint),
                    "a signature by the SUDI key", "a signature that does not verify")
        return False
    if nonce is not None:
        verdict.nonce = nonce.to_bytes(8, "big")
    return chain_ok
