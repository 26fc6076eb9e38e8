"""What the human output of `collect`, `appraise` and `diff` says: one record per line off a
terminal (no id split), warnings and messages shown, `--quiet`, `--verbose` and `--fail-on`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from verifier.display import record_line
from dossier_cli.main import cli
from emulator import facts as device_facts
from emulator.faults import Fault

POLICY_YAML = """\
format: trust-dossier/policy/1
name: output-test
rules:
  secure-boot: {level: enforce}
  hardware-changes: {level: warn}
"""


def _collect(rig: Any, tmp_path: Path, *options: str) -> Any:
    return CliRunner().invoke(cli, ["collect", "-i", str(tmp_path / "inventory.yaml"), "--store", str(rig.store.root),
                                    "--trust-store", str(rig.trust), *options])


def test_collect_quiet_verbose_and_warnings_one_record_per_line(rig_factory: Any, tmp_path: Path) -> None:
    rig = rig_factory(None)
    name = rig.devices[0].name
    quiet = _collect(rig, tmp_path, "--quiet")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")  # a successful cron run says nothing
    rig.fleet.set_fault(name, Fault.ITEMS_FAILING, items=["packages"], result="Timeout")
    table = _collect(rig, tmp_path)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].startswith("# Collection ")
    row = next(line for line in lines if line.startswith(f"device={name} "))
    # Trusted, and the warning is there with its whole id (never split over two lines).
    assert " status=trusted " in row and ' warnings="1: dossier.item_failed" ' in row, row
    assert not any("dossier.item_failed" in line for line in lines if line is not row and line != row)
    assert "Timeout" not in table.stdout  # the message only with --verbose
    verbose = _collect(rig, tmp_path, "-v")
    detail = [line for line in verbose.stdout.splitlines() if line.startswith("  warning dossier.item_failed")]
    assert len(detail) == 1 and "packages" in detail[0] and "Timeout" in detail[0], verbose.stdout
    # A device that fails: --quiet prints it (and only it), on stderr as the log line.
    rig.fleet.set_fault(name, Fault.DATA_CHANGED)
    failed = _collect(rig, tmp_path, "--quiet")
    assert failed.exit_code == 1 and failed.stdout == ""
    assert f"device={name} status=untrusted" in failed.stderr and "reason=signature.invalid" in failed.stderr
    assert _collect(rig, tmp_path, "--quiet", "-v").exit_code == 2


def test_collect_fail_on_appraise_verbose_and_diff_messages(rig_factory: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_YAML)
    rig = rig_factory(None)
    name, store = rig.devices[0].name, str(rig.store.root)
    assert _collect(rig, tmp_path, "--fail-on", "warning").exit_code == 2  # --fail-on needs --policy
    assert _collect(rig, tmp_path, "--policy", str(policy), "--fail-on", "warning", "--quiet").exit_code == 0
    device = rig.device
    with device.lock:  # a swapped part: warning
        device_facts.swap_part(device.facts, device.facts.inventory[-1].name)
        device.save()
    warned = _collect(rig, tmp_path, "--policy", str(policy), "--fail-on", "warning", "--quiet")
    assert warned.exit_code == 1 and warned.stdout == ""
    assert f"{name}: appraisal warning (--fail-on warning)" in warned.stderr
    assert _collect(rig, tmp_path, "--policy", str(policy), "--fail-on", "contraindicated").exit_code == 0
    with device.lock:  # secure boot off: contraindicated
        device_facts.set_secure_boot(device.facts, False)
        device.save()
    worse = _collect(rig, tmp_path, "--policy", str(policy), "--fail-on", "contraindicated", "--json")
    assert worse.exit_code == 1 and json.loads(worse.stdout)["devices"][0]["status"] == "trusted"

    trust = ["--trust-store", str(rig.trust)]
    appraised = CliRunner().invoke(cli, ["appraise", "--store", store, "--policy", str(policy), *trust, "-v"])
    assert appraised.exit_code == 1
    lines = appraised.stdout.splitlines()
    assert any(line.startswith(f"device={name} ") and "status=contraindicated" in line for line in lines)
    assert any(line.startswith("  error appraisal.boot.secure_boot_disabled: ") for line in lines), appraised.stdout

    diff = CliRunner().invoke(cli, ["diff", "--store", store, "--device", name, "--from", "0", *trust])
    rows = [line for line in diff.stdout.splitlines() if line.startswith("id=")]
    swapped = next(line for line in rows if line.startswith("id=drift.hardware.part_swapped "))
    finding = next(f for f in json.loads(CliRunner().invoke(
        cli, ["diff", "--store", store, "--device", name, "--from", "0", *trust, "--json"]).stdout)["findings"]
        if f["id"] == "drift.hardware.part_swapped")
    assert record_line([("message", finding["message"])]) in swapped  # the readable message, whole

