"""Vendor behaviour as data: the command a platform needs and the failure strings it prints."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import CommandError, Reason

__all__ = ["IOSXE", "IOSXR", "PROFILES", "PlatformProfile", "SignedCommand", "profile_for"]


@dataclass(frozen=True)
class SignedCommand:
    """A command the device signs itself (IOS XE), and the verifier profile that checks it."""

    #: Short name: the stored output's `output` metadata and the verdict key.
    name: str
    #: The command with `{nonce}` for a fresh decimal nonce.
    template: str
    verifier_profile: str
    #: What the stored output is (its metadata's `kind`).
    kind: str
    #: Name of an earlier command of the same poll whose output holds the signing certificate.
    signer_from: str | None = None


@dataclass(frozen=True)
class PlatformProfile:
    """How one platform is asked for a signed dossier and how it reports failures."""

    name: str
    #: The line every show command prints first (seed: `Sun Oct 20 13:07:24.136 UTC`).
    timestamp_line: re.Pattern[str]
    #: Output lines that mean the device refused or did not understand the command.
    error_prefixes: tuple[str, ...]
    #: Substrings of an error line that mean "this user may not run it" (not transient).
    authorization_markers: tuple[str, ...]
    #: The evidence a poll collects (`collector.polling` picks the strategy by it): `dossier`
    #: (the signed IOS XR dossier) or `signed-commands` (`signed_commands`, IOS XE).
    evidence: str = "dossier"
    #: Self-signed commands run instead of the dossier (IOS XE).
    signed_commands: tuple[SignedCommand, ...] = ()

    def dossier_command(
        self,
        items: Sequence[str],
        nonce_hex: str,
        *,
        filesystem_options: Mapping[str, Mapping[str, int]] | None = None,
        include_certificate: bool = True,
    ) -> str:
        """The seed's dossier command, the same nonce on the dossier and on `utility sign`."""
        parts = ["show platform security integrity dossier include", *items]
        if filesystem_options:
            # Compact JSON without quotes that need escaping; the device parses it as JSON.
            parts.append(f"filesystem-inventory-options '{json.dumps(filesystem_options, separators=(',', ':'))}'")
        parts += ["nonce", nonce_hex, "| utility sign nonce", nonce_hex]
        if include_certificate:
            parts.append("include-certificate")
        return " ".join(parts)

    def check_output(self, output: bytes) -> None:
        """Raise CommandError when the device printed an error instead of an envelope."""
        head = output[:4096].decode("utf-8", "replace")
        for line in head.splitlines():
            stripped = line.strip()
            if not stripped or self.timestamp_line.fullmatch(stripped):
                continue
            if stripped.startswith(self.error_prefixes):
                error = CommandError(
                    f"expected a signed envelope, found the device error {stripped!r}"
                    + self._advice(stripped)
                )
                if any(marker in stripped.lower() for marker in self.authorization_markers):
                    error.reason = Reason.DEVICE_NOT_AUTHORIZED
                raise error
            return

    def _advice(self, line: str) -> str:
        if any(marker in line.lower() for marker in self.authorization_markers):
            return ("; give the user the dossier task IDs (seed: 'Configuration Example for "
                    "User Authorization')")
        if "trustpoint" in line.lower() or "not enrolled" in line.lower():
            return "; set up the system trustpoint first (`dossier enroll --provision`)"
        return ""


IOSXR = PlatformProfile(
    name="iosxr",
    timestamp_line=re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}\.\d{3} \S+"),
    error_prefixes=("% ",),
    authorization_markers=("not authorized", "authorization failed", "permission denied",
                           "task id"),
)

# IOS XE: the SUDI chain and the integrity measurements, each signed over its own fresh decimal
# 64-bit nonce (../shared/vectors/cisco-ios-xe/README.md); the SUDI output is the signer of
# the integrity output.
IOSXE = PlatformProfile(
    name="iosxe",
    timestamp_line=re.compile(r"(Load for five secs|Time source is) .*"),
    error_prefixes=("% ",),
    authorization_markers=("not authorized", "authorization failed", "permission denied"),
    evidence="signed-commands",
    signed_commands=(
        SignedCommand("sudi", "show platform sudi certificate sign nonce {nonce}", "xe-sudi-sign", "xe-sudi"),
        SignedCommand("integrity", "show platform integrity sign nonce {nonce}", "xe-integrity-sign", "xe-integrity",
                      signer_from="sudi"),
    ),
)

PROFILES: dict[str, PlatformProfile] = {"iosxr": IOSXR, "iosxe": IOSXE}


def profile_for(name: str) -> PlatformProfile:
    return PROFILES[name]
