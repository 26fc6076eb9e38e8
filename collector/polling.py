"""How one device is asked for its evidence: one poll strategy per kind of evidence.

A strategy makes one attempt at a poll: fresh nonce(s) from the OS CSPRNG, the command(s) run
over SSH, each output checked for a device error; it returns the outputs to store, each with
its nonce, kind and verifier profile. The collector retries an attempt (a retry draws new
nonces), stores a poll's outputs together (one batch, one poll id, the verdict in each
output's metadata), verifies each with its profile and appraises the device: all of that is
the same whatever the strategy. What a poll leaves for the next one to start from is the
strategy's own: the collector hands each output the verifier judged back to the strategy
(`remember`), which keeps what it needs in the device's poll state (persisted with the device
states, read again by `strategy_for` at the next poll). So a new kind of evidence is a new
strategy here and nothing in the collector's loop.

Strategies:
  - `DossierPoll` (IOS XR): the seed's `show platform security integrity dossier ... nonce N |
    utility sign nonce N include-certificate`, one 16-byte nonce on both; the file-system
    inventory is asked only for blocks newer than the last one stored (state `filesystem_blocks`).
  - `SignedCommandsPoll` (IOS XE): the platform's self-signed commands (SUDI, then integrity),
    one fresh decimal 64-bit nonce each, over one connection; the integrity output is signed by
    the SUDI output's certificate.
  - `TpmPoll` (IOS XR, `evidence: [tpm]` in the inventory): the four remote-attestation RPCs
    over one NETCONF session with ncclient (docs/tpm-attestation.md), a fresh nonce each; the
    quote is signed by the certificate reply's key, the logs replay to the quote; the IMA log
    is asked only for events newer than the last one verified, per node (state `tpm_ima`; the
    last trusted quote's up-time and resetCount: `tpm_quote`).
  - `CombinedPoll`: several of these in one attempt (`evidence: [dossier, tpm]`).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from verifier.nonce import Nonce

from .inventory import Device
from .platforms import PlatformProfile
from .ssh import CommandResult, DeviceSession, run_command

if TYPE_CHECKING:
    from .verifying import Checked

__all__ = ["FILESYSTEM_ITEM", "FILESYSTEM_STATE", "TPM_PCRS", "TPM_STATE", "CombinedPoll", "DossierPoll",
           "PollStrategy", "PolledOutput", "SignedCommandsPoll", "TpmPoll", "filesystem_options", "strategy_for",
           "tpm_certificate_request"]

FILESYSTEM_ITEM = "filesystem-inventory"
#: The PCRs a TPM quote is asked for: 0-9 the measured boot, 10 IMA (docs/tpm-attestation.md).
TPM_PCRS: tuple[int, ...] = tuple(range(11))
#: The keys of the device's poll state the strategies keep (persisted: their names and values
#: stay as they are). Per node: the newest file-system block stored; the last trusted quote's
#: up-time and resetCount, and where the last trusted IMA log ended
#: (docs/design/tpm-verification.md), by the TPM output that proves them.
FILESYSTEM_STATE = "filesystem_blocks"
TPM_STATE = {"xr-tpm-quote": "tpm_quote", "xr-tpm-ima-log": "tpm_ima"}


@dataclass
class PolledOutput:
    """One output of a poll, as received, on its way to the store and the verifier."""

    #: Which output of the poll this is (`dossier`, `sudi`, `integrity`): the metadata's `output`.
    name: str
    #: What the output is (the metadata's `kind`): `xr-dossier`, `xe-sudi`, `xe-integrity`, `xr-tpm-*`.
    kind: str
    #: The verifier profile that checks it (`verifier.profiles.PROFILES`).
    verifier_profile: str
    #: The nonce sent (the metadata's `nonce` is its hex; IOS XE's also its `nonce_decimal`).
    nonce: Nonce
    #: The command sent (a NETCONF output: the RPC's XML).
    command: str
    #: What came back, exactly (a NETCONF output: the `<rpc-reply>`; no exit status).
    result: CommandResult
    #: The name of the output of the same poll whose certificate signs this one, if any.
    signer_from: str | None = None
    #: More metadata members (`items`, `nonce_decimal`).
    extra: dict[str, Any] = field(default_factory=dict)
    #: A TPM event log's: the name of the same poll's quote it replays to (the metadata's `quote`).
    quote_from: str | None = None


class PollStrategy(Protocol):
    """One attempt at polling a device for one kind of evidence."""

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        """Run the command(s) with fresh nonce(s); raises CollectorError (ConnectError, CommandError,
        ...) as `collector.ssh` does when the attempt fails."""
        ...

    def remember(self, output: PolledOutput, checked: Checked, state: dict[str, Any]) -> None:
        """Keep in the device's poll `state` what the next poll starts from, after `output` (one
        of this strategy's poll) was verified: `checked`, trusted or not. Not called for an
        output the verifier refused to judge, nor when verification is off. An output of
        another strategy (`CombinedPoll` hands every output to each) is left alone."""
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

    def remember(self, output: PolledOutput, checked: Checked, state: dict[str, Any]) -> None:
        """A trusted dossier's newest file-system block per node (`filesystem_options`)."""
        if output.kind != "xr-dossier" or not checked.trusted or not checked.filesystem_blocks:
            return
        known = state.get(FILESYSTEM_STATE)
        blocks = {node: last for node, last in (known.items() if isinstance(known, Mapping) else ())
                  if type(last) is int}
        for node, block in checked.filesystem_blocks.items():
            blocks[node] = max(block, blocks.get(node, -1))
        state[FILESYSTEM_STATE] = blocks


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

    def remember(self, output: PolledOutput, checked: Checked, state: dict[str, Any]) -> None:
        """Nothing: each poll of the signed commands starts afresh."""


