"""Text a device (or a store, or a file name) supplies reaches the terminal inert: control
characters are shown escaped on one line, and Rich never reads brackets in data as markup.

The attack: a root whose issuer printed fake fingerprint lines, concealed the real ones and the
question (ESC [8m), and the operator enrolled the attacker's root; `[/]` in a metadata device
name crashed the `dossier verify` table with a MarkupError after verification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from collector.collect import DeviceOutcome, RunSummary
from dossier_cli.main import cli
from emulator.device import SYSTEM_TRUSTPOINT
from emulator.fleet import Fleet
from verifier import TrustStore
from verifier.display import cell, inert

PROJECT = Path(__file__).resolve().parents[2]
SAMPLES = PROJECT / "samples"
FAKE_SHA256 = "ab" * 32
FAKE_SHA1 = "CD" * 20
# An OU (a CN is limited to 64 characters) that, printed raw, rings the bell, erases its own line,
# prints two fingerprint lines of the attacker's choosing and conceals everything after them.
HOSTILE_OU = ("lab\x07\x1b[2K\r  SHA256 Fingerprint: " + FAKE_SHA256
              + "\n  SHA1 Fingerprint  : " + FAKE_SHA1 + "\x1b[8m")
MARKUP = "[bold red]x[/]"


def _runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "1000"})  # wide: rich would fold the cells looked for


def test_inert_escapes_controls_and_keeps_text() -> None:
    assert inert("a\x1b[8mb\x07\nc\rd\te\x7f\x85\u202e\u2028") == \
        "a\\x1b[8mb\\x07\\nc\\rd\\te\\x7f\\x85\\u202e\\u2028"
    assert inert("CN=r1\\,x,O=caf\u00e9 [bold]") == "CN=r1\\,x,O=caf\u00e9 [bold]"
    assert cell(MARKUP).plain == MARKUP  # a Text: Rich shows it, never parses it
    assert cell(None).plain == ""


@pytest.fixture(scope="module")
def hostile_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(state_dir=tmp_path_factory.mktemp("hostile"), devices=1, provisioned=True,
               key_type="ecdsa-p256", files=20, seed=41) as running:
        device = running.devices[0].device
        with device.lock:  # the device re-issues its root and leaf under the crafted name
            node = device.running.find(f"crypto ca trustpoint {SYSTEM_TRUSTPOINT}")
            node.set(f"subject-name ca-certificate CN={device.hostname}-ca,OU={HOSTILE_OU},C=US",
                     "subject-name ca-certificate")
            device.issue_root(SYSTEM_TRUSTPOINT)
            device.issue_leaf(SYSTEM_TRUSTPOINT, include_serial=True, ip_address=None)
        yield running


def test_enroll_shows_a_crafted_issuer_escaped_on_one_line(hostile_fleet: Fleet, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.cli

    monkeypatch.setattr(collector.cli, "_stdin_is_terminal", lambda: True)
    inventory = tmp_path / "inventory.yaml"
    hostile_fleet.write_inventory(inventory)
    name = hostile_fleet.devices[0].name
    result = _runner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(tmp_path / "t")],
                              input="n\n")
    assert result.exit_code == 1, result.output  # declined
    output = result.output
    assert not any(ch in output for ch in "\x1b\x07\r"), repr(output)
    lines = output.splitlines()
    issued_by = [line for line in lines if line.startswith("  Issued By")]
    subject = [line for line in lines if line.startswith("  Subject")]
    for shown in (issued_by, subject):
        assert len(shown) == 1
        assert "\\x07\\x1b[2K\\r  SHA256 Fingerprint: " + FAKE_SHA256 + "\\n  SHA1 Fingerprint  : " in shown[0]
        assert FAKE_SHA1 + "\\x1b[8m," in shown[0]
    # Only the real fingerprints start a line, and the question is there after them.
    sha256_lines = [line for line in lines if line.lstrip().startswith("SHA256 Fingerprint")]
    sha1_lines = [line for line in lines if line.lstrip().startswith("SHA1 Fingerprint")]
    assert len(sha256_lines) == len(sha1_lines) == 1
    assert FAKE_SHA256 not in sha256_lines[0] and FAKE_SHA1 not in sha1_lines[0]
    assert f"Do you accept this certificate for {name}?" in output
    assert name not in TrustStore.open(tmp_path / "t", create=True)


def test_enroll_json_keeps_the_exact_subject(hostile_fleet: Fleet, tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    hostile_fleet.write_inventory(inventory)
    result = _runner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(tmp_path / "t"),
                                    "--trust-on-first-use", "--json"])
    assert result.exit_code == 0, result.output
    root = json.loads(result.stdout)["devices"][0]["root"]
    assert HOSTILE_OU in root["issuer"] and HOSTILE_OU in root["subject"]  # JSON escaping is enough


def _sample(tmp_path: Path, name: str, device: str = "xr-0001") -> Path:
    """samples/envelopes/valid.envelope under another file name, its metadata naming `device`."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)  # a '/' in the markup makes a folder: also data
    shutil.copyfile(SAMPLES / "envelopes" / "valid.envelope", path)
    meta = json.loads((SAMPLES / "envelopes" / "valid.envelope.meta.json").read_text())
    meta["device"] = device
    Path(f"{path}.meta.json").write_text(json.dumps(meta))
    return path


