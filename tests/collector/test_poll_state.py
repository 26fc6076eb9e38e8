"""What a poll leaves for the next one is the poll strategy's (`PollStrategy.remember`): each
strategy keeps its own keys of the device's poll state from its own verified outputs, and
`strategy_for` starts the next poll from them; the collector's loop knows none of them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.platforms import profile_for
from collector.polling import (
    FILESYSTEM_ITEM,
    CombinedPoll,
    DossierPoll,
    PolledOutput,
    SignedCommandsPoll,
    TpmPoll,
    strategy_for,
)
from collector.ssh import CommandResult
from collector.verifying import Checked
from verifier.nonce import Nonce

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
XR = profile_for("iosxr")


def output(kind: str) -> PolledOutput:
    return PolledOutput(kind, kind, kind, Nonce.fresh(), "command", CommandResult(b"", T0, T0, 0.0, None))


def checked(trusted: bool = True, *, nodes: list[dict[str, Any]] | None = None,
            blocks: dict[str, int] | None = None) -> Checked:
    verdict = {"profile_data": {"authenticated": {"nodes": nodes or []}}}
    return Checked(trusted, verdict, [], [], {}, None, None, blocks or {})


def test_a_trusted_dossier_keeps_the_newest_block_per_node_for_the_next_poll() -> None:
    state: dict[str, Any] = {"filesystem_blocks": {"0/RP0/CPU0": 7, "0/RP1/CPU0": 3, "bad": "seven"}}
    strategy = DossierPoll(XR, (FILESYSTEM_ITEM,))
    strategy.remember(output("xr-dossier"), checked(blocks={"0/RP0/CPU0": 5, "0/RP1/CPU0": 4, "0/1/CPU0": 0}), state)
    assert state["filesystem_blocks"] == {"0/RP0/CPU0": 7, "0/RP1/CPU0": 4, "0/1/CPU0": 0}
    strategy.remember(output("xr-dossier"), checked(False, blocks={"0/RP0/CPU0": 9}), state)
    assert state["filesystem_blocks"]["0/RP0/CPU0"] == 7
    again = strategy_for(XR, items=(FILESYSTEM_ITEM,), state=state)
    assert isinstance(again, DossierPoll)
    assert again.filesystem_options == {"0/1/CPU0": {"block_start": 1}, "0/RP0/CPU0": {"block_start": 8},
                                        "0/RP1/CPU0": {"block_start": 5}}


def test_trusted_tpm_outputs_keep_the_quote_and_ima_end_and_an_untrusted_log_forgets_its_start() -> None:
    state: dict[str, Any] = {}
    strategy = TpmPoll()
    end = {"event": 12, "pcr": "ab" * 32}
    strategy.remember(output("xr-tpm-quote"), checked(nodes=[{"node": "n0", "up_time": 50, "reset_count": 2},
                                                              {"node": "n1", "up_time": None}]), state)
    strategy.remember(output("xr-tpm-ima-log"), checked(nodes=[{"node": "n0", "end": end}]), state)
    strategy.remember(output("xr-tpm-boot-log"), checked(nodes=[{"node": "n0", "end": {"event": 1}}]), state)
    assert state == {"tpm_quote": {"n0": {"up_time": 50, "reset_count": 2}}, "tpm_ima": {"n0": end}}
    again = strategy_for(XR, items=(), state=state, evidence=("tpm",))
    assert isinstance(again, TpmPoll) and again.previous == state["tpm_quote"] and again.ima_start == state["tpm_ima"]

    strategy.remember(output("xr-tpm-quote"), checked(False), state)
    assert state["tpm_quote"] == {"n0": {"up_time": 50, "reset_count": 2}}
    strategy.remember(output("xr-tpm-ima-log"), checked(False), state)
    assert "tpm_ima" not in state  # asked for whole at the next poll
    assert strategy_for(XR, items=(), state=state, evidence=("tpm",)).ima_start is None  # type: ignore[attr-defined]


def test_a_combined_poll_hands_each_output_to_every_strategy_and_each_keeps_only_its_own() -> None:
    state: dict[str, Any] = {}
    strategy = strategy_for(XR, items=(FILESYSTEM_ITEM,), state=state, evidence=("dossier", "tpm"))
    assert isinstance(strategy, CombinedPoll)
    strategy.remember(output("xr-dossier"), checked(blocks={"n0": 3}), state)
    strategy.remember(output("xr-tpm-ima-log"), checked(nodes=[{"node": "n0", "end": {"event": 4}}], blocks={"n0": 9}),
                      state)
    assert state == {"filesystem_blocks": {"n0": 3}, "tpm_ima": {"n0": {"event": 4}}}


def test_the_signed_commands_keep_nothing() -> None:
    state: dict[str, Any] = {"custom": "kept"}
    SignedCommandsPoll(profile_for("iosxe")).remember(output("xe-integrity"), checked(blocks={"n0": 1}), state)
    assert state == {"custom": "kept"}


def test_the_collectors_loop_names_no_strategy_and_none_of_their_state() -> None:
    source = (Path(__file__).parents[2] / "collector" / "collect.py").read_text()
    for strategy_specific in ("xr-tpm", "xr-dossier", "TPM_STATE", "filesystem_blocks", "tpm_quote", "tpm_ima"):
        assert strategy_specific not in source, strategy_specific
