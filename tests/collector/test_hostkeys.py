"""`dossier hostkeys`: pin host keys from a known_hosts file (hashed, written by ssh-keyscan) or
from the device once its fingerprint is confirmed, into an inventory whose comments and layout
stay as written; against the real emulator over SSH."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector import cli as collector_cli
from collector.inventory import load_inventory
from dossier_cli.main import cli
from emulator.fleet import Fleet

SMALL_FILES = 20


def _inventory(fleet: Fleet, path: Path) -> str:
    """A hand-written inventory without host keys: comments, a flow mapping, a group."""
    first, second = fleet.devices
    text = (f"# the lab fleet\n"
            f"defaults:\n  username: {first.username}   # everyone\n"
            f"devices:\n"
            f"  - name: {first.name}    # rack 1\n"
            f"    host: {first.host}\n    port: {first.port}\n"
            f"    credential: {{password_file: {first.password_file}}}\n"
            f"  - {{name: {second.name}, host: {second.host}, port: {second.port}, "
            f"credential: {{password_file: {second.password_file}}}}}\n"
            f"# end\n")
    path.write_text(text)
    return text


def _without_pins(text: str) -> str:
    return re.sub(r'(\n *host_key|, host_key): "[^"]*"', "", text)


def test_pin_from_a_hashed_known_hosts_file_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=2, provisioned=True, files=SMALL_FILES, seed=3) as fleet:
        inventory = tmp_path / "inventory.yaml"
        original = _inventory(fleet, inventory)
        known_hosts = tmp_path / "known_hosts"
        if shutil.which("ssh-keyscan"):
            lines = []
            for device in fleet.devices:
                scanned = subprocess.run(["ssh-keyscan", "-H", "-t", "ed25519", "-p", str(device.port), device.host],
                                         capture_output=True, text=True, timeout=30)
                lines.append(scanned.stdout)
            known_hosts.write_text("".join(lines))
            assert all(line.startswith("|1|") for line in known_hosts.read_text().splitlines())
        else:  # the emulator's own known_hosts lines, as OpenSSH writes them unhashed
            known_hosts.write_text("".join(f"{device.host_key_line}\n" for device in fleet.devices))
        result = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "--known-hosts", str(known_hosts)])
        assert result.exit_code == 0, result.output
        assert result.stdout.count("pinned (known-hosts, SHA256:") == 2
        pinned = inventory.read_text()
        # Only the host_key entries were added: every other byte, comment and the flow mapping stay.
        assert _without_pins(pinned) == original
        loaded = load_inventory(inventory)
        for device, emulated in zip(loaded.devices, fleet.devices, strict=True):
            assert device.host_key is not None and device.host_key.line.endswith("pinned-by=known-hosts")
            assert device.host_key.line.split()[:3] == emulated.host_key_line.split()[:3]
        # The pins work: the collector connects with them (strict host keys).
        enrolled = CliRunner().invoke(cli, ["enroll", "-i", str(inventory), "--trust-store", str(tmp_path / "t"),
                                            "--trust-on-first-use"])
        assert enrolled.exit_code == 0, enrolled.output
        again = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "--known-hosts", str(known_hosts)])
        assert again.exit_code == 0 and again.stdout.count("already-pinned") == 2
        assert inventory.read_text() == pinned


def test_pin_a_fetched_key_only_once_confirmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Fleet(state_dir=tmp_path / "fleet", devices=2, provisioned=True, files=SMALL_FILES, seed=4) as fleet:
        inventory = tmp_path / "inventory.yaml"
        original = _inventory(fleet, inventory)
        first, second = fleet.devices
        right = _fingerprint(first.host_key_line)
        base = ["hostkeys", "-i", str(inventory)]
        # Never silently: without a terminal, a fingerprint or the explicit flag, nothing happens.
        refused = CliRunner().invoke(cli, base)
        assert refused.exit_code == 2 and "--trust-on-first-use" in refused.stderr
        wrong = CliRunner().invoke(cli, [*base, "-d", first.name, "--expect-fingerprint", "SHA256:" + "A" * 43])
        assert wrong.exit_code == 1 and f"found {right}" in wrong.stderr
        assert inventory.read_text() == original
        assert CliRunner().invoke(cli, [*base, "--expect-fingerprint", right]).exit_code == 2  # two devices
        good = CliRunner().invoke(cli, [*base, "-d", first.name, "--expect-fingerprint", right])
        assert good.exit_code == 0 and f"{first.name}: pinned (fingerprint, {right})" in good.stdout
        # Interactive: the fingerprint is shown and the answer decides.
        monkeypatch.setattr(collector_cli, "_stdin_is_terminal", lambda: True)
        declined = CliRunner().invoke(cli, [*base, "-d", second.name], input="n\n")
        assert declined.exit_code == 1 and "SHA256 Fingerprint: SHA256:" in declined.stderr  # the prompt is on stderr
        assert load_inventory(inventory).devices[1].host_key is None
        accepted = CliRunner().invoke(cli, [*base, "-d", second.name], input="y\n")
        assert accepted.exit_code == 0, accepted.output
        keys = {device.name: device.host_key for device in load_inventory(inventory).devices}
        assert keys[first.name].line.endswith("pinned-by=fingerprint")  # type: ignore[union-attr]
        assert keys[second.name].line.endswith("pinned-by=interactive")  # type: ignore[union-attr]
        assert _without_pins(inventory.read_text()) == original


def test_trust_on_first_use_is_logged_and_a_changed_key_needs_replace(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with Fleet(state_dir=tmp_path / "a", devices=2, provisioned=True, files=SMALL_FILES, seed=5) as fleet, \
         Fleet(state_dir=tmp_path / "b", devices=1, provisioned=True, files=SMALL_FILES, seed=6) as other:
        inventory = tmp_path / "inventory.yaml"
        _inventory(fleet, inventory)
        tofu = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "--trust-on-first-use"])
        assert tofu.exit_code == 0, tofu.output
        assert sum("TRUST ON FIRST USE" in record.message for record in caplog.records) == 2
        assert all(d.host_key.line.endswith("pinned-by=trust-on-first-use")  # type: ignore[union-attr]
                   for d in load_inventory(inventory).devices)
        # The first device now answers with another key (re-imaged, or someone in between).
        first = fleet.devices[0]
        inventory.write_text(inventory.read_text().replace(f"port: {first.port}", f"port: {other.devices[0].port}"))
        pinned = inventory.read_text()
        changed = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "-d", first.name,
                                           "--trust-on-first-use"])
        assert changed.exit_code == 1 and "mismatch: expected the pinned ssh-ed25519" in changed.stderr
        assert inventory.read_text() == pinned
        replaced = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "-d", first.name,
                                            "--trust-on-first-use", "--replace"])
        assert replaced.exit_code == 0 and f"{first.name}: replaced" in replaced.stdout
        device = load_inventory(inventory).devices[0]
        assert device.host_key.line.split()[1:3] == other.devices[0].host_key_line.split()[1:3]  # type: ignore[union-attr]
        assert pinned.count("host_key:") == inventory.read_text().count("host_key:") == 2


def _fingerprint(line: str) -> str:
    from collector.inventory import HostKey

    return HostKey.parse(line).fingerprint


def test_known_hosts_markers_and_unreadable_lines_are_read_as_openssh_does(tmp_path: Path) -> None:
    """Found by a review: an `@cert-authority` or `@revoked` line (common in a real
    ~/.ssh/known_hosts) or a line that is not a key made the command fail with a traceback.
    Such lines are skipped as OpenSSH skips them, and a key listed @revoked is never pinned."""
    with Fleet(state_dir=tmp_path / "fleet", devices=2, provisioned=True, files=SMALL_FILES, seed=3) as fleet:
        inventory = tmp_path / "inventory.yaml"
        _inventory(fleet, inventory)
        lines = [device.host_key_line for device in fleet.devices]
        host, key_type, blob = lines[0].split()[:3]
        noise = [f"@cert-authority *.example.net {key_type} {blob}", "not a known_hosts line at all",
                 f"{host} ssh-ed25519 !!!not-base64!!!"]
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("\n".join([*noise, *lines, ""]))
        pinned = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "--known-hosts", str(known_hosts)])
        assert pinned.exit_code == 0, pinned.output
        assert pinned.stdout.count("pinned (known-hosts, SHA256:") == 2
        _inventory(fleet, inventory)  # unpinned again
        known_hosts.write_text("\n".join([f"@revoked * {key_type} {blob}", *lines, ""]))
        revoked = CliRunner().invoke(cli, ["hostkeys", "-i", str(inventory), "--known-hosts", str(known_hosts)])
        assert revoked.exit_code == 2 and "@revoked" in revoked.output and "Traceback" not in revoked.output