@dataclass(frozen=True)
class TpmPoll:
    """IOS XR TPM attestation over NETCONF (see the module docstring)."""

    pcrs: tuple[int, ...] = TPM_PCRS
    #: Per node, where the last verified IMA log ended (`{node: {"event": n, "pcr": hex}}`).
    ima_start: Mapping[str, Any] | None = None
    #: Per node, the last verified quote's up-time and resetCount.
    previous: Mapping[str, Any] | None = None

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        from verifier.stored import TPM_PROFILE

        from .netconf import NetconfSession

        outputs = []
        with NetconfSession(device, run_deadline=deadline) as session:
            for name, kind, build, related in self._steps():
                nonce = Nonce.fresh()  # the certificate and quote RPCs bind it; the logs' names and records use it
                request = build(nonce)
                result = session.rpc(request)
                extra: dict[str, Any] = {}
                if kind == "xr-tpm-quote":
                    extra["pcrs"] = list(self.pcrs)
                    if self.previous:
                        extra["tpm_previous"] = dict(self.previous)
                if kind == "xr-tpm-ima-log" and self.ima_start:
                    extra["ima_start"] = dict(self.ima_start)
                outputs.append(PolledOutput(name, kind, TPM_PROFILE, nonce, request, result,
                                            signer_from=None if name == "certificate" else "certificate",
                                            extra=extra, quote_from=related))
        return outputs

    def remember(self, output: PolledOutput, checked: Checked, state: dict[str, Any]) -> None:
        """Per node, what a trusted quote or IMA log proved, for the next poll to start from
        (`strategy_for`). A log that did not replay from where the last one ended (an entry
        changed in place, a lost state) is asked for whole at the next poll."""
        key = TPM_STATE.get(output.kind)
        if key is None:
            return
        if not checked.trusted:
            if output.kind == "xr-tpm-ima-log":
                state.pop(key, None)
            return
        nodes = checked.verdict_json.get("profile_data", {}).get("authenticated", {}).get("nodes", [])
        known = state.get(key)
        kept = dict(known) if isinstance(known, Mapping) else {}
        for node in nodes:
            if output.kind == "xr-tpm-quote" and node.get("up_time") is not None:
                kept[node["node"]] = {"up_time": node["up_time"], "reset_count": node["reset_count"]}
            elif output.kind == "xr-tpm-ima-log":
                kept[node["node"]] = node["end"]
        state[key] = kept

    def _steps(self) -> list[tuple[str, str, Any, str | None]]:
        return [("certificate", "xr-tpm-certificate", tpm_certificate_request, None),
                ("quote", "xr-tpm-quote", lambda nonce: _rpc_quote(nonce, self.pcrs), None),
                ("boot-log", "xr-tpm-boot-log", lambda nonce: _rpc_log("get-platform-boot-integrity-event-logs", None),
                 "quote"),
                ("ima-log", "xr-tpm-ima-log", lambda nonce: _rpc_log("get-platform-ima-event-logs", self._ima_from()),
                 "quote")]

    def _ima_from(self) -> int | None:
        """`start-event-number`: events after it are sent. One RPC serves every node, so it is
        the lowest node's last event (each node's log is replayed from its own, `ima_start`);
        a node with none recorded asks for the whole log."""
        if not self.ima_start:
            return None
        ends = [entry.get("event") for entry in self.ima_start.values() if isinstance(entry, Mapping)]
        if not ends or not all(type(end) is int and end >= 0 for end in ends):
            return None
        return min(ends)


