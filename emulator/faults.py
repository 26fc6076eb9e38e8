"""Faults a device can be told to have, from `dossier emulator serve --fault` or from tests."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TPM_FAULTS", "Fault", "FaultSet", "parse_fault_spec"]


class Fault(enum.Enum):
    """Each value is the name used on the command line (`--fault xr-0002=slow-output`)."""

    SLOW_OUTPUT = "slow-output"  # params: delay (seconds spread over the output, default 2)
    DROP_MID_OUTPUT = "drop-mid-output"  # the connection is cut half-way through the output
    AUTH_FAILURE = "auth-failure"  # every authentication attempt fails
    RATE_LIMIT = "rate-limit"  # every SSH session is refused as over the rate
    NOT_JSON = "not-json"  # the dossier command prints text that is not JSON
    WRONG_NONCE = "wrong-nonce"  # answers with a stale nonce (params: nonce, hex)
    DATA_CHANGED = "data-changed"  # data altered after signing
    OTHER_KEY = "other-key"  # signed by a key that is not the leaf's
    EXPIRED_LEAF = "expired-leaf"  # the leaf certificate's validity has ended
    REKEYED_LEAF = "rekeyed-leaf"  # a new enroll key and leaf under the same root
    ROOT_REPLACED = "root-replaced"  # a new root (and leaf): the device must be re-enrolled
    ITEMS_FAILING = "items-failing"  # params: items (list), result (result-code text)
    MALFORMED_SAN = "malformed-san"  # IOS XE: a SUDI certificate whose subjectAltName is not DER
    # An exec command answers with stderr (extended data) past the client's SSH window, as a
    # hostile device does, until the client closes or `seconds` (default 10) pass; params:
    # stdout (1: stdout too, interleaved), seconds.
    FLOOD_STDERR = "flood-stderr"
    # Not a fault of the evidence: `utility sign` signs the command's output with the timestamp
    # line the exec prints before it, as the seed's examples show a router can; the envelope is
    # still valid (ENVELOPE.md allows the line before the dossier in `data`).
    TIMESTAMP_IN_DATA = "timestamp-in-data"
    # TPM attestation over NETCONF (docs/tpm-attestation.md "Faults"); each takes `node` (one
    # node's TPM misbehaves; default every node).
    TPM_OTHER_KEY = "tpm-other-key"  # the quote is signed by a key that is not the AK
    TPM_NONCE_UNBOUND = "tpm-nonce-unbound"  # extraData holds a stale nonce (params: nonce, hex)
    TPM_PCR_MISMATCH = "tpm-pcr-mismatch"  # a returned PCR is not what the quote covers (params: pcr)
    TPM_BOOT_LOG_MISMATCH = "tpm-boot-log-mismatch"  # a boot event's digest is not what extended its PCR (params: pcr)
    TPM_IMA_UNKNOWN_FILE = "tpm-ima-unknown-file"  # ran a file not in the inventory (params: path)
    TPM_UPTIME_BACKWARDS = "tpm-uptime-backwards"  # up-time lower than before, no reboot (params: seconds)


# Faults of the TPM evidence served over NETCONF: they leave the SSH dossier as it was.
TPM_FAULTS = frozenset({Fault.TPM_OTHER_KEY, Fault.TPM_NONCE_UNBOUND, Fault.TPM_PCR_MISMATCH,
                        Fault.TPM_BOOT_LOG_MISMATCH, Fault.TPM_IMA_UNKNOWN_FILE, Fault.TPM_UPTIME_BACKWARDS})
# Faults that change the device's certificates once, when set, rather than each answer.
CERTIFICATE_FAULTS = frozenset({Fault.EXPIRED_LEAF, Fault.REKEYED_LEAF, Fault.ROOT_REPLACED, Fault.MALFORMED_SAN})


@dataclass
class FaultSet:
    """The faults active on one device, with their parameters."""

    active: dict[Fault, dict[str, Any]] = field(default_factory=dict)

    def __contains__(self, fault: Fault) -> bool:
        return fault in self.active

    def params(self, fault: Fault) -> dict[str, Any]:
        return self.active.get(fault, {})

    def set(self, fault: Fault, **params: Any) -> None:
        self.active[fault] = params

    def clear(self, fault: Fault | None = None) -> None:
        if fault is None:
            self.active.clear()
        else:
            self.active.pop(fault, None)


def parse_fault_spec(spec: str) -> tuple[str, Fault, dict[str, Any]]:
    """`xr-0002=slow-output:delay=3` -> ("xr-0002", Fault.SLOW_OUTPUT, {"delay": 3.0})."""
    device, sep, rest = spec.partition("=")
    if not sep or not device:
        raise ValueError(f"expected DEVICE=FAULT[:key=value,...], found {spec!r}")
    name, _, param_text = rest.partition(":")
    try:
        fault = Fault(name)
    except ValueError:
        known = ", ".join(f.value for f in Fault)
        raise ValueError(f"unknown fault {name!r}; expected one of: {known}") from None
    params: dict[str, Any] = {}
    for item in filter(None, param_text.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"fault parameter must be key=value, found {item!r}")
        if key == "items":
            params[key] = value.split("+")
        elif key in ("nonce", "node", "path"):
            params[key] = value  # text: hex digits `1580` read as a number would lose what was typed
        else:
            try:
                params[key] = float(value)
            except ValueError:
                params[key] = value
    return device, fault, params