def test_verify_prints_markup_in_a_path_literally(tmp_path: Path) -> None:
    path = _sample(tmp_path, f"{MARKUP}.envelope")
    result = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(SAMPLES / "trust-store"),
                                    "--at", "received"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 0, result.output
    assert f"{MARKUP}.envelope" in result.output and "TRUSTED" in result.output


def test_verify_prints_markup_in_a_metadata_device_name_literally(tmp_path: Path) -> None:
    device = "xr[/]0001\x1b[2J"
    path = _sample(tmp_path, "renamed.envelope", device=device)
    result = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(SAMPLES / "trust-store"),
                                    "--at", "received"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output  # that device is not enrolled: not trusted
    assert "xr[/]0001\\x1b[2J" in result.output and "\x1b" not in result.output


def test_collect_table_shows_names_and_reasons_literally(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.cli import _print_summary

    monkeypatch.setenv("COLUMNS", "1000")

    outcome = DeviceOutcome(device="r1[/]", host="h", status="failed", reason=f"{MARKUP}\x1b[8m",
                            message="m")
    summary = RunSummary(started="s", finished="f", store=f"/tmp/{MARKUP}", outcomes=[outcome])
    _print_summary(summary, as_json=False)
    printed = capsys.readouterr().out
    assert "r1[/]" in printed and f"{MARKUP}\\x1b[8m" in printed and f"/tmp/{MARKUP}" in printed
    assert "\x1b[8m" not in printed


def test_drift_table_shows_a_device_file_name_literally(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.insights.cli import _print_findings
    from collector.insights.findings import Category, DriftId, Finding, Severity

    monkeypatch.setenv("COLUMNS", "1000")
    subject = f"/harddisk:/{MARKUP}\x1b]0;owned\x07"  # a file the device lists, OSC title and all
    finding = Finding(DriftId.FILE_CREATED, Severity.WARNING, Category.FILE_SYSTEM, subject, "created",
                      after={"sha256": "[/]"})
    _print_findings([finding], f"Drift a -> {MARKUP}")
    printed = capsys.readouterr().out
    assert f"/harddisk:/{MARKUP}\\x1b]0;owned\\x07" in printed and '{"sha256": "[/]"}' in printed
    assert f"Drift a -> {MARKUP}" in printed and "\x1b" not in printed


def test_a_multi_line_message_is_inert_line_by_line_and_cannot_pass_for_another_message() -> None:
    from verifier.display import inert_lines

    shown = inert_lines("inventory.yaml:3: name: expected a string\ninventory.yaml:9: error: \x1b[2Jfake")
    first, second = shown.split("\n")
    assert first == "inventory.yaml:3: name: expected a string"
    assert second.startswith("  ") and "\x1b" not in second and "\\x1b[2Jfake" in second
