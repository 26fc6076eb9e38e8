"""`dossier verify` and `dossier trust ...` through click's CliRunner, plus one real subprocess."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

import schemas
from dossier_cli.main import cli
from vbuilder import DAY, NOW, Device, make_leaf

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def files(tmp_path: Path, device: Device) -> dict[str, Path]:
    root = tmp_path / "root.pem"
    root.write_bytes(device.root.public_bytes(Encoding.PEM))
    good = tmp_path / "good.envelope"
    good.write_bytes(b"Sun Oct 20 13:07:24.136 UTC\n\n" + device.envelope())
    bad = tmp_path / "bad.envelope"
    bad.write_bytes(device.envelope().replace(b"FOC2104R15R", b"FOC2104R15X"))
    return {"root": root, "good": good, "bad": bad}


def _store(tmp_path: Path, root: Path, device: str = "r1") -> Path:
    store = tmp_path / "store"
    result = CliRunner().invoke(cli, ["trust", "add", device, str(root), "--trust-store", str(store)])
    assert result.exit_code == 0, result.output
    return store


def _collected(tmp_path: Path, device: Device, name: str, *, received: dt.datetime, nonce: bytes | None = None,
               raw: bytes | None = None) -> Path:
    """An envelope stored as the collector stores it, with its metadata sidecar."""
    raw = raw if raw is not None else device.envelope(nonce=nonce)
    path = tmp_path / f"{name}.envelope"
    path.write_bytes(raw)
    meta = {"format": "trust-dossier/envelope-metadata/1", "device": "r1", "host": "192.0.2.1",
            "nonce": (nonce or device.nonce).hex(), "started": (received - dt.timedelta(seconds=1)).isoformat(),
            "received": received.isoformat(), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    Path(str(path) + ".meta.json").write_text(json.dumps(meta))
    return path


def test_help_explains_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["verify", "--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output and "0  every envelope is trusted" in result.output
    assert CliRunner().invoke(cli, ["trust", "--help"]).exit_code == 0


def test_trusted_envelope_exits_0_with_a_table(files) -> None:
    result = CliRunner().invoke(cli, ["verify", str(files["good"]), "--root", str(files["root"]),
                                      "--nonce", "1580", "--at", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "TRUSTED" in result.output and "good.envelope" in result.output


def test_untrusted_envelope_exits_1_and_json_lists_findings(files) -> None:
    result = CliRunner().invoke(cli, ["verify", str(files["good"]), str(files["bad"]), "--root", str(files["root"]),
                                      "--nonce", "1580", "--at", NOW.isoformat(), "--json"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["trusted"] for line in lines] == [True, False]
    assert "signature.invalid" in [f["id"] for f in lines[1]["findings"]]
    for line in lines:
        jsonschema.validate(line, schemas.load("verdict"))


def test_missing_nonce_is_not_trusted_unless_insecure(files) -> None:
    args = ["verify", str(files["good"]), "--root", str(files["root"]), "--at", NOW.isoformat(), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "nonce.not_checked" in result.output
    result = CliRunner().invoke(cli, [*args, "--insecure-skip-nonce"])
    assert result.exit_code == 0
    assert "WARNING" in result.output  # the danger is said every time


def test_stored_envelope_uses_its_metadata_and_received_time(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    expired_leaf = make_leaf("p256", "p256", device.root, not_before=NOW - 20 * DAY, not_after=NOW - DAY)
    old = Device("p256", "p256", root=device.root, leaf=expired_leaf)
    stored = _collected(tmp_path, old, "old", received=NOW - 5 * DAY, nonce=bytes.fromhex("a1b2"))
    base = ["verify", str(stored), "--trust-store", str(store), "--json"]
    at_received = CliRunner().invoke(cli, [*base, "--at", "received"])
    assert at_received.exit_code == 0, at_received.output
    line = json.loads(at_received.output)
    assert line["device"] == "r1" and line["nonce"] == "a1b2"
    today = CliRunner().invoke(cli, [*base, "--at", NOW.isoformat()])
    assert today.exit_code == 1 and "chain.leaf_expired" in today.output


def test_metadata_that_disagrees_with_the_file_is_an_input_error(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    stored = _collected(tmp_path, device, "x", received=NOW)
    stored.write_bytes(stored.read_bytes() + b" ")
    result = CliRunner().invoke(cli, ["verify", str(stored), "--trust-store", str(store), "--json"])
    assert result.exit_code == 2
    assert "records" in json.loads(result.output)["error"]


def test_conflicting_nonce_is_an_input_error(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    stored = _collected(tmp_path, device, "x", received=NOW)
    result = CliRunner().invoke(cli, ["verify", str(stored), "--trust-store", str(store), "--nonce", "ffff"])
    assert result.exit_code == 2 and "differs" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "nope.envelope", "--root", "{root}", "--nonce", "1580"], "cannot read"),
        (["verify", "{good}"], "no trust anchor"),
        (["verify", "{good}", "--trust-store", "{tmp}/absent"], "no trust store"),
        (["verify", "{good}", "--root", "{root}", "--nonce", "xyz"], "expected hex digits"),
        (["verify", "{good}", "--root", "{root}", "--at", "2026-01-01T00:00:00"], "no zone"),
        (["verify", "{good}", "--root", "{root}", "--at", "received", "--nonce", "1580"], "needs the collector's metadata"),
        (["verify", "{good}", "--root", "{good}"], "expected PEM certificates"),
    ],
)
def test_usage_and_input_errors_exit_2(tmp_path: Path, files, args: list[str], message: str) -> None:
    values = {"root": str(files["root"]), "good": str(files["good"]), "tmp": str(tmp_path)}
    result = CliRunner().invoke(cli, [arg.format(**values) for arg in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_stdin(files, jobs: str) -> None:
    result = CliRunner().invoke(cli, ["verify", "-", str(files["good"]), "--root", str(files["root"]),
                                      "--nonce", "1580", "--at", NOW.isoformat(), "--json", "--jobs", jobs],
                                input=files["good"].read_bytes())
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["file"] for line in result.output.splitlines()] == ["-", str(files["good"])]


def test_jobs_gives_the_same_answers_in_order(tmp_path: Path, files) -> None:
    paths = [str(files["good"]), str(files["bad"])] * 3
    args = ["verify", *paths, "--root", str(files["root"]), "--nonce", "1580", "--at", NOW.isoformat(), "--json"]
    one = CliRunner().invoke(cli, args)
    two = CliRunner().invoke(cli, [*args, "--jobs", "2"])
    assert one.exit_code == two.exit_code == 1
    strip = lambda out: [(x["file"], x["trusted"], [f["id"] for f in x["findings"]]) for x in map(json.loads, out.splitlines())]
    assert strip(one.output) == strip(two.output)


def test_trust_commands(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    runner = CliRunner()
    listed = runner.invoke(cli, ["trust", "list", "--trust-store", str(store), "--json"])
    assert listed.exit_code == 0
    assert json.loads(listed.output)["devices"][0]["device"] == "r1"
    assert "r1" in runner.invoke(cli, ["trust", "list", "--trust-store", str(store)]).output
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(device.root.public_bytes(Encoding.PEM))
    imported = runner.invoke(cli, ["trust", "import-bundle", str(bundle), "--trust-store", str(store)])
    assert imported.exit_code == 0 and "1 CA certificate(s) added" in imported.output
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(device.leaf.public_bytes(Encoding.PEM))
    refused = runner.invoke(cli, ["trust", "add", "r2", str(leaf), "--trust-store", str(store)])
    assert refused.exit_code == 2 and "not a CA" in refused.output
    assert runner.invoke(cli, ["trust", "remove", "r1", "--trust-store", str(store)]).exit_code == 0
    gone = runner.invoke(cli, ["trust", "remove", "r1", "--trust-store", str(store)])
    assert gone.exit_code == 2 and "not in the trust store" in gone.output


def test_damaged_store_exits_2(tmp_path: Path, files) -> None:
    store = _store(tmp_path, files["root"])
    (store / "devices/r1.json").write_text("{")
    result = CliRunner().invoke(cli, ["verify", str(files["good"]), "--trust-store", str(store), "--device", "r1",
                                      "--nonce", "1580", "--json"])
    assert result.exit_code == 2, result.output
    assert "damaged" in result.output


def test_end_to_end_subprocess(tmp_path: Path, files) -> None:
    store = _store(tmp_path, files["root"])
    command = [sys.executable, "-m", "dossier_cli", "verify", str(files["good"]), str(files["good"]),
               "--trust-store", str(store), "--nonce", "1580", "--at", NOW.isoformat(), "--json", "--jobs", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["device"] for line in done.stdout.splitlines()] == ["r1", "r1"]


def test_metadata_that_contradicts_the_collector_file_name_is_an_input_error(tmp_path: Path, files, device: Device) -> None:
    folder = tmp_path / "r1"
    folder.mkdir()
    good = _collected(folder, device, "20260601T120000.000000Z-1580", received=NOW)
    args = ["--root", str(files["root"]), "--at", NOW.isoformat(), "--json"]
    assert CliRunner().invoke(cli, ["verify", str(good), *args]).exit_code == 0
    replayed = _collected(folder, device, "20260601T120000.000000Z-deadbeef", received=NOW)
    result = CliRunner().invoke(cli, ["verify", str(replayed), *args])
    assert result.exit_code == 2 and "file name says nonce deadbeef" in result.output
    moved_in_time = _collected(folder, device, "20260601T120000.000000Z-1580", received=NOW - DAY)
    result = CliRunner().invoke(cli, ["verify", str(moved_in_time), *args])
    assert result.exit_code == 2 and "received at" in result.output
    other = tmp_path / "r2"
    other.mkdir()
    moved = _collected(other, device, "20260601T120000.000000Z-1580", received=NOW)
    result = CliRunner().invoke(cli, ["verify", str(moved), *args])
    assert result.exit_code == 2 and "device folder 'r2'" in result.output
