"""The seed's remote-node example (`filesystem-inventory-options` for `0/RP1/CPU0`) on a dual
route-processor chassis, and its refusal on the fleet's default single-RP chassis, over SSH."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

from emu_proof import check_dossier
from emu_ssh import run, strip_timestamp
from emulator.device import SYSTEM_TRUSTPOINT
from emulator.fleet import Fleet, FleetError
from verifier.verify import verify_envelope

# Verbatim from the seed ("To collect data from a remote node"), its line break undone.
SEED_REMOTE_COMMAND = (
    "show platform security integrity dossier include filesystem-inventory "
    "filesystem-inventory-options '{\"0/RP1/CPU0\": {\"block_start\": 0}}' | file harddisk:PE1_remote.json"
)


@pytest.fixture(scope="module")
def dual_rp_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One provisioned NCS-5504: route processors 0/RP0/CPU0 and 0/RP1/CPU0."""
    with Fleet(state_dir=tmp_path_factory.mktemp("dual-rp"), devices=1, provisioned=True,
               chassis="NCS-5504", files=100, seed=3) as running:
        yield running


def test_the_seed_remote_node_example_writes_the_rp1_inventory_to_harddisk(dual_rp_fleet) -> None:
    device = dual_rp_fleet.devices[0]
    assert strip_timestamp(run(device, SEED_REMOTE_COMMAND)) == ""
    dossier = check_dossier(strip_timestamp(run(device, "more harddisk:PE1_remote.json")))
    inventory = dossier["filesystem-inventory"]
    assert inventory["result-code"] == "Success"
    assert list(inventory["filesystem-inventory"]) == ["0/RP1/CPU0"], inventory


def test_the_remote_node_dossier_signed_to_harddisk_verifies(dual_rp_fleet) -> None:
    device = dual_rp_fleet.devices[0]
    nonce = bytes.fromhex("51ed")
    command = SEED_REMOTE_COMMAND.replace(
        " | file harddisk:PE1_remote.json",
        f" nonce {nonce.hex()} | utility sign nonce {nonce.hex()} include-certificate"
        " | file harddisk:PE1_remote_signed.json",
    )
    assert strip_timestamp(run(device, command)) == ""
    envelope = strip_timestamp(run(device, "more harddisk:PE1_remote_signed.json"))
    root, _ = device.device.certificates(SYSTEM_TRUSTPOINT)
    verdict = verify_envelope(envelope.encode(), roots=[root], expected_nonce=nonce)
    assert verdict.trusted, verdict.ids()
    assert verdict.dossier is not None
    assert list(verdict.dossier["filesystem-inventory"]["filesystem-inventory"]) == ["0/RP1/CPU0"]


def test_show_platform_lists_both_route_processors(dual_rp_fleet) -> None:
    shown = strip_timestamp(run(dual_rp_fleet.devices[0], "show platform"))
    assert "0/RP0/CPU0" in shown and "0/RP1/CPU0" in shown


def test_a_single_rp_chassis_refuses_the_remote_node(blank_fleet) -> None:
    output = strip_timestamp(run(blank_fleet.devices[0], SEED_REMOTE_COMMAND))
    assert output == ("% Invalid node '0/RP1/CPU0' in filesystem-inventory-options: "
                      "expected one of 0/RP0/CPU0\n"), output


def test_a_state_directory_keeps_its_chassis(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path, devices=1, chassis="NCS-5504", files=50):
        pass
    device_info = json.loads((tmp_path / "xr-0001" / "device.json").read_text("utf-8"))
    assert device_info["chassis"] == "NCS-5504"
    with pytest.raises(FleetError, match="holds an NCS-5504 chassis, this fleet asks for NCS-55A1-24H"):
        with Fleet(state_dir=tmp_path, devices=1, files=50):
            pass


def test_an_unknown_chassis_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="unknown chassis 'NCS-9999'; expected one of: NCS-55A1-24H"):
        Fleet(state_dir=tmp_path, chassis="NCS-9999")


def test_serve_offers_the_chassis_option() -> None:
    from click.testing import CliRunner

    from emulator.cli import emulator_group

    result = CliRunner().invoke(emulator_group, ["serve", "--state-dir", "x", "--chassis", "NCS-9999"])
    assert result.exit_code == 2 and "'NCS-9999' is not one of" in result.output, result.output
