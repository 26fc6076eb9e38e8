"""How one device is asked for its evidence: one poll strategy per kind of evidence.

A strategy makes one attempt at a poll: fresh nonce(s) from the OS CSPRNG, the command(s) run
over SSH, each output checked for a device error; it returns the outputs to store, each with
its nonce, kind and verifier profile. The collector retries an attempt (a retry draws new
nonces), stores a poll's outputs together (one batch, one poll id, the verdict in each
output's metadata), verifies each with its profile and appraises the device: all of that is
the same whatever the strategy, so a new kind of evidence is a new strategy here and nothing in
the collector's loop.

Strategies:
  - `DossierPoll` (IOS XR): the seed's `show platform security integrity dossier ... nonce N |
    utility sign nonce N include-certificate`, one 16-byte nonce on both; the file-system
    inventory is asked only for blocks newer than the last one stored.
  - `SignedCommandsPoll` (IOS XE): the platform's self-signed commands (SUDI, then integrity),
    one fresh decimal 64-bit nonce each, over one connection; the integrity output is signed by
    the SUDI output's certificate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from verifier.nonce import Nonce

from .inventory import Device
from .platforms import PlatformProfile
from .ssh import CommandResult, DeviceSession, run_command

__all__ = ["FILESYSTEM_ITEM", "DossierPoll", "PollStrategy", "PolledOutput", "SignedCommandsPoll",
           "filesystem_options", "strategy_for"]

FILESYSTEM_ITEM = "filesystem-inventory"


@dataclass
class PolledOutput:
    """One output of a poll, as received, on its way to the store and the verifier."""

    #: Which output of the poll this is (`dossier`, `sudi`, `integrity`): the metadata's `output`.
    name: str
    #: What the output is (the metadata's `kind`): `xr-dossier`, `xe-sudi`, `xe-integrity`.
    kind: str
    #: The verifier profile that checks it (`verifier.profiles.PROFILES`).
    verifier_profile: str
    #: The nonce sent (the metadata's `nonce` is its hex; IOS XE's also its `nonce_decimal`).
    nonce: Nonce
    command: str
    result: CommandResult
    #: The name of the output of the same poll whose certificate signs this one, if any.
    signer_from: str | None = None
    #: More metadata members (`items`, `nonce_decimal`).
    extra: dict[str, Any] = field(default_factory=dict)


class PollStrategy(Protocol):
    """One attempt at polling a device for one kind of evidence."""

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        """Run the command(s) with fresh nonce(s); raises CollectorError (ConnectError, CommandError,
        ...) as `collector.ssh` does when the attempt fails."""
        ...


@dataclass(frozen=True)
class DossierPoll:
    """The IOS XR signed dossier (see the module docstring)."""

    profile: PlatformProfile
    items: tuple[str, ...]
    filesystem_options: Mapping[str, Mapping[str, int]] | None = None

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        nonce = Nonce.fresh()  # a fresh nonce for every attempt
        command = self.profile.dossier_command(self.items, nonce.hex(), filesystem_options=self.filesystem_options)
        result = run_command(device, command, run_deadline=deadline)
        self.profile.check_output(result.output)
        return [PolledOutput("dossier", "xr-dossier", "xr-dossier", nonce, command, result,
                             extra={"items": list(self.items)})]


@dataclass(frozen=True)
class SignedCommandsPoll:
    """The IOS XE self-signed commands (see the module docstring)."""

    profile: PlatformProfile

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        outputs = []
        with DeviceSession(device, run_deadline=deadline) as session:
            for step in self.profile.signed_commands:
                nonce = Nonce.fresh_xe()
                command = step.template.format(nonce=nonce.decimal)
                started, begin = datetime.now(UTC), time.monotonic()
                output, exit_status = session.exec(command)
                received = datetime.now(UTC)
                self.profile.check_output(output)
                result = CommandResult(output, started, received, time.monotonic() - begin, exit_status)
                outputs.append(PolledOutput(step.name, step.kind, step.verifier_profile, nonce, command,
                                            result, step.signer_from, {"nonce_decimal": str(nonce.decimal)}))
        return outputs


def strategy_for(profile: PlatformProfile, *, items: tuple[str, ...], state: Mapping[str, Any]) -> PollStrategy:
    """The strategy for the evidence `profile` names (`PlatformProfile.evidence`), set up for
    one poll: the dossier's `items` and the file-system blocks already collected (`state`)."""
    return _STRATEGIES[profile.evidence](profile, items, state)


def _dossier(profile: PlatformProfile, items: tuple[str, ...], state: Mapping[str, Any]) -> PollStrategy:
    return DossierPoll(profile, items, filesystem_options(state) if FILESYSTEM_ITEM in items else None)


def _signed_commands(profile: PlatformProfile, items: tuple[str, ...], state: Mapping[str, Any]) -> PollStrategy:
    return SignedCommandsPoll(profile)


_STRATEGIES = {"dossier": _dossier, "signed-commands": _signed_commands}


def filesystem_options(state: Mapping[str, Any]) -> dict[str, dict[str, int]] | None:
    """Ask only for blocks newer than the last one collected, per node."""
    blocks = state.get("filesystem_blocks")
    if not isinstance(blocks, Mapping):
        return None
    # A hand-edited state may hold anything: a node without a whole block number is asked afresh.
    wanted = {str(node): {"block_start": last + 1} for node, last in sorted(blocks.items(), key=str)
              if type(last) is int and last >= 0}
    return wanted or None