def tpm_certificate_request(nonce: Nonce) -> str:
    """The `get-certificate` RPC for the attestation key (each node's), over `nonce`."""
    from verifier.tpm.replies import NAMESPACE

    return (f'<get-certificate xmlns="{NAMESPACE}"><nonce>{base64.b64encode(nonce).decode()}</nonce>'
            "<certificate-identifier>aik</certificate-identifier></get-certificate>")


def _rpc_quote(nonce: Nonce, pcrs: tuple[int, ...]) -> str:
    from verifier.tpm.replies import NAMESPACE

    indexes = "".join(f"<pcr-index>{index}</pcr-index>" for index in pcrs)
    return (f'<attest-platform-config-registers xmlns="{NAMESPACE}">{indexes}'
            f"<nonce>{base64.b64encode(nonce).decode()}</nonce></attest-platform-config-registers>")


def _rpc_log(operation: str, start: int | None) -> str:
    from verifier.tpm.replies import NAMESPACE

    after = f"<start-event-number>{start}</start-event-number>" if start is not None else ""
    return f'<{operation} xmlns="{NAMESPACE}">{after}</{operation}>'


@dataclass(frozen=True)
class CombinedPoll:
    """Several kinds of evidence in one attempt, one after the other (a retry repeats them all)."""

    strategies: tuple[PollStrategy, ...]

    def poll_once(self, device: Device, *, deadline: float) -> list[PolledOutput]:
        return [output for strategy in self.strategies for output in strategy.poll_once(device, deadline=deadline)]

    def remember(self, output: PolledOutput, checked: Checked, state: dict[str, Any]) -> None:
        for strategy in self.strategies:
            strategy.remember(output, checked, state)


def strategy_for(profile: PlatformProfile, *, items: tuple[str, ...], state: Mapping[str, Any],
                 evidence: tuple[str, ...] = ("dossier",)) -> PollStrategy:
    """The strategy for one poll of the `evidence` the inventory asks for: "dossier" (the
    platform's, `PlatformProfile.evidence`: the dossier's `items` and the file-system blocks
    already collected, from `state`) and/or "tpm" (`TpmPoll`, from where `state` says the
    last IMA log and quote ended)."""
    strategies: list[PollStrategy] = []
    if "dossier" in evidence:
        strategies.append(_STRATEGIES[profile.evidence](profile, items, state))
    if "tpm" in evidence:
        strategies.append(TpmPoll(ima_start=_mapping(state.get(TPM_STATE["xr-tpm-ima-log"])),
                                  previous=_mapping(state.get(TPM_STATE["xr-tpm-quote"]))))
    return strategies[0] if len(strategies) == 1 else CombinedPoll(tuple(strategies))


def _mapping(value: Any) -> dict[str, Any] | None:
    return {str(k): v for k, v in value.items() if isinstance(v, Mapping)} if isinstance(value, Mapping) else None


def _dossier(profile: PlatformProfile, items: tuple[str, ...], state: Mapping[str, Any]) -> PollStrategy:
    return DossierPoll(profile, items, filesystem_options(state) if FILESYSTEM_ITEM in items else None)


def _signed_commands(profile: PlatformProfile, items: tuple[str, ...], state: Mapping[str, Any]) -> PollStrategy:
    return SignedCommandsPoll(profile)


_STRATEGIES = {"dossier": _dossier, "signed-commands": _signed_commands}


def filesystem_options(state: Mapping[str, Any]) -> dict[str, dict[str, int]] | None:
    """Ask only for blocks newer than the last one collected, per node."""
    blocks = state.get(FILESYSTEM_STATE)
    if not isinstance(blocks, Mapping):
        return None
    # A hand-edited state may hold anything: a node without a whole block number is asked afresh.
    wanted = {str(node): {"block_start": last + 1} for node, last in sorted(blocks.items(), key=str)
              if type(last) is int and last >= 0}
    return wanted or None
